"""Performance Insights on a real Borealis, with boto3 ``pi``: a known statement at the top while it runs.

Sessions run ``pg_sleep`` in threads (bounded: each call sleeps a second, and the threads stop when the test has
seen what it waits for, or at its deadline); the test polls the API with generous deadlines, never sleeps on a
guess, so it holds on a loaded machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

INSTANCE = "default-instance-1"
DEADLINE = 120.0


@pytest.fixture(autouse=True, scope="module")
def _pi_off_afterwards(borealis: BorealisProcess) -> Iterator[None]:
    """The shared Borealis goes back to Performance Insights off (no sampler session) for the tests after."""
    yield
    borealis.client("rds").modify_db_cluster(
        DBClusterIdentifier="default", EnablePerformanceInsights=False, ApplyImmediately=True
    )


def _enable(rds: Any) -> str:
    """Turn Performance Insights on for the default cluster; the writer's DbiResourceId."""
    rds.modify_db_cluster(
        DBClusterIdentifier="default",
        EnablePerformanceInsights=True,
        PerformanceInsightsRetentionPeriod=7,
        ApplyImmediately=True,
    )
    inst = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
    assert inst["PerformanceInsightsEnabled"] is True
    assert inst["PerformanceInsightsRetentionPeriod"] == 7
    assert inst["PerformanceInsightsKMSKeyId"].startswith("arn:aws:kms:")
    return str(inst["DbiResourceId"])


def _window(seconds: int = 90) -> dict[str, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return {"StartTime": now - dt.timedelta(seconds=seconds), "EndTime": now + dt.timedelta(seconds=1)}


def _poll(what: str, check: Callable[[], Any]) -> Any:
    """Call ``check`` until it returns something truthy (its last answer in the failure otherwise)."""
    deadline = time.monotonic() + DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen in {DEADLINE:.0f} s; last answer: {last!r}")


@contextmanager
def _sleepers(borealis: BorealisProcess, statement: str, count: int = 3) -> Iterator[None]:
    """``count`` connections running ``statement`` (a one-second sleep) over and over until the block ends."""
    stop = threading.Event()
    ready = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with borealis.master_connect() as conn:
                conn.autocommit = True
                ready.wait(60)
                deadline = time.monotonic() + DEADLINE + 30
                while not stop.is_set() and time.monotonic() < deadline:
                    conn.execute(statement)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    try:
        ready.wait(60)
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_a_running_statement_is_at_the_top_with_its_wait_event(borealis: BorealisProcess) -> None:
    rds: Any = borealis.client("rds")
    pi: Any = borealis.client("pi")
    rid = _enable(rds)
    marker = uuid.uuid4().hex[:12]
    statement = f"select pg_sleep(1), 'pi-{marker}'"
    base = {"ServiceType": "RDS", "Identifier": rid}

    def top_sql() -> dict[str, Any] | None:
        keys = pi.describe_dimension_keys(
            **base, **_window(), Metric="db.load.avg", GroupBy={"Group": "db.sql", "Limit": 5}
        )["Keys"]
        if keys and keys[0]["Dimensions"].get("db.sql.statement") == statement:
            return dict(keys[0])
        return None

    with _sleepers(borealis, statement):
        top = _poll("the pg_sleep statement at the top of db.sql", top_sql)
        assert top["Total"] > 0
        sql_id = top["Dimensions"]["db.sql.id"]
        tokenized = top["Dimensions"]["db.sql.tokenized_id"]

        def top_wait() -> dict[str, str] | None:
            keys = pi.describe_dimension_keys(
                **base,
                **_window(),
                Metric="db.load.avg",
                GroupBy={"Group": "db.wait_event"},
                Filter={"db.sql.id": sql_id},
            )["Keys"]
            # The first samples may have caught a session before its sleep began (CPU): wait for the sleep to lead.
            found = dict(keys[0]["Dimensions"]) if keys else None
            return found if found and found["db.wait_event.name"] == "Timeout:PgSleep" else None

        assert _poll("the statement's wait event at the top", top_wait) == {
            "db.wait_event.name": "Timeout:PgSleep",
            "db.wait_event.type": "Timeout",
        }

        def by_tokenized() -> list[dict[str, Any]]:
            keys: list[dict[str, Any]] = pi.describe_dimension_keys(
                **base, **_window(), Metric="db.load.avg", GroupBy={"Group": "db.sql_tokenized", "Limit": 3}
            )["Keys"]
            return [k for k in keys if k["Dimensions"]["db.sql_tokenized.id"] == tokenized]

        (token_key,) = _poll("the tokenized statement", by_tokenized)
        assert token_key["Dimensions"]["db.sql_tokenized.statement"] == "select pg_sleep(?), ?"

    details = pi.get_dimension_key_details(
        **base, Group="db.sql", GroupIdentifier=sql_id, RequestedDimensions=["statement"]
    )["Dimensions"]
    assert details == [{"Dimension": "db.sql.statement", "Value": statement, "Status": "AVAILABLE"}]

    metrics = pi.get_resource_metrics(
        **base,
        **_window(),
        PeriodInSeconds=1,
        MetricQueries=[
            {"Metric": "db.load.avg"},
            {"Metric": "db.load.avg", "GroupBy": {"Group": "db.wait_event_type"}},
            {"Metric": "db.load.avg", "GroupBy": {"Group": "db.user", "Dimensions": ["db.user.name"]}},
        ],
    )["MetricList"]
    total = metrics[0]
    assert total["Key"] == {"Metric": "db.load.avg"}
    assert max(p["Value"] for p in total["DataPoints"]) >= 1
    timeout = [m for m in metrics if m["Key"].get("Dimensions") == {"db.wait_event_type.name": "Timeout"}]
    assert timeout and max(p["Value"] for p in timeout[0]["DataPoints"]) >= 1
    users = [
        m["Key"]["Dimensions"]["db.user.name"] for m in metrics if "db.user.name" in m["Key"].get("Dimensions", {})
    ]
    assert users[0] == "postgres"  # the master ran the sleeps; Borealis's own sessions do not count


def test_the_master_can_use_pg_stat_statements(borealis: BorealisProcess) -> None:
    # A database of its own: Borealis's sampler may be creating the extension in `postgres` at this moment.
    dbname = f"pss_{uuid.uuid4().hex[:8]}"
    with borealis.master_connect() as admin:
        admin.autocommit = True
        admin.execute(f"create database {dbname}")
    try:
        with borealis.master_connect(dbname=dbname) as conn:
            conn.autocommit = True
            preload = conn.execute("show shared_preload_libraries").fetchone()
            assert preload is not None and "pg_stat_statements" in preload[0]
            assert conn.execute("show track_activity_query_size").fetchone() == ("4kB",)
            conn.execute("create extension pg_stat_statements")
            conn.execute("create table probe (a int)")  # a statement of its own (pg_stat_statements folds literals)
            conn.execute("select a from probe")
            rows = conn.execute(
                "select calls from pg_stat_statements where query = 'select a from probe' "
                "and dbid = (select oid from pg_database where datname = current_database())"
            )
            assert rows.fetchall() == [(1,)]
            hidden = conn.execute("select count(*) from pg_stat_statements where query = '<insufficient privilege>'")
            assert hidden.fetchone() == (0,)  # pg_read_all_stats, through rds_superuser
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("alter system set shared_preload_libraries = ''")
    finally:
        with borealis.master_connect() as admin:
            admin.autocommit = True
            admin.execute(f"drop database if exists {dbname} with (force)")


def test_disabled_and_bad_requests_are_refused(borealis: BorealisProcess) -> None:
    rds: Any = borealis.client("rds")
    pi: Any = borealis.client("pi")
    rid = _enable(rds)
    base = {"ServiceType": "RDS", "Identifier": rid, **_window()}
    query = [{"Metric": "db.load.avg"}]
    for bad, field in (
        ({"PeriodInSeconds": 7}, "PeriodInSeconds"),
        ({"MetricQueries": [{"Metric": "db.load"}]}, "metric"),
        ({"MetricQueries": [{"Metric": "db.load.p99"}]}, "statistic"),
        ({"MetricQueries": [{"Metric": "db.load.avg", "GroupBy": {"Group": "db.nope"}}]}, "group"),
        ({"StartTime": base["EndTime"]}, "StartTime"),
    ):
        with pytest.raises(ClientError) as err:
            pi.get_resource_metrics(**{**base, "MetricQueries": query, **bad})
        assert err.value.response["Error"]["Code"] == "InvalidArgumentException", field
    # AWS answers an identifier it has no PI data for (no such resource, an instance's name instead of its
    # DbiResourceId, PI off) with one NotAuthorizedException; constraint violations with ValidationException.
    for ident in ("db-NOSUCHINSTANCE0000000000", INSTANCE):
        with pytest.raises(ClientError) as err:
            pi.get_resource_metrics(**{**base, "Identifier": ident}, MetricQueries=query)
        assert err.value.response["Error"] == {
            "Code": "NotAuthorizedException",
            "Message": f"The resource {ident} for service type RDS is not authorized for this account",
        }
    with pytest.raises(ClientError) as err:
        pi.get_resource_metrics(**{**base, "ServiceType": "DOCDB"}, MetricQueries=query)
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    for bad in ({"Identifier": "db/x"}, {"ServiceType": "EC2"}):
        with pytest.raises(ClientError) as err:
            pi.get_resource_metrics(**{**base, **bad}, MetricQueries=query)
        assert err.value.response["Error"]["Code"] == "ValidationException", bad

    with pytest.raises(ClientError) as err:
        rds.modify_db_instance(
            DBInstanceIdentifier=INSTANCE, EnablePerformanceInsights=True, PerformanceInsightsRetentionPeriod=94
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"

    rds.modify_db_instance(DBInstanceIdentifier=INSTANCE, EnablePerformanceInsights=False, ApplyImmediately=True)
    try:
        inst = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
        assert inst["PerformanceInsightsEnabled"] is False
        with pytest.raises(ClientError) as err:
            pi.get_resource_metrics(**base, MetricQueries=query)
        assert err.value.response["Error"] == {
            "Code": "NotAuthorizedException",
            "Message": f"The resource {rid} for service type RDS is not authorized for this account",
        }
    finally:
        _enable(rds)
    answer = pi.get_resource_metrics(**base, MetricQueries=query)
    assert answer["Identifier"] == rid and answer["MetricList"][0]["Key"] == {"Metric": "db.load.avg"}
    # The other statistics AWS serves for db.load (the most active sessions of a second of each period, ...).
    stats = [{"Metric": f"db.load.{s}"} for s in ("max", "min", "sum")]
    answer = pi.get_resource_metrics(**base, MetricQueries=stats, PeriodInSeconds=60)
    assert [m["Key"]["Metric"] for m in answer["MetricList"]] == ["db.load.max", "db.load.min", "db.load.sum"]
    with pytest.raises(ClientError) as err:
        pi.describe_dimension_keys(**base, Metric="db.load.max", GroupBy={"Group": "db.sql"})
    assert err.value.response["Error"] == {
        "Code": "InvalidArgumentException",
        "Message": "The specified statistic is not a known statistic",
    }
    listed = pi.list_available_resource_dimensions(ServiceType="RDS", Identifier=rid, Metrics=["db.load"])
    groups = {g["Group"] for g in listed["MetricDimensions"][0]["Groups"]}
    assert {"db.sql", "db.sql_tokenized", "db.wait_event", "db.wait_event_type", "db.user", "db.host"} <= groups
    metrics = pi.list_available_resource_metrics(ServiceType="RDS", Identifier=rid, MetricTypes=["db"])["Metrics"]
    assert "db.load.avg" in {m["Metric"] for m in metrics}


def test_the_sampler_never_runs_a_tenants_look_alike_pg_stat_statements(borealis: BorealisProcess) -> None:
    """The master makes a schema named like the sampler's role (first in its search_path: ``"$user"``) with a
    ``pg_stat_statements`` view calling a function of theirs; the sampler (a superuser) must read the real
    view, never that one, or the function would run as the superuser."""
    rds: Any = borealis.client("rds")
    tag = uuid.uuid4().hex[:8]
    with borealis.master_connect(dbname="postgres") as conn:
        conn.autocommit = True
        # As Aurora's users do (the sampler may be making it at this moment: then theirs is the one).
        with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            conn.execute("create extension if not exists pg_stat_statements schema public")
    _enable(rds)
    reads = (
        "select coalesce(sum(calls), 0) from public.pg_stat_statements where query like '%SUM(total_exec_time)%' "
        "and userid = (select oid from pg_roles where rolname = 'rdsadmin')"
    )
    with borealis.master_connect(dbname="postgres") as conn:
        conn.autocommit = True
        conn.execute(f"create table public.pwned_{tag} (who text)")
        conn.execute(
            f"create function public.pwn_{tag}() returns bigint language plpgsql as $$ begin "
            f"insert into public.pwned_{tag} values (current_user); return 1; end $$"
        )
        conn.execute("create schema rdsadmin")
        try:
            conn.execute(
                f"create view rdsadmin.pg_stat_statements as select '1'::text as queryid, public.pwn_{tag}() as calls,"
                " 0::float8 as total_exec_time, 0::float8 as rows, 0::oid as userid"
            )

            def pwned() -> list[Any]:
                return conn.execute(f"select who from public.pwned_{tag}").fetchall()

            def sampler_reads() -> float:
                found = conn.execute(reads).fetchone()
                return float(found[0]) if found else 0.0

            # Two readings of the sampler after the look-alike exists (or the look-alike run, which fails too).
            before = sampler_reads()
            _poll("two pg_stat_statements readings by the sampler", lambda: pwned() or sampler_reads() >= before + 2)
            assert pwned() == []
        finally:
            conn.execute("drop schema rdsadmin cascade")
            conn.execute(f"drop function public.pwn_{tag}()")
            conn.execute(f"drop table public.pwned_{tag}")
