"""The Data API executor: ExecuteStatement, BatchExecuteStatement and transactions on warm connections.

Request path, in order (nothing on it touches the disk once the cluster and secret are cached):

1. cheap checks on the request (SQL length, request size, ``schema``, multi-statement SQL);
2. the cluster from ``resourceArn`` (its record cached for a second, so a disabled HTTP endpoint or a
   stopped cluster is seen at once in practice) and its running writer (an in-memory lookup every call);
3. the secret's username and password (Secrets Manager keeps parsed values in memory);
4. a warm connection from the pool of (cluster, user, password, database), or the transaction's own;
5. one round trip (Parse, Bind, Describe, Execute, Sync in one write; outside a transaction the Parse
   only the first time a connection sees the statement, which stays prepared there) with server-side
   parameters, under the call's time limit;
6. the text results decoded column by column into ``records``, ``formattedRecords`` and metadata.

Transactions (BeginTransaction) hold a connection of their own until commit, rollback or expiry (3 minutes
idle, 24 hours in all, both configurable).  A call on a transaction that is still running one fails at once
with ``DatabaseErrorException: Transaction is still running a query``, as on Serverless v2.  A failed
statement leaves the transaction aborted as PostgreSQL does: later statements fail with SQLSTATE 25P02 and
a commit rolls back (answering "Transaction Committed", as the service does).  A janitor task rolls back
expired transactions and closes idle pooled connections.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from borealis.pgwire import may_pin

from ._errors import (
    BadRequestException,
    DataApiError,
    DatabaseErrorException,
    DatabaseNotFoundException,
    DatabaseResumingException,
    DatabaseUnavailableException,
    HttpEndpointNotEnabledException,
    InvalidResourceStateException,
    InvalidSecretException,
    SecretsErrorException,
    StatementTimeoutException,
    TransactionNotFoundException,
    ValidationException,
)
from ._metadata import ColumnDescription, ColumnSource, column_metadata
from ._params import BoundParameters, bind_parameters
from ._pool import (
    COMMAND_OK,
    EMPTY_QUERY,
    FATAL_ERROR,
    TUPLES_OK,
    PgConnection,
    PgError,
    Pool,
    PoolKey,
    Result,
    Verifier,
    scram_login,
)
from ._results import (
    RESPONSE_TOO_LARGE,
    ResultOptions,
    check_result_size,
    field_decoder,
    format_records_json,
    json_decoder,
)
from ._settings import DataApiSettings
from ._sql import ParsedSql, parse_sql
from ._types import BUILTIN_TYPES, TypeInfo

__all__ = ["ClusterSource", "DataApi", "SecretSource", "transaction_owner"]

log = logging.getLogger("borealis.dataapi")

_CLUSTER_ARN = re.compile(r"arn:aws[a-z-]*:rds:([a-z0-9-]+):(\d{12}):cluster:([A-Za-z0-9-]{1,63})")
_CLUSTER_TTL = 1.0  # seconds a cluster record is trusted before it is read again
_ENDED_KEEP = 10000  # ended transaction ids remembered, for the cause in TransactionNotFound
_COLUMN_TTL = 10.0  # seconds catalog facts about table columns are trusted (DDL may change them)

_TUPLES_OK = TUPLES_OK
_COMMAND_OK = COMMAND_OK
_FATAL = FATAL_ERROR
_EMPTY = EMPTY_QUERY
_OID_ARRAY = 1028

_WRITER_UP = ("available", "modifying", "backing-up", "configuring-log-exports", "upgrading")
# The botocore model's words for DatabaseUnavailableException: a writer that is down without being paused
# (a crashed postmaster restarting, an instance starting) is not "resuming after being auto-paused".
_UNAVAILABLE = "The writer instance in the DB cluster isn't available."
# What a failed connection attempt says when the server is not there or not ready (refused, starting up,
# in recovery after a crash): the database is unavailable, not the statement wrong.
_DOWN_STATES = frozenset(("57P03", "08001", "08006"))


class ClusterSource(Protocol):
    """What the executor needs from the control plane (``borealis.control.ControlPlane`` fits)."""

    def cluster(self, ident: str) -> dict[str, Any] | None: ...

    def writer_of(self, cluster_id: str) -> dict[str, Any] | None: ...

    def server(self, instance_id: str) -> Any: ...


class SecretSource(Protocol):
    """What the executor needs from Secrets Manager (``borealis.secrets.SecretsManager`` fits)."""

    def secret_json(self, secret_id: str) -> dict[str, Any]: ...


@dataclass(slots=True)
class _Cluster:
    id: str
    http_endpoint: bool
    status: str
    writer: str | None
    writer_status: str
    writer_paused: bool  # the serverless scaler paused it (an instance record's ``paused``)
    database: str
    expires: float


class _Call:
    """An ExecuteStatement call once checked (:meth:`DataApi._call`): what running it needs."""

    __slots__ = (
        "bound", "cap", "continue_after", "json_mode", "metadata", "options", "params", "parsed", "resets", "sql",
        "unbound",
    )  # fmt: skip

    def __init__(
        self,
        sql: str,
        parsed: ParsedSql,
        bound: BoundParameters,
        options: ResultOptions,
        json_mode: bool,
        metadata: bool,
        continue_after: bool,
        cap: int,
        params: Any,
    ) -> None:
        self.sql = sql  # as the client wrote it (error positions refer to it)
        self.params = params  # the request's parameters, to bind again if the SQL is lexed again
        # Why the parameters did not bind to the SQL as lexed with standard_conforming_strings on, when the
        # SQL has a backslash (a session with it off lexes it otherwise): raised once the session is known.
        self.unbound: DataApiError | None = None
        self.parsed = parsed
        self.bound = bound
        self.options = options
        self.json_mode = json_mode
        self.metadata = metadata
        self.continue_after = continue_after
        # Bytes of row data kept while reading the result (see PgConnection.execute): past the response
        # limit the call fails anyway, so more is never held.
        self.cap = cap
        # The statement may change session state (SET, temporary tables, PREPARE, ...): the connection is
        # reset before it serves another caller.  The same cheap test the proxy uses for pinning.
        self.resets = _resets(parsed.wire)

    def lexed_as(self, parsed: ParsedSql, bound: BoundParameters) -> _Call:
        """The same call with its SQL lexed (and its parameters bound) again."""
        return _Call(
            self.sql, parsed, bound, self.options, self.json_mode, self.metadata, self.continue_after, self.cap,
            self.params,
        )  # fmt: skip


class _Transaction:
    """An open transaction: its connection (held outside the pool's bound) and who may use it.

    ``cluster_id`` and ``owner`` (a keyed digest of the user and password of the secret that began it) are
    checked on every call naming it: a transaction id alone does not let another secret's caller in.
    """

    __slots__ = ("aborted", "busy", "cluster_id", "conn", "created", "id", "last_used", "owner", "pool")

    def __init__(self, tid: str, cluster_id: str, owner: bytes, pool: Pool, conn: PgConnection) -> None:
        self.id = tid
        self.cluster_id = cluster_id
        self.owner = owner
        self.pool = pool
        self.conn = conn
        self.created = self.last_used = time.monotonic()
        self.busy = 0  # 0 free, 1 running a call, 2 running a statement whose call timed out
        self.aborted: str | None = None  # the error that aborted it, as the client saw it


Settle = Callable[[dict[str, Any] | BaseException], None]
"""How :meth:`DataApi.start_statement` hands over a call's outcome: the output, or the error."""


def _constraint(member: str, rule: str) -> str:
    """The wording of AWS's request validation for a member outside the model's constraints."""
    return f"1 validation error detected: Value at '{member}' failed to satisfy constraint: {rule}"


_FULL_RESET = 2


_RESETS: dict[bytes, int] = {}  # _resets by SQL: statements repeat, and a bytes object keeps its hash


def _resets(sql: bytes) -> int:
    """What a statement may leave behind in the session: 0 nothing (most), 1 settings, temporary objects,
    locks and the like (the proxy's may_pin pre-check), 2 also SQL-level prepared statements, which only
    DISCARD ALL removes (with the statements cached on the connection)."""
    known = _RESETS.get(sql)
    if known is not None:
        return known
    kind = 0
    if may_pin(sql):
        low = sql.lower()
        kind = _FULL_RESET if b"prepare" in low or b"deallocate" in low else 1
    if len(_RESETS) >= 4096:
        _RESETS.clear()
    _RESETS[sql] = kind
    return kind


def _wire_values(bound: BoundParameters) -> list[bytes | None] | None:
    if not bound.values:
        return None
    return [v.encode() if isinstance(v, str) else v for v in bound.values]


def _new_transaction_id(node: int) -> str:
    # AWS's ids are opaque base64 text of about this length; 138 bytes -> 184 characters.  The first byte
    # names the process (node) holding the transaction, so a call landing elsewhere can be sent there.
    return base64.b64encode(bytes((node,)) + os.urandom(137)).decode("ascii")


def transaction_owner(tid: object) -> int | None:
    """The node (process index) that holds the transaction ``tid``, or None for a malformed id."""
    if not isinstance(tid, str) or len(tid) < 4:
        return None
    try:
        return base64.b64decode(tid[:4], validate=True)[0]
    except ValueError:
        return None


class DataApi:
    """The Data API of one Borealis: pools, open transactions and the janitor that expires them."""

    def __init__(
        self,
        control: ClusterSource,
        secrets: SecretSource,
        *,
        region: str,
        account_id: str = "000000000000",
        settings: DataApiSettings | None = None,
        node: int = 0,
    ) -> None:
        """``node`` (0-255) names this process in the transaction ids it gives out."""
        self.control = control
        self.node = node
        self.secrets = secrets
        self.region = region
        self.account_id = account_id
        self.settings = settings or DataApiSettings.from_env()
        # The row data a call keeps while reading (by JSON mode): twice its response limit, so the limit
        # checks on what was kept (by whatever measure, bytea's bytes or its hex text) see the same as on the
        # whole result.
        s = self.settings
        self._caps = (2 * s.max_response, 2 * s.max_json_response)
        self._clusters: dict[str, _Cluster] = {}
        self._generation: int | None = None  # the control plane's topology generation the cache is from
        self._pools: dict[PoolKey, Pool] = {}
        self.verifier = Verifier(self.settings.verify_ttl, login=scram_login)
        self._transactions: dict[str, _Transaction] = {}
        self._ended: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._owner_key = os.urandom(32)  # keys the digests naming who began a transaction
        self._janitor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._closed = False
        self.resume_wait = 0.0
        """Seconds a call to a paused cluster waits for the resume it starts (0: DatabaseResumingException at
        once, as AWS answers; settings.resume_wait)."""

    # ------------------------------------------------------------------------------------------ public

    async def execute_statement(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """ExecuteStatement: run one statement, in a transaction if ``transactionId`` is given."""
        return await self._execute(p, self._call(p))

    def start_statement(self, p: Mapping[str, Any], settle: Settle) -> dict[str, Any] | None:
        """ExecuteStatement as :meth:`execute_statement`, without a coroutine on the common path.

        A statement outside a transaction, on an idle pooled connection that has it prepared already, is
        sent at once and its reply decoded in the connection reader's callback: no task, no future and no
        chain of awaits, which are most of the cost of a primary-key SELECT.  Anything else runs as
        :meth:`execute_statement` does, in a task.  Errors found before the statement is sent are raised
        here; otherwise the outcome is given to ``settle`` once (the output, or a :class:`DataApiError`)
        and this returns None.
        """
        call = self._call(p)
        if p.get("transactionId") or call.metadata or call.continue_after or call.unbound:
            self._follow(settle, self._execute(p, call))
            return None
        try:
            pool = self._pool(self._cluster(p.get("resourceArn")), p)
        except DatabaseResumingException:
            if self.resume_wait <= 0:
                raise
            self._follow(settle, self._execute(p, call))  # waits for the resume in a task
            return None
        conn = pool.try_acquire()
        if conn is None:
            self._follow(settle, self._execute(p, call))
            return None
        if not conn.proto.standard_strings:  # the SQL must be lexed again (see _statement)
            self._follow(settle, self._pooled(conn, pool, call))
            return None

        def settled(results: list[Result] | None, failed: BaseException | None) -> None:
            try:
                self._sent(results, failed, settle, conn, pool, call)
            except Exception as exc:
                settle(exc)

        bound = call.bound
        try:
            sent = conn.send_cached(
                call.parsed.wire,
                _wire_values(bound),
                bound.oids,
                bound.formats,
                self.settings.call_timeout,
                settled,
                pool.deadlines,
                call.cap,
            )
        except BaseException:
            pool.release(conn)
            raise
        if not sent:
            self._follow(settle, self._pooled(conn, pool, call))
        elif call.resets:
            conn.mark_dirty(call.resets == _FULL_RESET)
        return None

    def _sent(
        self,
        results: list[Result] | None,
        failed: BaseException | None,
        settle: Settle,
        conn: PgConnection,
        pool: Pool,
        call: _Call,
    ) -> None:
        """The reply to :meth:`start_statement`'s statement came (or its time ran out): settle the call."""
        if failed is not None or results is None:
            if isinstance(failed, TimeoutError):
                self._follow(settle, self._expired(conn, pool))
                return
            pool.release(conn)
            raise self._connection_error(failed) if isinstance(failed, PgError) else (failed or PgError("no result"))
        if conn.stale(results, call.parsed.wire, call.bound.oids):
            self._follow(settle, self._pooled(conn, pool, call))
            return
        res = results[-1]
        if conn.proto.dirty or conn.cancelling or (res.status == _TUPLES_OK and not self._known_types(pool, res)):
            self._follow(settle, self._pooled(conn, pool, call, res))
            return
        pool.release(conn)
        settle(self._outcome(pool, conn, None, res, call))

    @staticmethod
    def _known_types(pool: Pool, res: Result) -> bool:
        """The pool knows every column type of ``res`` (decoding it needs no catalog query)."""
        if res.shape and res.shape in pool.known_shapes:
            return True
        for field in res.fields:
            if field[3] not in BUILTIN_TYPES and field[3] not in pool.types:
                return False
        if res.shape:
            if len(pool.known_shapes) >= 4096:
                pool.known_shapes.clear()
            pool.known_shapes.add(res.shape)
        return True

    async def _expired(self, conn: PgConnection, pool: Pool) -> dict[str, Any]:
        try:
            await conn.finish_expired()
        finally:
            pool.release(conn)
        raise StatementTimeoutException("The statement timed out", dbConnectionId=conn.backend_pid)

    def _follow(self, settle: Settle, coro: Any) -> None:
        """Run the coroutine ``coro`` in a task and settle the call with what it returns or raises."""
        task = asyncio.ensure_future(coro)

        def done(_: asyncio.Future[dict[str, Any]]) -> None:
            if task.cancelled():
                settle(asyncio.CancelledError())
            else:
                failed = task.exception()
                settle(task.result() if failed is None else failed)

        task.add_done_callback(done)

    def _call(self, p: Mapping[str, Any]) -> _Call:
        """The checks every ExecuteStatement passes before any SQL is sent, and what they yield."""
        sql = self._check_sql(p)
        self._check_request_size(sql, p.get("parameters"))
        parsed = self._parse(sql)
        unbound = None
        try:
            bound = bind_parameters(parsed, p.get("parameters"))
        except DataApiError as exc:
            if "\\" not in sql:
                raise
            bound, unbound = BoundParameters((), (), ()), exc
        options = ResultOptions.from_request(p.get("resultSetOptions"))
        records_as = p.get("formatRecordsAs")
        if records_as is not None and records_as not in ("NONE", "JSON"):
            raise BadRequestException(
                _constraint("formatRecordsAs", "Member must satisfy enum value set: [NONE, JSON]")
            )
        database = p.get("database")
        if isinstance(database, str) and len(database) > 64:
            raise BadRequestException(_constraint("database", "Member must have length less than or equal to 64"))
        json_mode = records_as == "JSON"
        metadata = bool(p.get("includeResultMetadata")) and not json_mode
        cap = self._caps[json_mode]
        continue_after = bool(p.get("continueAfterTimeout"))
        call = _Call(sql, parsed, bound, options, json_mode, metadata, continue_after, cap, p.get("parameters"))
        call.unbound = unbound
        return call

    async def _execute(self, p: Mapping[str, Any], call: _Call) -> dict[str, Any]:
        try:
            if p.get("transactionId"):
                async with self._connection(p) as (conn, pool, tx):
                    return await self._statement(conn, pool, tx, call)
            # The common case, without the context manager's generator (what _connection does for a pool).
            pool = await self._pool_resumed(p)
            conn = await self._acquire_for(p, pool)
            return await self._pooled(conn, pool, call)
        except _Detached as detached:
            raise detached.error from None

    async def _pooled(self, conn: PgConnection, pool: Pool, call: _Call, res: Result | None = None) -> dict[str, Any]:
        """Run a statement on a connection borrowed from ``pool`` (or settle its result ``res``, already
        read), and give the connection back."""
        try:
            if res is None:
                result = await self._statement(conn, pool, None, call)
            else:
                result = await self._settle(conn, pool, None, res, call)
        except _Detached:
            raise  # the statement goes on: the connection returns to the pool when it ends
        except BaseException:
            pool.release(conn)
            raise
        if conn.needs_cleanup:
            # Reset before the reply, so the caller's next call finds this connection clean and first in line.
            await pool.clean(conn)
        pool.release(conn)
        return result

    async def _statement(self, conn: PgConnection, pool: Pool, tx: _Transaction | None, call: _Call) -> dict[str, Any]:
        if not conn.standard_strings:
            # The session turned standard_conforming_strings off (or its role or database did): lex as it does.
            parsed = self._parse(call.sql, standard_strings=False)
            call = call.lexed_as(parsed, bind_parameters(parsed, call.params))
        elif call.unbound is not None:
            raise call.unbound
        if call.resets:
            conn.mark_dirty(call.resets == _FULL_RESET)
        results = await self._run(conn, pool, tx, call.parsed.wire, call.bound, call.continue_after, cap=call.cap)
        return await self._settle(conn, pool, tx, results[-1], call)

    async def _settle(
        self, conn: PgConnection, pool: Pool, tx: _Transaction | None, res: Result, call: _Call
    ) -> dict[str, Any]:
        if res.status == _TUPLES_OK:
            return await self._records(conn, pool, res, call.options, call.json_mode, call.metadata)
        return self._outcome(pool, conn, tx, res, call)

    def _outcome(
        self, pool: Pool, conn: PgConnection, tx: _Transaction | None, res: Result, call: _Call
    ) -> dict[str, Any]:
        """What ExecuteStatement answers for a statement's last result (records only if their types are known)."""
        status = res.status
        if status == _TUPLES_OK:
            return self._decode(pool, res, call.options, call.json_mode)
        if status == _FATAL:
            raise self._sql_error(PgError.from_result(res), call.parsed, tx, call.sql)
        if status in (_COMMAND_OK, _EMPTY):
            return {"numberOfRecordsUpdated": int(res.command_tuples or 0), "generatedFields": []}
        raise self._unexpected(pool, conn, tx, status)

    async def batch_execute_statement(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """BatchExecuteStatement: one statement per parameter set, all or nothing outside a transaction."""
        sql = self._check_sql(p)
        sets = p.get("parameterSets") or [[]]
        self._check_request_size(sql, [param for one in sets for param in (one or ())])
        parsed = self._parse(sql)
        unbound = None
        try:
            bound_sets = [bind_parameters(parsed, one) for one in sets]
        except DataApiError as exc:
            if "\\" not in sql:
                raise
            bound_sets, unbound = [], exc  # raised below if the session lexes as parse_sql did (see _Call)
        text = parsed.wire
        cap = self._caps[False]  # a batch returns no rows: bound what it reads all the same
        async with self._connection(p) as (conn, pool, tx):
            if not conn.standard_strings:  # lexed as the session does (see _statement)
                parsed = self._parse(sql, standard_strings=False)
                bound_sets = [bind_parameters(parsed, one) for one in sets]
                text = parsed.wire
            elif unbound is not None:
                raise unbound
            resets = _resets(text)
            if resets:
                conn.mark_dirty(resets == _FULL_RESET)
            deadline = time.monotonic() + self.settings.call_timeout
            # Outside a transaction the batch is atomic, as pgJDBC's executeBatch is in autocommit
            # (one Sync for all statements makes them one implicit transaction).
            own = tx is None
            if own:
                await conn.simple(b"BEGIN")
            try:
                for bound in bound_sets:
                    left = max(0.001, deadline - time.monotonic())
                    results = await self._run(conn, pool, tx, text, bound, False, left, cap)
                    res = results[-1]
                    if res.status == _FATAL:
                        raise self._sql_error(PgError.from_result(res), parsed, tx, sql)
                    if res.status not in (_TUPLES_OK, _COMMAND_OK, _EMPTY):
                        raise self._unexpected(pool, conn, tx, res.status)
                if own:
                    await conn.simple(b"COMMIT")
            except BaseException:
                if own and conn.ok and conn.in_transaction:
                    with contextlib.suppress(Exception):
                        await conn.simple(b"ROLLBACK")
                raise
        return {"updateResults": [{"generatedFields": []} for _ in bound_sets]}

    async def begin_transaction(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """BeginTransaction: a connection of its own, ``BEGIN``, and an id naming it."""
        self._check_schema(p)
        cluster = self._cluster(p.get("resourceArn"))
        credentials = self._credentials(p.get("secretArn"))
        pool = self._pool_of(cluster, p, credentials)
        # Not from the pool's bound: an abandoned transaction must not keep other calls waiting.
        conn = await self._acquire(pool, detached=True)
        try:
            res = await conn.simple(b"BEGIN")
            if res.status == _FATAL:
                raise self._sql_error(PgError.from_result(res), None, None)
        except BaseException:
            conn.abort()
            pool.adopt(conn)
            raise
        tid = _new_transaction_id(self.node)
        self._transactions[tid] = _Transaction(tid, cluster.id, self._owner(credentials), pool, conn)
        self._start_janitor()
        return {"transactionId": tid}

    async def _end_transaction(self, p: Mapping[str, Any], command: bytes) -> tuple[_Transaction, Any]:
        """Run ``command`` (COMMIT or ROLLBACK) on the transaction ``p`` names, which ends whatever happens."""
        tx = self._claim(p)
        try:
            res = await self._end_command(tx, command)
            if tx.conn.needs_cleanup:  # reset before the reply, as for a pooled call (see _pooled)
                await tx.pool.clean(tx.conn)
        finally:
            self._finish(tx, "One previous call resulted in a termination of your transaction")
        if res.status == _FATAL:
            raise self._sql_error(PgError.from_result(res), None, None)
        return tx, res

    async def commit_transaction(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """CommitTransaction: ``COMMIT`` and give the connection back.

        A transaction that a failed statement aborted is rolled back by PostgreSQL's ``COMMIT``, and the
        answer is still "Transaction Committed", as the service gives it: the aurora-data-api driver commits
        after a caught error (its suite, run against Serverless v2, expects that to succeed).  The statement's
        own error was the client's notice.  An error from ``COMMIT`` itself (a deferred constraint) is raised.
        """
        await self._end_transaction(p, b"COMMIT")
        return {"transactionStatus": "Transaction Committed"}

    async def rollback_transaction(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """RollbackTransaction: ``ROLLBACK`` and give the connection back."""
        await self._end_transaction(p, b"ROLLBACK")
        return {"transactionStatus": "Rollback Complete"}

    async def close(self) -> None:
        """Roll back open transactions and close every connection (Borealis is stopping)."""
        self._closed = True
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(BaseException):
                await self._janitor
        for tx in list(self._transactions.values()):
            self._transactions.pop(tx.id, None)
            await tx.conn.close()
        for pool in list(self._pools.values()):
            await pool.close()
        self._pools.clear()
        for task in list(self._background):
            task.cancel()

    # ------------------------------------------------------------------------------------ checks

    def _check_sql(self, p: Mapping[str, Any]) -> str:
        self._check_schema(p)
        sql = p.get("sql")
        if not isinstance(sql, str):
            raise BadRequestException("sql must be a string")
        if len(sql) > self.settings.max_sql:
            raise BadRequestException(
                _constraint("sql", f"Member must have length less than or equal to {self.settings.max_sql}")
            )
        return sql

    def _check_schema(self, p: Mapping[str, Any]) -> None:
        if p.get("schema") and not self.settings.allow_schema:
            raise ValidationException("The schema parameter isn't supported")

    def _check_request_size(self, sql: str, parameters: Any) -> None:
        # The gateway has read the body already; this bounds what the request carries, which is what
        # AWS's 4 MiB limit is about (the JSON envelope adds a few bytes per value, counted roughly).
        size = len(sql)
        limit = self.settings.max_request
        if parameters:
            for param in parameters:
                if not isinstance(param, (dict, Mapping)):  # dict first: an ABC check costs more
                    continue
                value = param.get("value")
                size += 48
                if isinstance(value, (dict, Mapping)):  # dict first: an ABC check costs more
                    for raw in value.values():
                        if isinstance(raw, str | bytes):
                            size += len(raw) * 4 // 3 if isinstance(raw, bytes) else len(raw)
                if size > limit:
                    break
        if size > limit:
            raise BadRequestException(f"Request size exceeds the maximum of {limit} bytes")

    def _parse(self, sql: str, standard_strings: bool = True) -> ParsedSql:
        parsed = parse_sql(sql, standard_strings)
        if parsed.multi_statement and not self.settings.allow_multi_statement:
            raise ValidationException("Multistatements aren't supported.")
        return parsed

    # ------------------------------------------------------------------------- cluster and secret

    def _cluster(self, arn: Any) -> _Cluster:
        if not isinstance(arn, str):
            raise BadRequestException("resourceArn must be a string")
        now = time.monotonic()
        generation = getattr(self.control, "generation", None)
        if generation != self._generation:  # the writer may have moved (a failover): look again at once
            self._generation = generation
            self._clusters.clear()
        cached = self._clusters.get(arn)
        if cached is None or cached.expires < now:
            cached = self._load_cluster(arn, now)
        if not cached.http_endpoint:
            raise HttpEndpointNotEnabledException(
                f"HttpEndpoint is not enabled for cluster {cached.id}. Please refer to "
                "https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api.html"
                "#data-api.troubleshooting"
            )
        if cached.status in ("stopped", "stopping"):
            raise InvalidResourceStateException(f"The DB cluster {cached.id} is {cached.status}.")
        return cached

    def _load_cluster(self, arn: str, now: float) -> _Cluster:
        m = _CLUSTER_ARN.fullmatch(arn)
        if m is None:
            raise BadRequestException(f"Invalid resource ARN: {arn}")
        region, account, cid = m.groups()
        doc = self.control.cluster(cid) if (region, account) == (self.region, self.account_id) else None
        if doc is None:
            # AWS answers an unknown cluster (a renamed one, a wrong letter case) with this same message.
            entry = _Cluster(cid, False, "missing", None, "", False, "postgres", now + _CLUSTER_TTL)
        else:
            writer = self.control.writer_of(cid)
            entry = _Cluster(
                cid,
                bool(doc.get("http_endpoint")),
                str(doc.get("status", "")),
                None if writer is None else str(writer["id"]),
                "" if writer is None else str(writer.get("status", "")),
                writer is not None and bool(writer.get("paused") or writer.get("resuming")),
                str(doc.get("database_name") or "postgres"),
                now + _CLUSTER_TTL,
            )
        if len(self._clusters) > 1000:
            self._clusters.clear()
        self._clusters[arn] = entry
        return entry

    def _credentials(self, secret_arn: Any) -> tuple[str, str, str | None]:
        if not isinstance(secret_arn, str):
            raise BadRequestException("secretArn must be a string")
        try:
            value = self.secrets.secret_json(secret_arn)
        except Exception as exc:
            code = getattr(exc, "code", "")
            if code == "ResourceNotFoundException":
                raise SecretsErrorException(
                    f"Error fetching secret {secret_arn} : Secrets Manager can't find the specified secret."
                ) from None
            if code in ("InvalidRequestException", "InvalidParameterException"):
                raise InvalidSecretException(f"The secret {secret_arn} is not a valid JSON secret.") from None
            raise SecretsErrorException(f"Error fetching secret {secret_arn}") from None
        user, password = value.get("username"), value.get("password")
        if not isinstance(user, str) or not user or not isinstance(password, str):
            raise InvalidSecretException(
                f"The secret {secret_arn} doesn't have the username and password keys the Data API needs."
            )
        dbname = value.get("dbname")
        return user, password, dbname if isinstance(dbname, str) and dbname else None

    def _owner(self, credentials: tuple[str, str, str | None]) -> bytes:
        """Who a transaction belongs to: a keyed digest of the secret's user and password."""
        user, password, _ = credentials
        text = f"{len(user)}:{user}:{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._owner_key, text, hashlib.sha256).digest()

    def _pool(self, cluster: _Cluster, p: Mapping[str, Any]) -> Pool:
        return self._pool_of(cluster, p, self._credentials(p.get("secretArn")))

    def _pool_of(self, cluster: _Cluster, p: Mapping[str, Any], credentials: tuple[str, str, str | None]) -> Pool:
        user, password, secret_db = credentials
        if cluster.writer is None:
            raise DatabaseNotFoundException(f"The DB cluster {cluster.id} doesn't have a DB instance.")
        server = self.control.server(cluster.writer)
        if server is None or cluster.writer_status not in _WRITER_UP:
            wake = getattr(self.control, "wake", None)
            if wake is not None and server is None:  # a Data API call resumes a paused writer, as on AWS
                self._spawn(self._wake(wake, cluster.writer))
            if not cluster.writer_paused:
                raise DatabaseUnavailableException(_UNAVAILABLE)
            raise DatabaseResumingException(
                f"The Aurora DB instance arn:aws:rds:{self.region}:{self.account_id}:db:{cluster.writer} is "
                "resuming after being auto-paused. Please wait a few seconds and try again."
            )
        database = p.get("database") or secret_db or cluster.database
        key: PoolKey = (cluster.id, user, password, database)
        pool = self._pools.get(key)
        if pool is None or pool.server is not server:
            if pool is not None:
                self._spawn(pool.close())
            # A server object may name its unix socket directory (``socket_dir``; postgres listens there too).
            socket_dir = getattr(server, "socket_dir", None) if self.settings.unix_socket else None
            pool = Pool(
                key,
                server,
                server.host,
                server.port,
                size=self.settings.pool_size,
                connect_timeout=self.settings.connect_timeout,
                unix_dir=None if socket_dir is None else str(socket_dir),
                verifier=self.verifier,
                statement_cache=self.settings.statement_cache,
                # No longer row can be returned (a DataRow's values plus 4 bytes of length each, at most
                # 1,664 columns): refused as its header arrives instead of buffered whole.
                max_frame=max(self._caps) + 65536,
            )
            self._pools[key] = pool
            self._start_janitor()
        return pool

    async def _acquire(self, pool: Pool, *, detached: bool = False) -> PgConnection:
        if not detached:
            conn = pool.try_acquire()
            if conn is not None:
                return conn
        try:
            wanted = pool.acquire_detached() if detached else pool.acquire()
            return await asyncio.wait_for(wanted, self.settings.call_timeout)
        except TimeoutError:
            raise StatementTimeoutException("Timed out waiting for a database connection") from None
        except PgError as err:
            if err.sqlstate in _DOWN_STATES:
                raise DatabaseUnavailableException(_UNAVAILABLE) from None
            # v2 reports connection failures (wrong password, unknown database) as database errors.
            raise DatabaseErrorException(f"ERROR: {err.message}; SQLState: {err.sqlstate or '08006'}") from None

    async def _acquire_for(self, p: Mapping[str, Any], pool: Pool) -> PgConnection:
        """A pooled connection for the request ``p``; a wrong password makes a caching secret source forget."""
        conn = pool.try_acquire()
        if conn is not None:
            return conn
        try:
            return await self._acquire(pool)
        except DatabaseErrorException as exc:
            forget = getattr(self.secrets, "forget", None)
            if forget is not None and "SQLState: 28P01" in exc.message:
                forget(p.get("secretArn"))  # a secret source that caches (a worker process): read it again
            raise

    @contextlib.asynccontextmanager
    async def _connection(self, p: Mapping[str, Any]) -> Any:
        """The connection a statement runs on: the transaction's, or one borrowed from the pool."""
        tid = p.get("transactionId")
        if tid:
            tx = self._claim(p)
            try:
                yield tx.conn, tx.pool, tx
            except DatabaseErrorException as exc:
                if tx.aborted is None and tx.conn.transaction_failed:
                    tx.aborted = exc.message
                raise
            finally:
                tx.last_used = time.monotonic()
                if tx.busy == 1:
                    tx.busy = 0
                if not tx.conn.ok:
                    self._finish(tx, "Transaction has been aborted due to an error from a previous call")
            return
        cluster = self._cluster(p.get("resourceArn"))
        pool = self._pool(cluster, p)
        conn = await self._acquire_for(p, pool)
        detached = False
        try:
            yield conn, pool, None
        except _Detached:
            detached = True
            raise
        finally:
            if not detached:
                pool.release(conn)

    # ------------------------------------------------------------------------------- transactions

    def _claim(self, p: Mapping[str, Any]) -> _Transaction:
        """The live transaction named by the request, marked busy; raises the errors AWS gives."""
        tid = p.get("transactionId")
        if not isinstance(tid, str) or not tid:
            raise BadRequestException("transactionId must be a non-empty string")
        # The secret is read first, as for any call: one that does not exist (or is not usable) is refused
        # with the error Secrets Manager's answer maps to, whatever the transaction id.
        owner = self._owner(self._credentials(p.get("secretArn")))
        tx = self._transactions.get(tid)
        if tx is None:
            raise TransactionNotFoundException(f"Transaction {tid} isn't found")
        if not hmac.compare_digest(owner, tx.owner):
            # Begun with another user's (or another password's) secret: to this caller it does not exist.
            raise TransactionNotFoundException(f"Transaction {tid} isn't found")
        now = time.monotonic()
        if not tx.busy and (
            now - tx.last_used > self.settings.transaction_idle_timeout
            or now - tx.created > self.settings.transaction_max_age
        ):
            self._expire(tx)
            raise TransactionNotFoundException(f"Transaction {tid} isn't found")
        arn = p.get("resourceArn")
        m = _CLUSTER_ARN.fullmatch(arn) if isinstance(arn, str) else None
        if m is None or m.groups() != (self.region, self.account_id, tx.cluster_id):
            raise TransactionNotFoundException(f"Transaction {tid} isn't found")
        if tx.busy:
            raise DatabaseErrorException("Transaction is still running a query")
        tx.busy = 1
        return tx

    async def _end_command(self, tx: _Transaction, command: bytes) -> Any:
        try:
            return await asyncio.wait_for(tx.conn.simple(command), self.settings.call_timeout)
        except PgError as err:
            raise DatabaseErrorException(f"ERROR: {err.message}; SQLState: {err.sqlstate}") from None
        except TimeoutError:
            raise StatementTimeoutException("The statement timed out", dbConnectionId=tx.conn.backend_pid) from None

    def _finish(self, tx: _Transaction, cause: str) -> None:
        """Forget a transaction and give its connection back (closed unless it is idle and healthy)."""
        if self._transactions.pop(tx.id, None) is None:
            return
        tx.busy = 0
        self._ended[tx.id] = cause
        while len(self._ended) > _ENDED_KEEP:
            self._ended.popitem(last=False)
        tx.pool.adopt(tx.conn)

    def _expire(self, tx: _Transaction) -> None:
        """Roll back an expired transaction in the background."""
        if self._transactions.pop(tx.id, None) is None:
            return
        self._ended[tx.id] = "Transaction may be expired"

        async def rollback() -> None:
            try:
                await asyncio.wait_for(tx.conn.simple(b"ROLLBACK"), 10)
            except Exception:
                tx.conn.abort()
            tx.pool.adopt(tx.conn)

        self._spawn(rollback())

    def _start_janitor(self) -> None:
        if self._janitor is None and not self._closed:
            self._janitor = asyncio.ensure_future(self._janitor_loop())

    async def _janitor_loop(self) -> None:
        s = self.settings
        interval = min(5.0, max(0.2, s.transaction_idle_timeout / 4))
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                now = time.monotonic()
                for tx in list(self._transactions.values()):
                    if not tx.busy and (
                        now - tx.last_used > s.transaction_idle_timeout or now - tx.created > s.transaction_max_age
                    ):
                        self._expire(tx)
                for pool in list(self._pools.values()):
                    await pool.reap(s.pool_idle)
            except Exception:
                log.exception("Data API janitor failed")

    async def _wake(self, wake: Any, instance_id: str) -> None:
        with contextlib.suppress(Exception):  # a resume that fails shows in the next call's answer
            await wake(instance_id)

    async def _pool_resumed(self, p: Mapping[str, Any]) -> Pool:
        """:meth:`_pool` for the call's cluster, waiting up to :attr:`resume_wait` for a paused writer."""
        try:
            return self._pool(self._cluster(p.get("resourceArn")), p)
        except DatabaseResumingException:
            cluster = self._cluster(p.get("resourceArn"))
            if self.resume_wait <= 0 or cluster.writer is None:
                raise
            deadline = time.monotonic() + self.resume_wait
            while self.control.server(cluster.writer) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return self._pool(cluster, p)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------------------------- running

    async def _run(
        self,
        conn: PgConnection,
        pool: Pool,
        tx: _Transaction | None,
        sql: bytes,
        bound: BoundParameters,
        continue_after: bool,
        timeout: float | None = None,
        cap: int = 0,
    ) -> list[Any]:
        values = _wire_values(bound)
        limit = self.settings.call_timeout if timeout is None else timeout
        if not continue_after:
            # Outside a transaction the statement is prepared once per connection (see PgConnection.prepared).
            run = conn.execute if tx is not None else conn.prepared
            try:
                return await run(sql, values, bound.oids or None, bound.formats or None, limit, cap)
            except TimeoutError:
                # execute() cancelled the statement on the server before we got here.
                raise StatementTimeoutException("The statement timed out", dbConnectionId=conn.backend_pid) from None
            except PgError as err:
                raise self._connection_error(err) from None
        task = asyncio.ensure_future(conn.execute(sql, values, bound.oids or None, bound.formats or None, cap=cap))
        try:
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except TimeoutError:
            # continueAfterTimeout: the statement goes on; the connection comes back when it ends.
            def done(_: asyncio.Future[Any]) -> None:
                if tx is not None:
                    tx.busy = 0
                    tx.last_used = time.monotonic()
                else:
                    pool.release(conn)

            if tx is not None:
                tx.busy = 2  # still running: _connection must not clear it
            task.add_done_callback(done)
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            exc = StatementTimeoutException("The statement timed out", dbConnectionId=conn.backend_pid)
            raise (_Detached(exc) if tx is None else exc) from None
        except PgError as err:
            raise self._connection_error(err) from None

    def _connection_error(self, err: PgError) -> DataApiError:
        return DatabaseErrorException(f"ERROR: {err.message}; SQLState: {err.sqlstate or '08006'}")

    def _unexpected(self, pool: Pool, conn: PgConnection, tx: _Transaction | None, status: int) -> DataApiError:
        # COPY ... FROM STDIN / TO STDOUT leaves the connection in COPY mode: it cannot be reused.
        conn.abort()
        return DatabaseErrorException(f"The Data API does not support this statement (result status {status})")

    def _sql_error(
        self, err: PgError, parsed: ParsedSql | None, tx: _Transaction | None, sql: str = ""
    ) -> DataApiError:
        lines = [f"ERROR: {err.message}"]
        if err.detail:
            lines.append(f"  Detail: {err.detail}")
        if err.hint:
            lines.append(f"  Hint: {err.hint}")
        if err.position:
            position = err.position if parsed is None else original_position(sql, parsed, err.position)
            lines.append(f"  Position: {position}")
        if err.where:
            lines.append(f"  Where: {err.where}")
        message = "\n".join(lines) + f"; SQLState: {err.sqlstate}"
        if tx is not None and tx.aborted is None:
            tx.aborted = message
        return DatabaseErrorException(message)

    # ----------------------------------------------------------------------------------- results

    async def _records(
        self,
        conn: PgConnection,
        pool: Pool,
        res: Result,
        options: ResultOptions,
        json_mode: bool,
        metadata: bool,
    ) -> dict[str, Any]:
        fields = res.fields
        if not self._known_types(pool, res):
            await self._load_types(conn, pool, [f[3] for f in fields])
        out = self._decode(pool, res, options, json_mode)
        if metadata:
            oids = [f[3] for f in fields]
            out["columnMetadata"] = await self._metadata(conn, pool, res, oids, [f[4] for f in fields])
        return out

    def _decode(self, pool: Pool, res: Result, options: ResultOptions, json_mode: bool) -> dict[str, Any]:
        """``records`` (or ``formattedRecords``) of a result whose column types the pool knows."""
        cache: dict[Any, Any] = pool.decoders
        # By the RowDescription's bytes: a statement's columns come back the same way every time.
        shape_key = (res.shape, options.decimal_as_number, options.long_as_string, json_mode)
        decoders = cache.get(shape_key) if res.shape else None
        if decoders is None:
            make = json_decoder if json_mode else field_decoder
            decoders = [make(field[3], field[4], options, pool.types) for field in res.fields]
            if res.shape:
                if len(cache) >= 4096:
                    cache.clear()
                cache[shape_key] = decoders
        limit = self.settings.max_json_response if json_mode else self.settings.max_response
        rows = res.rows
        check_result_size(rows, [f[3] for f in res.fields], limit, self.settings.max_row)
        if res.truncated:  # more rows came than were kept: over the limit by any measure of them
            raise BadRequestException(RESPONSE_TOO_LARGE)
        if json_mode:
            labels = [f[0].decode("utf-8", "replace") for f in res.fields]
            text = format_records_json(labels, rows, decoders)
            if len(text) > limit:
                raise BadRequestException(RESPONSE_TOO_LARGE)
            return {"formattedRecords": text, "numberOfRecordsUpdated": 0}
        records = [[decode(value) for decode, value in zip(decoders, row, strict=True)] for row in rows]
        return {"records": records, "numberOfRecordsUpdated": 0}

    async def _metadata(
        self, conn: PgConnection, pool: Pool, res: Any, oids: list[int], mods: list[int]
    ) -> list[dict[str, Any]]:
        descriptions = [
            ColumnDescription(
                res.fname(i).decode("utf-8", "replace"), res.ftable(i), res.ftablecol(i), oids[i], mods[i]
            )
            for i in range(len(oids))
        ]
        now = time.monotonic()
        wanted = set()
        for d in descriptions:
            if d.table_oid:
                known = pool.columns.get((d.table_oid, d.column))
                if known is None or known[1] < now:
                    wanted.add(d.table_oid)
        if wanted:
            await self._load_columns(conn, pool, wanted, now)
        out = []
        for d in descriptions:
            entry = pool.columns.get((d.table_oid, d.column)) if d.table_oid else None
            source: ColumnSource | None = entry[0] if entry is not None else None
            out.append(column_metadata(d, source, pool.types))
        return out

    async def _load_columns(self, conn: PgConnection, pool: Pool, tables: set[int], now: float) -> None:
        sql = (
            b"SELECT a.attrelid, a.attnum, c.relname, a.attnotnull,"
            b" a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval(%', false)"
            b" FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
            b" LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            b" WHERE a.attrelid = ANY($1) AND a.attnum > 0"
        )
        param = ("{" + ",".join(str(t) for t in sorted(tables)) + "}").encode()
        results = await conn.execute(sql, [param], [_OID_ARRAY], [0])
        res = results[-1]
        if res.status != _TUPLES_OK:
            return  # e.g. the transaction is aborted: leave the facts unknown
        expires = now + _COLUMN_TTL
        for r in range(res.ntuples):
            relid = int(_text(res, r, 0))
            attnum = int(_text(res, r, 1))
            source = ColumnSource(_text(res, r, 2), _text(res, r, 3) == "t", _text(res, r, 4) == "t")
            pool.columns[(relid, attnum)] = (source, expires)
        if len(pool.columns) > 100_000:
            pool.columns.clear()

    async def _load_types(self, conn: PgConnection, pool: Pool, oids: Sequence[int]) -> None:
        """Read pg_type rows for non-built-in OIDs (enums, domains, extension types) and their elements."""
        missing = {o for o in oids if o not in BUILTIN_TYPES and o not in pool.types}
        for _ in range(3):  # the type, then its element type, then the element's base: enough for arrays
            if not missing:
                return
            param = ("{" + ",".join(str(o) for o in sorted(missing)) + "}").encode()
            results = await conn.execute(
                b"SELECT oid, typname, typelem, typtype, typdelim FROM pg_catalog.pg_type WHERE oid = ANY($1)",
                [param],
                [_OID_ARRAY],
                [0],
            )
            res = results[-1]
            if res.status != _TUPLES_OK:
                return
            found: set[int] = set()
            for r in range(res.ntuples):
                oid = int(_text(res, r, 0))
                info = TypeInfo(oid, _text(res, r, 1), int(_text(res, r, 2)), _text(res, r, 3), _text(res, r, 4))
                pool.types[oid] = info
                found.add(oid)
            missing = {
                info.elem
                for o in found
                if (info := pool.types[o]).elem and info.elem not in BUILTIN_TYPES and info.elem not in pool.types
            }


def _text(res: Any, row: int, column: int) -> str:
    raw = res.get_value(row, column)
    return "" if raw is None else bytes(raw).decode("utf-8", "replace")


class _Detached(Exception):
    """The statement goes on after its call timed out: the connection must not return to the pool yet."""

    def __init__(self, error: DataApiError) -> None:
        super().__init__(error.message)
        self.error = error


def original_position(sql: str, parsed: ParsedSql, position: int) -> int:
    """Map a 1-based error position in the rewritten SQL (``$n``) back to ``sql``, the text the client sent.

    A position inside a rewritten placeholder maps to the placeholder's ``:``.
    """
    if not parsed.spans:
        return position
    target = position - 1
    numbers = {name: parsed.positional + i + 1 for i, name in enumerate(parsed.names)}
    shift = 0  # rewritten offset minus original offset, before the current span
    for start, end in parsed.spans:
        # As _sql._parse writes it: a space when the placeholder follows a word character, then "$n".
        spaced = 1 if start > 0 and (sql[start - 1].isalnum() or sql[start - 1] in "_$") else 0
        replacement = spaced + 1 + len(str(numbers.get(sql[start + 1 : end], 0)))
        rewritten_start = start + shift
        if target < rewritten_start:
            break
        if target < rewritten_start + replacement:
            return start + 1
        shift += replacement - (end - start)
    return target - shift + 1
