"""A small HTTP client for the console's tests: no redirects followed, the session cookie kept by hand."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["ConsoleClient", "Reply"]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ConsoleClient:
    """Requests to one Borealis's console, as a browser without scripts would send them."""

    base_url: str
    cookie: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None, **headers: str) -> Reply:
        parts = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        try:
            body = None if form is None else urlencode(form).encode()
            sent = dict(self.extra_headers)
            sent.update({k.replace("_", "-"): v for k, v in headers.items()})
            if body is not None:
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            if self.cookie is not None:
                sent["Cookie"] = f"borealis_console={self.cookie}"
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, **headers)

    def post(self, path: str, form: dict[str, str], **headers: str) -> Reply:
        return self.request("POST", path, form, **headers)

    def sign_in(self, key: str, secret: str) -> Reply:
        """Sign in; on success the client keeps the session cookie."""
        reply = self.post("/console/sign-in", {"access_key_id": key, "secret_access_key": secret})
        cookie = reply.headers.get("Set-Cookie") or ""
        match = re.match(r"borealis_console=([^;]*)", cookie)
        if reply.status == 303 and match:
            self.cookie = match.group(1)
        return reply

    def csrf(self) -> str:
        """The session's CSRF token, as a page carries it."""
        page = self.get("/console/query")
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, page.text[:500]
        return match.group(1)
