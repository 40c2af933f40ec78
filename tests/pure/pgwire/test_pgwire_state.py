"""Session: recorded conversations, checking phase, transaction status and sync bookkeeping at each step."""

from __future__ import annotations

import pytest

from borealis import pgwire as pw


def client(session: pw.Session, *messages: pw.Message) -> None:
    for msg in messages:
        session.frontend(msg.TYPE, pw.encode(msg))


def server(session: pw.Session, *messages: pw.Message) -> None:
    for msg in messages:
        session.backend(msg.TYPE, pw.encode(msg))


def phase(session: pw.Session) -> pw.Phase:
    """The phase, read through a call so the type checker does not narrow it between steps."""
    return session.phase


def ready() -> pw.Session:
    """A session past login, idle: what a server connection in the pool looks like."""
    return pw.Session(pw.Phase.READY)


ROW = pw.RowDescription((pw.FieldDescription("?column?", type_oid=23),))
ERR = pw.ErrorResponse({"S": "ERROR", "V": "ERROR", "C": "22012", "M": "division by zero"})
Z_I, Z_T, Z_E = pw.ReadyForQuery("I"), pw.ReadyForQuery("T"), pw.ReadyForQuery("E")
P = pw.Parse("", "SELECT $1", (23,))
B = pw.Bind("", "", (), (b"1",), ())
E = pw.Execute()
S = pw.Sync()


def test_login_with_scram() -> None:
    s = pw.Session()
    assert phase(s) is pw.Phase.STARTUP and not s.at_boundary
    client(s, pw.StartupMessage({"user": "alice", "database": "app"}))
    assert phase(s) is pw.Phase.AUTHENTICATING and s.startup is not None and s.startup.user == "alice"
    server(s, pw.AuthenticationSASL(("SCRAM-SHA-256",)))
    client(s, pw.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=x"))
    server(s, pw.AuthenticationSASLContinue(b"r=xy,s=c2FsdA==,i=4096"))
    client(s, pw.SASLResponse(b"c=biws,r=xy,p=proof"))
    server(s, pw.AuthenticationSASLFinal(b"v=sig"), pw.AuthenticationOk())
    assert phase(s) is pw.Phase.AUTHENTICATED
    server(s, pw.ParameterStatus("TimeZone", "UTC"), pw.ParameterStatus("server_version", "17.2"))
    server(s, pw.BackendKeyData(4242, b"kkkk"), pw.NoticeResponse({"S": "NOTICE", "M": "hi"}))
    assert not s.at_boundary
    server(s, Z_I)
    assert phase(s) is pw.Phase.READY and s.idle and s.at_boundary and s.pending_syncs == 0
    assert s.parameters == {"TimeZone": "UTC", "server_version": "17.2"}
    assert s.backend_key == (4242, b"kkkk")
    server(s, pw.ParameterStatus("TimeZone", "Europe/Paris"))  # after a SET TimeZone, say
    assert s.parameters["TimeZone"] == "Europe/Paris"


def test_ssl_then_login_with_negotiation() -> None:
    s = pw.Session()
    client(s, pw.SSLRequest())
    assert phase(s) is pw.Phase.NEGOTIATING
    with pytest.raises(pw.ProtocolViolation):
        client(s, pw.StartupMessage({"user": "u"}))  # must wait for the answer


def test_ssl_negotiation_done() -> None:
    s = pw.Session()
    client(s, pw.GSSENCRequest())
    s.negotiation_done()
    client(s, pw.StartupMessage({"user": "u"}, protocol_version=(3 << 16) | 2))
    server(s, pw.NegotiateProtocolVersion(0, ()), pw.AuthenticationCleartextPassword())
    client(s, pw.PasswordMessage("pw"))
    server(s, pw.AuthenticationOk(), Z_I)
    assert s.idle
    with pytest.raises(RuntimeError):
        s.negotiation_done()


def test_cancel_request_closes() -> None:
    s = pw.Session()
    client(s, pw.CancelRequest(1, b"abcd"))
    assert phase(s) is pw.Phase.CLOSED


def test_auth_failure() -> None:
    s = pw.Session()
    client(s, pw.StartupMessage({"user": "u"}))
    server(s, pw.AuthenticationMD5Password(b"salt"))
    client(s, pw.PasswordMessage("md5wrong"))
    server(s, pw.ErrorResponse({"S": "FATAL", "C": "28P01", "M": "password authentication failed"}))
    assert phase(s) is pw.Phase.FAILED and not s.idle


@pytest.mark.parametrize(
    ("setup", "side", "msg"),
    [
        ("auth", "client", pw.Query("SELECT 1")),  # a query before authentication
        ("auth", "server", Z_I),  # ReadyForQuery before AuthenticationOk
        ("auth", "server", pw.DataRow(())),
        ("authenticated", "client", pw.PasswordMessage("x")),
        ("ready", "client", pw.PasswordMessage("x")),  # 'p' after login
        ("ready", "server", Z_I),  # nothing pending
        ("ready", "server", pw.ParseComplete()),
        ("ready", "server", pw.CommandComplete("SELECT 1")),
        ("ready", "server", pw.AuthenticationOk()),
        ("ready", "server", pw.CopyInResponse()),
    ],
)
def test_out_of_order_is_a_violation(setup: str, side: str, msg: pw.Message) -> None:
    s = pw.Session()
    client(s, pw.StartupMessage({"user": "u"}))
    if setup != "auth":
        server(s, pw.AuthenticationOk())
    if setup == "ready":
        server(s, Z_I)
    with pytest.raises(pw.ProtocolViolation) as info:
        (client if side == "client" else server)(s, msg)
    assert info.value.sqlstate == "08P01"
    assert side in info.value.message or "pending" in info.value.message


def test_simple_query() -> None:
    s = ready()
    client(s, pw.Query("SELECT 1"))
    assert not s.at_boundary and s.pending_syncs == 1
    server(s, ROW, pw.DataRow((b"1",)), pw.CommandComplete("SELECT 1"))
    assert not s.at_boundary
    server(s, Z_I)
    assert s.idle and s.pending_syncs == 0


def test_multi_statement_query_with_error() -> None:
    s = ready()
    client(s, pw.Query("SELECT 1; SELECT 1/0; SELECT 2"))
    server(s, ROW, pw.DataRow((b"1",)), pw.CommandComplete("SELECT 1"), ERR)
    assert not s.at_boundary
    server(s, Z_I)
    assert s.idle


def test_empty_query_and_notices() -> None:
    s = ready()
    client(s, pw.Query(""))
    server(s, pw.NoticeResponse({"M": "x"}), pw.EmptyQueryResponse(), Z_I)
    server(s, pw.NotificationResponse(1, "ch", "p"))  # asynchronous: allowed at a boundary
    assert s.idle


def test_transaction_block() -> None:
    s = ready()
    client(s, pw.Query("BEGIN"))
    server(s, pw.CommandComplete("BEGIN"), Z_T)
    assert s.at_boundary and not s.idle and s.transaction_status == "T"
    client(s, pw.Query("SELECT 1/0"))
    server(s, ERR, Z_E)
    assert s.at_boundary and not s.idle and s.transaction_status == "E"
    client(s, pw.Query("ROLLBACK"))
    server(s, pw.CommandComplete("ROLLBACK"), Z_I)
    assert s.idle


def test_extended_query_with_pipelined_syncs() -> None:
    s = ready()
    client(s, P, B, pw.Describe("P", ""), E, S)
    client(s, B, E, S)
    client(s, B, E, S)
    assert s.pending_syncs == 3
    server(s, pw.ParseComplete(), pw.BindComplete(), ROW, pw.DataRow((b"1",)), pw.CommandComplete("SELECT 1"))
    server(s, Z_I)
    assert s.pending_syncs == 2 and not s.at_boundary
    server(s, pw.BindComplete(), pw.DataRow((b"1",)), pw.CommandComplete("SELECT 1"), Z_I)
    assert s.pending_syncs == 1
    server(s, pw.BindComplete(), pw.DataRow((b"1",)), pw.CommandComplete("SELECT 1"), Z_I)
    assert s.idle


def test_unsynced_messages_keep_the_connection() -> None:
    s = ready()
    client(s, P, B, E, pw.Flush())
    assert s.pending_syncs == 0 and not s.at_boundary  # the batch is not over
    server(s, pw.ParseComplete(), pw.BindComplete(), pw.DataRow((b"1",)), pw.CommandComplete("SELECT 1"))
    assert not s.at_boundary  # still waiting for the client's Sync
    client(s, S)
    server(s, Z_I)
    assert s.idle


def test_error_in_the_middle_of_a_pipeline() -> None:
    s = ready()
    client(s, P, B, E, S, B, E, S, B, E, S)
    server(s, pw.ParseComplete(), pw.BindComplete(), pw.CommandComplete("SELECT 1"), Z_I)
    server(s, ERR)  # the second Bind fails: its Execute is skipped, its Sync still answered
    assert s.pending_syncs == 2
    server(s, Z_I)
    server(s, pw.BindComplete(), pw.CommandComplete("SELECT 1"), Z_I)
    assert s.idle


def test_error_without_intermediate_syncs() -> None:
    s = ready()
    client(s, P, B, E, B, E, S)
    server(s, pw.ParseComplete(), pw.BindComplete(), pw.CommandComplete("SELECT 1"), ERR)
    server(s, Z_I)
    assert s.idle


def test_error_skips_a_query_before_the_next_sync() -> None:
    # The server discards everything up to Sync, a simple Query included: one ReadyForQuery, not two.
    s = ready()
    client(s, P, B, E, pw.Query("SELECT 2"), S)
    assert s.pending_syncs == 2
    server(s, pw.ParseComplete(), ERR)
    assert s.pending_syncs == 1
    server(s, Z_I)
    assert s.idle


def test_error_before_the_sync_is_sent() -> None:
    s = ready()
    client(s, P, B, E, pw.Flush())
    server(s, pw.ParseComplete(), ERR)
    assert s.skipping and not s.at_boundary
    client(s, B, E, pw.Query("ignored by the server"))  # all discarded until Sync
    assert s.pending_syncs == 0
    client(s, S)
    assert not s.skipping and s.pending_syncs == 1
    server(s, Z_I)
    assert s.idle


def test_error_in_sync_implicit_commit() -> None:
    # A deferred constraint fails at the implicit COMMIT of Sync: the error belongs to the Sync.
    s = ready()
    client(s, B, E, S)
    server(s, pw.BindComplete(), pw.CommandComplete("INSERT 0 1"), ERR, Z_I)
    assert s.idle


def test_describe_statement_and_close() -> None:
    s = ready()
    client(s, pw.Parse("s1", "SELECT $1"), pw.Describe("S", "s1"), pw.Close("S", "s1"), S)
    server(s, pw.ParseComplete(), pw.ParameterDescription((23,)), ROW, pw.CloseComplete(), Z_I)
    assert s.idle
    client(s, pw.Parse("s2", "UPDATE t SET a = 1"), pw.Describe("S", "s2"), S)
    server(s, pw.ParseComplete(), pw.ParameterDescription(()), pw.NoData(), Z_I)
    assert s.idle


def test_portal_suspended() -> None:
    s = ready()
    client(s, B, pw.Execute("", 1), pw.Execute("", 1), S)
    server(s, pw.BindComplete(), pw.DataRow((b"1",)), pw.PortalSuspended(), pw.DataRow((b"2",)))
    server(s, pw.CommandComplete("SELECT 2"), Z_I)
    assert s.idle


def test_function_call() -> None:
    s = ready()
    client(s, pw.FunctionCall(1598, (), (), 0))
    server(s, pw.FunctionCallResponse(b"x"), Z_I)
    assert s.idle


def test_copy_in_simple() -> None:
    s = ready()
    client(s, pw.Query("COPY t FROM STDIN"))
    server(s, pw.CopyInResponse(0, (0,)))
    assert s.copy_in
    client(s, pw.CopyData(b"1\n"), pw.CopyData(b"2\n"), pw.CopyDone())
    assert not s.copy_in
    server(s, pw.CommandComplete("COPY 2"), Z_I)
    assert s.idle


def test_copy_in_failed_by_client() -> None:
    s = ready()
    client(s, pw.Query("COPY t FROM STDIN"))
    server(s, pw.CopyInResponse())
    client(s, pw.CopyData(b"1\n"), pw.CopyFail("no"))
    server(s, pw.ErrorResponse({"S": "ERROR", "C": "57014", "M": "COPY from stdin failed: no"}), Z_I)
    assert s.idle


def test_copy_in_extended_libpq_style() -> None:
    # libpq pipelines P B D E S; the server, now in copy-in mode, ignores that Sync. After CopyDone libpq
    # sends another Sync, and only that one is answered.
    s = ready()
    client(s, pw.Parse("", "COPY t FROM STDIN"), B, pw.Describe("P", ""), E, S)
    server(s, pw.ParseComplete(), pw.BindComplete(), pw.NoData(), pw.CopyInResponse())
    assert s.pending_syncs == 0 and not s.at_boundary
    client(s, S)  # a Sync during copy-in: ignored by the server as well
    client(s, pw.CopyData(b"1\n"), pw.CopyDone(), S)
    assert s.pending_syncs == 1
    server(s, pw.CommandComplete("COPY 1"), Z_I)
    assert s.idle


def test_copy_in_extended_error() -> None:
    s = ready()
    client(s, pw.Parse("", "COPY t FROM STDIN"), B, E, S)
    server(s, pw.ParseComplete(), pw.BindComplete(), pw.CopyInResponse())
    client(s, pw.CopyData(b"garbage\n"))
    server(s, pw.ErrorResponse({"S": "ERROR", "C": "22P02", "M": "invalid input syntax"}))
    assert s.skipping and not s.copy_in
    client(s, pw.CopyData(b"more\n"), pw.CopyDone(), S)  # dropped by the server, then the Sync answers
    server(s, Z_I)
    assert s.idle


def test_copy_out() -> None:
    s = ready()
    client(s, pw.Query("COPY t TO STDOUT"))
    server(s, pw.CopyOutResponse(0, (0,)))
    assert s.copy_out
    server(s, pw.CopyData(b"1\n"), pw.CopyData(b"2\n"), pw.CopyDone())
    assert not s.copy_out
    server(s, pw.CommandComplete("COPY 2"), Z_I)
    assert s.idle


def test_copy_out_extended() -> None:
    s = ready()
    client(s, pw.Parse("", "COPY t TO STDOUT"), B, E, S)
    server(s, pw.ParseComplete(), pw.BindComplete(), pw.CopyOutResponse(), pw.CopyData(b"x\n"))
    server(s, pw.CopyDone(), pw.CommandComplete("COPY 1"), Z_I)
    assert s.idle


def test_fatal_error_while_ready() -> None:
    s = ready()
    client(s, pw.Query("SELECT pg_sleep(100)"))
    server(s, pw.ErrorResponse({"S": "FATAL", "V": "FATAL", "C": "57P01", "M": "terminating connection"}))
    assert phase(s) is pw.Phase.FAILED and not s.idle


def test_terminate() -> None:
    s = ready()
    client(s, pw.Terminate())
    assert phase(s) is pw.Phase.CLOSED
    with pytest.raises(pw.ProtocolViolation):
        client(s, pw.Query("SELECT 1"))


def test_backend_frames_from_a_reader() -> None:
    # The proxy's loop: frames from a FrameReader go straight into the session.
    s = ready()
    client(s, pw.Query("SELECT generate_series(1, 50)"))
    stream = b"".join(
        pw.encode(m)
        for m in [ROW, *(pw.DataRow((b"%d" % i,)) for i in range(50)), pw.CommandComplete("SELECT 50"), Z_T]
    )
    reader = pw.FrameReader.for_server()
    for i in range(0, len(stream), 7):
        reader.feed(stream[i : i + 7])
        s.backend_frames(reader.read_frames())
    assert s.at_boundary and s.transaction_status == "T"


def test_frontend_frames_from_a_reader() -> None:
    s = pw.Session()
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.StartupMessage({"user": "u"})))
    s.frontend_frames(reader.read_frames())
    assert phase(s) is pw.Phase.AUTHENTICATING
