"""Where the dashboard lives on the API's listener: its pages sign in by sessions of their
own (scheduler.ui), not per request as the API's routes do."""

from __future__ import annotations

DASHBOARD_PREFIX = "/ui"


def is_dashboard_path(path: str) -> bool:
    """Whether a path is one of the dashboard's."""
    return path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")


def sign_in_link_path(token: str) -> str:
    """The dashboard's page that opens a session with a one-time sign-in token."""
    return f"{DASHBOARD_PREFIX}/sign-in/link/{token}"
