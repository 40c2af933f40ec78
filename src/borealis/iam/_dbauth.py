"""IAM database authentication tokens, checked as RDS Proxy and the cluster endpoints check them.

A token is what boto3's ``generate_db_auth_token`` and ``@aws-sdk/rds-signer`` make: a SigV4-presigned
``GET https://host:port/?Action=connect&DBUser=user`` (service ``rds-db``, at most 900 seconds) with the
``https://`` scheme stripped. The client sends it as its password. The only signed header is ``host``, and it
includes the port, so a token is bound to the endpoint it was made for.

:func:`verify_token` is pure apart from the clock it is given. It recomputes the signature with botocore's
own :class:`~botocore.auth.SigV4QueryAuth` (so it signs exactly as the SDKs do) at the token's own
timestamp, which it passes in rather than patching botocore's clock, since other code in the process signs
and verifies at the same time.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Collection
from urllib.parse import parse_qsl

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["TokenError", "looks_like_token", "verify_token"]

SERVICE = "rds-db"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES = 900
#: Tokens stamped this far in the future are refused (clock skew allowance, as SigV4 requests get).
MAX_SKEW = dt.timedelta(minutes=5)
_STAMP = "%Y%m%dT%H%M%SZ"


class TokenError(Exception):
    """The token is not valid; the message says why (logged, never sent: the client learns only "failed")."""


def looks_like_token(password: str) -> bool:
    """True when a cleartext password is shaped like an IAM token (used where IAMAuth is ENABLED)."""
    return "/?" in password and "X-Amz-Signature=" in password and "Action=connect" in password


class _SignAt(SigV4QueryAuth):  # type: ignore[misc]
    """SigV4QueryAuth at a given timestamp instead of now; returns the signature instead of adding it."""

    def __init__(self, credentials: Credentials, region: str, expires: int, stamp: str) -> None:
        super().__init__(credentials, SERVICE, region, expires=expires)
        self._stamp = stamp

    def sign(self, request: AWSRequest) -> str:
        request.context["timestamp"] = self._stamp
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        return str(self.signature(self.string_to_sign(request, canonical), request))


def verify_token(
    token: str,
    *,
    user: str,
    hosts: Collection[str],
    port: int,
    region: str,
    secret_for: Callable[[str], str | None],
    now: dt.datetime,
) -> None:
    """Check an IAM auth token for ``user`` connecting to one of ``hosts`` on ``port``; raise TokenError.

    Checks, in order: the shape (``host:port/?query``), Action=connect, the algorithm, the credential scope
    ``<akid>/<date>/<region>/rds-db/aws4_request``, the expiry (X-Amz-Expires at most 900 seconds, not
    past, not stamped in the future), DBUser, the host and port, that the access key is known, and last the
    signature, compared in constant time.
    """
    host_port, sep, query = token.partition("/?")
    if not sep or not host_port or not query:
        raise TokenError("not an IAM auth token (expected host:port/?query)")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise TokenError("malformed query string") from None
    params = dict(pairs)
    if len(params) != len(pairs):
        raise TokenError("repeated query parameter")
    if params.get("Action") != "connect":
        raise TokenError("Action is not connect")
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise TokenError("unsupported signing algorithm")
    if params.get("X-Amz-SignedHeaders") != "host":
        raise TokenError("the signed headers must be exactly host")
    scope = params.get("X-Amz-Credential", "").split("/")
    if len(scope) != 5 or scope[3] != SERVICE or scope[4] != "aws4_request" or not scope[0]:
        raise TokenError("malformed credential scope")
    key_id, date, scope_region = scope[0], scope[1], scope[2]
    if scope_region != region:
        raise TokenError(f"token signed for region {scope_region!r}, not {region!r}")
    stamp = params.get("X-Amz-Date", "")
    try:
        signed_at = dt.datetime.strptime(stamp, _STAMP).replace(tzinfo=dt.UTC)
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        raise TokenError("malformed X-Amz-Date or X-Amz-Expires") from None
    if stamp[:8] != date:
        raise TokenError("credential scope date does not match X-Amz-Date")
    if not 1 <= expires <= MAX_EXPIRES:
        raise TokenError(f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds")
    if now > signed_at + dt.timedelta(seconds=expires):
        raise TokenError("token expired")
    if signed_at - now > MAX_SKEW:
        raise TokenError("token is dated in the future")
    if params.get("DBUser") != user:
        raise TokenError("DBUser does not match the user in the startup packet")
    host, colon, port_text = host_port.rpartition(":")
    if not colon or port_text != str(port) or host.lower() not in {h.lower() for h in hosts}:
        raise TokenError(f"token signed for {host_port!r}, not this endpoint")
    secret = secret_for(key_id)
    if secret is None:
        raise TokenError(f"unknown access key {key_id}")
    signature = params.get("X-Amz-Signature", "")
    operation = {k: v for k, v in pairs if not k.startswith("X-Amz-")}
    request = AWSRequest(method="GET", url=f"https://{host_port}/", params=operation)
    credentials = Credentials(key_id, secret, params.get("X-Amz-Security-Token"))
    expected = _SignAt(credentials, scope_region, expires, stamp).sign(request)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise TokenError("signature does not match")
