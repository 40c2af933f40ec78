"""HTML for the console: a page layout and small builders, every value escaped on the way in.

Nothing here touches the domain: callers hand over plain values and get text. Every value that reaches the
page (cluster names, SQL results, error messages: data an attacker may control) passes through :func:`esc`;
only the fixed markup of this module is written raw. Scripts come from ``/console/static/`` only, and the
console's Content-Security-Policy forbids inline script, so an escaping slip still could not run code.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from urllib.parse import quote

__all__ = ["Raw", "esc", "hidden", "layout", "link", "table", "url"]


class Raw(str):
    """Markup built by this module (already escaped): :func:`esc` leaves it as it is."""

    __slots__ = ()


def esc(value: object) -> Raw:
    """``value`` as HTML text (quotes included, so it is safe in attributes too)."""
    if isinstance(value, Raw):
        return value
    return Raw(html.escape("" if value is None else str(value), quote=True))


def link(path: str, text: object, **attrs: str) -> Raw:
    """An ``<a>`` to a console path; the path's segments are URL-quoted by the caller (see :func:`url`)."""
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return Raw(f'<a href="{esc(path)}"{extra}>{esc(text)}</a>')


def url(*segments: str) -> str:
    """A console path from segments, each quoted (identifiers are plain already; this is belt and braces)."""
    return "/console/" + "/".join(quote(s, safe="") for s in segments)


def hidden(name: str, value: object) -> Raw:
    """A hidden form field."""
    return Raw(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">')


def table(caption: str, headers: Sequence[object], rows: Iterable[Sequence[object]], *, empty: str = "None") -> Raw:
    """A table with a caption and column headers; cells are escaped unless they are :class:`Raw`."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{max(1, len(headers))}">{esc(empty)}</td></tr>'
    return Raw(f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


_NAV = (
    ("clusters", "/console/", "Clusters"),
    ("query", "/console/query", "Query editor"),
    ("proxies", "/console/proxies", "Proxies"),
    ("insights", "/console/insights", "Performance Insights"),
)


def layout(title: str, body: str, *, csrf: str | None = None, active: str = "", scripts: Sequence[str] = ()) -> bytes:
    """A whole page: ``body`` (markup built with this module) under the title and, when signed in, the menu.

    ``csrf`` is the session's token: given, the page shows the menu and a "Sign out" button, and carries the
    token in a meta tag for the page's scripts.
    """
    head_extra = ""
    nav = ""
    if csrf is not None:
        head_extra = f'<meta name="csrf-token" content="{esc(csrf)}">'
        items = "".join(
            f'<li><a href="{href}"{" aria-current=page" if key == active else ""}>{text}</a></li>'
            for key, href, text in _NAV
        )
        nav = (
            f'<nav aria-label="Console"><span class="brand">Borealis</span><ul>{items}</ul>'
            f'<form method="post" action="/console/sign-out">{hidden("csrf", csrf)}'
            '<button type="submit">Sign out</button></form></nav>'
        )
    script_tags = "".join(f'<script src="/console/static/{esc(s)}" defer></script>' for s in scripts)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Borealis console</title>{head_extra}"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/console/static/uPlot.min.css">'
        '<link rel="stylesheet" href="/console/static/console.css">'
        f"{script_tags}</head><body>{nav}<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return page.encode()
