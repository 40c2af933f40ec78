"""One PostgreSQL server (one DB instance): its data directory, its log, its postmaster process.

Lifecycle, as the reconciler drives it::

    PostgresServer(datadir, binaries, port=...)  -> initdb()  -> start()  <-> stop()
                                                              reload(), status(), wait_exit()

The postmaster is a direct child of the Borealis process (not pg_ctl's daemon) with a parent-death signal,
so a crashed or SIGKILLed Borealis leaves no running postgres behind: each postmaster gets a fast shutdown.
A postmaster that still holds the data directory from an earlier run (started by hand, or surviving on a
system without parent-death signals) is stopped cleanly before ours starts.

Calls on one PostgresServer are not meant to overlap (the reconciler serializes work per instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._archive import RECOVERY_SIGNAL, prepare_archive
from ._binaries import Binaries
from ._config import (
    CAPACITY_FILE,
    SETTINGS_FILE,
    PidFile,
    conninfo,
    include_line,
    parse_pidfile,
    render_hba,
    render_ident,
    render_setting_lines,
    render_settings,
    socket_dir_for,
)
from ._errors import EngineError
from ._osuser import RunAs, current_user, ensure_traversable, give_to, service_user
from ._process import is_alive, looks_like_postmaster, run, spawn, wait_child
from ._replica import STANDBY_SIGNAL, mark_standby, rewind, take_basebackup, unmark_standby, write_passfile

__all__ = ["LOG_FILE", "PostgresServer", "ServerStatus"]

log = logging.getLogger(__name__)

LOG_FILE = "postgresql.log"
# PostgreSQL's shutdown modes and the signal the postmaster takes for each (see pg_ctl.c).
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
# After a stop times out we escalate to immediate, then SIGKILL, each given this long.
_ESCALATION_GRACE = 10.0
_POLL = 0.05
_LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class ServerStatus:
    """Whether a postmaster runs on the data directory, and its pid and port if so."""

    running: bool
    pid: int | None
    port: int | None


class PostgresServer:
    """One PostgreSQL server (one DB instance): data directory, logs, process."""

    def __init__(
        self,
        datadir: Path,
        binaries: Binaries,
        *,
        port: int,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
    ) -> None:
        """Describe a server; nothing is created or started until initdb() / start()."""
        self.datadir = Path(datadir).absolute()
        self.binaries = binaries
        self.port = port
        self.host = host
        # Beside the data directory rather than in it: pg_basebackup would otherwise copy the log to replicas.
        self.log_dir = (
            Path(log_dir).absolute() if log_dir is not None else self.datadir.with_name(self.datadir.name + ".log")
        )
        self.socket_dir = socket_dir_for(self.datadir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._user_resolved = False
        self._user: RunAs | None = None

    def __repr__(self) -> str:
        return f"PostgresServer({str(self.datadir)!r}, PostgreSQL {self.binaries.version}, port={self.port})"

    # -- files ---------------------------------------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        """The file the postmaster's output goes to."""
        return self.log_dir / LOG_FILE

    def is_initialized(self) -> bool:
        """Whether the data directory holds a cluster that initdb completed (PG_VERSION and pg_control exist)."""
        return (self.datadir / "PG_VERSION").is_file() and (self.datadir / "global" / "pg_control").is_file()

    def _run_as(self) -> RunAs | None:
        if not self._user_resolved:
            self._user = service_user()
            self._user_resolved = True
        return self._user

    def _prepare_dirs(self, *, sockets: bool) -> RunAs | None:
        """Create and hand over the directories the server needs; make their ancestors reachable."""
        user = self._run_as()
        if not self.datadir.exists():
            self.datadir.mkdir(parents=True, mode=0o700)
        give_to(self.datadir, user, 0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        give_to(self.log_dir, user, 0o700)
        if sockets:
            self._prepare_socket_dir(user)
        if user is not None:
            server_bindir = self.binaries.tool("postgres").parent
            ensure_traversable([self.datadir, self.log_dir, self.binaries.bindir, server_bindir], user)
        return user

    def _prepare_socket_dir(self, user: RunAs | None) -> None:
        path = self.socket_dir
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        # The name under /tmp is predictable, so refuse one that someone else planted (a symlink, or a
        # directory owned by another user) instead of putting the server's trust socket into it.
        st = path.lstat()
        owner = user.uid if user is not None else os.geteuid()
        if not path.is_dir() or path.is_symlink() or st.st_uid not in (owner, os.geteuid()):
            raise EngineError(f"refusing socket directory {path}: not a directory owned by us")
        give_to(path, user, 0o700)

    def _write_files(self, files: Mapping[str, str]) -> None:
        user = self._run_as()
        for name, content in files.items():
            path = self.datadir / name
            path.write_text(content)
            give_to(path, user, 0o600)

    def _write_auth(self) -> None:
        # Rewritten on every start, so a data directory from an older Borealis (whose pg_hba.conf trusted
        # the unix socket) or copied from another host gets today's rules before anyone can connect.
        self._write_files({"pg_hba.conf": render_hba(), "pg_ident.conf": render_ident(current_user())})

    def _write_config(self, settings: Mapping[str, str] | None) -> None:
        text = render_settings(host=self.host, port=self.port, socket_dir=self.socket_dir, settings=settings)
        self._write_files({SETTINGS_FILE: text})
        self._write_auth()
        conf = self.datadir / "postgresql.conf"
        if SETTINGS_FILE not in conf.read_text():
            with conf.open("a") as f:
                f.write(include_line())

    # -- initdb --------------------------------------------------------------------------------------------

    async def initdb(self, *, superuser: str, password: str, settings: Mapping[str, str] | None = None) -> None:
        """Create the cluster: UTF8, locale C, SCRAM for TCP, `superuser` with `password`, plus `settings`."""
        if self.is_initialized():
            raise EngineError(f"data directory {self.datadir} is already initialized")
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise EngineError(f"data directory {self.datadir} is not empty and holds no PostgreSQL cluster")
        user = self._prepare_dirs(sockets=False)
        # The password reaches initdb through a 0600 file, never argv or the environment (both are visible
        # to other users in /proc); the file is removed whatever happens.
        fd, pwfile = tempfile.mkstemp(prefix="borealis-pw-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            give_to(Path(pwfile), user, 0o600)
            started = time.monotonic()
            await run(
                [
                    self.binaries.tool("initdb"),
                    "--pgdata", self.datadir,
                    "--username", superuser,
                    "--pwfile", pwfile,
                    "--auth-host", "scram-sha-256",
                    "--auth-local", "peer",
                    "--encoding", "UTF8",
                    "--locale", "C",
                    "--no-instructions",
                ],
                user,
                timeout=600,
                what="initdb",
            )  # fmt: skip
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)
        self._write_config(settings)
        log.info("initialized %s in %.1fs", self.datadir, time.monotonic() - started)

    def configure(self, settings: Mapping[str, str]) -> None:
        """Rewrite our settings file with `settings` (replacing earlier ones); reload() or restart after."""
        self._write_config(settings)

    def set_capacity_settings(self, settings: Mapping[str, str]) -> None:
        """Write the settings that follow the instance's capacity (their own file, read before our settings file,
        so those win); reload() applies what can change without a restart, the rest waits for the next start."""
        user = self._run_as()
        path = self.datadir / CAPACITY_FILE
        text = render_setting_lines(settings, "Written by Borealis's scaler from the current capacity.")
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return
        tmp = path.with_name(CAPACITY_FILE + ".tmp")
        tmp.write_text(text)
        give_to(tmp, user, 0o600)
        tmp.replace(path)  # postgres never reads a half-written file
        conf = self.datadir / "postgresql.conf"
        text = conf.read_text()
        if CAPACITY_FILE not in text:
            # Before our settings file, so what it sets (a parameter group's work_mem) wins over capacity's.
            ours = include_line().strip("\n").splitlines()[-1]
            head, found, tail = text.partition(ours)
            text = (
                head + include_line(CAPACITY_FILE).lstrip("\n") + found + tail
                if found
                else text + include_line(CAPACITY_FILE)
            )
            conf.write_text(text)

    # -- start / stop --------------------------------------------------------------------------------------

    def _read_pidfile(self) -> PidFile | None:
        try:
            return parse_pidfile((self.datadir / "postmaster.pid").read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _foreign_postmaster(self) -> PidFile | None:
        """The postmaster.pid of a live postmaster on our datadir that is not our child, if there is one."""
        pidfile = self._read_pidfile()
        if pidfile is None or (self._proc is not None and pidfile.pid == self._proc.pid):
            return None
        if not is_alive(pidfile.pid):
            return None
        if not looks_like_postmaster(pidfile.pid, self.datadir):
            # The pid was reused by an unrelated process (or another cluster's postgres) after a crash.
            # PostgreSQL would refuse to start ("lock file already exists"), so the stale file goes.
            log.warning("removing stale %s/postmaster.pid (pid %d is not its postmaster)", self.datadir, pidfile.pid)
            with contextlib.suppress(FileNotFoundError):
                (self.datadir / "postmaster.pid").unlink()
            return None
        return pidfile

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _fail(self, message: str) -> EngineError:
        tail = self._log_tail()
        return EngineError(f"{message}\n{tail}" if tail else message)

    async def start(self, *, timeout: float = 60.0) -> None:
        """Start the postmaster as our child and wait until it accepts connections (idempotent).

        Call it from the event loop's thread: the parent-death signal is tied to the thread that forks.
        """
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = None
        if not self.is_initialized():
            raise EngineError(f"data directory {self.datadir} is not initialized")
        on_disk = (self.datadir / "PG_VERSION").read_text().strip()
        if on_disk != str(self.binaries.version):
            raise EngineError(
                f"data directory {self.datadir} is PostgreSQL {on_disk}, binaries are {self.binaries.version}"
            )
        if (earlier := self._foreign_postmaster()) is not None:
            log.warning("stopping postmaster pid %d left on %s by an earlier run", earlier.pid, self.datadir)
            await self._pg_ctl_stop("fast", timeout)
        user = self._prepare_dirs(sockets=True)
        self._write_auth()
        started = time.monotonic()
        with self.log_file.open("ab") as output:
            if user is not None:
                os.fchown(output.fileno(), user.uid, user.gid)
            # Listening options on the command line too: the constructor's port and host are authoritative
            # even if the config file on disk says otherwise (an instance moved to a new port).
            self._proc = spawn(
                [
                    self.binaries.tool("postgres"),
                    "-D", self.datadir,
                    "-p", str(self.port),
                    "-c", f"listen_addresses={self.host}",
                    "-c", f"unix_socket_directories={self.socket_dir}",
                ],
                user,
                output=output,
            )  # fmt: skip
        # Our copy of the log's descriptor is closed; the postmaster keeps its own.
        proc = self._proc
        deadline = started + timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                self._remove_socket_dir()
                raise self._fail(f"PostgreSQL on {self.datadir} exited during startup (code {code})")
            pidfile = self._read_pidfile()
            # "ready" once accepting connections; "standby" for a replica without hot_standby (as pg_ctl -w).
            if pidfile is not None and pidfile.pid == proc.pid and pidfile.status in ("ready", "standby"):
                break
            if time.monotonic() > deadline:
                await self.stop(mode="immediate", timeout=_ESCALATION_GRACE)
                raise self._fail(f"PostgreSQL on {self.datadir} did not start within {timeout:g}s")
            await asyncio.sleep(_POLL)
        log.info("started %s (pid %d) in %.2fs", self, proc.pid, time.monotonic() - started)

    async def stop(self, *, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop the server: smart, fast (default) or immediate; escalates if `timeout` passes. Idempotent."""
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"unknown shutdown mode {mode!r}; expected smart, fast or immediate")
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            # Not ours (or ours has exited): a postmaster from an earlier run may still hold the datadir.
            if self._foreign_postmaster() is not None:
                await self._pg_ctl_stop(mode, timeout)
            self._remove_socket_dir()
            return
        started = time.monotonic()
        steps = [(_STOP_SIGNALS[mode], timeout)]
        if mode != "immediate":
            steps.append((signal.SIGQUIT, _ESCALATION_GRACE))
        steps.append((signal.SIGKILL, _ESCALATION_GRACE))
        for n, (sig, wait) in enumerate(steps):
            if n > 0:
                log.warning("%s did not stop in time; sending %s", self, sig.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                await asyncio.wait_for(wait_child(proc), wait)
                break
            except TimeoutError:
                continue
        self._proc = None
        self._remove_socket_dir()
        log.info("stopped %s (%s) in %.2fs", self, mode, time.monotonic() - started)

    def _remove_socket_dir(self) -> None:
        # Called once no postmaster runs on the datadir. PostgreSQL removes its socket and lock files on a
        # clean shutdown but not after a crash; the directory under /tmp is ours alone (one per datadir).
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    async def _pg_ctl_stop(self, mode: str, timeout: float) -> None:
        await run(
            [
                self.binaries.tool("pg_ctl"),
                "stop",
                "-D",
                self.datadir,
                "-m",
                mode,
                "-w",
                "-t",
                str(int(timeout)),
            ],
            self._run_as(),
            timeout=timeout + 10,
            what=f"pg_ctl stop on {self.datadir}",
        )

    async def reload(self) -> None:
        """Make the server re-read its configuration files (SIGHUP to the postmaster)."""
        status = self.status()
        if not status.running or status.pid is None:
            raise EngineError(f"cannot reload {self.datadir}: PostgreSQL is not running")
        os.kill(status.pid, signal.SIGHUP)

    def status(self) -> ServerStatus:
        """Whether a postmaster runs on the datadir (ours or one from an earlier run), with pid and port."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            pidfile = self._read_pidfile()
            port = pidfile.port if pidfile is not None and pidfile.pid == proc.pid else None
            return ServerStatus(running=True, pid=proc.pid, port=port if port is not None else self.port)
        pidfile = self._foreign_postmaster()
        if pidfile is not None:
            return ServerStatus(running=True, pid=pidfile.pid, port=pidfile.port)
        return ServerStatus(running=False, pid=None, port=None)

    async def wait_exit(self) -> int:
        """Return the postmaster's exit code when it exits (for supervision); EngineError if not our child."""
        proc = self._proc
        if proc is None:
            raise EngineError(f"PostgreSQL on {self.datadir} was not started by this process")
        return await wait_child(proc)

    def dsn(self, *, user: str, password: str, dbname: str = "postgres") -> str:
        """A libpq conninfo string for psycopg, over TCP to this server's host and port."""
        return conninfo(host=self.host, port=self.port, user=user, password=password, dbname=dbname)

    def internal_conninfo(self, *, user: str, dbname: str = "postgres") -> str:
        """A libpq conninfo over this server's unix socket, with no password: for Borealis's own work.

        The socket authenticates by ``peer`` through an ident map that admits only the OS user running
        Borealis, as any role (``user``); for any other process the login fails. The socket directory is
        mode 0700 and owned by the service user, so this works from Borealis's processes only.

        The session's ``search_path`` is ``pg_catalog`` alone: these sessions are superusers, and a tenant
        with CREATE on a schema (public, or one named like the role, ``"$user"``) must not get an object of
        theirs (a view, a function, an operator that fits the arguments better) picked up by name.
        """
        text = conninfo(host=str(self.socket_dir), port=self.port, user=user, dbname=dbname)
        return f"{text} options='-c search_path=pg_catalog'"

    # -- replication ---------------------------------------------------------------------------------------

    async def promote(self, *, timeout: float = 60.0) -> None:
        """Promote a running standby and wait until it accepts writes (``pg_ctl promote -w``)."""
        await run(
            [self.binaries.tool("pg_ctl"), "promote", "-D", self.datadir, "-w", "-t", str(max(1, int(timeout)))],
            self._run_as(),
            timeout=timeout + 10,
            what=f"promoting {self.datadir}",
        )

    async def basebackup(self, source_dsn: str, *, timeout: float = 3600.0) -> None:
        """Fill this (empty) data directory from a primary with pg_basebackup, making it a standby.

        ``source_dsn`` is a replication conninfo (see :func:`replication_conninfo`); it becomes the standby's
        ``primary_conninfo`` only through :meth:`configure`, which the caller does next.
        """
        if self.is_initialized():
            raise EngineError(f"data directory {self.datadir} is already initialized")
        if self.datadir.exists():
            shutil.rmtree(self.datadir)  # a copy interrupted half-way: start it over
        user = self._prepare_dirs(sockets=False)
        await take_basebackup(self.binaries, self.datadir, source_dsn, user, timeout)

    async def rewind(self, source_dsn: str, *, timeout: float = 600.0) -> None:
        """Wind this stopped former primary back onto the timeline of the server ``source_dsn`` names."""
        await rewind(self.binaries, self.datadir, source_dsn, self._run_as(), timeout)

    def write_passfile(self, path: Path, username: str, password: str) -> None:
        """A libpq passfile only this server's OS user can read (for its replication connection)."""
        write_passfile(path, self._run_as(), username, password)

    def set_standby(self, standby: bool) -> None:
        """Whether the server starts as a standby (``standby.signal``) or as a primary."""
        if standby:
            mark_standby(self.datadir, self._run_as())
        else:
            unmark_standby(self.datadir)

    def is_standby(self) -> bool:
        """Whether the data directory is set to start as a standby."""
        return (self.datadir / STANDBY_SIGNAL).exists()

    def enable_wal_archiving(self, archive_dir: Path) -> None:
        """Make ``archive_dir`` ready for this server's archiver (owned by its OS user, reachable by it).

        The settings that archive into it come from :func:`archive_settings`, through :meth:`configure`.
        """
        user = self._run_as()
        prepare_archive(archive_dir, user)
        if user is not None:
            ensure_traversable([archive_dir], user)

    def set_recovery(self) -> None:
        """Make the next start an archive recovery (``recovery.signal``): see :func:`recovery_settings`."""
        path = self.datadir / RECOVERY_SIGNAL
        path.touch()
        give_to(path, self._run_as(), 0o600)
