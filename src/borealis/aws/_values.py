"""Scalar conversions shared by the protocols: timestamps, blobs, booleans and numbers as text."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import math

from ._errors import InputError

__all__ = [
    "b64decode",
    "b64encode",
    "format_timestamp",
    "parse_bool_text",
    "parse_float_text",
    "parse_int_text",
    "parse_timestamp",
    "to_utc",
]

_UTC = dt.UTC


def to_utc(value: dt.datetime) -> dt.datetime:
    """A timezone-aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def parse_timestamp(value: object) -> dt.datetime:
    """Parse what clients send for a timestamp: epoch seconds, ISO 8601 or RFC 822 text."""
    if isinstance(value, bool):
        raise InputError("expected a timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InputError("expected a finite timestamp")
        try:
            return dt.datetime.fromtimestamp(value, _UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InputError("timestamp out of range") from exc
    if not isinstance(value, str):
        raise InputError("expected a timestamp")
    text = value.strip()
    try:
        return dt.datetime.fromtimestamp(float(text), _UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        # fromisoformat in 3.11 reads "Z" and fractional seconds of any length up to 6 digits.
        return to_utc(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    try:
        return to_utc(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{value!r} is not a valid timestamp") from exc


def format_timestamp(value: object, fmt: str) -> str | float:
    """Render a timestamp as `fmt` says: "iso8601" (text), "unixTimestamp" (float) or "rfc822" (text)."""
    if isinstance(value, dt.datetime):
        when = to_utc(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        when = dt.datetime.fromtimestamp(value, _UTC)
    elif isinstance(value, str):
        when = parse_timestamp(value)
    else:
        raise TypeError(f"cannot render {type(value).__name__} as a timestamp")
    if fmt == "unixTimestamp":
        return when.timestamp()
    if fmt == "rfc822":
        return email.utils.format_datetime(when, usegmt=True)
    # Milliseconds, as AWS writes them: 2024-01-01T00:00:00.000Z
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def b64decode(value: object) -> bytes:
    """Decode a base64 blob, refusing text that is not strictly base64."""
    if not isinstance(value, str):
        raise InputError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError("invalid base64 value") from exc


def b64encode(value: object) -> str:
    """Encode a blob the handler returned (bytes, or text taken as UTF-8) as base64 text."""
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"cannot render {type(value).__name__} as a blob")
    return base64.b64encode(value).decode("ascii")


def parse_int_text(text: str) -> int:
    """An integer from query/header/URI text."""
    try:
        return int(text.strip())
    except ValueError as exc:
        raise InputError(f"{text!r} is not a valid integer") from exc


def parse_float_text(text: str) -> float:
    """A number from query/header/URI text; NaN and infinities are refused."""
    try:
        number = float(text.strip())
    except ValueError as exc:
        raise InputError(f"{text!r} is not a valid number") from exc
    if not math.isfinite(number):
        raise InputError(f"{text!r} is not a valid number")
    return number


def parse_bool_text(text: str) -> bool:
    """A boolean from text: "true"/"false" as botocore writes them (any case)."""
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise InputError(f"{text!r} is not a valid boolean")
