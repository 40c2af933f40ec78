"""The `borealis` command: up, env, status, psql, password.

`up` runs the app in the foreground with progress on the terminal; the other commands talk to a running
Borealis through its AWS API, as any SDK would, with the admin credentials from the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from borealis import __version__
from borealis._build import build_name
from borealis.config import ConfigError, Settings, default_data_dir, load_settings

__all__ = ["main"]


class CliError(Exception):
    """A failure to report on one line, without a traceback."""


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"borealis: {message}", file=sys.stderr)
    raise SystemExit(code)


def _settings(args: argparse.Namespace) -> Settings:
    flags = {
        "data_dir": getattr(args, "data_dir", None),
        "api_port": getattr(args, "api_port", None),
        "port_base": getattr(args, "port_base", None),
        "host": getattr(args, "host", None),
        "region": getattr(args, "region", None),
        "postgres": getattr(args, "postgres", None),
        "log_level": getattr(args, "log_level", None),
        "workers": getattr(args, "workers", None),
        "min_auto_pause": getattr(args, "min_auto_pause", None),
        "resume_wait": getattr(args, "resume_wait", None),
        "tls": True if getattr(args, "tls", False) else None,
    }
    if getattr(args, "no_default_cluster", False):
        flags["create_default_cluster"] = False
    config = Path(args.config) if getattr(args, "config", None) else None
    return load_settings(flags, config_file=config)


# ------------------------------------------------------------------------------------------------- up


def _raise_open_files_limit() -> None:
    """Every client of an endpoint or proxy is a file descriptor: take the soft limit up to the hard one
    (a default soft limit of 1,024 would stop a proxy at about a thousand clients)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _cmd_up(args: argparse.Namespace) -> None:
    settings = _settings(args)
    _setup_logging(settings)
    _raise_open_files_limit()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - platforms without uvloop
        runner = asyncio.run
    code = runner(_up(settings))
    raise SystemExit(code)


def _setup_logging(settings: Settings) -> None:
    from borealis.store import private_dir, private_file

    private_dir(settings.data_dir)
    private_file(settings.data_dir / "borealis.log")  # it names clusters, users and clients: not for others
    handler = logging.FileHandler(settings.data_dir / "borealis.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("borealis: %(levelname)s: %(message)s"))
    root.addHandler(console)


async def _up(settings: Settings) -> int:
    from borealis.app import App, StartupError
    from borealis.control import Event
    from borealis.engine import EngineError

    started = time.monotonic()

    def progress(event: Event) -> None:
        where = event.cluster + (f"/{event.instance}" if event.instance else "")
        print(f"  [{time.monotonic() - started:5.1f}s] {where}: {event.message}", flush=True)

    print(f"Borealis {__version__} ({build_name()}): starting in {settings.data_dir}", flush=True)
    app = App(settings, on_event=progress)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await app.start()
        except (StartupError, EngineError, OSError) as exc:
            print(f"borealis: {exc}", file=sys.stderr)
            await app.stop()
            return 1
        waiter = asyncio.ensure_future(app.ready.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if app.ready.is_set():
            print(_banner(app, time.monotonic() - started), flush=True)
            await stop.wait()
        waiter.cancel()
        stopper.cancel()
        print("Borealis: stopping (postgres servers first)...", flush=True)
        await app.stop()
        print("Borealis: stopped.", flush=True)
        return 0
    except BaseException:
        await app.stop()
        raise


def _banner(app: Any, elapsed: float) -> str:
    s: Settings = app.settings
    lines = [f"Borealis is ready in {elapsed:.1f}s.", ""]
    lines.append(f"  AWS API     {s.api_url}   (credentials: {s.data_dir / 'credentials'})")
    control = app.control
    for cluster in control.clusters.values():
        lines.append(
            f"  cluster {cluster['id']} ({cluster['engine']} {cluster['engine_version']}, {cluster['status']})"
        )
        lines.append(f"    writer endpoint   {s.host}:{cluster['port']}")
        lines.append(f"    reader endpoint   {cluster['reader_host']}:{cluster['reader_port']}")
        for inst in control.cluster_instances(cluster["id"]):
            lines.append(f"    instance {inst['id']}   {s.host}:{inst['port']}")
    default = control.cluster(s.default_cluster)
    lines.append("")
    lines.append("Connect:")
    # The commands must find this data directory when copied as printed.
    env_dir = "" if s.data_dir == default_data_dir() else f" --data-dir {s.data_dir}"
    if default is not None:
        lines.append(f"  borealis psql {default['id']}{env_dir}")
        lines.append(
            f'  PGPASSWORD="$(borealis password {default["id"]}{env_dir})" psql -h {s.host} '
            f"-p {default['port']} -U {default['master_username']} {default.get('database_name') or 'postgres'}"
        )
    # The secret key stays in the credentials file (0600): a terminal's scrollback or a CI log is no place for it.
    lines.append("AWS SDKs and the aws CLI (the exports, with the key from the credentials file):")
    lines.append(f'  eval "$(borealis env{env_dir})"')
    lines.append("")
    lines.append("Ctrl-C stops Borealis and every postgres it runs.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- env


def _credentials(settings: Settings) -> tuple[str, str]:
    from borealis.iam._keys import read_credentials_file

    creds = read_credentials_file(settings.data_dir / "credentials")
    if creds is None:
        raise CliError(f"no credentials in {settings.data_dir} yet: run `borealis up` first")
    return creds


def _api_url(settings: Settings) -> str:
    state_file = settings.data_dir / "borealis.json"
    try:
        return str(json.loads(state_file.read_text())["api_url"])
    except (OSError, ValueError, KeyError):
        return settings.api_url


def _exports(settings: Settings, creds: tuple[str, str]) -> list[str]:
    url = _api_url(settings)
    lines = [
        f"export AWS_ENDPOINT_URL={url}",
        f"export AWS_ACCESS_KEY_ID={creds[0]}",
        f"export AWS_SECRET_ACCESS_KEY={creds[1]}",
        f"export AWS_REGION={settings.region}",
        f"export AWS_DEFAULT_REGION={settings.region}",
    ]
    if url.startswith("https:"):
        # The SDKs (boto3, the aws CLI, JavaScript v3, Java v2) trust the certificates this file lists.
        lines.append(f"export AWS_CA_BUNDLE={shlex.quote(str(settings.ca_bundle))}")
    return lines


def _running_pid(settings: Settings) -> int | None:
    """The pid of the Borealis running on this data directory, from its ``borealis.json`` (None: not running)."""
    try:
        pid = int(json.loads((settings.data_dir / "borealis.json").read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no state file (stopped cleanly), or its process is gone (killed)
    return pid


def _cmd_env(args: argparse.Namespace) -> None:
    """Print the exports, and as comments where the running Borealis and its clusters are.

    The exports also put this installation's ``bin`` directory on PATH, so that after
    ``eval "$(.venv/bin/borealis env)"`` a second shell has ``borealis`` (and the venv's ``aws``).
    """
    settings = _settings(args)
    lines = _exports(settings, _credentials(settings))
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "borealis").exists() and str(bin_dir) not in os.environ.get("PATH", "").split(os.pathsep):
        lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
    pid = _running_pid(settings)
    if pid is None:
        print(f"borealis: not running on {settings.data_dir}: start it with `borealis up`", file=sys.stderr)
        print("\n".join(lines))
        return
    where = "" if settings.data_dir == default_data_dir() else f" --data-dir {shlex.quote(str(settings.data_dir))}"
    notes = [f"# Borealis (pid {pid}) on {settings.data_dir}: AWS API at {_api_url(settings)}"]
    with contextlib.suppress(CliError):
        for c in _call(_client(settings, "rds"), "describe_db_clusters")["DBClusters"]:
            name = c["DBClusterIdentifier"]
            notes.append(
                f"# cluster {name}: writer {c['Endpoint']}:{c['Port']}, reader {c['ReaderEndpoint']}:{c['Port']},"
                f" user {c['MasterUsername']} (borealis psql {name}{where}; borealis password {name}{where})"
            )
    print("\n".join(notes + lines))


# ------------------------------------------------------------------------------------------------- API clients


def _client(settings: Settings, service: str) -> Any:
    import botocore.session
    from botocore.config import Config

    creds = _credentials(settings)
    session = botocore.session.get_session()
    return session.create_client(
        service,
        region_name=settings.region,
        endpoint_url=_api_url(settings),
        verify=str(settings.ca_bundle) if _api_url(settings).startswith("https:") else None,
        aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1],
        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=30),
    )


def _call(client: Any, operation: str, **params: Any) -> Any:
    import botocore.exceptions

    try:
        return getattr(client, operation)(**params)
    except botocore.exceptions.EndpointConnectionError:
        raise CliError("Borealis is not running here: start it with `borealis up`") from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        raise CliError(f"{err.get('Code')}: {err.get('Message')}") from None


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in out)


def _cmd_status(args: argparse.Namespace) -> None:
    settings = _settings(args)
    rds = _client(settings, "rds")
    clusters = _call(rds, "describe_db_clusters")["DBClusters"]
    instances = _call(rds, "describe_db_instances")["DBInstances"]
    rows = []
    for c in clusters:
        scaling = c.get("ServerlessV2ScalingConfiguration") or {}
        acu = f"{scaling.get('MinCapacity')}-{scaling.get('MaxCapacity')}" if scaling else "-"
        rows.append(
            [
                c["DBClusterIdentifier"],
                c["Status"],
                c["EngineVersion"],
                f"{c['Endpoint']}:{c['Port']}",
                f"{c['ReaderEndpoint']}:{c['Port']}",
                acu,
            ]
        )
    print(_table(rows, ["CLUSTER", "STATUS", "VERSION", "WRITER", "READER", "ACU"]))
    print()
    rows = [
        [
            i["DBInstanceIdentifier"],
            i.get("DBClusterIdentifier", "-"),
            i["DBInstanceStatus"],
            i["DBInstanceClass"],
            "writer"
            if any(
                m["DBInstanceIdentifier"] == i["DBInstanceIdentifier"] and m["IsClusterWriter"]
                for c in clusters
                for m in c["DBClusterMembers"]
            )
            else "reader",
            f"{i['Endpoint']['Address']}:{i['Endpoint']['Port']}",
        ]
        for i in instances
    ]
    lags = _replica_lags(settings, [r[0] for r in rows if r[4] == "reader"])
    for row in rows:
        row.append(lags.get(row[0], "-"))
    print(_table(rows, ["INSTANCE", "CLUSTER", "STATUS", "CLASS", "ROLE", "ENDPOINT", "LAG"]))


def _replica_lags(settings: Settings, readers: list[str]) -> dict[str, str]:
    """Each reader's latest AuroraReplicaLag (the writer measures it every second), as text for a table."""
    if not readers:
        return {}
    import datetime as dt

    cloudwatch = _client(settings, "cloudwatch")
    end = dt.datetime.now(dt.UTC)
    queries = [
        {
            "Id": f"r{n}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/RDS",
                    "MetricName": "AuroraReplicaLag",
                    "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": iid}],
                },
                "Period": 1,
                "Stat": "Maximum",
            },
        }
        for n, iid in enumerate(readers)
    ]
    try:
        out = cloudwatch.get_metric_data(
            MetricDataQueries=queries,
            StartTime=end - dt.timedelta(seconds=30),
            EndTime=end,
            ScanBy="TimestampDescending",
        )
    except Exception:  # lag is a nicety of `status`: without metrics the table still shows
        return {}
    lags = {}
    for result in out.get("MetricDataResults", []):
        values = result.get("Values") or []
        if values:
            lags[readers[int(result["Id"][1:])]] = f"{values[0]:.0f} ms"
    return lags


def _master(settings: Settings, cluster_id: str) -> tuple[dict[str, Any], str | None]:
    rds = _client(settings, "rds")
    cluster = _call(rds, "describe_db_clusters", DBClusterIdentifier=cluster_id)["DBClusters"][0]
    secret = cluster.get("MasterUserSecret")
    if not secret:
        return cluster, None
    sm = _client(settings, "secretsmanager")
    value = json.loads(_call(sm, "get_secret_value", SecretId=secret["SecretArn"])["SecretString"])
    return cluster, str(value["password"])


def _cmd_password(args: argparse.Namespace) -> None:
    settings = _settings(args)
    _, password = _master(settings, args.cluster or settings.default_cluster)
    if password is None:
        raise CliError("this cluster's master password is not managed by Secrets Manager; Borealis does not show it")
    print(password)


def _cmd_psql(args: argparse.Namespace) -> None:
    settings = _settings(args)
    cluster, password = _master(settings, args.cluster or settings.default_cluster)
    psql = _find_psql(settings)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    argv = [
        psql,
        "-h",
        cluster["Endpoint"],
        "-p",
        str(cluster["Port"]),
        "-U",
        cluster["MasterUsername"],
        "-d",
        args.dbname or cluster.get("DatabaseName") or "postgres",
        *args.psql_args,
    ]
    os.execvpe(psql, argv, env)


def _find_psql(settings: Settings) -> str:
    try:
        from borealis.engine import Binaries

        return str(Binaries.find(None if settings.postgres == "embedded" else settings.postgres).tool("psql"))
    except Exception:
        found = shutil.which("psql")
        if found is None:
            raise CliError("psql not found") from None
        return found


# ------------------------------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="data directory (default: per-user, $BOREALIS_DATA_DIR)")
    p.add_argument("--config", help="TOML settings file (default: DATA_DIR/borealis.toml, $BOREALIS_CONFIG)")
    p.add_argument("--region", help="AWS region to report (default us-east-1, $BOREALIS_REGION)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="borealis", description="A self-hosted Aurora PostgreSQL Serverless v2.")
    parser.add_argument("--version", action="version", version=f"borealis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run Borealis in the foreground")
    _common(up)
    up.add_argument("--api-port", type=int, help="port of the HTTP API (default 4600, $BOREALIS_API_PORT)")
    up.add_argument(
        "--port-base",
        type=int,
        help="first port for PostgreSQL endpoints (default 15432, $BOREALIS_PORT_BASE)",
    )
    up.add_argument("--host", help="address to listen on (default 127.0.0.1, $BOREALIS_HOST)")
    up.add_argument(
        "--postgres", help='default engine: "embedded" (18), "embedded:16", "embedded:17", a bin dir or pg_config'
    )
    up.add_argument("--no-default-cluster", action="store_true", help="do not create the `default` cluster")
    up.add_argument(
        "--tls",
        action="store_true",
        help="serve the AWS API over HTTPS with a certificate from DATA_DIR/ca/root.crt ($BOREALIS_TLS)",
    )
    up.add_argument("--log-level", help="log level for DATA_DIR/borealis.log (default info)")
    up.add_argument(
        "--workers",
        type=int,
        help="HTTP API processes on the API port (default: one per CPU but one; 1 disables workers, $BOREALIS_WORKERS)",
    )
    up.add_argument(
        "--min-auto-pause",
        type=int,
        metavar="SECONDS",
        help="smallest SecondsUntilAutoPause accepted (default 300 as AWS; $BOREALIS_MIN_AUTO_PAUSE)",
    )
    up.add_argument(
        "--resume-wait",
        type=int,
        metavar="MS",
        help="ms a Data API call to a paused cluster waits for it (default 0: fail fast as AWS; $BOREALIS_RESUME_WAIT)",
    )
    up.set_defaults(func=_cmd_up)

    env = sub.add_parser("env", help="print the exports for AWS SDKs and the aws CLI")
    _common(env)
    env.set_defaults(func=_cmd_env)

    status = sub.add_parser("status", help="show clusters and instances")
    _common(status)
    status.set_defaults(func=_cmd_status)

    psql = sub.add_parser("psql", help="open psql on a cluster's writer endpoint with its master secret")
    _common(psql)
    psql.add_argument("cluster", nargs="?", help="cluster identifier (default: default)")
    psql.add_argument("-d", "--dbname", help="database (default: the cluster's DatabaseName or postgres)")
    psql.add_argument("psql_args", nargs="*", help="further psql arguments, after --")
    psql.set_defaults(func=_cmd_psql)

    password = sub.add_parser("password", help="print a cluster's managed master password")
    _common(password)
    password.add_argument("cluster", nargs="?", help="cluster identifier (default: default)")
    password.set_defaults(func=_cmd_password)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `borealis` command."""
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:  # everything after `--` goes to psql untouched
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    if hasattr(args, "psql_args"):
        args.psql_args = [*args.psql_args, *extra]
    try:
        args.func(args)
    except (CliError, ConfigError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
