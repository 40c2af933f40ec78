"""A reader that fell behind past what the writer keeps catches up from the cluster's WAL archive.

Readers stream without replication slots: the writer keeps ``wal_keep_size`` of WAL for them and removes the
rest at each checkpoint once it is archived. A reader that stood still longer than that (stopped, frozen,
restarted after a long stop) asks for a segment the writer no longer has ("requested WAL segment ... has
already been removed") and, streaming alone, could never catch up. Standbys read the archive with
``restore_command`` when streaming cannot give them what they need.

The Borealis here keeps no WAL for readers (``BOREALIS_WAL_KEEP_MB=0``) and closes a segment every second
(``BOREALIS_ARCHIVE_TIMEOUT=1``), so a few small commits are enough to move the writer past a frozen reader.
Every wait polls for a state with a generous deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import BorealisProcess
from tests.integration.hatools import children, poll, serving

CLUSTER = "default"
WRITER = "default-instance-1"
READER = "reader-1"
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    env = {"BOREALIS_WAL_KEEP_MB": "0", "BOREALIS_ARCHIVE_TIMEOUT": "1"}
    with serving(BorealisProcess(tmp_path_factory.mktemp("catchup") / "data", workers=1, extra_env=env)) as proc:
        yield proc


def _cluster(own: BorealisProcess) -> dict[str, Any]:
    return dict(own.client("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0])


def _writer(own: BorealisProcess) -> str:
    return str(next(m["DBInstanceIdentifier"] for m in _cluster(own)["DBClusterMembers"] if m["IsClusterWriter"]))


def _all_available(own: BorealisProcess) -> bool:
    instances = own.client("rds").describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [CLUSTER]}])
    statuses = [i["DBInstanceStatus"] for i in instances["DBInstances"]]
    return statuses == ["available", "available"] and _cluster(own)["Status"] == "available"


def _instance_dir(own: BorealisProcess, iid: str) -> Path:
    return own.data_dir / "clusters" / CLUSTER / "instances" / iid


def _connect(own: BorealisProcess, iid: str) -> psycopg.Connection[Any]:
    inst = own.client("rds").describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"][0]
    conn = own.master_connect(port=int(inst["Endpoint"]["Port"]))
    conn.autocommit = True
    return conn


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _count(own: BorealisProcess, iid: str) -> int:
    with _connect(own, iid) as conn:
        return int(_one(conn, "SELECT count(*) FROM rows"))


def _frozen(own: BorealisProcess, iid: str) -> list[int]:
    """Every process of the instance's postgres: the postmaster and its children."""
    postmaster = int((_instance_dir(own, iid) / "data" / "postmaster.pid").read_text().split()[0])
    return [postmaster, *children(postmaster)]


def _logged(own: BorealisProcess, iid: str, text: str) -> bool:
    return any(text in p.read_text(errors="replace") for p in (_instance_dir(own, iid) / "log").iterdir())


def test_a_reader_frozen_past_the_writers_wal_catches_up_from_the_archive(own: BorealisProcess) -> None:
    with own.master_connect() as conn:
        conn.execute("CREATE TABLE rows (id bigint PRIMARY KEY)")
        conn.execute("CREATE TABLE filler (t text)")
        conn.execute("INSERT INTO rows SELECT generate_series(1, 100)")
        conn.commit()
    own.client("rds").create_db_instance(
        DBInstanceIdentifier=READER,
        DBClusterIdentifier=CLUSTER,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    poll("the reader is available", lambda: _all_available(own))
    poll("the reader has the rows", lambda: _count(own, READER) == 100)

    # The reader stands still, as a paused VM or a stopped process would: every process of its postgres.
    frozen = _frozen(own, READER)
    try:
        os.kill(frozen[0], signal.SIGSTOP)  # the postmaster first: it starts no child while stopped
        for pid in frozen[1:]:
            # A backend listed a moment ago may have exited since (the last query's connection closing).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        with _connect(own, WRITER) as conn:
            # The frozen reader is still a synchronous standby for a while: these commits do not wait for it.
            conn.execute("SET synchronous_commit = local")
            current = "SELECT pg_walfile_name(pg_current_wal_lsn())"
            reached = str(_one(conn, current))  # the reader has nothing past this segment
            begun: set[str] = set()  # segments the writer began after the freeze: the reader has none of them
            removed: list[str] = []  # those of them the writer no longer has
            next_id = 101

            def moved_past() -> bool:
                # Commits of 2 MB each (a segment is closed each second), and checkpoints that remove what was
                # archived: until 3 segments begun after the freeze are gone from the writer. The walsender keeps
                # writing into the frozen reader's socket until the kernel's buffers are full, so the reader may
                # still get the first few MB by streaming; 3 segments of a second's commits each are past that.
                nonlocal next_id
                conn.execute("INSERT INTO rows VALUES (%s)", [next_id])
                conn.execute("INSERT INTO filler SELECT repeat(md5(g::text), 30) FROM generate_series(1, 2000) g")
                next_id += 1
                begun.add(str(_one(conn, current)))
                conn.execute("CHECKPOINT")
                names = [str(r[0]) for r in conn.execute("SELECT name FROM pg_ls_waldir()").fetchall()]
                oldest = min(n for n in names if _SEGMENT.match(n))
                removed[:] = sorted(name for name in begun if reached < name < oldest)
                return len(removed) >= 3

            poll("the writer removed the WAL the reader needs", moved_past)
            conn.execute("INSERT INTO rows VALUES (%s)", [next_id])
    finally:
        for pid in reversed(frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    expected = next_id

    # Streaming alone cannot give the reader what it needs; the archive does, then it streams again. Of the
    # segments the writer removed, those past what the frozen socket held came from the archive: nothing else
    # had them.
    poll("the reader has every row", lambda: _count(own, READER) == expected)
    assert any(_logged(own, READER, f'restored log file "{name}" from archive') for name in removed), removed
    with _connect(own, WRITER) as conn:
        poll(
            "the reader streams again",
            lambda: (
                conn.execute("SELECT state FROM pg_stat_replication WHERE application_name = %s", [READER]).fetchone()
                == ("streaming",)
            ),
        )
    with _connect(own, READER) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_the_promoted_reader_archives_into_the_same_archive_and_the_old_writer_follows(
    own: BorealisProcess,
) -> None:
    archive = own.data_dir / "clusters" / CLUSTER / "archive"
    own.client("rds").failover_db_cluster(DBClusterIdentifier=CLUSTER, TargetDBInstanceIdentifier=READER)
    poll("the reader is the writer", lambda: _writer(own) == READER and _all_available(own))
    with _connect(own, READER) as conn:
        timeline = str(_one(conn, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"))
        assert int(timeline, 16) >= 2
        conn.execute("INSERT INTO rows SELECT max(id) + 1 FROM rows")
        expected = _count(own, READER)
    # The new timeline's history and segments go to the cluster's one archive (a segment is closed each second).
    poll("the new timeline's history is archived", lambda: (archive / f"{timeline}.history.gz").is_file())
    poll(
        "a segment of the new timeline is archived",
        lambda: any(p.name.startswith(timeline) and p.name.endswith(".gz") and "history" not in p.name
                    for p in archive.iterdir()),
    )  # fmt: skip
    poll("the old writer follows and has every row", lambda: _count(own, WRITER) == expected)
