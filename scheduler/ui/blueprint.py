"""The dashboard's blueprint: who is looking (a session bound to a certificate and a
subscription), the checks every form passes, and the headers every page carries."""

from __future__ import annotations

import hmac
from urllib.parse import quote

from flask import Blueprint, Response, g, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.api.dashboard_paths import DASHBOARD_PREFIX, is_dashboard_path
from scheduler.api.runtime import read_connection, runtime, transaction
from scheduler.errors import Forbidden, NotFound
from scheduler.services.dashboard_sessions import find_viewer, needs_touch, touch_session

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates",
               static_folder="static", static_url_path="/static")

PREFIX = DASHBOARD_PREFIX
COOKIE = "__Host-scheduler-ui"
# Only the service's own scripts and styles; no frames, no other origin to send forms to.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")
# Pages anyone may open: signing in, and the script and stylesheet.
OPEN_ENDPOINTS = frozenset({"ui.sign_in", "ui.sign_in_with_certificate", "ui.sign_in_link",
                            "ui.redeem_link_page", "ui.static", "ui.home"})
POLL_HEADER = "X-Dashboard-Poll"
# How often a page's script refreshes it while its tab is shown, and while it is hidden.
POLL_VISIBLE_MS = 3_000
POLL_HIDDEN_MS = 60_000


@bp.before_request
def require_viewer() -> WerkzeugResponse | None:
    """Know who is looking before any page: a live session whose certificate is still
    registered, looking at its own subscription; a form must carry the session's CSRF token
    and the dashboard must not be read-only."""
    if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
        return None
    now = runtime().clock.now()
    cookie = request.cookies.get(COOKIE, "")
    viewer = find_viewer(read_connection(), cookie, now) if cookie else None
    if viewer is None:
        if request.method == "GET":
            return redirect(f"{PREFIX}/sign-in?next={quote(request.full_path.rstrip('?'))}")
        raise Forbidden("Sign in to the dashboard first: the session has ended.")
    sub = (request.view_args or {}).get("sub")
    if sub is not None and sub.lower() != viewer.subscription_id.lower():
        raise NotFound(f"No page of this session's subscription matches {request.path}.")
    g.viewer, g.subscription_id, g.thumbprint, g.actor = (
        viewer, viewer.subscription_id, viewer.thumbprint, viewer.name)
    if request.method == "POST":
        _check_form(viewer.csrf_token, changes=request.endpoint != "ui.sign_out")
    if needs_touch(viewer, now) and not request.headers.get(POLL_HEADER):
        with transaction() as session:  # polling is not use: an idle tab still ends
            touch_session(session, cookie, now)
    return None


def _check_form(csrf_token: str, *, changes: bool) -> None:
    """A form must carry the session's CSRF token; one that `changes` something is refused
    while the dashboard is read-only."""
    if changes and runtime().settings.ui.read_only:
        raise Forbidden("The dashboard is read-only (ui.read_only): it changes nothing.")
    sent = request.form.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), csrf_token.encode()):
        raise Forbidden("The form's CSRF token is missing or does not match the session.")


def add_page_headers(response: Response) -> Response:
    """What every dashboard answer carries: the content policy, no framing, no caching."""
    if is_dashboard_path(request.path):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if request.endpoint != "ui.static":
            response.headers["Cache-Control"] = "no-store"
    return response

