"""Subscriptions: the tenants."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from scheduler.db.models import Subscription


def create_subscription(session: Session, name: str, now: datetime) -> str:
    """Create a subscription and return its id."""
    subscription = Subscription(id=str(uuid.uuid4()), name=name, created_at=now)
    session.add(subscription)
    return subscription.id


def subscription_exists(session: Session, subscription_id: str) -> bool:
    """Whether the subscription exists."""
    return session.get(Subscription, subscription_id) is not None
