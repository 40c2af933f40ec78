"""The web console at ``/console/`` on the API port: sign-in, clusters, charts, query editor, proxies."""

from ._app import ACTIONS, CHARTS, Console
from ._sessions import COOKIE, Session, Sessions

__all__ = ["ACTIONS", "CHARTS", "COOKIE", "Console", "Session", "Sessions"]
