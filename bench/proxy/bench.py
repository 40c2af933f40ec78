"""The Borealis proxy next to PgBouncer and direct connections, on the same PostgreSQL, in one run.

    python bench/proxy/bench.py [--duration 15] [--clients 32 200] [--pool-size 8 16] [--rounds 1]
                                [--idle 10000] [--profile /tmp/proxy-profile.txt] [--database postgres]
                                [--profile-mode "tpcb-like (sync_commit off)"]

Run by hand, as root (PgBouncer is started as an unprivileged user; it refuses root). It stops by itself:
every step has a timeout, and everything it started is stopped by pid at the end.

1. Starts its own ``borealis up`` (a temporary data directory, free ports, the default cluster) with a raised
   open-files limit, sets ``synchronous_commit = off`` for the database ``--database`` (so fsync noise does
   not hide the poolers; made first unless it is ``postgres``) and runs ``pgbench -i -s 10`` once, straight
   to the writer's postgres. The script checks that every target reaches the database asked for and stops
   otherwise (until 2026-11-26 the proxy logged in to PostgreSQL without the client's database).
2. For each ``--pool-size``, creates an RDS proxy through the API (boto3): CreateDBProxy with the default
   cluster's master secret, RegisterDBProxyTargets, ModifyDBProxyTargetGroup with the MaxConnectionsPercent that
   makes the pool's server-connection cap (``max_connections * pct // 100``) equal to PgBouncer's
   ``default_pool_size``.
3. For each ``--pool-size``, starts Debian's PgBouncer (``apt-get install -y pgbouncer``) on a free port,
   ``pool_mode = transaction``, the same pool size, SCRAM auth from an auth_file holding the master user's SCRAM
   verifier as PostgreSQL stores it (read from pg_authid, or, where the role may not read it, one the script sets
   with ALTER ROLE for the same password), pointing at the writer's postgres.
4. For each mode -- select-only simple (``-S -M simple``), select-only prepared (``-S -M prepared``), tpcb-like
   (default script), or those ``--modes`` names -- and each pool size and each ``--clients`` count, runs pgbench
   (the embedded binary), ``-j 2``, ``--duration`` seconds, against direct (once per client count) / PgBouncer /
   proxy, interleaved (the order reverses every round), and prints the load average at the start of each round,
   tps, average latency, failed transactions, the pooler's CPU (share of a core, and user+system microseconds per
   transaction, from /proc/<pid>/stat) and the ratios proxy/PgBouncer and proxy/direct (medians of rounds). A
   pgbench that aborts (PgBouncer 1.18 with ``-M prepared`` in transaction mode) is reported as aborted, with its
   first errors. A last table puts proxy/PgBouncer side by side, per round and the median.
5. With ``--profile``, one more proxy run (first pool size, most clients; select-only simple, or
   ``--profile-mode``) under ``py-spy record --format raw`` (not counted in the table) and a summary of where the
   time goes (``--summarise FILE`` redoes only that).
6. Unless ``--idle 0``: holds ``--idle`` idle client connections (startup + SCRAM only) from a separate process
   (``hold.py``) through the proxy, then through PgBouncer (the first pool size's), and reports the RSS growth
   per connection of the ``borealis up`` process and of PgBouncer (``VmRSS`` from ``/proc/<pid>/status``).
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config

# Run as `python bench/proxy/bench.py`: the repository root (for tests.net) is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.net import free_port, free_port_base

HERE = Path(__file__).resolve().parent
MODES: dict[str, list[str]] = {
    "select-only simple": ["-S", "-M", "simple"],
    "select-only prepared": ["-S", "-M", "prepared"],
    "tpcb-like (sync_commit off)": ["-M", "simple"],
}
TARGETS = ("direct", "pgbouncer", "proxy")
NOFILE = 65536


def rss_kb(pid: int) -> int:
    """VmRSS of a process, kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier of ``password`` as PostgreSQL stores it (RFC 5803 form, a fresh salt)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def cpu_seconds(pid: int | None) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process so far (from /proc/<pid>/stat), or None."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def nofile_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " / ".join(line.split()[3:5])
    return "?"


def _raise_nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))  # root may raise the hard limit
            return
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 30) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------------------------------------ pgbench


@dataclass
class Result:
    """One pgbench run."""

    tps: float | None = None
    latency_ms: float | None = None
    failed: int | None = None
    processed: int | None = None
    aborted: str | None = None  # why the run did not complete, when it did not
    cpu_s: float | None = None  # CPU seconds (user + system) the pooler process used during the run
    user_s: float | None = None  # of which user
    wall_s: float | None = None
    raw: str = field(default="", repr=False)


#: Start Borealis, each PgBouncer and each pgbench in a session of its own (``--shared-session`` turns it off).
#: With the kernel's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) a session is a scheduling
#: group: the CPU is shared between sessions first, then between the threads in each. Postgres always runs in a
#: session of its own (Borealis starts it so). In one shared session, the pooler fights pgbench for that
#: session's share, which no deployment does.
OWN_SESSIONS = True


def sessions() -> str:
    """How the processes are grouped for the scheduler, for the record."""
    try:
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        autogroup = False
    where = "each in a session of its own" if OWN_SESSIONS else "all in this script's session"
    return f"Borealis, PgBouncer and pgbench {where} (autogroup scheduling {'on' if autogroup else 'off'})"


def pgbench(
    tool: Path, host: str, port: int, user: str, password: str, args: list[str], duration: int, clients: int,
    threads: int, dbname: str, pooler_pid: int | None = None, limit: float = 0,
) -> Result:  # fmt: skip
    """One pgbench run (``duration`` 0: ``args`` bound it, e.g. ``-t``, within ``limit`` seconds)."""
    timed = ["-T", str(duration)] if duration else []
    cmd = [str(tool), "-n", "-h", host, "-p", str(port), "-U", user, "-c", str(clients), "-j", str(threads),
           *timed, *args, dbname]  # fmt: skip
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    cpu0, t0 = cpu_seconds(pooler_pid), time.monotonic()
    try:
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit or duration + 60,
                             start_new_session=OWN_SESSIONS)  # fmt: skip
    except subprocess.TimeoutExpired:
        return Result(aborted="pgbench timed out")
    cpu1, t1 = cpu_seconds(pooler_pid), time.monotonic()
    out = run.stdout
    res = Result(raw=out + run.stderr, wall_s=t1 - t0)
    if cpu0 is not None and cpu1 is not None:
        res.user_s = cpu1[0] - cpu0[0]
        res.cpu_s = res.user_s + cpu1[1] - cpu0[1]
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    res.tps = float(m.group(1)) if m else None
    m = re.search(r"latency average = ([\d.]+) ms", out)
    res.latency_ms = float(m.group(1)) if m else None
    m = re.search(r"number of failed transactions: (\d+)", out)
    res.failed = int(m.group(1)) if m else None
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    res.processed = int(m.group(1)) if m else None
    if run.returncode != 0 or "Run was aborted" in out:
        errors = [ln.strip() for ln in run.stderr.splitlines() if "ERROR" in ln or "FATAL" in ln or "error" in ln]
        kinds = collections.Counter(re.sub(r"^pgbench: (error: )?client \d+ ", "", e)[:110] for e in errors)
        first = "; ".join(f"{n}x {k}" for k, n in kinds.most_common(2)) or run.stderr.strip()[:200]
        res.aborted = f"rc={run.returncode}, {res.processed or 0} tx processed: {first}"
    return res


# ------------------------------------------------------------------------------------------------ profile


_BOILERPLATE = ("<frozen runpy>", "borealis/cli.py", "borealis/__main__.py", "asyncio/runners.py", "uvloop/__init__.py")


#: Where a sample's time goes, decided by the frame nearest the leaf that matches a rule (rules in order).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("socket writes (transport.write: the send syscall, and waiting for the CPU after waking the peer)",
     ("ServerConn.write ", "ClientConn.write ")),
    ("target lookup (store reads; since 2026-11-26 kept until the control plane's generation moves)",
     ("ProxyRuntime._target", "ProxyRuntime.pool_for", "ProxyRuntime.current_pool", "store/", "json/",
      "ControlPlane.")),
    ("pinning check (pre-filter, then regexes over Query/Parse texts)",
     ("pinning", "_check_pin", "_may_pin", "_check_query")),
    ("event loop itself (uvloop: epoll, recv, callback dispatch)", ("Runner.run",)),
    ("borrow/release machinery (pool take/wait/release, hand-off to a waiter, Tasks, futures)",
     ("_borrow", "Pool.", "ProxyRuntime.acquire", "asyncio/", "_spawn", "_continue", "_apply_params",
      "_release", "server_at_boundary", "_lent", "_done", "pool_grant", "pool_fail", "_attach",
      "_apply_and_continue")),
    ("framing and session state (pgwire)", ("pgwire/",)),
    ("stats", ("_stats",)),
    ("proxy data path (data_received, dispatch, forward, inspect)", ("proxy/_client.py", "proxy/_server.py")),
]  # fmt: skip


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, needles in CATEGORIES:
            if any(n in frame + " " for n in needles):
                return label
    return "other"


def summarise_profile(path: Path, expected: int, top: int = 16) -> list[str]:
    """Shares of samples, inclusive (a function anywhere on the stack) and self (the leaf), from py-spy raw.

    ``expected`` is rate x duration: samples / expected is how busy the sampled threads were (py-spy does
    not record idle threads, e.g. the event loop waiting in epoll).
    """
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    cats: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        for f in set(frames):
            if not any(b in f for b in _BOILERPLATE):
                inclusive[f] += n
        if frames:
            leaf[frames[-1]] += n
        cats[categorise(frames)] += n
    if not total:
        return ["(no samples)"]
    out = [f"{total} samples of {expected} possible: busy {100 * total / expected:.0f}% of the time"]
    out.append("by part (the frame nearest the leaf that says what the time is for):")
    for name, n in cats.most_common():
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out.append("inclusive (anywhere on the stack), % of samples:")
    for name, n in inclusive.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out.append("self (leaf; C code such as a socket send is charged to the Python frame that called it):")
    for name, n in leaf.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    return out


def _short(frame: str) -> str:
    # "data_received (borealis/proxy/_server.py:123)" -> "data_received (proxy/_server.py)"
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.group(1), m.group(2)
    parts = path.split("/")
    return f"{func} ({'/'.join(parts[-2:])})"


# ------------------------------------------------------------------------------------------------ main


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="borealis-proxy-bench-"))
        self.borealis: subprocess.Popen[bytes] | None = None
        #: One PgBouncer per pool size (default_pool_size is global to a PgBouncer).
        self.pgbouncers: dict[str, subprocess.Popen[bytes]] = {}  # "pgbouncer[-unix]-<pool size>"
        #: direct, pgbouncer, proxy, and with --pgbouncer-unix a PgBouncer over postgres's unix socket.
        self.names: tuple[str, ...] = TARGETS + (("pgbouncer-unix",) if getattr(args, "pgbouncer_unix", False) else ())
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"

    # -- Borealis ----------------------------------------------------------------------------------------

    def start_borealis(self) -> None:
        cmd = [sys.executable, "-m", "borealis", "up", "--data-dir", str(self.work / "data"),
               "--api-port", str(self.api_port), "--port-base", str(free_port_base())]  # fmt: skip
        log = (self.work / "borealis.out").open("wb")
        src = getattr(self.args, "src", None)
        # --src: the proxy from another tree (a `git archive` of an older commit, or build/compiled: the compiled
        # build from scripts/build-compiled), to compare in the same setup.
        env = dict(os.environ, PYTHONPATH=str(Path(src).resolve())) if src else None
        self.borealis = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_raise_nofile, env=env,
                                         start_new_session=OWN_SESSIONS)  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.borealis.poll() is not None:
                raise SystemExit(f"borealis up exited:\n{(self.work / 'borealis.out').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        # Its first line says which build runs (pure Python, or compiled with mypyc).
                        banner = (self.work / "borealis.out").read_text().splitlines()[0]
                        print(f"borealis up: {banner}", flush=True)
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("borealis did not become ready in 180 s")

    def client(self, service: str) -> Any:
        text = (self.work / "data" / "credentials").read_text().splitlines()
        values = dict(line.split(" = ", 1) for line in text if " = " in line)
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=values["aws_access_key_id"], aws_secret_access_key=values["aws_secret_access_key"],
            config=Config(retries={"max_attempts": 1}),
        )  # fmt: skip

    def create_proxy(self, name: str, pct: int) -> tuple[str, int]:
        rds = self.client("rds")
        rds.create_db_proxy(
            DBProxyName=name, EngineFamily="POSTGRESQL",
            Auth=[{"AuthScheme": "SECRETS", "SecretArn": self.secret_arn}],
            RoleArn="arn:aws:iam::000000000000:role/proxy", VpcSubnetIds=["subnet-1", "subnet-2"],
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while rds.describe_db_proxies(DBProxyName=name)["DBProxies"][0]["Status"] != "available":
            if time.monotonic() > deadline:
                raise SystemExit("proxy did not become available")
            time.sleep(0.1)
        rds.register_db_proxy_targets(DBProxyName=name, DBClusterIdentifiers=["default"])
        rds.modify_db_proxy_target_group(
            DBProxyName=name, TargetGroupName="default",
            ConnectionPoolConfig={"MaxConnectionsPercent": pct, "ConnectionBorrowTimeout": 120},
        )  # fmt: skip
        host = rds.describe_db_proxies(DBProxyName=name)["DBProxies"][0]["Endpoint"]
        targets = rds.describe_db_proxy_targets(DBProxyName=name)["Targets"]
        port = next(t["Port"] for t in targets if t["Type"] == "TRACKED_CLUSTER")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((host, port)) == 0:
                    return host, port
            time.sleep(0.05)
        raise SystemExit(f"proxy not listening on {host}:{port}")

    def wait_for_snapshots(self, rds: Any, limit: float = 600) -> None:
        """Wait until no snapshot of the cluster is being taken.

        A new cluster takes its first automated backup (a base backup copied file by file, with an fsync each)
        right after ``borealis up``, in a thread of the same process: its I/O takes CPU from everything, and its
        GIL hand-offs from the proxy's event loop in particular. Measuring during it measures the backup.
        """
        start = time.monotonic()
        deadline = start + limit
        while time.monotonic() < deadline:
            snaps = rds.describe_db_cluster_snapshots(DBClusterIdentifier="default")["DBClusterSnapshots"]
            busy = [s["DBClusterSnapshotIdentifier"] for s in snaps if s["Status"] != "available"]
            auto = [s for s in snaps if s.get("SnapshotType") == "automated"]
            # The first backup starts a little after the cluster is up: wait for it to exist, then to finish
            # (or, if none has started after a minute, for nothing).
            if not busy and (auto or time.monotonic() - start > 60):
                print(f"snapshots of the cluster: {len(snaps)} ({len(auto)} automated), none in progress "
                      f"(waited {time.monotonic() - start:.0f}s)", flush=True)  # fmt: skip
                return
            time.sleep(1)
        raise SystemExit(f"snapshots still in progress after {limit:.0f}s: {busy}")

    # -- PgBouncer ---------------------------------------------------------------------------------------

    def start_pgbouncer(self, exe: str, pool_size: int, socket_dir: Path | None = None) -> int:
        """A PgBouncer for ``pool_size`` server connections, to postgres over TCP or over ``socket_dir``."""
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None and os.geteuid() == 0:
            raise SystemExit("no unprivileged user (postgres or nobody) to run pgbouncer as")
        pw = pwd.getpwnam(user) if user else pwd.getpwuid(os.geteuid())
        if socket_dir is not None:  # only the socket directory's owner (postgres's OS user) may enter it
            pw = pwd.getpwuid(socket_dir.stat().st_uid)
        name = "pgbouncer" if socket_dir is None else "pgbouncer-unix"
        d = self.work / f"{name}-{pool_size}"
        d.mkdir()
        port = free_port()
        # Clients authenticate against the role's SCRAM verifier: PgBouncer then checks two HMACs per login,
        # as the proxy does with its cached keys (a plain password costs PgBouncer 1.18 a PBKDF2, ~14 ms, per
        # login), and logs in to PostgreSQL by SCRAM pass-through with the client's proof.
        # SCRAM pass-through needs the server's own verifier (same salt): read, or set, in run().
        secret = self.pg_verifier
        (d / "userlist.txt").write_text(f'"{self.user}" "{secret}"\n')
        db = self.args.database
        (d / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{db} = host={socket_dir or self.pg_host} port={self.pg_port} dbname={db}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {d / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_db_connections = {pool_size}\n"
            f"max_client_conn = {max(self.args.idle, 1000) + 200}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "log_connections = 0\nlog_disconnections = 0\n"
        )
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            for p in (d, d / "userlist.txt", d / "pgbouncer.ini"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(self.work, 0o711)  # the unprivileged user only traverses it
            as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        os.chmod(d / "userlist.txt", 0o600)
        out = self.work / f"{name}-{pool_size}.out"
        log = out.open("wb")
        proc = self.pgbouncers[f"{name}-{pool_size}"] = subprocess.Popen(
            [exe, str(d / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT, cwd=d,
            preexec_fn=_raise_nofile, start_new_session=OWN_SESSIONS, **as_user,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"pgbouncer exited:\n{out.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return port
            time.sleep(0.05)
        raise SystemExit("pgbouncer not listening")

    def allow_socket_scram(self) -> Path:
        """Let the bench's user log in to its database over the writer's unix socket with SCRAM; its directory.

        Borealis's pg_hba.conf lets only its own OS user in there (peer). A line before that one lets the
        PgBouncer control (run as postgres's OS user, who owns the directory) in with the role's password; the
        proxy, on the same socket, then logs in with SCRAM too. Postgres reloads on SIGHUP.
        """
        from borealis.engine import socket_dir_for

        datadirs = sorted((self.work / "data" / "clusters" / "default" / "instances").glob("*/data"))
        datadir = next(d for d in datadirs if (d / "postmaster.pid").exists())
        hba = datadir / "pg_hba.conf"
        line = f'local   "{self.args.database}"   "{self.user}"   scram-sha-256\n'
        text = hba.read_text()
        at = text.index("\nlocal") + 1
        hba.write_text(text[:at] + line + text[at:])
        os.kill(int((datadir / "postmaster.pid").read_text().split()[0]), signal.SIGHUP)
        time.sleep(1)
        return socket_dir_for(datadir.absolute())

    # -- the run -----------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Start Borealis, a proxy and a PgBouncer per pool size; set ``tool``, ``pools``, ``targets``, ``pids``."""
        args = self.args
        from borealis.engine import Binaries

        binaries = Binaries.find()
        tool = binaries.tool("pgbench")
        exe = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
        if exe is None:
            raise SystemExit(
                "pgbouncer is not installed. Install Debian's package:\n"
                "    apt-get update && apt-get install -y pgbouncer\n"
                "(the package's systemd unit may start a pgbouncer on 6432; this benchmark starts its own)"
            )
        pgb_version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[0]

        t0 = time.monotonic()
        print(f"work dir {self.work}; starting borealis up ...", flush=True)
        self.start_borealis()
        assert self.borealis is not None
        bpid = self.borealis.pid
        print(f"borealis up pid {bpid} ready in {time.monotonic() - t0:.0f}s; open files limit {nofile_limit(bpid)}")

        rds = self.client("rds")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        self.secret_arn = cluster["MasterUserSecret"]["SecretArn"]
        secret = json.loads(self.client("secretsmanager").get_secret_value(SecretId=self.secret_arn)["SecretString"])
        self.user, self.password = secret["username"], secret["password"]
        conninfo = dict(host=cluster["Endpoint"], port=cluster["Port"], user=self.user, password=self.password,
                        connect_timeout=10, autocommit=True)  # fmt: skip
        with psycopg.connect(dbname="postgres", **conninfo) as conn:
            row = conn.execute("SELECT inet_server_addr()::text, inet_server_port()").fetchone()
            assert row is not None
            self.pg_host, self.pg_port = row[0].split("/")[0], int(row[1])
            max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
            pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            try:
                self.pg_verifier = conn.execute(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"
                ).fetchone()[0]  # type: ignore[index]
            except psycopg.Error:
                # Not a superuser (Borealis's master user is not, as on RDS): give the role a verifier of its
                # own password that we know, so PgBouncer can still pass SCRAM through. With the plain
                # password instead, PgBouncer 1.18 spends a PBKDF2 (~14 ms, far more under load) on each
                # login: 200 pgbench clients then spent the whole run connecting (0 tps).
                self.pg_verifier = scram_verifier(self.password)
                conn.execute(f"ALTER ROLE CURRENT_USER PASSWORD '{self.pg_verifier}'")
            db = args.database
            if db != "postgres":
                conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
                conn.execute(f'CREATE DATABASE "{db}"')
            conn.execute(f'ALTER DATABASE "{db}" SET synchronous_commit = off')

        # The proxy's cap is max_connections * MaxConnectionsPercent // 100: for each --pool-size pick the
        # percent whose cap is closest, then give that pool size's PgBouncer exactly that cap.
        pools: dict[int, int] = {}  # pool size -> MaxConnectionsPercent
        for want in args.pool_size:
            pct = min(range(1, 101), key=lambda p: (abs(max(1, max_conn * p // 100) - want), p))
            pools[max(1, max_conn * pct // 100)] = pct
        print(f"PostgreSQL {pg_version} at {self.pg_host}:{self.pg_port}, max_connections {max_conn}: pools "
              + ", ".join(f"{n} (MaxConnectionsPercent {pct})" for n, pct in pools.items())
              + " server connections; PgBouncer default_pool_size the same")  # fmt: skip

        init = subprocess.run(
            [str(tool), "-i", "-s", str(args.scale), "-h", self.pg_host, "-p", str(self.pg_port), "-U", self.user,
             args.database],
            env=dict(os.environ, PGPASSWORD=self.password), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if init.returncode != 0:
            raise SystemExit(f"pgbench -i failed:\n{init.stderr[-2000:]}")
        print(f"pgbench -i -s {args.scale} done ({time.monotonic() - t0:.0f}s)", flush=True)
        self.wait_for_snapshots(rds)

        # Per pool size: a proxy and a PgBouncer. Direct postgres is the same for every pool size.
        targets: dict[tuple[str, int], tuple[str, int]] = {}
        pids: dict[str, int | None] = {"direct": None, "proxy": bpid}
        socket_dir = self.allow_socket_scram() if "pgbouncer-unix" in self.names else None
        for pool, pct in pools.items():
            proxy_addr = self.create_proxy(f"bench-proxy-{pool}", pct)
            pgb_addr = ("127.0.0.1", self.start_pgbouncer(exe, pool))
            targets[("direct", pool)] = (self.pg_host, self.pg_port)
            targets[("proxy", pool)] = proxy_addr
            targets[("pgbouncer", pool)] = pgb_addr
            pids[f"pgbouncer-{pool}"] = self.pgbouncers[f"pgbouncer-{pool}"].pid
            if socket_dir is not None:
                targets[("pgbouncer-unix", pool)] = ("127.0.0.1", self.start_pgbouncer(exe, pool, socket_dir))
                pids[f"pgbouncer-unix-{pool}"] = self.pgbouncers[f"pgbouncer-unix-{pool}"].pid
            # Every target must reach the same database, or the comparison means nothing.
            for name in self.names[1:]:
                host, port = targets[(name, pool)]
                with psycopg.connect(dbname=args.database, **{**conninfo, "host": host, "port": port}) as conn:
                    got = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
                if got != args.database:
                    raise SystemExit(f"{name}: asked for database {args.database!r}, reached {got!r}.")
            print(f"pool {pool}: {pgb_version} on {pgb_addr[0]}:{pgb_addr[1]} (pid {pids[f'pgbouncer-{pool}']}, as "
                  f"an unprivileged user), proxy {proxy_addr[0]}:{proxy_addr[1]} (in pid {bpid})")  # fmt: skip
        print(f"direct {self.pg_host}:{self.pg_port}")
        self.tool, self.pools, self.targets, self.pids, self.t0 = tool, pools, targets, pids, t0
        self.versions = (pg_version, pgb_version)

    def run(self) -> None:
        args = self.args
        self.setup()
        tool, pools, targets, pids, t0 = self.tool, self.pools, self.targets, self.pids, self.t0
        pg_version, pgb_version = self.versions
        assert self.borealis is not None
        bpid = self.borealis.pid

        def bench(target: str, pool: int, clients: int, mode: str, duration: int) -> Result:
            host, port = targets[(target, pool)]
            pid = pids[f"{target}-{pool}" if target.startswith("pgbouncer") else target]
            return pgbench(tool, host, port, self.user, self.password, MODES[mode], duration, clients,
                           args.threads, args.database, pid)  # fmt: skip

        # Warm-up: every pool opens its server connections, every cache is filled.
        for pool in pools:
            for target in self.names:
                bench(target, pool, max(args.clients), "select-only simple", 2)

        # Direct runs once per (clients, mode, round), with the first pool size: it has no pool.
        configs = [(pool, clients) for pool in pools for clients in args.clients]
        first_pool = next(iter(pools))
        results: dict[tuple[int, int, str, str], list[Result]] = collections.defaultdict(list)
        loads: list[float] = []
        for rnd in range(args.rounds):
            loads.append(os.getloadavg()[0])
            print(f"round {rnd + 1}: load average {loads[-1]:.2f}", flush=True)
            for pool, clients in configs:
                for mode in MODES:
                    order = self.names if rnd % 2 == 0 else self.names[::-1]
                    for target in order:
                        if target == "direct" and pool != first_pool:
                            continue
                        res = bench(target, pool, clients, mode, args.duration)
                        results[(pool, clients, mode, target)].append(res)
                        status = f"ABORTED {res.aborted}" if res.aborted else f"{res.tps or 0:,.0f} tps"
                        if res.cpu_s is not None and res.wall_s:
                            status += f", pooler CPU {100 * res.cpu_s / res.wall_s:.0f}% of a core"
                        print(f"  round {rnd + 1} pool {pool:3} clients {clients:3} {mode:28} {target:10} {status}",
                              flush=True)  # fmt: skip

        print()
        print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), load average at the start of each round: "
              f"{', '.join(f'{x:.2f}' for x in loads)}, after: {os.getloadavg()[0]:.2f}; PostgreSQL {pg_version}; "
              f"{pgb_version}; {sessions()}")  # fmt: skip
        print(
            f"pgbench -j {args.threads} -T {args.duration}, scale {args.scale}, {args.rounds} round(s), interleaved "
            "(the order reverses every round); tps is 'without initial connection time'"
        )
        self.print_table(results, configs, first_pool)

        if args.profile:
            self.profile(lambda mode, seconds: bench("proxy", first_pool, max(args.clients), mode, seconds), bpid)

        if args.idle:
            print()
            for target, pid in (("proxy", bpid), ("pgbouncer", self.pgbouncers[f"pgbouncer-{first_pool}"].pid)):
                self.idle(target, targets[(target, first_pool)], pid)
        print(f"\ntotal time {time.monotonic() - t0:.0f}s")

    def print_table(
        self, results: dict[tuple[int, int, str, str], list[Result]], configs: list[tuple[int, int]], first_pool: int
    ) -> None:
        print("| pool | clients | mode | target | tps | latency avg ms | failed tx | pooler CPU % of a core "
              "| pooler CPU µs/tx (user+sys) | proxy/PgBouncer per round | proxy/PgBouncer (median) "
              "| proxy/direct |")  # fmt: skip
        print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        summary: list[str] = []
        for pool, clients in configs:
            for mode in MODES:

                def runs_of(target: str, pool: int = pool, clients: int = clients, mode: str = mode) -> list[Result]:
                    return results[(first_pool if target == "direct" else pool, clients, mode, target)]

                best = {t: _median([r.tps for r in runs_of(t) if r.tps and not r.aborted]) for t in self.names}
                for target in self.names:
                    runs = runs_of(target)
                    tps = " / ".join("aborted" if r.aborted else f"{r.tps:,.0f}" if r.tps else "?" for r in runs)
                    lat = " / ".join(f"{r.latency_ms:.3f}" if r.latency_ms is not None else "?" for r in runs)
                    failed = " / ".join(str(r.failed) if r.failed is not None else "?" for r in runs)
                    cpu = " / ".join(f"{100 * r.cpu_s / r.wall_s:.0f}" if r.cpu_s is not None and r.wall_s else "-"
                                     for r in runs)  # fmt: skip
                    per_tx = " / ".join(_per_tx(r) for r in runs)
                    per_round = ratio_pgb = ratio_direct = ""
                    if target == "proxy":
                        pgb = runs_of("pgbouncer")
                        per_round = " / ".join(
                            _ratio(p.tps, b.tps) if not p.aborted and not b.aborted else "n/a"
                            for p, b in zip(runs, pgb, strict=False)
                        )
                        ratio_pgb = _ratio(best["proxy"], best["pgbouncer"])
                        ratio_direct = _ratio(best["proxy"], best["direct"])
                        unix = ""
                        if "pgbouncer-unix" in best:
                            unix = f" {_ratio(best['proxy'], best['pgbouncer-unix'])} |"
                        summary.append(f"| {pool} | {clients} | {mode} | {per_round} | **{ratio_pgb}** |{unix}")
                    row = [str(pool), str(clients), mode, target, tps, lat, failed, cpu, per_tx, per_round,
                           ratio_pgb, ratio_direct]  # fmt: skip
                    print("| " + " | ".join(row) + " |")
        print("\nproxy / PgBouncer, side by side:\n")
        unix = "pgbouncer-unix" in self.names
        print(
            "| pool | clients | mode | per round | median |" + (" vs PgBouncer over the unix socket |" if unix else "")
        )
        print("|---:|---:|---|---:|---:|" + ("---:|" if unix else ""))
        print("\n".join(summary))
        for (pool, clients, mode, target), runs in results.items():
            for r in runs:
                if r.aborted:
                    print(f"  pool {pool}, {clients} clients, {mode} via {target}: {r.aborted}")

    def profile(self, bench: Any, pid: int) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            print("\npy-spy not found: pip install py-spy (skipping the profile)")
            return
        seconds = min(10, self.args.duration)
        prof = subprocess.Popen(
            [spy, "record", "-p", str(pid), "-o", str(self.args.profile), "--format", "raw", "-d", str(seconds),
             "-r", "100", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(0.5)
        mode = self.args.profile_mode
        res = bench(mode, seconds + 1)
        try:
            _, err = prof.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            prof.kill()
            _, err = prof.communicate()
        print(f"\nprofile: proxy {mode} under py-spy (100 Hz, {seconds}s): "
              f"{res.tps or 0:,.0f} tps; raw stacks in {self.args.profile}")  # fmt: skip
        if prof.returncode != 0 or not Path(self.args.profile).exists():
            print(f"py-spy failed: {err.decode()[-500:]}")
            return
        for line in summarise_profile(Path(self.args.profile), 100 * seconds):
            print("  " + line)

    def idle(self, target: str, addr: tuple[str, int], pid: int) -> None:
        n = self.args.idle
        time.sleep(1)
        before = rss_kb(pid)
        env = dict(os.environ, PGPASSWORD=self.password)
        hold = subprocess.Popen(
            [sys.executable, str(HERE / "hold.py"), "--host", addr[0], "--port", str(addr[1]), "--user", self.user,
             "--database", self.args.database, "--count", str(n), "--hold", "300"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, preexec_fn=_raise_nofile,
        )  # fmt: skip
        try:
            assert hold.stdout is not None and hold.stdin is not None
            line = hold.stdout.readline()
            if not line:
                print(f"{target}: hold.py exited without a report")
                return
            ready = json.loads(line)
            time.sleep(2)  # let the pooler settle (janitor tick, freed login buffers)
            during = rss_kb(pid)
            connected = ready["connected"]
            hold.stdin.write("close\n")
            hold.stdin.flush()
            hold.stdout.readline()
            time.sleep(3)
            after = rss_kb(pid)
            per = (during - before) * 1024 / connected if connected else float("nan")
            print(f"{target} (pid {pid}): {connected:,}/{n:,} idle clients connected in {ready['seconds']}s "
                  f"(failed {ready['failed']}{', ' + str(ready['errors']) if ready['errors'] else ''}); "
                  f"RSS {before:,} kB -> {during:,} kB with them (+{during - before:,} kB, "
                  f"{per / 1024:.2f} KiB per connection) -> {after:,} kB after they closed")  # fmt: skip
        finally:
            if hold.poll() is None:
                try:
                    hold.wait(10)
                except subprocess.TimeoutExpired:
                    hold.kill()
                    hold.wait()

    def close(self) -> None:
        for proc in self.pgbouncers.values():
            stop(proc)
        stop(self.borealis, timeout=60)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def _per_tx(r: Result) -> str:
    """Pooler CPU per transaction, user + system microseconds."""
    if r.cpu_s is None or r.user_s is None or not r.processed or r.aborted:
        return "-"
    return f"{1e6 * r.user_s / r.processed:.0f}+{1e6 * (r.cpu_s - r.user_s) / r.processed:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=15, help="seconds per pgbench run")
    ap.add_argument("--clients", type=int, nargs="+", default=[32, 200], help="pgbench clients (each value is run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--database", default="postgres", help="database to run in (made unless 'postgres')")
    ap.add_argument("--pool-size", type=int, nargs="+", default=[8, 16],
                    help="server connections per pooler (approximate; each value is run)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=1, help="repeat the interleaved matrix (order alternates)")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for the memory test (0: skip)")
    ap.add_argument("--profile", type=Path, help="py-spy raw output path (a separate, uncounted proxy run)")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="the pgbench modes to run")
    ap.add_argument("--profile-mode", default="select-only simple", choices=list(MODES),
                    help="the pgbench mode the profile run uses")  # fmt: skip
    ap.add_argument("--pgbouncer-unix", action="store_true",
                    help="also a PgBouncer per pool size that reaches postgres over its unix socket, as the proxy "
                         "does (a pg_hba line lets it log in there with SCRAM)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--src", help="run borealis from this tree (PYTHONPATH): build/compiled (scripts/build-compiled) "
                    "for the compiled build")  # fmt: skip
    ap.add_argument("--summarise", type=Path, help="only summarise an existing py-spy raw profile, then exit")
    ap.add_argument("--shared-session", action="store_true",
                    help="start Borealis, PgBouncer and pgbench in this script's session (one autogroup: the pooler "
                         "and pgbench share its CPU; what this bench did until 2026-12-07)")  # fmt: skip
    args = ap.parse_args()
    global OWN_SESSIONS
    OWN_SESSIONS = not args.shared_session
    for mode in set(MODES) - set(args.modes):
        del MODES[mode]
    if args.summarise:
        print("\n".join(summarise_profile(args.summarise, 1000)))
        return
    if os.geteuid() != 0:
        print("note: not root; PgBouncer is started as yourself", file=sys.stderr)
    b = Bench(args)
    # A hard bound on the whole run, whatever hangs: SIGALRM ends it, and `finally` stops what was started.
    runs = args.rounds * len(MODES) * len(b.names) * len(args.pool_size) * len(args.clients)
    budget = 600 + runs * (args.duration + 30) + (900 if args.idle else 0)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"run over {budget}s")))
    signal.alarm(budget)
    try:
        b.run()
    finally:
        signal.alarm(0)
        b.close()
    print(f"date {dt.date.today().isoformat()}")


if __name__ == "__main__":
    main()
