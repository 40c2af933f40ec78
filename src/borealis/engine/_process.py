"""Running PostgreSQL programs: one-shot tools, and the postmaster as a direct child tied to our lifetime.

The postmaster is started with ``subprocess.Popen`` rather than an asyncio subprocess so that it does not
depend on one event loop's child watcher (uvloop's has no user=/group=, and tests drive one server from
several loops); waiting for it uses a pidfd on the loop that asks, falling back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from ._errors import EngineError
from ._osuser import RunAs

__all__ = ["child_env", "is_alive", "looks_like_postmaster", "run", "spawn", "wait_child"]

_PR_SET_PDEATHSIG = 1


_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


def child_env(user: RunAs | None) -> dict[str, str]:
    """The environment for PostgreSQL programs: a minimal, explicit one, nothing from the operator's shell.

    Whatever postgres inherits is readable from SQL by anyone who can read /proc/<pid>/environ of the
    postmaster (and shows in crash reports), so keys, tokens and PG* variables (which would silently change
    what postgres, pg_ctl or initdb do) stay behind: only a fixed PATH, the C locale (messages we show in
    errors stay English and parsable), the time zone (initdb derives the cluster's default from it) and the
    service user's identity.
    """
    if user is not None:
        # libpq tools read ~/.pgpass; root's HOME would only produce permission-denied noise.
        home, name = user.home, user.name
    else:
        try:
            entry = pwd.getpwuid(os.geteuid())
            home, name = entry.pw_dir, entry.pw_name
        except KeyError:  # an unnamed uid (some containers)
            home, name = "/", str(os.geteuid())
    env = {"PATH": _SAFE_PATH, "LANG": "C", "LC_ALL": "C", "HOME": home, "USER": name, "LOGNAME": name}
    tz = os.environ.get("TZ")
    if tz:
        env["TZ"] = tz
    return env


async def run(
    argv: Sequence[str | Path], user: RunAs | None, *, timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot tool (initdb, pg_ctl) in a worker thread; EngineError with its last error line."""
    args = [str(a) for a in argv]

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(user),
            cwd="/",
            # A tool dies with Borealis (kill -9 too): a base backup or copy left running would write into
            # the directory the next start makes again. The forking thread waits for it, so it outlives it.
            preexec_fn=_pdeathsig_setter(),
            # extra_groups=[] drops root's supplementary groups; Popen applies all three before preexec_fn.
            user=user.uid if user is not None else None,
            group=user.gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )

    try:
        result = await asyncio.to_thread(call)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{what} did not finish within {timeout:g}s") from exc
    except OSError as exc:
        raise EngineError(f"{what} could not run: {exc}") from exc
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"exit code {result.returncode}"
        raise EngineError(f"{what} failed: {detail}")
    return result


def _pdeathsig_setter() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None  # no PR_SET_PDEATHSIG elsewhere; supervision then relies on our own shutdown path
    # Load libc before fork: dlopen in the forked child of a threaded process can deadlock.
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_pdeathsig() -> None:
        # Runs in the child after Popen dropped privileges (a credential change clears the death signal, so
        # it must come after). SIGINT is PostgreSQL's "fast shutdown": if Borealis dies, even by SIGKILL,
        # the postmaster rolls back open transactions, checkpoints and exits, leaving no orphan.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before prctl took effect; nobody would supervise us

    return set_pdeathsig


def spawn(argv: Sequence[str | Path], user: RunAs | None, *, output: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start a long-running server process as a direct child of this thread, killed (SIGINT) if we die.

    PR_SET_PDEATHSIG fires when the forking *thread* exits, so call this from a thread that lives as long
    as the server should: the event loop's thread.
    """
    try:
        return subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=child_env(user),
            cwd="/",
            # A session of its own: a Ctrl-C at the terminal must reach Borealis, which then stops its
            # servers in order, not every postgres at once behind its back.
            start_new_session=True,
            preexec_fn=_pdeathsig_setter(),
            # extra_groups=[] drops root's supplementary groups; Popen applies all three before preexec_fn.
            user=user.uid if user is not None else None,
            group=user.gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )
    except OSError as exc:
        raise EngineError(f"cannot start {argv[0]}: {exc}") from exc


def is_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as dead: it is only waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (not Linux): trust kill()
    # The state follows the parenthesised command name, which may itself contain spaces or parentheses.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")


def looks_like_postmaster(pid: int, datadir: Path) -> bool:
    """Whether live `pid` is a postmaster on `datadir`; True when we cannot tell, so a real one is never missed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    program = cmdline.split(b"\0", 1)[0]
    if os.path.basename(program) not in (b"postgres", b"postmaster"):
        return False
    # A postmaster's working directory is its data directory (it chdirs there at startup).
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return True
    return os.path.realpath(cwd) == os.path.realpath(datadir)


async def wait_child(proc: subprocess.Popen[bytes], *, poll_interval: float = 0.1) -> int:
    """Wait, without blocking the loop, until `proc` exits; reap it and return its exit code."""
    code = proc.poll()
    if code is not None:
        return code
    pidfd = -1
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(proc.pid)
    if pidfd < 0:
        while (code := proc.poll()) is None:
            await asyncio.sleep(poll_interval)
        return code
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    try:
        # A pidfd becomes readable when the process exits: no thread, no SIGCHLD handler, any loop.
        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    return proc.wait()
