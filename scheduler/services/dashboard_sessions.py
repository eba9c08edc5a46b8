"""Signing in to the dashboard: one-time links and sessions, each bound to a registered
management certificate and one subscription.

Only hashes of the texts handed out are stored, as for bearer tokens. A session is checked
against its certificate's registration on every request, so deleting the certificate ends
it at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, or_, select, update
from sqlalchemy.orm import Session

from scheduler.db.models import DashboardLink, DashboardSession
from scheduler.services.certificates import certificate_name, is_authorized
from scheduler.services.errors import NotFound
from scheduler.services.principals import sha256_hex

LINK_LIFETIME = timedelta(minutes=10)
SESSION_IDLE = timedelta(hours=8)
SESSION_LIFETIME = timedelta(days=7)
# A session's last use is written at most this often: every page polls.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class OpenedSession:
    """A session just opened: the cookie's text (held in clear only here) and its
    subscription."""

    cookie: str
    subscription_id: str


@dataclass(frozen=True)
class Viewer:
    """Who a session stands for: a certificate's view of one subscription, and the CSRF
    token its forms carry."""

    subscription_id: str
    thumbprint: str
    name: str
    csrf_token: str
    last_seen_at: datetime


def create_link(session: Session, subscription_id: str, thumbprint: str, now: datetime
                ) -> str:
    """A one-time sign-in token for a certificate registered to the subscription, good for
    `LINK_LIFETIME`."""
    if not is_authorized(session.connection(), subscription_id, thumbprint.upper(), now):
        raise NotFound(f"The certificate {thumbprint} is not registered to the subscription "
                       f"{subscription_id}, or has expired.")
    token = secrets.token_urlsafe(32)
    session.execute(delete(DashboardLink).where(DashboardLink.expires_at <= now))
    session.add(DashboardLink(token_hash=sha256_hex(token), subscription_id=subscription_id,
                              thumbprint=thumbprint.upper(), expires_at=now + LINK_LIFETIME))
    return token


def redeem_link(session: Session, token: str, now: datetime) -> OpenedSession | None:
    """Open a session with a sign-in link, which it uses up; None when the link is unknown,
    used, expired, or its certificate is no longer registered."""
    link = session.execute(
        delete(DashboardLink).where(DashboardLink.token_hash == sha256_hex(token))
        .returning(DashboardLink.subscription_id, DashboardLink.thumbprint,
                   DashboardLink.expires_at)).first()
    if link is None or link.expires_at <= now:
        return None
    if not is_authorized(session.connection(), link.subscription_id, link.thumbprint, now):
        return None
    return open_session(session, link.subscription_id, link.thumbprint, now)


def open_session(session: Session, subscription_id: str, thumbprint: str, now: datetime
                 ) -> OpenedSession:
    """Open a session for a certificate the caller has checked is registered to the
    subscription; sessions that have ended are cleared away on the way."""
    session.execute(delete(DashboardSession).where(or_(
        DashboardSession.last_seen_at <= now - SESSION_IDLE,
        DashboardSession.created_at <= now - SESSION_LIFETIME)))
    cookie = secrets.token_urlsafe(32)
    session.add(DashboardSession(
        token_hash=sha256_hex(cookie), subscription_id=subscription_id,
        thumbprint=thumbprint.upper(), csrf_token=secrets.token_urlsafe(32), created_at=now,
        last_seen_at=now))
    return OpenedSession(cookie=cookie, subscription_id=subscription_id)


def find_viewer(conn: Connection, cookie: str, now: datetime) -> Viewer | None:
    """Who a session cookie stands for; None once the session has been idle too long, has
    lasted too long, was ended, or its certificate is no longer registered."""
    found = Session(bind=conn).scalar(
        select(DashboardSession).where(DashboardSession.token_hash == sha256_hex(cookie)))
    if found is None:
        return None
    if found.last_seen_at <= now - SESSION_IDLE or found.created_at <= now - SESSION_LIFETIME:
        return None
    if not is_authorized(conn, found.subscription_id, found.thumbprint, now):
        return None
    return Viewer(subscription_id=found.subscription_id, thumbprint=found.thumbprint,
                  name=certificate_name(conn, found.thumbprint), csrf_token=found.csrf_token,
                  last_seen_at=found.last_seen_at)


def needs_touch(viewer: Viewer, now: datetime) -> bool:
    """Whether the session's last use is stale enough to be written again."""
    return now - viewer.last_seen_at >= TOUCH_EVERY


def touch_session(session: Session, cookie: str, now: datetime) -> None:
    """Record that the session was used now: its idle time starts again."""
    session.execute(update(DashboardSession)
                    .where(DashboardSession.token_hash == sha256_hex(cookie))
                    .values(last_seen_at=now))


def end_session(session: Session, cookie: str) -> None:
    """End a session (signing out)."""
    session.execute(delete(DashboardSession)
                    .where(DashboardSession.token_hash == sha256_hex(cookie)))
