"""The one exception the engine raises: a short, user-facing message."""

from __future__ import annotations

__all__ = ["EngineError"]


class EngineError(Exception):
    """A PostgreSQL process could not be found, prepared, started or stopped.

    The message is one line meant for the operator (the CLI prints it as is); details such as the tail of the
    server log are appended on following lines only where they explain the failure.
    """
