/* The proxy's optional C data path (built with BOREALIS_COMPILE=1, see setup.py; the proxy runs without it).
 *
 * A Link reads one plaintext socket (a client's or a server connection's) in place of uvloop's stream read: the
 * event loop calls it when the socket is readable (loop.add_reader on a dup of the socket's descriptor). Most
 * chunks go to the protocol's data_received() as bytes, as uvloop would hand them. Two shapes never reach Python:
 *
 *   - a client that holds a server connection (in a transaction, or pinned) sends one whole simple Query whose
 *     text is known not to pin: it goes to the server as it came;
 *   - the answer to such a Query ends in ReadyForQuery with the transaction status unchanged, or ending the
 *     transaction of an unpinned client (then the protocol's _link_release gives the connection back first),
 *     and holds only frames the Python fast path also passes without a look: it goes to the client as it came.
 *
 * That is the round trip a transaction's statements make between its BEGIN and its COMMIT (and every statement
 * of a pinned session). Python arms a client's link after an answer it handled itself, when every condition of
 * its own fast path holds (ClientConn.answered); any other chunk on either side first hands back the Query in
 * flight (the server protocol's _link_settle(sent_at) records it as Python's own path would have), disarms the
 * pair, and then goes to Python. Writes go straight to the socket only when its transport buffers nothing, and
 * whatever the socket does not take at once goes to the transport, so bytes never overtake each other.
 *
 * Everything runs on the event loop's thread, holding the GIL; nothing here blocks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <structmember.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* uvloop reads up to 256 KiB at a time; so do we. One buffer: every read is handled before the next. */
#define READ_SIZE (256 * 1024)
static char *rbuf;

static PyObject *unpinned_shapes; /* dict of bytes (pgwire.UNPINNED_SHAPES, shared): query shapes (digits removed) known not to pin */
static unsigned char shape_digit[256];
static unsigned char query_table[256]; /* backend frame types an answer may hold and stay on this path */
static PyObject *str_get_write_buffer_size, *str_write;

typedef struct {
    PyObject_HEAD
    long long queries;   /* QueryRequests forwarded here */
    long long responses; /* answers forwarded here (QueryDatabaseResponseLatency's count) */
    double latency_us;   /* and the sum of their latencies */
} Counters;

typedef struct Link {
    PyObject_HEAD
    int fd;         /* our dup of the socket; -1 once closed */
    int is_server;
    PyObject *on_data;   /* protocol.data_received */
    PyObject *on_closed; /* protocol._link_closed(errno): EOF or a read error */
    PyObject *on_settle; /* server links: protocol._link_settle(sent_at) */
    PyObject *on_release; /* client links: protocol._link_release(), when a transaction ends here */
    PyObject *transport;
    PyObject *buffered; /* transport.get_write_buffer_size */
    struct Link *peer; /* client: the server link while armed; server: that client while armed */
    char expect;       /* client: armed, the transaction status the answers must keep (0: not armed) */
    char pinned;       /* client: the session is the client's own (no pin check) */
    char inflight;     /* server: a Query forwarded here awaits its answer */
    double sent_at;
    double last_active; /* client: when it last sent something through this path */
    PyObject *last_sql; /* client: the last text checked and found not to pin, or NULL */
    Counters *counters;
} Link;

static PyTypeObject LinkType, CountersType;

static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint32_t
be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | (uint32_t)u[3];
}

/* -1 on a Python error, else 1 when the link's transport holds bytes not yet written. */
static int
write_buffered(Link *link)
{
    PyObject *r = PyObject_CallNoArgs(link->buffered);
    if (r == NULL)
        return -1;
    long size = PyLong_AsLong(r);
    Py_DECREF(r);
    if (size == -1 && PyErr_Occurred())
        return -1;
    return size != 0;
}

/* Send n bytes to the link's socket; what it does not take at once goes through its transport. */
static int
send_all(Link *link, const char *buf, Py_ssize_t n)
{
    ssize_t w = send(link->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w == n)
        return 0;
    if (w < 0)
        w = 0; /* EAGAIN, or an error the transport will meet and report (connection_lost) */
    PyObject *rest = PyBytes_FromStringAndSize(buf + w, n - w);
    if (rest == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg(link->transport, str_write, rest);
    Py_DECREF(rest);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Call one of a link's callbacks (NULL: it was dropped by a close, a no-op). The reference is taken first: the
 * callback may close the link, which drops the link's own. */
static PyObject *
callback(PyObject *cb, PyObject *arg)
{
    if (cb == NULL)
        return Py_NewRef(Py_None);
    Py_INCREF(cb);
    PyObject *r = arg != NULL ? PyObject_CallOneArg(cb, arg) : PyObject_CallNoArgs(cb);
    Py_DECREF(cb);
    return r;
}

/* A callback raised (or memory ran out): the protocol's state is unknown, so the connection goes, as uvloop
 * aborts a transport whose data_received raised. The exception stays set for the event loop to report. */
static void
abort_transport(Link *link)
{
    PyObject *transport = link->transport;
    if (transport == NULL)
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    Py_INCREF(transport);
    PyObject *r = PyObject_CallMethod(transport, "abort", NULL);
    Py_DECREF(transport);
    if (r == NULL)
        PyErr_Clear();
    else
        Py_DECREF(r);
    PyErr_Restore(type, value, tb);
}

/* Break the armed pair, if any, without telling Python. */
static void
unpair(Link *link)
{
    Link *peer = link->peer;
    if (peer == NULL)
        return;
    link->peer = NULL;
    (link->is_server ? peer : link)->expect = 0;
    int back = peer->peer == link;
    if (back)
        peer->peer = NULL;
    Py_DECREF(peer);
    if (back)
        Py_DECREF(link);
}

/* Hand a Query in flight back to Python's bookkeeping and disarm the pair: before any chunk goes to Python. */
static int
settle(Link *link)
{
    Link *server = link->is_server ? link : link->peer;
    int rc = 0;
    if (server != NULL && server->inflight) {
        server->inflight = 0;
        Py_INCREF(server);
        PyObject *sent = PyFloat_FromDouble(server->sent_at);
        if (sent == NULL)
            rc = -1;
        else {
            PyObject *r = callback(server->on_settle, sent);
            Py_DECREF(sent);
            if (r == NULL)
                rc = -1;
            else
                Py_DECREF(r);
        }
        Py_DECREF(server);
    }
    unpair(link);
    return rc;
}

/* A client's chunk: 1 if it was a Query sent on to the armed server here, 0 for Python, -1 on error. */
static int
query_fast(Link *self, Py_ssize_t n, double now)
{
    Link *server = self->peer;
    if (n < 6 || rbuf[0] != 'Q' || be32(rbuf + 1) != (uint32_t)(n - 1) || rbuf[n - 1] != '\0')
        return 0;
    if (server == NULL || server->fd < 0 || server->inflight)
        return 0;
    if (!self->pinned) {
        const char *sql = rbuf + 5;
        Py_ssize_t len = n - 6;
        PyObject *last = self->last_sql;
        if (last == NULL || PyBytes_GET_SIZE(last) != len || memcmp(PyBytes_AS_STRING(last), sql, (size_t)len) != 0) {
            /* The shape: the text with its digits removed (pgwire.SHAPE_DIGITS), as the Python path makes it. */
            PyObject *shape = PyBytes_FromStringAndSize(NULL, len);
            if (shape == NULL)
                return -1;
            char *out = PyBytes_AS_STRING(shape);
            Py_ssize_t k = 0;
            for (Py_ssize_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)sql[i];
                if (!shape_digit[c])
                    out[k++] = (char)c;
            }
            if (k != len && _PyBytes_Resize(&shape, k) < 0)
                return -1;
            int known = PyDict_Contains(unpinned_shapes, shape);
            Py_DECREF(shape);
            if (known < 0)
                return -1;
            if (!known)
                return 0; /* Python looks closer (may_pin, pinning_reason) */
        }
    }
    int buffered = write_buffered(server);
    if (buffered)
        return buffered < 0 ? -1 : 0;
    server->inflight = 1;
    server->sent_at = now;
    self->last_active = now;
    self->counters->queries++;
    return send_all(server, rbuf, n) < 0 ? -1 : 1;
}

/* A server's chunk: 1 if it was the whole answer to the Query in flight, sent on to the client here. */
static int
answer_fast(Link *self, Py_ssize_t n, double now)
{
    Link *client = self->peer;
    if (client == NULL || client->fd < 0 || client->expect == 0 || n < 6)
        return 0;
    const char *end = rbuf + n - 6;
    if (end[0] != 'Z' || be32(end + 1) != 5)
        return 0;
    /* The status stays, or the transaction of an unpinned client ends (COMMIT, ROLLBACK, an autocommit statement):
     * Python takes the connection back (the client's _link_release) before the answer goes out, as
     * ClientConn.answered does. */
    int release = end[5] == 'I' && !client->pinned;
    if (end[5] != client->expect && !release)
        return 0;
    Py_ssize_t pos = 0, stop = n - 6;
    while (pos < stop) {
        if (stop - pos < 5)
            return 0;
        uint32_t len = be32(rbuf + pos + 1);
        if (!query_table[(unsigned char)rbuf[pos]] || len < 4 || len > (uint32_t)(stop - pos - 1))
            return 0;
        pos += 1 + (Py_ssize_t)len;
    }
    int buffered = write_buffered(client);
    if (buffered)
        return buffered < 0 ? -1 : 0;
    self->inflight = 0;
    Counters *c = client->counters;
    c->responses++;
    c->latency_us += (now - self->sent_at) * 1e6;
    if (!release)
        return send_all(client, rbuf, n) < 0 ? -1 : 1;
    Py_INCREF(client);
    unpair(client);
    PyObject *r = callback(client->on_release, NULL);
    int rc = r == NULL ? -1 : 1;
    Py_XDECREF(r);
    /* The answer goes out even if the hook failed (the error is reported and this connection aborted after).
     * The hook ran pool code: the client's link may have closed (the answer goes with it), or its transport may
     * hold bytes now (then the answer queues behind them). The read buffer is still this chunk's: nothing in
     * the hook reads a link. */
    if (client->fd >= 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        int buffered = write_buffered(client);
        int sent = -1;
        if (buffered == 0)
            sent = send_all(client, rbuf, n);
        else if (buffered > 0) {
            PyObject *data = PyBytes_FromStringAndSize(rbuf, n);
            PyObject *w = data != NULL ? PyObject_CallMethodOneArg(client->transport, str_write, data) : NULL;
            Py_XDECREF(data);
            Py_XDECREF(w);
            sent = w != NULL ? 0 : -1;
        }
        if (type != NULL)
            PyErr_Restore(type, value, tb); /* the hook's error is the one to report */
        else if (sent < 0)
            rc = -1;
        else
            PyErr_Clear();
    }
    Py_DECREF(client);
    return rc;
}

/* The event loop's reader callback: the socket is readable. */
static PyObject *
Link_call(Link *self, PyObject *args, PyObject *kwargs)
{
    if (self->fd < 0)
        Py_RETURN_NONE;
    ssize_t n = recv(self->fd, rbuf, READ_SIZE, MSG_DONTWAIT);
    if (n <= 0) {
        int err = n < 0 ? errno : 0;
        if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
            Py_RETURN_NONE;
        Py_INCREF(self);
        PyObject *r = NULL;
        if (settle(self) == 0) {
            PyObject *code = PyLong_FromLong(err);
            if (code != NULL) {
                r = callback(self->on_closed, code);
                Py_DECREF(code);
            }
        }
        if (r == NULL)
            abort_transport(self);
        Py_DECREF(self);
        return r;
    }
    double now = monotonic();
    int done = 0;
    Py_INCREF(self);
    if (self->is_server) {
        if (self->inflight)
            done = answer_fast(self, n, now);
    } else if (self->expect) {
        done = query_fast(self, n, now);
    }
    PyObject *r = NULL;
    if (done > 0)
        r = Py_NewRef(Py_None);
    else if (done == 0) {
        /* The general path. The bytes are copied out first: Python may read another link before it returns. */
        PyObject *data = PyBytes_FromStringAndSize(rbuf, n);
        if (data != NULL) {
            if (settle(self) == 0)
                r = callback(self->on_data, data);
            Py_DECREF(data);
        }
    }
    if (r == NULL)
        abort_transport(self);
    Py_DECREF(self);
    return r;
}

static int
Link_init(Link *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"fd", "protocol", "transport", "server", "counters", NULL};
    int fd, is_server;
    PyObject *proto, *transport;
    Counters *counters;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOOpO!", kwlist, &fd, &proto, &transport, &is_server,
                                     &CountersType, &counters))
        return -1;
    if (self->fd >= 0 || self->on_data != NULL || self->counters != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Link is initialised once");
        return -1;
    }
    PyObject *on_data = PyObject_GetAttrString(proto, "data_received");
    PyObject *on_closed = PyObject_GetAttrString(proto, "_link_closed");
    PyObject *on_settle = is_server ? PyObject_GetAttrString(proto, "_link_settle") : NULL;
    PyObject *on_release = is_server ? NULL : PyObject_GetAttrString(proto, "_link_release");
    PyObject *buffered = PyObject_GetAttr(transport, str_get_write_buffer_size);
    int dup_fd = -1;
    if (on_data == NULL || on_closed == NULL || (is_server ? on_settle == NULL : on_release == NULL) || buffered == NULL ||
        (dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        if (dup_fd < 0 && !PyErr_Occurred())
            PyErr_SetFromErrno(PyExc_OSError);
        Py_XDECREF(on_data);
        Py_XDECREF(on_closed);
        Py_XDECREF(on_settle);
        Py_XDECREF(on_release);
        Py_XDECREF(buffered);
        return -1;
    }
    self->fd = dup_fd;
    self->is_server = is_server;
    self->on_data = on_data;
    self->on_closed = on_closed;
    self->on_settle = on_settle;
    self->on_release = on_release;
    self->transport = Py_NewRef(transport);
    self->buffered = buffered;
    self->counters = (Counters *)Py_NewRef(counters);
    self->last_active = monotonic();
    return 0;
}

static PyObject *
Link_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Link *self = (Link *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fd = -1;
    return (PyObject *)self;
}

/* Drop every reference to Python objects (the protocol's bound methods hold the protocol: a cycle). */
static void
Link_release(Link *self)
{
    unpair(self);
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    Py_CLEAR(self->on_data);
    Py_CLEAR(self->on_closed);
    Py_CLEAR(self->on_settle);
    Py_CLEAR(self->on_release);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->buffered);
    Py_CLEAR(self->last_sql);
}

static int
Link_traverse(Link *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_data);
    Py_VISIT(self->on_closed);
    Py_VISIT(self->on_settle);
    Py_VISIT(self->on_release);
    Py_VISIT(self->transport);
    Py_VISIT(self->buffered);
    Py_VISIT((PyObject *)self->peer);
    Py_VISIT((PyObject *)self->counters);
    return 0;
}

static int
Link_clear(Link *self)
{
    Link_release(self);
    Py_CLEAR(self->counters);
    return 0;
}

static void
Link_dealloc(Link *self)
{
    PyObject_GC_UnTrack(self);
    Link_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Link_fileno(Link *self, PyObject *unused)
{
    return PyLong_FromLong(self->fd);
}

/* Pair a client's link with a server's (arm, sent): 1 when paired, 0 when the pair cannot be made now (a link
 * closed, the server busy with a Query or another client), -1 (ValueError) for links of the wrong kinds. */
static int
pair(Link *client, Link *server)
{
    if (client->is_server || !server->is_server) {
        PyErr_SetString(PyExc_ValueError, "a client's link pairs with a server's");
        return -1;
    }
    if (client->fd < 0 || server->fd < 0 || server->inflight || (server->peer != NULL && server->peer != client))
        return 0;
    if (client->peer != server) {
        unpair(client);
        client->peer = (Link *)Py_NewRef(server);
        server->peer = (Link *)Py_NewRef(client);
    }
    return 1;
}

static PyObject *
Link_arm(Link *self, PyObject *args)
{
    Link *server;
    int status, pinned;
    PyObject *last_sql;
    if (!PyArg_ParseTuple(args, "O!CpO", &LinkType, &server, &status, &pinned, &last_sql))
        return NULL;
    int paired = pair(self, server);
    if (paired <= 0)
        return paired < 0 ? NULL : Py_NewRef(Py_False);
    self->expect = (char)status;
    self->pinned = (char)pinned;
    Py_XSETREF(self->last_sql, PyBytes_Check(last_sql) ? Py_NewRef(last_sql) : NULL);
    Py_RETURN_TRUE;
}

/* Python sent an autocommit Query of an unpinned client to a connection it lent: its answer may go out here. */
static PyObject *
Link_sent(Link *self, PyObject *args)
{
    Link *server;
    double sent_at;
    if (!PyArg_ParseTuple(args, "O!d", &LinkType, &server, &sent_at))
        return NULL;
    int paired = pair(self, server);
    if (paired <= 0)
        return paired < 0 ? NULL : Py_NewRef(Py_False);
    self->expect = 'I';
    self->pinned = 0;
    server->inflight = 1;
    server->sent_at = sent_at;
    Py_RETURN_TRUE;
}

static PyObject *
Link_settle(Link *self, PyObject *unused)
{
    if (settle(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Link_close(Link *self, PyObject *unused)
{
    Py_INCREF(self);
    int rc = settle(self);
    Link_release(self);
    Py_DECREF(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Link_get_armed(Link *self, void *closure)
{
    return PyBool_FromLong(self->expect != 0 && self->peer != NULL);
}

static PyObject *
Link_get_inflight(Link *self, void *closure)
{
    return PyBool_FromLong(self->inflight);
}

static PyMethodDef Link_methods[] = {
    {"fileno", (PyCFunction)Link_fileno, METH_NOARGS, "The descriptor the event loop watches (-1 once closed)."},
    {"arm", (PyCFunction)Link_arm, METH_VARARGS,
     "arm(server_link, status, pinned, last_sql): forward Queries to that server connection here while its "
     "answers keep the transaction status; False when the pair cannot be armed now."},
    {"sent", (PyCFunction)Link_sent, METH_VARARGS,
     "sent(server_link, sent_at): Python sent an unpinned client's autocommit Query to that connection; its "
     "answer may go out (and the connection back) here. False when the pair cannot take it now."},
    {"settle", (PyCFunction)Link_settle, METH_NOARGS,
     "Hand a Query in flight back to Python (the server protocol's _link_settle) and disarm the pair."},
    {"close", (PyCFunction)Link_close, METH_NOARGS, "Settle, then close the descriptor and drop every reference."},
    {NULL},
};

static PyMemberDef Link_members[] = {
    {"last_active", T_DOUBLE, offsetof(Link, last_active), READONLY, "monotonic time of the last Query sent here"},
    {NULL},
};

static PyGetSetDef Link_getset[] = {
    {"armed", (getter)Link_get_armed, NULL, "Queries are forwarded here", NULL},
    {"inflight", (getter)Link_get_inflight, NULL, "a Query forwarded here awaits its answer", NULL},
    {NULL},
};

static PyTypeObject LinkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "borealis.proxy._fastpath.Link",
    .tp_basicsize = sizeof(Link),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Link(fd, protocol, transport, server, counters): reads one socket for a proxy protocol.",
    .tp_new = Link_new,
    .tp_init = (initproc)Link_init,
    .tp_dealloc = (destructor)Link_dealloc,
    .tp_traverse = (traverseproc)Link_traverse,
    .tp_clear = (inquiry)Link_clear,
    .tp_call = (ternaryfunc)Link_call,
    .tp_methods = Link_methods,
    .tp_members = Link_members,
    .tp_getset = Link_getset,
};

static PyMemberDef Counters_members[] = {
    {"queries", T_LONGLONG, offsetof(Counters, queries), READONLY, "Queries forwarded by the C path"},
    {"responses", T_LONGLONG, offsetof(Counters, responses), READONLY, "answers forwarded by the C path"},
    {"latency_us", T_DOUBLE, offsetof(Counters, latency_us), READONLY, "sum of their latencies, microseconds"},
    {NULL},
};

static PyTypeObject CountersType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "borealis.proxy._fastpath.Counters",
    .tp_basicsize = sizeof(Counters),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What one proxy's C path forwarded (read into its ProxyStats).",
    .tp_new = PyType_GenericNew,
    .tp_members = Counters_members,
};

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *shapes;
    Py_buffer digits, table;
    if (!PyArg_ParseTuple(args, "O!y*y*", &PyDict_Type, &shapes, &digits, &table))
        return NULL;
    if (table.len != 256) {
        PyBuffer_Release(&digits);
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "the frame table has 256 entries");
        return NULL;
    }
    memset(shape_digit, 0, sizeof shape_digit);
    for (Py_ssize_t i = 0; i < digits.len; i++)
        shape_digit[((unsigned char *)digits.buf)[i]] = 1;
    memcpy(query_table, table.buf, 256);
    PyBuffer_Release(&digits);
    PyBuffer_Release(&table);
    Py_XSETREF(unpinned_shapes, Py_NewRef(shapes));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(unpinned_shapes, shape_digits, query_table): what the fast paths pass, shared with Python's."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "borealis.proxy._fastpath", "The proxy's optional C data path.", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    rbuf = PyMem_RawMalloc(READ_SIZE);
    if (rbuf == NULL)
        return PyErr_NoMemory();
    str_get_write_buffer_size = PyUnicode_InternFromString("get_write_buffer_size");
    str_write = PyUnicode_InternFromString("write");
    unpinned_shapes = PyDict_New();
    if (str_get_write_buffer_size == NULL || str_write == NULL || unpinned_shapes == NULL)
        return NULL;
    if (PyType_Ready(&LinkType) < 0 || PyType_Ready(&CountersType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &LinkType) < 0 || PyModule_AddType(m, &CountersType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
