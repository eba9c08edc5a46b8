"""One-time sign-in links for the dashboard, asked for over the API: the link opens a
session for the certificate that asked, in its subscription."""

from __future__ import annotations

from flask import Blueprint, Response, g

from scheduler.api.dashboard_paths import sign_in_link_path
from scheduler.api.responses import json_response
from scheduler.api.runtime import runtime, transaction
from scheduler.domain.durations import format_datetime
from scheduler.services.dashboard_sessions import LINK_LIFETIME, create_link

bp = Blueprint("dashboard_links", __name__)


@bp.post("/<sub>/dashboard/links", strict_slashes=False)
def create_dashboard_link(sub: str) -> Response:
    """A one-time URL that opens a dashboard session as the calling certificate (201)."""
    now = runtime().clock.now()
    with transaction() as session:
        token = create_link(session, g.subscription_id, g.thumbprint, now)
    return json_response({"url": runtime().public_url + sign_in_link_path(token),
                          "expires": format_datetime(now + LINK_LIFETIME)}, 201)
