"""Signing in: with the certificate the browser presents, or with a one-time link."""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime, timedelta

from flask import make_response, redirect, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.api.auth import presented_certificate
from scheduler.api.runtime import read_connection, runtime, snapshot, transaction
from scheduler.errors import Forbidden
from scheduler.security import pki
from scheduler.services.certificates import is_authorized, subscriptions_of_certificate
from scheduler.services.dashboard_sessions import (
    SESSION_LIFETIME,
    OpenedSession,
    end_session,
    find_viewer,
    open_session,
    redeem_link,
)
from scheduler.ui.blueprint import COOKIE, PREFIX, bp

# The sign-in forms' CSRF token goes both in a cookie and in the form (double submit): a page
# of another site can make a browser post a form, but can neither read nor set this cookie.
SIGN_IN_COOKIE = "__Host-scheduler-sign-in"
# Long enough to read the page and press the button; a sign-in link lasts as long.
SIGN_IN_FORM_LIFETIME = timedelta(minutes=10)
SIGN_IN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
SIGN_IN_FIELD = "csrf"


def _sign_in_token() -> str:
    """The token of this browser's sign-in forms: the one its cookie holds, so that two
    sign-in pages open at once both work, or a new one."""
    held = request.cookies.get(SIGN_IN_COOKIE, "")
    return held if SIGN_IN_TOKEN.fullmatch(held) else secrets.token_urlsafe(32)


def _sign_in_page(template: str, **context: object) -> WerkzeugResponse:
    """A sign-in page, its forms carrying the token its cookie holds."""
    token = _sign_in_token()
    response = make_response(render_template(template, csrf=token, **context))
    response.set_cookie(SIGN_IN_COOKIE, token,
                        max_age=int(SIGN_IN_FORM_LIFETIME.total_seconds()), path="/",
                        secure=True, httponly=True, samesite="Strict")
    return response


def _check_sign_in_form() -> None:
    """A sign-in form must carry the token its page's cookie holds; else nothing is done."""
    held = request.cookies.get(SIGN_IN_COOKIE, "")
    sent = request.form.get(SIGN_IN_FIELD, "")
    if not held or not sent or not hmac.compare_digest(held.encode(), sent.encode()):
        raise Forbidden("The sign-in form's CSRF token is missing or does not match its "
                        "cookie: open the sign-in page again (its form lasts 10 minutes), "
                        "and send it from there.")


def _next_page(default: str) -> str:
    """Where to go once signed in: a dashboard page named by `next`, never another site."""
    wanted = request.values.get("next", "")
    if wanted.startswith(PREFIX + "/") and not wanted.startswith("//"):
        return wanted
    return default


def _signed_in(opened: OpenedSession) -> WerkzeugResponse:
    """Set the session's cookie and go on to the page asked for."""
    response = redirect(_next_page(f"{PREFIX}/{opened.subscription_id}/"), code=303)
    response.set_cookie(COOKIE, opened.cookie, max_age=int(SESSION_LIFETIME.total_seconds()),
                        path="/", secure=True, httponly=True, samesite="Strict")
    # Signed in, the browser needs no sign-in form's token any more.
    response.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True,
                           samesite="Strict")
    return response


def _presented() -> tuple[str, str, list[str], datetime]:
    """The browser's certificate: its name, thumbprint and the subscriptions it is
    registered to ("" and none without one)."""
    der, thumb, now = presented_certificate()
    if der is None or not pki.valid_since(der, now):
        return "", "", [], now
    with snapshot() as session:
        subscriptions = [sub for sub in subscriptions_of_certificate(session, thumb)
                         if is_authorized(session.connection(), sub, thumb, now)]
    return pki.name_of_der(der), thumb, subscriptions, now


@bp.get("/", strict_slashes=False)
def home() -> WerkzeugResponse:
    """The dashboard's front door: the session's overview, or signing in."""
    cookie = request.cookies.get(COOKIE, "")
    viewer = find_viewer(read_connection(), cookie, runtime().clock.now()) if cookie else None
    if viewer is None:
        return redirect(f"{PREFIX}/sign-in")
    return redirect(f"{PREFIX}/{viewer.subscription_id}/")


@bp.get("/sign-in")
def sign_in() -> WerkzeugResponse:
    """How to sign in: as the certificate the browser presents, if it is registered, or
    with a link from `scheduler dashboard link`."""
    name, thumb, subscriptions, _ = _presented()
    return _sign_in_page("sign_in.html", name=name, thumbprint=thumb,
                         subscriptions=subscriptions, next=_next_page(""))


@bp.post("/sign-in/certificate")
def sign_in_with_certificate() -> WerkzeugResponse:
    """Open a session as the presented certificate, in one of its subscriptions."""
    _check_sign_in_form()
    _, thumb, subscriptions, now = _presented()
    wanted = request.form.get("subscription", "")
    if wanted not in subscriptions:
        raise Forbidden("The browser presents no certificate registered to that "
                        "subscription.")
    with transaction() as session:
        opened = open_session(session, wanted, thumb, now)
    return _signed_in(opened)


@bp.get("/sign-in/link/<token>")
def sign_in_link(token: str) -> WerkzeugResponse:
    """A sign-in link's page: it asks before it uses the link up, so that a preview of
    the link by a chat or mail program does not."""
    return _sign_in_page("sign_in_link.html", token=token)


@bp.post("/sign-in/link/<token>")
def redeem_link_page(token: str) -> WerkzeugResponse:
    """Open a session with a one-time link."""
    _check_sign_in_form()
    with transaction() as session:
        opened = redeem_link(session, token, runtime().clock.now())
    if opened is None:
        raise Forbidden("This sign-in link is unknown, used, or expired (a link works once, "
                        "within 10 minutes); ask for another with `scheduler dashboard link`.")
    return _signed_in(opened)


@bp.post("/sign-out")
def sign_out() -> WerkzeugResponse:
    """End the session."""
    with transaction() as session:
        end_session(session, request.cookies.get(COOKIE, ""))
    response = redirect(f"{PREFIX}/sign-in", code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response
