"""ListSecrets filters, as the Secrets Manager user guide ("Find secrets") describes them; pure functions.

Rules:
- ``name``, ``tag-key``, ``tag-value``, ``owning-service``, ``primary-region``: the value is a prefix of the
  attribute (of any tag key or value for the tag filters); case-sensitive.
- ``description``: every word of the value begins a word of the description; not case-sensitive.
- ``all``: the value is broken into words (at punctuation and at changes from lower to upper case or
  between letters and digits); a secret matches if any word begins a word of its name, description, tag
  keys or tag values; not case-sensitive.
- A value starting with ``!`` negates its match.
- Values of one filter are OR-ed; filters are AND-ed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["FILTER_KEYS", "matches", "words"]

FILTER_KEYS = frozenset({"description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all"})

# A word is a run of capitals followed by lower case letters, a run of lower case letters, or of digits:
# "credsDatabase#892" -> creds, Database, 892 (the user guide's own example).
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(text: str) -> list[str]:
    """The search words of ``text``, lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


def _any_prefix(prefix: str, values: Iterable[str]) -> bool:
    return any(v.startswith(prefix) for v in values)


def _match_one(key: str, value: str, secret: dict[str, Any]) -> bool:
    tags: list[dict[str, str]] = secret.get("tags") or []
    if key == "name":
        return str(secret["name"]).startswith(value)
    if key == "tag-key":
        return _any_prefix(value, (t["Key"] for t in tags))
    if key == "tag-value":
        return _any_prefix(value, (t.get("Value", "") for t in tags))
    if key == "owning-service":
        service = secret.get("owning_service")
        return service is not None and str(service).startswith(value)
    if key == "primary-region":
        # Borealis does not replicate, so no secret has a PrimaryRegion to match.
        return False
    if key == "description":
        have = words(secret.get("description") or "")
        wanted = words(value)
        return bool(wanted) and all(_any_prefix(w, have) for w in wanted)
    # "all"
    have = words(str(secret["name"])) + words(secret.get("description") or "")
    for t in tags:
        have += words(t["Key"]) + words(t.get("Value", ""))
    return any(_any_prefix(w, have) for w in words(value))


def _match_filter(key: str, values: Sequence[str], secret: dict[str, Any]) -> bool:
    for value in values:
        negated = value.startswith("!")
        hit = _match_one(key, value[1:] if negated else value, secret)
        if hit != negated:
            return True
    return False


def matches(filters: Sequence[dict[str, Any]], secret: dict[str, Any]) -> bool:
    """Whether the stored ``secret`` document passes every filter (keys assumed valid)."""
    return all(_match_filter(f["Key"], f.get("Values") or [], secret) for f in filters)
