/* The proxy's optional C data path (built with BOREALIS_COMPILE=1, see setup.py; the proxy runs without it).
 *
 * A Link reads one plaintext socket (a client's or a server connection's) in place of uvloop's stream read: the
 * event loop calls it when the socket is readable (loop.add_reader on a dup of the socket's descriptor). Most
 * chunks go to the protocol's data_received() as bytes, as uvloop would hand them. Two shapes never reach Python:
 *
 *   - a client that holds a server connection (in a transaction, or pinned) sends one whole simple Query whose
 *     text is known not to pin: it goes to the server as it came;
 *   - the answer to such a Query ends in ReadyForQuery with the transaction status unchanged, or ending the
 *     transaction of an unpinned client (then the protocol's _link_release gives the connection back first), or
 *     opening one with an autocommit Query (BEGIN: the protocol's _link_began records it), and holds only frames
 *     the Python fast path also passes without a look: it goes to the client as it came.
 *
 * That is the round trip a transaction's statements make between its BEGIN and its COMMIT (and every statement
 * of a pinned session). A saturated pool's autocommit Queries also wait, and are lent connections, here: see
 * Lane below. Python arms a client's link after an answer it handled itself, when every condition of
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
#include <math.h>
#include <string.h>
#include <structmember.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* uvloop reads up to 256 KiB at a time; so do we. One buffer: every read is handled before the next. */
#define READ_SIZE (256 * 1024)
static char *rbuf;

/* Shapes found in unpinned_shapes, by hash (see query_ok). */
#define SHAPE_SLOTS 1024
static struct shape_slot {
    uint64_t hash;
    PyObject *shape;
} shape_cache[SHAPE_SLOTS];

static PyObject *unpinned_shapes; /* dict of bytes (pgwire.UNPINNED_SHAPES, shared): query shapes (digits removed) known not to pin */
static unsigned char shape_digit[256];
static unsigned char query_table[256]; /* backend frame types an answer may hold and stay on this path */
static PyObject *str_get_write_buffer_size, *str_write;

typedef struct {
    PyObject_HEAD
    long long queries;   /* QueryRequests forwarded here */
    long long responses; /* answers forwarded here (QueryDatabaseResponseLatency's count) */
    double latency_us;   /* and the sum of their latencies */
    long long borrows;   /* connections lent by a Lane (DatabaseConnectionsBorrowLatency's count) */
    double borrow_us;    /* and the sum of the waits */
} Counters;

struct Link;

/* A pool's queue of parked Queries (see Lane below): FIFO through Link.qprev/qnext, one reference each. */
typedef struct Lane {
    PyObject_HEAD
    struct Link *head, *tail;
    Py_ssize_t count;
    double py_since;     /* when the first waiter of the pool's Python queue started waiting (HUGE_VAL: none) */
    double timeout;      /* seconds a Query parked by C may wait (the pool's timer times it out) */
    int open;            /* C may park Queries here (the pool is the client's current route) */
    PyObject *on_return; /* pool._lane_return(server_protocol): a connection the lane gives back */
    Counters *counters;
} Lane;

#define MODE_IDLE 1   /* client: holds no connection; its next Query may park in its lane */
#define MODE_PARKED 2 /* client: its Query (held) waits in its lane's queue */

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
    PyObject *protocol; /* the protocol object the callbacks belong to */
    Lane *lane;         /* client: the lane it parks in (mode); server: the lane that lent it (a lane-held pair) */
    char mode;          /* client: 0, MODE_IDLE or MODE_PARKED */
    PyObject *held;     /* client, parked: its Query */
    double since;       /* client, parked: when the Query came */
    PyObject *params;   /* client: its startup parameters (dict); lane-held server: the parameters applied */
    struct Link *qprev, *qnext;
} Link;

static PyTypeObject LinkType, CountersType, LaneType;
static PyObject *str_link_adopt, *str_link_began, *str_link_ended;

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

/* Append a client's link to its lane's queue (the queue takes a reference). */
static void
lane_append(Lane *lane, Link *link)
{
    Py_INCREF(link);
    link->qprev = lane->tail;
    link->qnext = NULL;
    if (lane->tail != NULL)
        lane->tail->qnext = link;
    else
        lane->head = link;
    lane->tail = link;
    lane->count++;
}

/* Take a link out of its lane's queue, dropping the queue's reference: the caller holds one of its own. */
static void
lane_remove(Lane *lane, Link *link)
{
    if (link->qprev != NULL)
        link->qprev->qnext = link->qnext;
    else
        lane->head = link->qnext;
    if (link->qnext != NULL)
        link->qnext->qprev = link->qprev;
    else
        lane->tail = link->qprev;
    link->qprev = link->qnext = NULL;
    lane->count--;
    Py_DECREF(link);
}

/* The client leaves the lane's hands (Python takes it over): out of the queue, if parked. Returns its parked
 * Query (a new reference) or NULL. The caller holds a reference to the link. */
static PyObject *
leave(Link *c)
{
    if (c->mode == MODE_PARKED && c->lane != NULL)
        lane_remove(c->lane, c);
    PyObject *held = c->held;
    c->held = NULL;
    c->mode = 0;
    Py_CLEAR(c->lane);
    Py_CLEAR(c->params);
    return held;
}

static PyObject *
leave_if_client(Link *link)
{
    return link->is_server || (link->mode == 0 && link->lane == NULL) ? NULL : leave(link);
}

/* Send bytes after whatever the link's transport still buffers: straight to the socket when it buffers nothing. */
static int
send_ordered(Link *link, const char *buf, Py_ssize_t n)
{
    int buffered = write_buffered(link);
    if (buffered < 0)
        return -1;
    if (buffered == 0)
        return send_all(link, buf, n);
    PyObject *data = PyBytes_FromStringAndSize(buf, n);
    if (data == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg(link->transport, str_write, data);
    Py_DECREF(data);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
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
    if (server != NULL && server->lane != NULL) {
        /* A pair the lane made: Python's bookkeeping knows neither side's part yet. The client takes the
         * connection over (its _link_adopt), as if Python had lent it, before anything else reaches Python. */
        Link *client = server->peer;
        Py_CLEAR(server->lane);
        Py_CLEAR(server->params);
        if (client != NULL && client->protocol != NULL && server->protocol != NULL) {
            /* (references of our own: the hook may close either link, which drops the links' own) */
            PyObject *cp = Py_NewRef(client->protocol), *sp = Py_NewRef(server->protocol);
            Py_INCREF(server);
            PyObject *r = PyObject_CallMethodOneArg(cp, str_link_adopt, sp);
            if (r == NULL)
                rc = -1;
            else
                Py_DECREF(r);
            Py_DECREF(server);
            Py_DECREF(cp);
            Py_DECREF(sp);
        }
        server = link->is_server ? link : link->peer;
    }
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

/* Whether the chunk is one whole simple Query whose text is known not to pin (for this client): 1 yes, 0 no (or
 * not known: Python looks closer), -1 on error. */
static int
query_ok(Link *self, Py_ssize_t n)
{
    if (n < 6 || rbuf[0] != 'Q' || be32(rbuf + 1) != (uint32_t)(n - 1) || rbuf[n - 1] != '\0')
        return 0;
    if (self->pinned)
        return 1;
    const char *sql = rbuf + 5;
    Py_ssize_t len = n - 6;
    PyObject *last = self->last_sql;
    if (last != NULL && PyBytes_GET_SIZE(last) == len && memcmp(PyBytes_AS_STRING(last), sql, (size_t)len) == 0)
        return 1;
    /* The shape: the text with its digits removed (pgwire.SHAPE_DIGITS), as the Python path makes it. A shape
     * once known not to pin stays so (it is a property of the text), so the last one seen per hash slot is kept
     * here: a statement repeated with other numbers is then checked without an allocation. */
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)sql[i];
        if (!shape_digit[c]) {
            h = (h ^ c) * 1099511628211ULL;
            k++;
        }
    }
    struct shape_slot *slot = &shape_cache[h & (SHAPE_SLOTS - 1)];
    if (slot->shape != NULL && slot->hash == h && PyBytes_GET_SIZE(slot->shape) == k) {
        const char *known = PyBytes_AS_STRING(slot->shape);
        Py_ssize_t j = 0;
        for (Py_ssize_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)sql[i];
            if (!shape_digit[c] && known[j++] != (char)c)
                break;
            if (i == len - 1)
                return 1;
        }
    }
    PyObject *shape = PyBytes_FromStringAndSize(NULL, k);
    if (shape == NULL)
        return -1;
    char *out = PyBytes_AS_STRING(shape);
    for (Py_ssize_t i = 0, j = 0; i < len; i++) {
        unsigned char c = (unsigned char)sql[i];
        if (!shape_digit[c])
            out[j++] = (char)c;
    }
    int known = PyDict_Contains(unpinned_shapes, shape);
    if (known == 1) {
        slot->hash = h;
        Py_XSETREF(slot->shape, shape); /* (the slot takes our reference) */
    } else
        Py_DECREF(shape);
    return known; /* -1, or 0: may_pin, pinning_reason in Python */
}

/* A client's chunk: 1 if it was a Query sent on to the armed server here, 0 for Python, -1 on error. */
static int
query_fast(Link *self, Py_ssize_t n, double now)
{
    Link *server = self->peer;
    if (server == NULL || server->fd < 0 || server->inflight)
        return 0;
    int ok = query_ok(self, n);
    if (ok <= 0)
        return ok;
    int buffered = write_buffered(server);
    if (buffered)
        return buffered < 0 ? -1 : 0;
    server->inflight = 1;
    server->sent_at = now;
    self->last_active = now;
    self->counters->queries++;
    return send_all(server, rbuf, n) < 0 ? -1 : 1;
}

/* An idle client's chunk: 1 if it was a Query parked in the client's lane here (the pool is saturated: others
 * wait already), 0 for Python, -1 on error. */
static int
park(Link *self, Py_ssize_t n, double now)
{
    Lane *lane = self->lane;
    if (lane == NULL || !lane->open || lane->count == 0 || self->params == NULL)
        return 0;
    int ok = query_ok(self, n);
    if (ok <= 0)
        return ok;
    PyObject *held = PyBytes_FromStringAndSize(rbuf, n);
    if (held == NULL)
        return -1;
    Py_XSETREF(self->held, held);
    self->since = now;
    self->last_active = now;
    self->mode = MODE_PARKED;
    lane_append(lane, self);
    return 1;
}

/* Lend a lane's server connection to the first parked Query (popped by the caller: ``next`` is its reference
 * now) and send it. */
static int
lend(Lane *lane, Link *next, Link *server, double now)
{
    PyObject *held = next->held;
    next->held = NULL;
    next->mode = 0;
    if (server->peer != NULL)
        unpair(server);
    next->peer = (Link *)Py_NewRef(server);
    server->peer = (Link *)Py_NewRef(next);
    next->expect = 'I';
    next->pinned = 0;
    next->last_active = now; /* (the janitor's clock: it was waiting, not idle) */
    server->inflight = 1;
    server->sent_at = now;
    if (server->lane != lane)
        Py_XSETREF(server->lane, (Lane *)Py_NewRef(lane));
    Counters *c = lane->counters;
    if (c != NULL) {
        c->queries++;
        c->borrows++;
        c->borrow_us += (now - next->since) * 1e6;
    }
    int rc = held == NULL ? 0 : send_ordered(server, PyBytes_AS_STRING(held), PyBytes_GET_SIZE(held));
    Py_XDECREF(held);
    return rc;
}

/* A lane-held connection's Query was answered: lend it to the next parked Query, or give it back to Python (the
 * pool's own waiters come first, or the next one needs other parameters SET). */
/* Lend ``server`` (its parameters ``applied``) to the first parked Query if that client asked for the same
 * parameters: 1 when lent, 0 when not (none parked, or other parameters), -1 on error. */
static int
lend_first(Lane *lane, Link *server, PyObject *applied, double now)
{
    Link *next = lane->head;
    if (next == NULL || next->params == NULL || server->fd < 0)
        return 0;
    int same = PyObject_RichCompareBool(next->params, applied, Py_EQ);
    if (same <= 0)
        return same;
    if (server->params != applied)
        Py_XSETREF(server->params, Py_NewRef(applied));
    Py_INCREF(next);
    lane_remove(lane, next);
    int rc = lend(lane, next, server, now);
    Py_DECREF(next);
    return rc < 0 ? -1 : 1;
}

static int
lane_next(Lane *lane, Link *server, double now)
{
    if (lane->head != NULL && lane->head->since <= lane->py_since && server->params != NULL) {
        int lent = lend_first(lane, server, server->params, now);
        if (lent != 0)
            return lent < 0 ? -1 : 0;
    }
    Py_CLEAR(server->lane);
    Py_CLEAR(server->params);
    if (server->protocol == NULL)
        return 0;
    PyObject *sp = Py_NewRef(server->protocol);
    PyObject *r = callback(lane->on_return, sp);
    Py_DECREF(sp);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
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
    /* An autocommit Query that opened a transaction (BEGIN): the client keeps the connection, and the pair stays
     * armed for the transaction's statements. */
    int began = client->expect == 'I' && end[5] == 'T' && !client->pinned;
    if (end[5] != client->expect && !release && !began)
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
    if (began) {
        /* Python's books first (the client holds the connection, in a transaction), as answered() and _arm() do;
         * a connection the lane lent is no longer the lane's. */
        Py_CLEAR(self->lane);
        Py_CLEAR(self->params);
        PyObject *cp = Py_XNewRef(client->protocol), *sp = Py_XNewRef(self->protocol);
        PyObject *r = cp == NULL || sp == NULL ? NULL : PyObject_CallMethodOneArg(cp, str_link_began, sp);
        Py_XDECREF(cp);
        Py_XDECREF(sp);
        if (r == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "a link without its protocol");
            return -1;
        }
        Py_DECREF(r);
        if (client->fd < 0)
            return 1; /* closed meanwhile: nothing to send it to */
        client->expect = 'T';
        return send_ordered(client, rbuf, n) < 0 ? -1 : 1;
    }
    if (!release)
        return send_all(client, rbuf, n) < 0 ? -1 : 1;
    Py_INCREF(client);
    int rc;
    if (self->lane != NULL) {
        /* The lane lent this connection: Python never knew. The client is idle again (its next Query may park),
         * and the connection goes to the next parked Query, or back to the pool. */
        Lane *lane = (Lane *)Py_NewRef(self->lane);
        unpair(client);
        if (client->lane != NULL && client->params != NULL && client->fd >= 0)
            client->mode = MODE_IDLE;
        rc = lane_next(lane, self, now) < 0 ? -1 : 1;
        Py_DECREF(lane);
    } else if (client->lane != NULL && client->lane->open && client->lane->count > 0 && client->params != NULL &&
               client->protocol != NULL && self->protocol != NULL) {
        /* A transaction ends while Queries wait in the client's lane: Python's books let go of the connection
         * (the client's _link_ended gives the connection's parameters back, or None when Python released it
         * itself), and the lane lends it to the next of them here. */
        Lane *lane = (Lane *)Py_NewRef(client->lane);
        unpair(client);
        PyObject *cp = Py_NewRef(client->protocol), *sp = Py_NewRef(self->protocol);
        PyObject *applied = PyObject_CallMethodOneArg(cp, str_link_ended, sp);
        Py_DECREF(cp);
        Py_DECREF(sp);
        if (applied == NULL)
            rc = -1;
        else if (PyDict_Check(applied)) {
            Py_XSETREF(self->lane, (Lane *)Py_NewRef(lane));
            Py_XSETREF(self->params, applied);
            if (client->lane != NULL && client->params != NULL && client->fd >= 0)
                client->mode = MODE_IDLE;
            rc = lane_next(lane, self, now) < 0 ? -1 : 1;
        } else {
            Py_DECREF(applied);
            rc = 1;
        }
        Py_DECREF(lane);
    } else {
        unpair(client);
        PyObject *r = callback(client->on_release, NULL);
        rc = r == NULL ? -1 : 1;
        Py_XDECREF(r);
    }
    /* The answer goes out even if the hook failed (the error is reported and this connection aborted after).
     * The hook ran pool code: the client's link may have closed (the answer goes with it), or its transport may
     * hold bytes now (then the answer queues behind them). The read buffer is still this chunk's: nothing in
     * the hook reads a link. */
    if (client->fd >= 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        int sent = send_ordered(client, rbuf, n);
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
        Py_XDECREF(leave_if_client(self)); /* a parked Query goes with the connection */
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
    } else if (self->mode == MODE_IDLE) {
        done = park(self, n, now);
    }
    PyObject *r = NULL;
    if (done > 0)
        r = Py_NewRef(Py_None);
    else if (done == 0) {
        /* The general path. The bytes are copied out first: Python may read another link before it returns. A
         * parked Query goes first, since it was never sent (its place in the queue is lost). */
        PyObject *held = leave_if_client(self);
        PyObject *data;
        if (held == NULL)
            data = PyBytes_FromStringAndSize(rbuf, n);
        else {
            Py_ssize_t h = PyBytes_GET_SIZE(held);
            data = PyBytes_FromStringAndSize(NULL, h + n);
            if (data != NULL) {
                memcpy(PyBytes_AS_STRING(data), PyBytes_AS_STRING(held), (size_t)h);
                memcpy(PyBytes_AS_STRING(data) + h, rbuf, (size_t)n);
            }
            Py_DECREF(held);
        }
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
    self->protocol = Py_NewRef(proto);
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
    if (!self->is_server)
        Py_XDECREF(leave(self));
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
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->lane);
    Py_CLEAR(self->params);
    Py_CLEAR(self->held);
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
    Py_VISIT(self->protocol);
    Py_VISIT((PyObject *)self->lane);
    Py_VISIT(self->params);
    Py_VISIT(self->held);
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
    if (client->fd < 0 || server->fd < 0 || server->inflight || (server->peer != NULL && server->peer != client) ||
        client->mode == MODE_PARKED || server->lane != NULL)
        return 0;
    client->mode = 0; /* Python lent it a connection: no longer idle */
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

/* Python gave the client's connection back: its next Query may park in ``lane`` while the pool is saturated. */
static PyObject *
Link_idle(Link *self, PyObject *args)
{
    Lane *lane;
    PyObject *params, *last_sql;
    if (!PyArg_ParseTuple(args, "O!O!O", &LaneType, &lane, &PyDict_Type, &params, &last_sql))
        return NULL;
    if (self->is_server) {
        PyErr_SetString(PyExc_ValueError, "only a client's link parks");
        return NULL;
    }
    if (self->fd < 0 || self->peer != NULL || self->mode == MODE_PARKED)
        Py_RETURN_FALSE;
    if (self->lane != lane)
        Py_XSETREF(self->lane, (Lane *)Py_NewRef(lane));
    if (self->params != params)
        Py_XSETREF(self->params, Py_NewRef(params));
    Py_XSETREF(self->last_sql, PyBytes_Check(last_sql) ? Py_NewRef(last_sql) : NULL);
    self->pinned = 0;
    self->expect = 0;
    self->mode = MODE_IDLE;
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

static PyObject *
Link_get_parked(Link *self, void *closure)
{
    return PyBool_FromLong(self->mode == MODE_PARKED);
}

static PyObject *
Link_get_idle(Link *self, void *closure)
{
    return PyBool_FromLong(self->mode == MODE_IDLE);
}

static PyObject *
Link_get_lane_held(Link *self, void *closure)
{
    return PyBool_FromLong(self->lane != NULL && self->is_server);
}

static PyMethodDef Link_methods[] = {
    {"fileno", (PyCFunction)Link_fileno, METH_NOARGS, "The descriptor the event loop watches (-1 once closed)."},
    {"arm", (PyCFunction)Link_arm, METH_VARARGS,
     "arm(server_link, status, pinned, last_sql): forward Queries to that server connection here while its "
     "answers keep the transaction status; False when the pair cannot be armed now."},
    {"sent", (PyCFunction)Link_sent, METH_VARARGS,
     "sent(server_link, sent_at): Python sent an unpinned client's autocommit Query to that connection; its "
     "answer may go out (and the connection back) here. False when the pair cannot take it now."},
    {"park_when_idle", (PyCFunction)Link_idle, METH_VARARGS,
     "park_when_idle(lane, params, last_sql): the client holds no connection; while the pool is saturated its next "
     "Query (known not to pin) may wait in lane, and be sent from C. False when it cannot now."},
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
    {"parked", (getter)Link_get_parked, NULL, "client: its Query waits in its lane", NULL},
    {"idle", (getter)Link_get_idle, NULL, "client: its next Query may park in its lane", NULL},
    {"lane_held", (getter)Link_get_lane_held, NULL, "server: lent by a lane (Python does not know to whom)", NULL},
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

/* ---------------------------------------------------------------------------------------------------- Lane
 *
 * A pool's queue, for the autocommit Queries of clients whose pool is saturated. Python parks the first one (its
 * Pool.borrow found no connection and no room: Lane.park); while Queries wait here, an idle client's next Query
 * that is known not to pin parks itself in C (Link_call, park). A connection that Python gives back goes to the
 * first of them (Pool.release: Lane.grant), which is sent from C; the connection is then "lane-held": Python does
 * not know which client has it. When its answer ends the statement, the C path lends it to the next parked Query
 * of the same parameters (lane_next), and gives it back to Python (Pool._lane_return) when none waits, when the
 * pool's Python queue waited longer, or when the next one needs other parameters. Anything else on either side of
 * a lane-held pair makes the client adopt the connection first (settle), as if Python had lent it; a parked
 * client's other bytes take its Query back to Python in front of them. The pool's timer times out what waits
 * here (Lane.expire), and a closing pool hands everything back (Lane.drain).
 */

static int
Lane_init(Lane *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"counters", "on_return", NULL};
    Counters *counters;
    PyObject *on_return;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O", kwlist, &CountersType, &counters, &on_return))
        return -1;
    Py_XSETREF(self->counters, (Counters *)Py_NewRef(counters));
    Py_XSETREF(self->on_return, Py_NewRef(on_return));
    self->py_since = HUGE_VAL;
    self->timeout = 120.0;
    self->open = 1;
    return 0;
}

static PyObject *
Lane_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Lane *self = (Lane *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->py_since = HUGE_VAL;
    return (PyObject *)self;
}

/* Take the first parked Query out: (protocol, held Query, since), the client back in Python's hands. */
static PyObject *
lane_take(Lane *self, Link *link)
{
    Py_INCREF(link);
    double since = link->since;
    PyObject *held = leave(link); /* removes it from the queue */
    PyObject *out = Py_BuildValue("(OOd)", link->protocol != NULL ? link->protocol : Py_None,
                                  held != NULL ? held : Py_None, since);
    Py_XDECREF(held);
    Py_DECREF(link);
    return out;
}

static PyObject *
Lane_park(Lane *self, PyObject *args)
{
    Link *link;
    PyObject *held, *params, *last_sql;
    double since;
    if (!PyArg_ParseTuple(args, "O!SdO!O", &LinkType, &link, &held, &since, &PyDict_Type, &params, &last_sql))
        return NULL;
    if (link->is_server) {
        PyErr_SetString(PyExc_ValueError, "only a client's link parks");
        return NULL;
    }
    if (link->fd < 0 || link->peer != NULL || link->mode == MODE_PARKED)
        Py_RETURN_FALSE;
    if (link->lane != self)
        Py_XSETREF(link->lane, (Lane *)Py_NewRef(self));
    Py_XSETREF(link->params, Py_NewRef(params));
    Py_XSETREF(link->last_sql, PyBytes_Check(last_sql) ? Py_NewRef(last_sql) : NULL);
    Py_XSETREF(link->held, Py_NewRef(held));
    link->pinned = 0;
    link->expect = 0;
    link->since = since;
    link->mode = MODE_PARKED;
    lane_append(self, link);
    Py_RETURN_TRUE;
}

static PyObject *
Lane_grant(Lane *self, PyObject *args)
{
    Link *server;
    PyObject *applied;
    double now;
    if (!PyArg_ParseTuple(args, "O!O!d", &LinkType, &server, &PyDict_Type, &applied, &now))
        return NULL;
    if (!server->is_server || server->inflight || server->peer != NULL)
        Py_RETURN_FALSE;
    int lent = lend_first(self, server, applied, now);
    if (lent < 0)
        return NULL;
    return PyBool_FromLong(lent);
}

static PyObject *
Lane_pop(Lane *self, PyObject *unused)
{
    if (self->head == NULL)
        Py_RETURN_NONE;
    return lane_take(self, self->head);
}

static PyObject *
lane_expire(Lane *self, double now)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (self->head != NULL && self->head->since + self->timeout <= now) {
        PyObject *item = lane_take(self, self->head);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyObject *
Lane_expire(Lane *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    return lane_expire(self, now);
}

static PyObject *
Lane_drain(Lane *self, PyObject *unused)
{
    self->open = 0;
    return lane_expire(self, HUGE_VAL); /* everything */
}

static int
Lane_traverse(Lane *self, visitproc visit, void *arg)
{
    for (Link *l = self->head; l != NULL; l = l->qnext)
        Py_VISIT((PyObject *)l);
    Py_VISIT(self->on_return);
    Py_VISIT((PyObject *)self->counters);
    return 0;
}

static int
Lane_clear(Lane *self)
{
    while (self->head != NULL) {
        Link *l = self->head;
        Py_INCREF(l);
        Py_XDECREF(leave(l));
        Py_DECREF(l);
    }
    Py_CLEAR(self->on_return);
    Py_CLEAR(self->counters);
    return 0;
}

static void
Lane_dealloc(Lane *self)
{
    PyObject_GC_UnTrack(self);
    Lane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Lane_get_count(Lane *self, void *closure)
{
    return PyLong_FromSsize_t(self->count);
}

static PyObject *
Lane_get_head_since(Lane *self, void *closure)
{
    return PyFloat_FromDouble(self->head != NULL ? self->head->since : HUGE_VAL);
}

static PyMethodDef Lane_methods[] = {
    {"park", (PyCFunction)Lane_park, METH_VARARGS,
     "park(client_link, query, since, params, last_sql): the client's Query waits here (the pool is saturated). "
     "False when the link cannot park now."},
    {"grant", (PyCFunction)Lane_grant, METH_VARARGS,
     "grant(server_link, applied, now): lend a connection given back to the first parked Query and send it from C. "
     "False when none waits, or the first needs other parameters (then pop() it)."},
    {"pop", (PyCFunction)Lane_pop, METH_NOARGS, "The first parked Query, out: (protocol, query, since), or None."},
    {"expire", (PyCFunction)Lane_expire, METH_O, "expire(now): [(protocol, query, since)] of the Queries timed out."},
    {"drain", (PyCFunction)Lane_drain, METH_NOARGS, "Close the lane: [(protocol, query, since)] of every Query."},
    {NULL},
};

static PyMemberDef Lane_members[] = {
    {"py_since", T_DOUBLE, offsetof(Lane, py_since), 0, "since of the first waiter in the pool's own queue (inf: none)"},
    {"timeout", T_DOUBLE, offsetof(Lane, timeout), 0, "seconds a Query parked by C may wait"},
    {"open", T_INT, offsetof(Lane, open), 0, "C may park Queries here"},
    {NULL},
};

static PyGetSetDef Lane_getset[] = {
    {"count", (getter)Lane_get_count, NULL, "Queries parked", NULL},
    {"head_since", (getter)Lane_get_head_since, NULL, "when the first parked Query came (inf: none)", NULL},
    {NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "borealis.proxy._fastpath.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Lane(counters, on_return): one pool's queue of parked autocommit Queries.",
    .tp_new = Lane_new,
    .tp_init = (initproc)Lane_init,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear,
    .tp_methods = Lane_methods,
    .tp_members = Lane_members,
    .tp_getset = Lane_getset,
};

static PyMemberDef Counters_members[] = {
    {"queries", T_LONGLONG, offsetof(Counters, queries), READONLY, "Queries forwarded by the C path"},
    {"responses", T_LONGLONG, offsetof(Counters, responses), READONLY, "answers forwarded by the C path"},
    {"latency_us", T_DOUBLE, offsetof(Counters, latency_us), READONLY, "sum of their latencies, microseconds"},
    {"borrows", T_LONGLONG, offsetof(Counters, borrows), READONLY, "connections lent by lanes"},
    {"borrow_us", T_DOUBLE, offsetof(Counters, borrow_us), READONLY, "sum of those borrows' waits, microseconds"},
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
    str_link_adopt = PyUnicode_InternFromString("_link_adopt");
    str_link_began = PyUnicode_InternFromString("_link_began");
    str_link_ended = PyUnicode_InternFromString("_link_ended");
    unpinned_shapes = PyDict_New();
    if (str_get_write_buffer_size == NULL || str_write == NULL || str_link_adopt == NULL || str_link_began == NULL ||
        str_link_ended == NULL || unpinned_shapes == NULL)
        return NULL;
    if (PyType_Ready(&LinkType) < 0 || PyType_Ready(&CountersType) < 0 || PyType_Ready(&LaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &LinkType) < 0 || PyModule_AddType(m, &CountersType) < 0 ||
        PyModule_AddType(m, &LaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
