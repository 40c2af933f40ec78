"""The web console: an ASGI app under ``/console/`` on the API port, calling the domain directly.

Pages are server-rendered HTML (:mod:`._html`); the cluster page's charts and tables refresh from small JSON
endpoints under ``/console/api/`` with ``console.js`` and the vendored uPlot. It reads the control plane's
records, the event log, the metrics store, the proxy manager and Secrets Manager in this process; the query
editor runs SQL through :meth:`DataApi.execute_statement`, the Data API's own code path with its limits; the
cluster actions call the same RDS operation handlers the signed API calls (with the session's access key in
their request context), so their validation and authorisation are the API's, not a copy of them.

Rules (each has a test in tests/integration/console/):
- no session, no console: pages redirect to the sign-in page (303), JSON endpoints and POSTs answer 401;
- every POST but sign-in carries the session's CSRF token (a form field ``csrf`` or the ``X-CSRF-Token``
  header) and, when the browser sends one, an ``Origin`` naming this host; otherwise 403;
- every value shown is escaped (:func:`._html.esc`) or set as text by the scripts, and the
  Content-Security-Policy allows scripts from ``/console/static/`` only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import psycopg

from borealis.aws import AWSError, Handler, RequestContext
from borealis.dataapi import DataApiError
from borealis.insights import Insights

from ._html import Raw, esc, hidden, layout, link, table, url
from ._sessions import COOKIE, KeySource, Session, Sessions

__all__ = ["Console"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
_NAMESPACE = "AWS/RDS"
CHARTS = (
    ("ServerlessDatabaseCapacity", "Capacity (ACU)"),
    ("CPUUtilization", "CPU utilization (%)"),
    ("DatabaseConnections", "Database connections"),
    ("AuroraReplicaLag", "Replica lag (ms)"),
)
"""The cluster page's charts: metric name and title."""

ACTIONS = {
    "add-reader": "Add reader",
    "failover": "Failover",
    "snapshot": "Take snapshot",
    "stop": "Stop",
    "start": "Start",
    "modify-capacity": "Modify capacity",
}
"""The cluster actions, by form value, with their button labels."""


class ControlSource(Protocol):
    """What the console reads from the control plane (:class:`borealis.control.ControlPlane`)."""

    @property
    def events(self) -> Any: ...

    @property
    def store(self) -> Any: ...

    def cluster(self, ident: str) -> dict[str, Any] | None: ...

    def cluster_instances(self, cluster_id: str) -> list[dict[str, Any]]: ...

    def server(self, instance_id: str) -> Any: ...


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    cookies: dict[str, str]
    session: Session | None = None
    form: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: bytes = b"text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _json(status: int, value: Any) -> _Reply:
    return _Reply(status, json.dumps(value, separators=(",", ":")).encode(), b"application/json")


def _redirect(location: str) -> _Reply:
    return _Reply(303, b"", headers=[(b"location", location.encode())])


def _first(values: Mapping[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in values.items() if v}


class Console:
    """The console's ASGI app; :meth:`handles` says which paths are its own."""

    def __init__(
        self,
        *,
        control: ControlSource,
        data_api: Any,
        secrets: Any,
        metrics: Any,
        rds: Mapping[str, Handler],
        proxies: Any,
        keys: KeySource,
        region: str,
        account_id: str,
        secure: bool = False,
        admin_user: str = "rdsadmin",
        insights: Insights | None = None,
    ) -> None:
        """``secure``: the API is served over TLS, so the cookie is marked Secure too. ``admin_user`` is the
        role Borealis's internal login uses (pg_stat_activity); ``insights`` is Performance Insights'
        domain API (:class:`borealis.insights.Insights`), where this Borealis has it."""
        self.control = control
        self.data_api = data_api
        self.secrets = secrets
        self.metrics = metrics
        self.rds = rds
        self.proxies = proxies
        self.sessions = Sessions(keys)
        self.region = region
        self.account_id = account_id
        self.secure = secure
        self.admin_user = admin_user
        self.insights = insights
        self._static: dict[str, tuple[bytes, bytes]] = {}

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is the console's."""
        return path == "/console" or path.startswith("/console/")

    # ----------------------------------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (http only)."""
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        cookies: dict[str, str] = {}
        try:
            jar = SimpleCookie(headers.get("cookie", ""))
            cookies = {k: m.value for k, m in jar.items()}
        except CookieError:
            pass
        query = _first(parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        request = _Request(scope["method"], scope["path"], query, headers, bytes(body), cookies)
        try:
            reply = await self._serve(request)
        except Exception:
            log.exception("console: %s %s", request.method, request.path)
            reply = _Reply(500, layout("Something went wrong", "<p>The console failed; see the Borealis log.</p>"))
        out = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())]
        out += _SECURITY_HEADERS + reply.headers
        if not any(name == b"cache-control" for name, _ in reply.headers):
            out.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body})

    async def _serve(self, r: _Request) -> _Reply:
        path = r.path
        if path == "/console":
            return _redirect("/console/")
        if path.startswith("/console/static/") and r.method in ("GET", "HEAD"):
            return self._static_file(path.removeprefix("/console/static/"))
        if r.method == "POST":
            declared = r.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > len(r.body):
                # The HTTP server drops unsigned bodies over 64 KiB as they arrive (docs/security.md item 4).
                return _Reply(413, layout("Too large", "<p>The console takes requests of up to 64 KiB.</p>"))
            if not self._same_origin(r):
                return _Reply(403, layout("Refused", "<p>This request came from another site.</p>"))
            if r.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                r.form = _first(parse_qs(r.body.decode("utf-8", "replace"), keep_blank_values=True))
        if path == "/console/sign-in":
            return self._sign_in(r)
        r.session = self.sessions.get(r.cookies.get(COOKIE))
        api = path.startswith("/console/api/")
        if r.session is None:
            if api:
                return _json(401, {"message": "Sign in to the console first."})
            if r.method == "GET":
                return _redirect("/console/sign-in")
            return _Reply(401, layout("Signed out", '<p>Sign in first: <a href="/console/sign-in">Sign in</a></p>'))
        if r.method == "POST":
            sent = r.form.get("csrf") or r.headers.get("x-csrf-token")
            if not self.sessions.csrf_ok(r.session, sent):
                message = "The request did not carry this session's CSRF token."
                if api:
                    return _json(403, {"message": message})
                return _Reply(403, layout("Refused", f"<p>{esc(message)}</p>", csrf=r.session.csrf))
        return await self._route(r)

    async def _route(self, r: _Request) -> _Reply:
        parts = [p for p in r.path.removeprefix("/console/").split("/") if p]
        get = r.method in ("GET", "HEAD")
        match parts:
            case [] if get:
                return self._clusters_page(r)
            case ["sign-out"] if r.method == "POST":
                self.sessions.sign_out(r.cookies.get(COOKIE))
                reply = _redirect("/console/sign-in")
                reply.headers.append((b"set-cookie", self._cookie("", max_age=0)))
                return reply
            case ["clusters", cid] if get:
                return self._cluster_page(r, cid)
            case ["clusters", cid, "confirm"] if get:
                return self._confirm_page(r, cid)
            case ["clusters", cid, "actions"] if r.method == "POST":
                return await self._action(r, cid)
            case ["query"] if get:
                return self._query_page(r, None)
            case ["query"] if r.method == "POST":
                return self._query_page(r, await self._run_query(r.form))
            case ["proxies"] if get:
                return self._proxies_page(r)
            case ["insights"] if get:
                return await self._insights_page(r)
            case ["api", "clusters"] if get:
                return _json(200, {"clusters": [self._cluster_summary(c) for c in self._clusters()]})
            case ["api", "clusters", cid] if get:
                doc = self.control.cluster(cid)
                if doc is None:
                    return _json(404, {"message": f"DBCluster {cid} not found."})
                return _json(200, self._cluster_summary(doc))
            case ["api", "clusters", cid, "metrics"] if get:
                return self._metrics_json(r, cid)
            case ["api", "clusters", cid, "events"] if get:
                return _json(200, {"events": self._events(cid)})
        if parts and parts[0] == "api":
            return _json(404, {"message": "Not found."})
        return _Reply(404, layout("Not found", "<p>No such console page.</p>", csrf=self._csrf(r)))

    @staticmethod
    def _csrf(r: _Request) -> str | None:
        return None if r.session is None else r.session.csrf

    @staticmethod
    def _same_origin(r: _Request) -> bool:
        origin = r.headers.get("origin")
        if origin is None:
            return True  # not sent by every browser on same-origin form posts; SameSite and the token remain
        return urlsplit(origin).netloc == r.headers.get("host", "")

    def _static_file(self, name: str) -> _Reply:
        found = self._static.get(name)
        if found is None:
            path = _STATIC_DIR / name
            kind = _STATIC_TYPES.get(path.suffix)
            if "/" in name or name.startswith(".") or kind is None or not path.is_file():
                return _Reply(404, b"Not Found", b"text/plain; charset=utf-8")
            found = self._static[name] = (path.read_bytes(), kind.encode())
        body, kind_bytes = found
        return _Reply(200, body, kind_bytes, headers=[(b"cache-control", b"max-age=300")])

    def _cookie(self, value: str, *, max_age: int | None = None) -> bytes:
        parts = [f"{COOKIE}={value}", "Path=/console/", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts).encode()

    # ----------------------------------------------------------------------------------------- sign-in

    def _sign_in(self, r: _Request) -> _Reply:
        error = ""
        status = 200
        if r.method == "POST":
            session_id = self.sessions.sign_in(
                r.form.get("access_key_id", "").strip(),
                r.form.get("secret_access_key", ""),
                r.form.get("session_token", "").strip(),
            )
            if session_id is not None:
                reply = _redirect("/console/")
                reply.headers.append((b"set-cookie", self._cookie(session_id)))
                return reply
            status = 401
            log.info("console: a sign-in with access key %r failed", r.form.get("access_key_id", "")[:32])
            error = '<p role="alert" class="error">The access key ID or secret access key is wrong.</p>'
        elif r.method not in ("GET", "HEAD"):
            return _Reply(405, layout("Sign in", "<p>Use the form.</p>"))
        body = (
            f"{error}"
            '<form method="post" action="/console/sign-in" class="stack">'
            '<label for="akid">Access key ID</label>'
            '<input id="akid" name="access_key_id" autocomplete="username" required>'
            '<label for="secret">Secret access key</label>'
            '<input id="secret" name="secret_access_key" type="password" autocomplete="current-password" required>'
            '<label for="token">Session token (temporary keys only)</label>'
            '<input id="token" name="session_token" type="password" autocomplete="off">'
            '<button type="submit">Sign in</button></form>'
            "<p>Your keys are in <code>DATA_DIR/credentials</code>; <code>borealis env</code> prints them.</p>"
        )
        return _Reply(status, layout("Sign in", body))

    # ----------------------------------------------------------------------------------------- clusters

    def _clusters(self) -> list[dict[str, Any]]:
        docs = self.control.store.table("clusters").values()
        return sorted((d for d in docs if d.get("status") != "deleted"), key=lambda d: str(d["id"]))

    def _latest(self, name: str, dims: Mapping[str, str], window: float = 60.0) -> float | None:
        now = time.time()
        points = self.metrics.query(_NAMESPACE, name, dims, now - window, now + 1, 1, now=now)
        if not points:
            return None
        value: float | None = points[-1].statistic("Average")
        return value

    def _instance_summary(self, inst: Mapping[str, Any]) -> dict[str, Any]:
        status = str(inst.get("status", ""))
        if inst.get("paused"):
            status = "paused"
        return {
            "id": inst["id"],
            "role": "Writer instance" if inst.get("role") == "writer" else "Reader instance",
            "status": status,
            "endpoint": f"127.0.0.1:{inst.get('port')}",
            "capacity": self._latest("ServerlessDatabaseCapacity", {"DBInstanceIdentifier": str(inst["id"])}),
            "tier": inst.get("promotion_tier"),
        }

    def _cluster_summary(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        cid = str(doc["id"])
        instances = sorted(self.control.cluster_instances(cid), key=lambda i: (i.get("role") != "writer", i["id"]))
        scaling = doc.get("scaling") or {}
        status = str(doc.get("status", ""))
        return {
            "id": cid,
            "status": status,
            "engine": f"{doc.get('engine', '')} {doc.get('engine_version', '')}".strip(),
            "writer_endpoint": f"127.0.0.1:{doc.get('port')}",
            "reader_endpoint": f"{doc.get('reader_host', '127.0.0.2')}:{doc.get('reader_port') or doc.get('port')}",
            "min_capacity": scaling.get("min"),
            "max_capacity": scaling.get("max"),
            "capacity": self._latest("ServerlessDatabaseCapacity", {"DBClusterIdentifier": cid}),
            "data_api": bool(doc.get("http_endpoint")),
            "master_secret": doc.get("master_secret_arn"),
            "instances": [self._instance_summary(i) for i in instances],
        }

    def _clusters_page(self, r: _Request) -> _Reply:
        rows: list[list[object]] = []
        for doc in self._clusters():
            c = self._cluster_summary(doc)
            rows.append(
                [
                    link(url("clusters", c["id"]), c["id"]),
                    "Regional cluster",
                    _live("status", c["id"], c["status"]),
                    c["writer_endpoint"],
                    _live("capacity", c["id"], _acu(c["capacity"])),
                    f"{_acu(c['min_capacity'])} to {_acu(c['max_capacity'])}",
                ]
            )
            for i in c["instances"]:
                rows.append(
                    [
                        Raw(f"&nbsp;&nbsp;{esc(i['id'])}"),
                        i["role"],
                        _live("status", i["id"], i["status"]),
                        i["endpoint"],
                        _live("capacity", i["id"], _acu(i["capacity"])),
                        "",
                    ]
                )
        headers = ["DB identifier", "Role", "Status", "Endpoint", "Capacity now (ACU)", "Min to max (ACU)"]
        body = table("Clusters", headers, rows, empty="No clusters.")
        page = layout("Clusters", body, csrf=self._csrf(r), active="clusters", scripts=("console.js",))
        return _Reply(200, page)

    def _cluster_page(self, r: _Request, cid: str) -> _Reply:
        doc = self.control.cluster(cid)
        if doc is None:
            return _Reply(404, layout("Not found", f"<p>DBCluster {esc(cid)} not found.</p>", csrf=self._csrf(r)))
        c = self._cluster_summary(doc)
        done = r.query.get("done")
        notice = ""
        if done in ACTIONS:
            notice = f'<p role="status" class="notice">{esc(ACTIONS[done])}: requested.</p>'
        summary = (
            f'<dl class="summary" id="summary" data-cluster="{esc(cid)}">'
            f'<dt>Status</dt><dd id="cluster-status">{esc(c["status"])}</dd>'
            f"<dt>Engine</dt><dd>{esc(c['engine'])}</dd>"
            f"<dt>Writer endpoint</dt><dd>{esc(c['writer_endpoint'])}</dd>"
            f"<dt>Reader endpoint</dt><dd>{esc(c['reader_endpoint'])}</dd>"
            f"<dt>Capacity (min to max)</dt><dd>{esc(_acu(c['min_capacity']))} to "
            f"{esc(_acu(c['max_capacity']))} ACU</dd>"
            f"<dt>Data API</dt><dd>{'enabled' if c['data_api'] else 'disabled'}</dd></dl>"
        )
        instances = table(
            "Instances",
            ["DB identifier", "Role", "Status", "Endpoint", "Capacity now (ACU)", "Promotion tier"],
            [[i["id"], i["role"], i["status"], i["endpoint"], _acu(i["capacity"]), i["tier"]] for i in c["instances"]],
            empty="No instances.",
        )
        charts = "".join(
            f'<figure class="chart" data-metric="{name}" data-points="0" aria-label="{esc(title)} chart">'
            f'<figcaption>{esc(title)}</figcaption><div class="plot"></div>'
            f'<p class="latest" aria-live="polite"></p></figure>'
            for name, title in CHARTS
        )
        events = table(
            "Recent events",
            ["Time (UTC)", "Source", "Event", "Message"],
            [[e["date"], e["source"], e["event_id"], e["message"]] for e in self._events(cid)],
            empty="No events.",
        )
        actions = "".join(self._action_form(cid, action) for action in ACTIONS)
        body = (
            f"{notice}{summary}<section aria-labelledby=actions-h><h2 id=actions-h>Actions</h2>"
            f'<div class="actions">{actions}</div></section>'
            f"<section aria-labelledby=inst-h><h2 id=inst-h>Instances</h2>{instances}</section>"
            f'<section aria-labelledby=mon-h><h2 id=mon-h>Monitoring (last hour)</h2><div class="charts">{charts}</div>'
            f"</section><section aria-labelledby=ev-h><h2 id=ev-h>Events</h2>"
            f'<div id="events">{events}</div></section>'
        )
        page = layout(
            f"Cluster {cid}", body, csrf=self._csrf(r), active="clusters", scripts=("uPlot.iife.min.js", "console.js")
        )
        return _Reply(200, page)

    @staticmethod
    def _action_form(cid: str, action: str) -> str:
        """A button that opens the confirmation step of ``action`` (with its inputs, where it has some)."""
        inputs = ""
        if action == "modify-capacity":
            inputs = (
                f'<label for="{action}-min">Minimum capacity (ACU)</label>'
                f'<input id="{action}-min" name="min" inputmode="decimal" size="5">'
                f'<label for="{action}-max">Maximum capacity (ACU)</label>'
                f'<input id="{action}-max" name="max" inputmode="decimal" size="5">'
            )
        elif action == "add-reader":
            inputs = (
                f'<label for="{action}-id">New instance identifier</label>'
                f'<input id="{action}-id" name="name" size="24">'
            )
        elif action == "snapshot":
            inputs = (
                f'<label for="{action}-id">Snapshot identifier</label><input id="{action}-id" name="name" size="24">'
            )
        return (
            f'<form method="get" action="{esc(url("clusters", cid, "confirm"))}" class="action">'
            f'{hidden("action", action)}{inputs}<button type="submit">{esc(ACTIONS[action])}</button></form>'
        )

    def _confirm_page(self, r: _Request, cid: str) -> _Reply:
        action = r.query.get("action", "")
        if self.control.cluster(cid) is None or action not in ACTIONS:
            return _Reply(404, layout("Not found", "<p>No such cluster or action.</p>", csrf=self._csrf(r)))
        assert r.session is not None
        what = {
            "add-reader": f"add a reader {r.query.get('name') or '(named for you)'} to",
            "failover": "fail over",
            "snapshot": f"take a snapshot {r.query.get('name') or '(named for you)'} of",
            "stop": "stop",
            "start": "start",
            "modify-capacity": f"set capacity to {r.query.get('min', '')} to {r.query.get('max', '')} ACU on",
        }[action]
        fields = "".join(hidden(k, r.query.get(k, "")) for k in ("action", "name", "min", "max"))
        body = (
            f"<p>Do you want to {esc(what)} cluster {esc(cid)}?</p>"
            f'<form method="post" action="{esc(url("clusters", cid, "actions"))}">{hidden("csrf", r.session.csrf)}'
            f'{fields}<button type="submit">Confirm</button> {link(url("clusters", cid), "Cancel")}</form>'
        )
        return _Reply(200, layout(f"{ACTIONS[action]}: {cid}", body, csrf=r.session.csrf, active="clusters"))

    async def _action(self, r: _Request, cid: str) -> _Reply:
        assert r.session is not None
        action = r.form.get("action", "")
        name = r.form.get("name", "").strip()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        calls: dict[str, tuple[str, dict[str, Any]]] = {
            "add-reader": (
                "CreateDBInstance",
                {
                    "DBInstanceIdentifier": name or self._next_instance(cid),
                    "DBClusterIdentifier": cid,
                    "DBInstanceClass": "db.serverless",
                    "Engine": "aurora-postgresql",
                },
            ),
            "failover": ("FailoverDBCluster", {"DBClusterIdentifier": cid}),
            "snapshot": (
                "CreateDBClusterSnapshot",
                {"DBClusterSnapshotIdentifier": name or f"{cid}-console-{stamp}", "DBClusterIdentifier": cid},
            ),
            "stop": ("StopDBCluster", {"DBClusterIdentifier": cid}),
            "start": ("StartDBCluster", {"DBClusterIdentifier": cid}),
        }
        try:
            if action == "modify-capacity":
                scaling = {"MinCapacity": _number(r.form.get("min")), "MaxCapacity": _number(r.form.get("max"))}
                calls[action] = (
                    "ModifyDBCluster",
                    {"DBClusterIdentifier": cid, "ServerlessV2ScalingConfiguration": scaling, "ApplyImmediately": True},
                )
            if action not in calls:
                raise AWSError("InvalidParameterValue", f"Unknown action: {action}")
            operation, params = calls[action]
            handler = self.rds[operation]
            ctx = RequestContext("rds", operation, self.region, r.session.key_id, str(uuid.uuid4()))
            await handler(ctx, params)
        except AWSError as exc:
            body = f'<p role="alert" class="error">{esc(exc.code)}: {esc(exc.message)}</p>' + str(
                link(url("clusters", cid), f"Back to {cid}")
            )
            return _Reply(400, layout(f"{ACTIONS.get(action, 'Action')} failed", body, csrf=r.session.csrf))
        return _redirect(url("clusters", cid) + f"?done={action}")

    def _next_instance(self, cid: str) -> str:
        taken = {str(i["id"]) for i in self.control.store.table("instances").values()}
        n = 2
        while f"{cid}-instance-{n}" in taken:
            n += 1
        return f"{cid}-instance-{n}"

    # ----------------------------------------------------------------------------------------- events, metrics

    def _events(self, cid: str, limit: int = 50) -> list[dict[str, Any]]:
        ids = {cid} | {str(i["id"]) for i in self.control.cluster_instances(cid)}
        found = [e for e in self.control.events.table.values() if e.get("source_id") in ids]
        found.sort(key=lambda e: e.get("at", 0), reverse=True)
        return [
            {
                "date": str(e.get("date", ""))[:19].replace("T", " "),
                "source": e.get("source_id"),
                "event_id": e.get("event_id"),
                "message": e.get("message"),
            }
            for e in found[:limit]
        ]

    def _metrics_json(self, r: _Request, cid: str) -> _Reply:
        if self.control.cluster(cid) is None:
            return _json(404, {"message": f"DBCluster {cid} not found."})
        minutes = _clamp(r.query.get("minutes"), 60, 5, 180)
        period = 10 if minutes <= 60 else 30
        now = time.time()
        start = math.floor((now - minutes * 60) / period) * period
        times = list(range(int(start), int(now) + 1, period))
        index = {t: k for k, t in enumerate(times)}
        instances = [str(i["id"]) for i in self.control.cluster_instances(cid)]
        charts = []
        for name, title in CHARTS:
            series = []
            for iid in sorted(instances):
                values: list[float | None] = [None] * len(times)
                for point in self.metrics.query(
                    _NAMESPACE, name, {"DBInstanceIdentifier": iid}, start, now + 1, period
                ):
                    k = index.get(int(point.at))
                    if k is not None:
                        values[k] = point.statistic("Average")
                if any(v is not None for v in values):
                    series.append({"label": iid, "values": values})
            charts.append({"metric": name, "title": title, "series": series})
        return _json(200, {"period": period, "times": times, "charts": charts})

    # ----------------------------------------------------------------------------------------- query editor

    def _secret_choices(self) -> list[tuple[str, str]]:
        try:
            listed = self.secrets.list_secrets(max_results=100)
        except AWSError:
            return []
        return [(str(s["ARN"]), str(s["Name"])) for s in listed.get("SecretList", [])]

    async def _run_query(self, form: Mapping[str, str]) -> dict[str, Any]:
        cid = form.get("cluster", "")
        doc = self.control.cluster(cid) or {}
        params: dict[str, Any] = {
            "resourceArn": f"arn:aws:rds:{self.region}:{self.account_id}:cluster:{cid}",
            # No secret chosen: the cluster's managed master secret, as the page preselects it.
            "secretArn": form.get("secret") or doc.get("master_secret_arn") or "",
            "sql": form.get("sql", ""),
            "includeResultMetadata": True,
        }
        if form.get("database"):
            params["database"] = form["database"]
        try:
            out: dict[str, Any] = await self.data_api.execute_statement(params)
        except DataApiError as exc:
            return {"error": (exc.code, exc.message)}
        return out

    def _query_page(self, r: _Request, result: dict[str, Any] | None) -> _Reply:
        form = r.form
        clusters = self._clusters()
        chosen = form.get("cluster") or r.query.get("cluster") or (clusters[0]["id"] if clusters else "")
        master = next((c.get("master_secret_arn") for c in clusters if c["id"] == chosen), None)
        secret = form.get("secret") or master or ""
        cluster_options = "".join(
            f'<option value="{esc(c["id"])}"{" selected" if c["id"] == chosen else ""}>{esc(c["id"])}</option>'
            for c in clusters
        )
        secret_options = "".join(
            f'<option value="{esc(arn)}"{" selected" if arn == secret else ""}>{esc(name)}</option>'
            for arn, name in self._secret_choices()
        )
        assert r.session is not None
        body = (
            '<form method="post" action="/console/query" class="stack query">'
            f"{hidden('csrf', r.session.csrf)}"
            f'<label for="q-cluster">Cluster</label><select id="q-cluster" name="cluster">{cluster_options}</select>'
            '<label for="q-db">Database</label>'
            f'<input id="q-db" name="database" value="{esc(form.get("database", ""))}"'
            " placeholder=\"the secret's or the cluster's default\">"
            f'<label for="q-secret">Secret</label><select id="q-secret" name="secret">{secret_options}</select>'
            f'<label for="q-sql">SQL</label><textarea id="q-sql" name="sql" rows="8" spellcheck="false">'
            f"{esc(form.get('sql', ''))}</textarea>"
            '<button type="submit">Run</button></form>'
        )
        if result is not None:
            body += _result_markup(result)
        return _Reply(200, layout("Query editor", body, csrf=r.session.csrf, active="query"))

    # ----------------------------------------------------------------------------------------- proxies

    def _proxies_page(self, r: _Request) -> _Reply:
        registry = self.proxies.registry
        sections = []
        for doc in sorted(registry.proxies.values(), key=lambda d: str(d["name"])):
            name = str(doc["name"])
            runtime = self.proxies.runtimes.get(name)
            stats = self.proxies.metrics.stats(name)
            pools = [] if runtime is None else list(runtime.pools.items())
            idle = sum(len(p.idle) for _, p in pools)
            borrowed = sum(len(p.members) - len(p.idle) for _, p in pools)
            group = doc.get("target_group") or {}
            summary = (
                "<dl class=summary>"
                f"<dt>Status</dt><dd>{esc(doc.get('status'))}</dd>"
                f"<dt>Engine family</dt><dd>{esc(doc.get('engine_family', 'POSTGRESQL'))}</dd>"
                f"<dt>Target cluster</dt><dd>{esc(group.get('cluster') or 'none')}</dd>"
                f"<dt>Client connections</dt><dd>{esc(stats.client_connections)}</dd>"
                f"<dt>Database connections</dt><dd>{esc(stats.database_connections)}</dd>"
                f"<dt>Borrowed</dt><dd>{esc(borrowed)}</dd>"
                f"<dt>Pinned</dt><dd>{esc(stats.pinned)}</dd>"
                f"<dt>Idle</dt><dd>{esc(idle)}</dd></dl>"
            )
            endpoints = table(
                f"Endpoints of {name}",
                ["Endpoint", "Role", "Address", "Status"],
                [
                    [e["name"], e.get("role", ""), f"{e.get('host')}:{registry.listen_port(e)}", e.get("status", "")]
                    for e in registry.proxy_endpoints(name)
                ],
            )
            pool_rows = [
                [
                    instance,
                    user,
                    database,
                    f"{p.host}:{p.port}",
                    len(p.members),
                    len(p.members) - len(p.idle),
                    len(p.idle),
                ]
                for (instance, user, database), p in pools
            ]
            pool_table = table(
                f"Connection pools of {name}",
                ["Instance", "User", "Database", "Target", "Connections", "Borrowed", "Idle"],
                pool_rows,
                empty="No pooled connections yet.",
            )
            sections.append(f"<section><h2>{esc(name)}</h2>{summary}{endpoints}{pool_table}</section>")
        body = "".join(sections) or "<p>No proxies. Create one with <code>aws rds create-db-proxy</code>.</p>"
        return _Reply(200, layout("Proxies", body, csrf=self._csrf(r), active="proxies"))

    # ----------------------------------------------------------------------------------------- insights

    async def _insights_page(self, r: _Request) -> _Reply:
        instances = sorted(
            (d for d in self.control.store.table("instances").values() if d.get("status") != "deleted"),
            key=lambda d: str(d["id"]),
        )
        chosen = r.query.get("instance") or (str(instances[0]["id"]) if instances else "")
        doc = next((d for d in instances if d["id"] == chosen), None)
        options = "".join(
            f'<option value="{esc(d["id"])}"{" selected" if d["id"] == chosen else ""}>{esc(d["id"])}</option>'
            for d in instances
        )
        body = (
            '<form method="get" action="/console/insights" class="action">'
            f'<label for="pi-instance">Instance</label><select id="pi-instance" name="instance">{options}</select>'
            '<button type="submit">Show</button></form>'
        )
        if doc is None:
            body += "<p>No DB instances.</p>"
        else:
            body += self._insights_of(doc) + await self._sessions_now(chosen)
        return _Reply(200, layout("Performance Insights", body, csrf=self._csrf(r), active="insights"))

    def _insights_of(self, doc: Mapping[str, Any]) -> str:
        """Top SQL and top waits over the last hour, or why there are none."""
        iid = str(doc["id"])
        if self.insights is None:
            return (
                '<p role="status">Performance Insights is not available in this Borealis: top SQL by load '
                "needs its sampler. The sessions below are what pg_stat_activity shows now.</p>"
            )
        if not (doc.get("performance_insights") or {}).get("enabled"):
            return (
                f'<p role="status">Performance Insights is not enabled for {esc(iid)}. Turn it on with '
                f"<code>aws rds modify-db-instance --db-instance-identifier {esc(iid)} "
                "--enable-performance-insights</code> (or on its cluster).</p>"
            )
        now = int(time.time())
        try:
            top_sql = self.insights.top_sql(iid, now - 3600, now, limit=10)
            _, waits = self.insights.top(iid, now - 3600, now, "db.wait_event", limit=10)
        except Exception as exc:  # its errors are its own (InsightsError); show them, as the pi API would
            return f'<p role="alert" class="error">{esc(exc)}</p>'
        sql_rows = [
            [
                t.statement or "(no statement text)",
                _fixed(t.load, 3),
                _fixed(t.calls_per_sec, 2),
                _fixed(t.avg_latency_ms, 2),
                _fixed(t.rows_per_call, 1),
            ]
            for t in top_sql
        ]
        wait_rows = [
            [dict(key).get("db.wait_event.name", ""), dict(key).get("db.wait_event.type", ""), _fixed(load, 3)]
            for key, load, _ in waits
        ]
        return table(
            "Top SQL (last hour)",
            ["SQL statement", "Load (average active sessions)", "Calls/s", "Avg latency (ms)", "Rows/call"],
            sql_rows,
            empty="No load sampled yet.",
        ) + table(
            "Top waits (last hour)",
            ["Wait event", "Wait type", "Load (average active sessions)"],
            wait_rows,
            empty="No load sampled yet.",
        )

    async def _sessions_now(self, iid: str) -> str:
        """The instance's client sessions now (pg_stat_activity), over Borealis's internal login."""
        server = self.control.server(iid)
        if server is None:
            return f"<p>{esc(iid)} is not running, so it has no sessions.</p>"
        rows: list[list[object]] = []
        try:
            conninfo = server.internal_conninfo(user=self.admin_user)
            async with await psycopg.AsyncConnection.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
                cur = await conn.execute(_SESSIONS_SQL, (self.admin_user,))
                rows = [list(row) for row in await cur.fetchall()]
        except (psycopg.Error, OSError) as exc:
            return f'<p role="alert" class="error">Cannot read pg_stat_activity of {esc(iid)}: {esc(exc)}</p>'
        return table(
            "Sessions now (pg_stat_activity)",
            ["User", "Database", "Application", "State", "Wait type", "Wait event", "Seconds", "Query"],
            rows,
            empty="No client sessions.",
        )


_SESSIONS_SQL = """
select usename, datname, application_name, state, wait_event_type, wait_event,
       round(extract(epoch from now() - coalesce(query_start, backend_start))::numeric, 1)::text,
       left(query, 300)
from pg_stat_activity
where backend_type = 'client backend' and usename <> %s  -- Borealis's own sessions are not the user's
order by state = 'active' desc, query_start nulls last
limit 50
"""


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _live(kind: str, ident: str, text: str) -> Raw:
    """A cell's text that console.js refreshes: ``kind`` (status, capacity) of a cluster or instance."""
    return Raw(f'<span data-{kind}="{esc(ident)}">{esc(text)}</span>')


def _acu(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, int | float):
        return f"{value:g}"
    return str(value)


def _number(text: str | None) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise AWSError("InvalidParameterValue", f"Capacity must be a number, not {text!r}.") from None
    if not math.isfinite(value):
        raise AWSError("InvalidParameterValue", f"Capacity must be a number, not {text!r}.")
    return value


def _clamp(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(text or default)))
    except ValueError:
        return default


def _field_text(value: Mapping[str, Any]) -> str:
    """One Data API Field as text: NULL, a scalar, base64 for blobs, JSON for arrays."""
    if value.get("isNull"):
        return "NULL"
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue"):
        if key in value:
            v = value[key]
            return ("true" if v else "false") if key == "booleanValue" else str(v)
    if "blobValue" in value:
        import base64

        blob = value["blobValue"]
        return base64.b64encode(blob).decode() if isinstance(blob, bytes) else str(blob)
    if "arrayValue" in value:
        return json.dumps(value["arrayValue"], default=str)
    return json.dumps(value, default=str)


def _result_markup(result: Mapping[str, Any]) -> str:
    """A statement's outcome: the error as the Data API reports it, or the records as a table."""
    if "error" in result:
        code, message = result["error"]
        return f'<div role="alert" class="error"><strong>{esc(code)}</strong>: <span>{esc(message)}</span></div>'
    records = result.get("records")
    if records is None:
        updated = result.get("numberOfRecordsUpdated", 0)
        return f'<p role="status">Statement run. Records updated: {esc(updated)}.</p>'
    columns = [c.get("label") or c.get("name") or "?column?" for c in result.get("columnMetadata", [])]
    rows = [[_field_text(f) for f in record] for record in records]
    count = f'<p role="status">{len(rows)} row{"s" if len(rows) != 1 else ""}.</p>'
    return count + table("Result", columns, rows, empty="No rows.")
