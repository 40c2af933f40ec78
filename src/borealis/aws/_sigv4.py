"""SigV4 verification of incoming requests (Authorization header, or a presigned query string).

The server rebuilds the canonical request the way botocore builds it when signing:

- path: dot segments and empty segments removed, then percent-encoded again (`quote(path, safe="/~")`)
  -- non-S3 services sign the already-encoded path, so `%3A` is signed as `%253A`;
- query: every pair decoded then re-encoded with `quote(safe="-_.~")`, sorted by key then value;
- headers: only those named in SignedHeaders, lowercase, values trimmed with runs of spaces collapsed,
  repeated headers joined with ","; `host` is what the client sent (with the port when not default);
- payload: SHA-256 of the body (also for presigned URLs: only S3 signs those with UNSIGNED-PAYLOAD);
  a client's `x-amz-content-sha256` must match it.

A derived signing key depends on (secret, date, region, service) only, so it is cached: verifying a
request then costs one HMAC for the signature instead of five.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["AuthFailure", "Credential", "SigV4Verifier", "parse_credential"]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)
MAX_EXPIRES = 7 * 24 * 3600
"""A presigned request is valid for at most a week (604,800 s), as AWS allows."""
_MAX_SKEW_S = MAX_SKEW.total_seconds()
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_KEY_CACHE_LIMIT = 4096


class AuthFailure(Exception):
    """Why a request was refused; the gateway maps `reason` to the protocol's AWS code and status.

    Reasons: "missing", "incomplete", "unknown_key", "signature", "expired".
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Credential:
    """The credential scope of a signed request."""

    access_key: str
    date: str
    region: str
    service: str
    scope: str  # date/region/service/aws4_request, as signed


_credentials: dict[str, Credential | None] = {}


def parse_credential(text: str) -> Credential | None:
    """Split `AKID/20240101/us-east-1/rds/aws4_request`; None when it has the wrong form (memoised)."""
    found = _credentials.get(text, _NO_CREDENTIAL)
    if found is not _NO_CREDENTIAL:
        return found
    if len(_credentials) >= 4096:
        _credentials.clear()
    found = _credentials[text] = _parse_credential(text)
    return found


def _parse_credential(text: str) -> Credential | None:
    parts = text.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts[:4]):
        return None
    return Credential(parts[0], parts[1], parts[2], parts[3], "/".join(parts[1:]))


_NO_CREDENTIAL = Credential("", "", "", "", "")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a setattr call per field
class SignedRequest:
    """The parts of a request's signature, from the header or the query string."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool
    expires: int  # seconds; presigned only


def read_signature(authorization: str | None, query: Mapping[str, str], headers: Mapping[str, str]) -> SignedRequest:
    """Read the signature parts, raising `AuthFailure` ("missing"/"incomplete") when absent or malformed."""
    if authorization is not None:
        # A client's headers differ from one request to the next only in the signature (and the credential
        # date, daily): the rest is parsed once.
        head, _, signature = authorization.rpartition("Signature=")
        cacheable = bool(signature) and "," not in signature
        parsed = _authorizations.get(head) if cacheable else None
        if parsed is None:
            parsed = _parse_authorization(authorization)
            if cacheable:
                if len(_authorizations) >= 4096:
                    _authorizations.clear()
                _authorizations[head] = parsed
        credential, signed_headers, signature = parsed[0], parsed[1], parsed[2] or signature.strip()
        amz_date = headers.get("x-amz-date") or headers.get("date", "")
        return SignedRequest(credential, signed_headers, signature, amz_date, False, 0)
    if "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise AuthFailure("incomplete", "Unsupported X-Amz-Algorithm; only AWS4-HMAC-SHA256 is accepted.")
        scope = parse_credential(query.get("X-Amz-Credential", ""))
        if scope is None or "X-Amz-Signature" not in query or "X-Amz-Date" not in query:
            raise AuthFailure("incomplete", "The presigned request is missing signature parameters.")
        try:
            expires = int(query.get("X-Amz-Expires", "900"))
        except ValueError:
            raise AuthFailure("incomplete", "X-Amz-Expires must be a number of seconds.") from None
        if expires < 0:
            raise AuthFailure("incomplete", "X-Amz-Expires must be non-negative.")
        if expires > MAX_EXPIRES:
            raise AuthFailure(
                "incomplete", f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}."
            )
        return SignedRequest(
            scope,
            tuple(query.get("X-Amz-SignedHeaders", "host").split(";")),
            query["X-Amz-Signature"],
            query["X-Amz-Date"],
            presigned=True,
            expires=expires,
        )
    raise AuthFailure("missing", "Request is missing Authentication Token")


_authorizations: dict[str, tuple[Credential, tuple[str, ...], str]] = {}


def _parse_authorization(authorization: str) -> tuple[Credential, tuple[str, ...], str]:
    """(credential, signed headers, signature) of an Authorization header; AuthFailure when malformed.

    The signature is given back only when it is not the header's last item (otherwise the caller has it).
    """
    if not authorization.startswith(ALGORITHM + " "):
        raise AuthFailure("incomplete", "Unsupported authorization type; only AWS4-HMAC-SHA256 is accepted.")
    fields: dict[str, str] = {}
    last = ""
    for item in authorization[len(ALGORITHM) + 1 :].split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            fields[key] = value
            last = key
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise AuthFailure(
            "incomplete",
            f"Authorization header requires '{missing[0]}' parameter. Authorization={authorization}",
        )
    credential = parse_credential(fields["Credential"])
    if credential is None:
        raise AuthFailure("incomplete", f"Credential should be scoped to a valid region. {fields['Credential']}")
    return credential, tuple(fields["SignedHeaders"].split(";")), "" if last == "Signature" else fields["Signature"]


_dates: dict[str, float | None] = {}


def _amz_epoch(text: str) -> float | None:
    """An X-Amz-Date stamp as seconds since the epoch; None when malformed."""
    # Many requests share a second (and wrk-style replays share all of them): strptime once per stamp.
    try:
        return _dates[text]
    except KeyError:
        pass
    try:
        parsed: float | None = dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        parsed = None
    if len(_dates) >= 4096:
        _dates.clear()
    _dates[text] = parsed
    return parsed


_paths: dict[str, str] = {}


def canonical_path(raw_path: str) -> str:
    """The canonical URI botocore signs for non-S3 services (memoised: an API has few distinct paths)."""
    found = _paths.get(raw_path)
    if found is None:
        if len(_paths) >= 4096:
            _paths.clear()
        found = _paths[raw_path] = _canonical_path(raw_path)
    return found


def _canonical_path(raw_path: str) -> str:
    segments = [s for s in raw_path.split("/") if s and s != "."]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    path = "/" + "/".join(out)
    if raw_path.endswith("/") and out:
        path += "/"
    return quote(path, safe="/~")


def canonical_query(query_string: str, *, drop_signature: bool) -> str:
    """Decoded, re-encoded and sorted query pairs (the presigned signature itself excluded)."""
    if not query_string:
        return ""
    pairs = []
    for pair in query_string.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key, value = unquote(key), unquote(value)
        if drop_signature and key == "X-Amz-Signature":
            continue
        pairs.append((quote(key, safe="-_.~"), quote(value, safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


class SigV4Verifier:
    """Verifies requests against secrets from a lookup function, with a derived-key cache."""

    def __init__(
        self,
        credentials: Callable[[str], str | None],
        *,
        clock: Callable[[], dt.datetime] | None = None,
        tokens: Callable[[str], str | None] | None = None,
        region: str | None = None,
    ) -> None:
        """`credentials` maps an access key id to its secret (None if unknown); `clock` is for tests.

        `tokens` maps an access key id to the session token its requests must carry (temporary
        credentials), None for a long-term key. `region`: the only region a credential scope may name (AWS
        refuses a request signed for another region); None accepts any (tests of the protocol layer).
        """
        self._credentials = credentials
        self._region = region
        self._tokens = tokens
        self._clock = clock
        self._keys: dict[tuple[str, str, str, str], bytes] = {}
        # Keyed HMAC states, copied per request: setting a key up costs more than the HMAC itself.
        self._macs: dict[tuple[str, str, str, str], KeyedMac] = {}

    def knows(self, access_key: str) -> bool:
        """Whether ``access_key`` is a key whose requests can be verified (it has a secret)."""
        return self._credentials(access_key) is not None

    def signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        """The derived key for a scope, computed once per (secret, date, region, service)."""
        cache_key = (secret, date, region, service)
        key = self._keys.get(cache_key)
        if key is None:
            key = _hmac(("AWS4" + secret).encode(), date)
            key = _hmac(key, region)
            key = _hmac(key, service)
            key = _hmac(key, "aws4_request")
            if len(self._keys) >= _KEY_CACHE_LIMIT:
                self._keys.clear()  # dates roll over daily; a full reset is simpler than LRU here
            self._keys[cache_key] = key
        return key

    def verify(
        self,
        signed: SignedRequest,
        *,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        """Check one request; raise `AuthFailure` when it must be refused."""
        credential = signed.credential
        when_s = _amz_epoch(signed.amz_date)
        if when_s is None:
            raise AuthFailure(
                "incomplete",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        if self._region is not None and credential.region != self._region:
            raise AuthFailure("signature", f"Credential should be scoped to a valid region, not '{credential.region}'.")
        secret = self._credentials(credential.access_key)
        if secret is None:
            raise AuthFailure("unknown_key", "The security token included in the request is invalid.")
        token = self._tokens(credential.access_key) if self._tokens is not None else None
        if token is not None:
            sent = query_params(query_string).get("X-Amz-Security-Token") if signed.presigned else None
            sent = sent or headers.get("x-amz-security-token")
            if sent is None or not hmac.compare_digest(sent.encode(), token.encode()):
                raise AuthFailure("unknown_key", "The security token included in the request is invalid.")
        # Seconds since the epoch, not datetimes, on the hot path; the clock given by tests is a datetime.
        now_s = time.time() if self._clock is None else self._clock().timestamp()
        if signed.presigned:
            if now_s > when_s + signed.expires:
                raise AuthFailure("expired", f"Request has expired. X-Amz-Date: {signed.amz_date}")
            if when_s - now_s > _MAX_SKEW_S:  # dated in the future: valid from then, not before
                raise AuthFailure("expired", _not_yet_current(signed.amz_date, now_s))
        elif abs(now_s - when_s) > _MAX_SKEW_S:
            if when_s > now_s:
                raise AuthFailure("expired", _not_yet_current(signed.amz_date, now_s))
            now = dt.datetime.fromtimestamp(now_s, dt.UTC)
            earliest = (now - MAX_SKEW).strftime("%Y%m%dT%H%M%SZ")
            detail = f"is now earlier than {earliest} ({now.strftime('%Y%m%dT%H%M%SZ')} - 15 min.)"
            raise AuthFailure("expired", f"Signature expired: {signed.amz_date} {detail}")
        if credential.date != signed.amz_date[:8]:
            raise AuthFailure("signature", _MISMATCH)
        payload_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        claimed = headers.get("x-amz-content-sha256")
        if claimed is not None and claimed != payload_hash:
            # The header is signed, but the body must still be the one it describes.
            raise AuthFailure(
                "signature", "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        canonical_headers = []
        for name in signed.signed_headers:
            value = headers.get(name)
            if value is None:
                raise AuthFailure("signature", _MISMATCH)
            canonical_headers.append(f"{name}:{' '.join(value.split())}\n")
        canonical_request = "\n".join(
            (
                method.upper(),
                canonical_path(raw_path),
                canonical_query(query_string, drop_signature=signed.presigned),
                "".join(canonical_headers),
                ";".join(signed.signed_headers),
                payload_hash,
            )
        )
        string_to_sign = "\n".join(
            (ALGORITHM, signed.amz_date, credential.scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        mac_key = (secret, credential.date, credential.region, credential.service)
        keyed = self._macs.get(mac_key)
        if keyed is None:
            if len(self._macs) >= _KEY_CACHE_LIMIT:
                self._macs.clear()
            keyed = self._macs[mac_key] = KeyedMac(self.signing_key(*mac_key))
        expected = keyed.hexdigest(string_to_sign.encode())
        if not hmac.compare_digest(expected, signed.signature):
            raise AuthFailure("signature", _MISMATCH)


def _not_yet_current(amz_date: str, now_s: float) -> str:
    """AWS's message for a request dated beyond the allowed skew in the future."""
    now = dt.datetime.fromtimestamp(now_s, dt.UTC)
    latest = (now + MAX_SKEW).strftime("%Y%m%dT%H%M%SZ")
    return f"Signature not yet current: {amz_date} is still later than {latest} ({now:%Y%m%dT%H%M%SZ} + 15 min.)"


_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


class KeyedMac:
    """HMAC-SHA256 (RFC 2104) under one key, its padded-key hash states computed once and copied per message.

    ``hmac.new`` sets the key up on every call and ``HMAC.copy`` is dearer than two ``sha256.copy``: this is
    the signature check's main cost per request (tested equal to ``hmac``).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def query_params(query_string: str) -> dict[str, str]:
    """The decoded query parameters (last value wins), for reading presigned signatures."""
    return dict(parse_qsl(query_string, keep_blank_values=True))
