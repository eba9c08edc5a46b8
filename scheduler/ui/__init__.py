"""The dashboard: pages under `/ui/` on the API's listener, rendered on the server, bound to
a management certificate and one subscription by a session.

Every page is readable without JavaScript; our own small script polls the page while it is
shown and fills in times in the browser's zone. Actions are forms that carry the session's
CSRF token, and go through the same use cases as the API.
"""

from __future__ import annotations

from flask import Flask

from scheduler.services.dashboard import LatenessMemo
from scheduler.ui import actions, alert_pages, pages, signin
from scheduler.ui.blueprint import add_page_headers, bp

# The modules that add the pages, the forms and signing in to the blueprint.
ROUTES = (actions, alert_pages, pages, signin)


def init_app(app: Flask) -> None:
    """Register the dashboard's pages, and the headers every one of them carries."""
    app.register_blueprint(bp)
    app.after_request(add_page_headers)
    app.extensions[pages.LATENESS_MEMO] = LatenessMemo()
