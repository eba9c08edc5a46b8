"""Cloud services: region-bound containers of job collections."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scheduler.db.models import CloudService, JobCollection
from scheduler.db.session import Database
from scheduler.domain.states import Lifecycle
from scheduler.services import new_etag
from scheduler.services.errors import Conflict, NotFound

CREATING, ACTIVE, DELETING = Lifecycle.CREATING, Lifecycle.ACTIVE, Lifecycle.DELETING


@dataclass(frozen=True)
class CloudServiceFields:
    """What a client sets on a cloud service."""

    label: str
    description: str
    geo_region: str
    email: str | None = None


def list_cloud_services(session: Session, subscription_id: str) -> list[CloudService]:
    """The subscription's cloud services, by name."""
    query = select(CloudService).where(
        CloudService.subscription_id == subscription_id, CloudService.lifecycle != DELETING
    ).order_by(CloudService.name_key)
    return list(session.scalars(query))


def get_cloud_service(session: Session, subscription_id: str, name: str) -> CloudService:
    """One cloud service; 404 if the subscription has none by that name."""
    service = session.scalar(select(CloudService).where(
        CloudService.subscription_id == subscription_id,
        CloudService.name_key == name.lower(),
        CloudService.lifecycle != DELETING,
    ))
    if service is None:
        raise NotFound(f"The cloud service {name} does not exist.")
    return service


def begin_create_cloud_service(
    session: Session, subscription_id: str, name: str, fields: CloudServiceFields, now: datetime
) -> CloudService:
    """Insert a cloud service in state Creating; 409 if the name is taken."""
    taken = session.scalar(select(CloudService.id).where(
        CloudService.subscription_id == subscription_id, CloudService.name_key == name.lower()
    ))
    if taken is not None:
        raise Conflict(f"The cloud service {name} already exists.")
    service = CloudService(
        subscription_id=subscription_id, name=name, name_key=name.lower(), label=fields.label,
        description=fields.description, geo_region=fields.geo_region, email=fields.email,
        lifecycle=CREATING, etag=new_etag(), created_at=now,
    )
    session.add(service)
    session.flush()
    return service


def begin_delete_cloud_service(session: Session, subscription_id: str, name: str) -> int:
    """Mark a cloud service as being deleted, hiding it at once; returns its id."""
    service = get_cloud_service(session, subscription_id, name)
    service.lifecycle = DELETING
    session.execute(update(JobCollection).where(
        JobCollection.cloud_service_id == service.id).values(lifecycle=DELETING))
    return service.id


def finish_create_cloud_service(
    db: Database, payload: Mapping[str, Any], _extend_lease: Callable[[], None]
) -> None:
    """Operation handler: the cloud service is ready."""
    with db.transaction() as session:
        session.execute(update(CloudService).where(
            CloudService.id == payload["cloud_service_id"], CloudService.lifecycle == CREATING,
        ).values(lifecycle=ACTIVE))


def ensure_cloud_service(session: Session, subscription_id: str, name: str, geo_region: str,
                         now: datetime) -> CloudService:
    """The cloud service of that name, made at once in `geo_region` if there is none (a
    Resource Manager resource group: a collection put into one that does not exist makes
    it)."""
    try:
        return get_cloud_service(session, subscription_id, name)
    except NotFound:
        pass
    service = begin_create_cloud_service(session, subscription_id, name, CloudServiceFields(
        label=name, description="", geo_region=geo_region), now)
    service.lifecycle = ACTIVE
    return service
