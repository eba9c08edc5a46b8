"""Resource Manager's job collections: listed, read, put, patched, deleted, enabled and
disabled; and the status of the long operations those start."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, g
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.api.arm import paths
from scheduler.api.arm.documents import COLLECTION_TYPE, PROVIDER, page, pascal, resource
from scheduler.api.arm.requests import (
    CURRENT_VERSION,
    api_version,
    base_url,
    is_current_version,
)
from scheduler.api.jobs import check_enabling
from scheduler.api.requests import read_json
from scheduler.api.responses import answer_error, json_response
from scheduler.api.runtime import call, request_id, runtime, snapshot, transaction
from scheduler.api.schemas.jobs import merge_patch
from scheduler.domain.durations import format_datetime
from scheduler.domain.quotas import canonical_plan
from scheduler.domain.recurrence import FREQUENCIES
from scheduler.domain.states import CollectionState, JobState
from scheduler.errors import BadRequest, SchedulerError
from scheduler.services import check_name, collections
from scheduler.services.audit import ARROW, Target, record_change
from scheduler.services.calls import wake_after_commit, wake_on_commit
from scheduler.services.cloudservices import ensure_cloud_service, get_cloud_service
from scheduler.services.collections import MAX_QUOTA
from scheduler.services.errors import NotFound
from scheduler.services.jobs import StateChange, job_states_would_change, set_job_states_of
from scheduler.services.operations import FAILED, IN_PROGRESS, get_operation, start_operation
from scheduler.services.records import CloudServiceRecord, CollectionRecord

bp = Blueprint("arm_collections", __name__)

MAX_COLLECTION_BYTES = 64 * 1024
# What `properties.state` may be set to, and the collection and job states each means.
SETTABLE_STATES = {"enabled": (CollectionState.STARTED, JobState.ENABLED),
                   "disabled": (CollectionState.STARTED, JobState.DISABLED),
                   "suspended": (CollectionState.SUSPENDED, None)}
MAX_TAGS = 50
# The older api-versions name the first premium plan Premium.
OLD_PLAN_NAMES = {"P10Premium": "Premium"}


@bp.before_request
def _api_version() -> None:
    api_version()


# --- documents -----------------------------------------------------------------------------

def collection_id_path(subscription_id: str, group: str, name: str) -> str:
    """A collection's resource id."""
    return (f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/"
            f"{PROVIDER}/jobCollections/{name}")


def arm_state(collection: CollectionRecord) -> str:
    """A collection's state as Resource Manager says it: `Suspended` through ASM,
    `Disabled` after a disable (until an enable), else `Enabled`."""
    if collection.state == CollectionState.SUSPENDED:
        return "Suspended"
    return "Disabled" if collection.jobs_disabled else "Enabled"


def quota_document(collection: CollectionRecord) -> dict[str, Any]:
    """The quota a collection was given (nothing of its plan's own limits)."""
    quota: dict[str, Any] = {}
    if collection.max_job_count is not None:
        quota["maxJobCount"] = collection.max_job_count
    if collection.max_job_occurrence is not None:
        quota["maxJobOccurrence"] = collection.max_job_occurrence
    recurrence: dict[str, Any] = {}
    if collection.max_recurrence_frequency is not None:
        recurrence["frequency"] = pascal(collection.max_recurrence_frequency)
    if collection.max_recurrence_interval is not None:
        recurrence["interval"] = collection.max_recurrence_interval
    if recurrence:
        quota["maxRecurrence"] = recurrence
    return quota


def collection_resource(collection: CollectionRecord, service: CloudServiceRecord
                        ) -> dict[str, Any]:
    """A collection as Resource Manager's resource: its group is its cloud service."""
    plan = collection.plan
    if not is_current_version():
        plan = OLD_PLAN_NAMES.get(plan, plan)
    properties: dict[str, Any] = {"sku": {"name": plan}, "state": arm_state(collection)}
    quota = quota_document(collection)
    if quota:
        properties["quota"] = quota
    return resource(collection_id_path(g.subscription_id, service.name, collection.name),
                    COLLECTION_TYPE, collection.name, properties,
                    location=service.geo_region, tags=json.loads(collection.tags or "{}"))


# --- reading a collection document ---------------------------------------------------------

@dataclass(frozen=True)
class CollectionDocument:
    """What a collection document sets: the group's region (to make it), the tags, the
    collection's fields, and whether its jobs are to be disabled."""

    location: str | None
    tags: dict[str, str]
    fields: collections.CollectionFields
    jobs_disabled: bool | None


def _member(document: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}{key}: must be an object.")
    return value


def _whole_number(quota: dict[str, Any], key: str, where: str) -> int | None:
    value = quota.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUOTA:
        raise BadRequest(f"{where}.{key}: must be a whole number from 1 to {MAX_QUOTA}.")
    return value


def _text(value: Any, where: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise BadRequest(f"{where}: must be a text of 1 to {max_length} characters.")
    return value


def read_tags(value: Any) -> dict[str, str]:
    """A resource's tags: at most 50, names up to 512 characters, values up to 256."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_TAGS:
        raise BadRequest(f"tags: must be an object of at most {MAX_TAGS} names and values.")
    for name, text in value.items():
        _text(name, "tags", 512)
        if not isinstance(text, str) or len(text) > 256:
            raise BadRequest(f"tags.{name}: must be a text of at most 256 characters.")
    return dict(value)


def read_collection(body: Any, name: str, label: str) -> CollectionDocument:
    """A collection document checked, each wrong member named; `label` is kept (the ASM
    API's, which Resource Manager has not)."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    given_name = body.get("name")
    if given_name is not None and (not isinstance(given_name, str)
                                   or given_name.lower() != name.lower()):
        raise BadRequest(f"name: must be the collection's name in the path, {name}.")
    location = body.get("location")
    if location is not None:
        location = _text(location, "location", 100)
    properties = _member(body, "properties", "")
    sku = _member(properties, "sku", "properties.")
    plans = list(runtime().settings.plans)
    given_plan = sku.get("name", "Standard")
    plan = canonical_plan(given_plan, plans) if isinstance(given_plan, str) else None
    if plan is None:
        raise BadRequest(f"properties.sku.name: must be one of {', '.join(plans)} "
                         f"(or Premium); got {given_plan!r}.")
    quota = _member(properties, "quota", "properties.")
    recurrence = _member(quota, "maxRecurrence", "properties.quota.")
    frequency = recurrence.get("frequency")
    if frequency is not None and (not isinstance(frequency, str)
                                  or frequency.lower() not in FREQUENCIES):
        raise BadRequest("properties.quota.maxRecurrence.frequency: must be one of "
                         f"{', '.join(pascal(f) for f in FREQUENCIES)}.")
    state = properties.get("state", "Enabled")
    if not isinstance(state, str) or state.lower() not in SETTABLE_STATES:
        raise BadRequest("properties.state: must be Enabled, Disabled or Suspended; "
                         f"got {state!r}.")
    collection_state, jobs_state = SETTABLE_STATES[state.lower()]
    fields = collections.CollectionFields(
        plan=plan, label=label,
        max_job_count=_whole_number(quota, "maxJobCount", "properties.quota"),
        max_job_occurrence=_whole_number(quota, "maxJobOccurrence", "properties.quota"),
        max_recurrence_frequency=frequency.lower() if frequency else None,
        max_recurrence_interval=_whole_number(recurrence, "interval",
                                              "properties.quota.maxRecurrence"),
        state=collection_state)
    disabled = None if jobs_state is None else jobs_state == JobState.DISABLED
    return CollectionDocument(location, read_tags(body.get("tags")), fields, disabled)


# --- listing and reading -------------------------------------------------------------------

@bp.get(paths.ALL_COLLECTIONS, strict_slashes=False)
def list_by_subscription(sub: str) -> Response:
    """Every collection of the subscription, in every group."""
    with snapshot() as session:
        found = collections.list_subscription_collections(session, g.subscription_id)
        values = [collection_resource(c, s) for c, s in found]
    return json_response(page(values, None))


@bp.get(paths.COLLECTIONS, strict_slashes=False)
def list_by_group(sub: str, rg: str) -> Response:
    """The collections of one group (cloud service)."""
    with snapshot() as session:
        service = _group(session, rg)
        values = [collection_resource(c, service)
                  for c in collections.list_collections(session, service.id)]
    return json_response(page(values, None))


def _group(session: Session, rg: str) -> CloudServiceRecord:
    try:
        return get_cloud_service(session, g.subscription_id, rg)
    except NotFound:
        raise GroupNotFound(f"The resource group {rg} could not be found.") from None


class GroupNotFound(NotFound):
    """The resource group (cloud service) a path names does not exist."""

    code = "ResourceGroupNotFound"


@bp.get(paths.COLLECTION, strict_slashes=False)
def get_collection(sub: str, rg: str, jc: str) -> Response:
    """One collection."""
    with snapshot() as session:
        collection, service = collections.get_collection_with_service(
            session, g.subscription_id, rg, jc)
        return json_response(collection_resource(collection, service))


# --- writing -------------------------------------------------------------------------------

def _existing(session: Session, rg: str, jc: str) -> CollectionRecord | None:
    try:
        return collections.get_collection(session, g.subscription_id, rg, jc, for_update=True)
    except NotFound:
        return None


def _write(session: Session, rg: str, jc: str, document: CollectionDocument,
           before: CollectionRecord | None, kind: str) -> tuple[dict[str, Any], bool]:
    """Put a read collection document, making its group if need be; its jobs are
    disabled or enabled when its state moves to or from Disabled. Recorded in the audit as
    `kind` (`collection.create` for a new one)."""
    rt = runtime()
    context = call()
    try:
        service = _group(session, rg)
    except GroupNotFound:
        if document.location is None:
            raise
        service = ensure_cloud_service(session, g.subscription_id, rg, document.location,
                                       context.now)
        record_change(session, context, "cloudservice.create", Target(rg),
                      detail=f"region: {document.location}")
    was_disabled = before is not None and before.jobs_disabled
    disabled = was_disabled if document.jobs_disabled is None else document.jobs_disabled
    tags = json.dumps(document.tags) if document.tags else None
    collection, created = collections.put_collection(
        session, context, rg, jc, document.fields, at_once=True, kind=kind,
        also_changed=[("jobs", _jobs_word(was_disabled), _jobs_word(disabled)),
                      ("tags", before.tags if before else None, tags)])
    collection.tags = tags
    if disabled != was_disabled:
        set_job_states_of(session, collection,
                          JobState.DISABLED if disabled else JobState.ENABLED,
                          StateChange.of(context), check_enabling)
    if not created:  # engines drop, or take up, calls for its jobs
        wake_on_commit(session, rt.settings.home)
    session.flush()
    return collection_resource(collection, service), created


def _jobs_word(disabled: bool) -> str:
    return "disabled" if disabled else "enabled"


@bp.put(paths.COLLECTION, strict_slashes=False)
def put_collection(sub: str, rg: str, jc: str) -> Response:
    """Create (201) or replace (200) a collection, at once; a group that does not exist is
    made in the collection's `location`."""
    check_name(rg, "resource group name")
    check_name(jc, "job collection name")
    body = read_json(MAX_COLLECTION_BYTES)
    with transaction() as session:
        existing = _existing(session, rg, jc)
        document = read_collection(body, jc, existing.label if existing else jc)
        answer, created = _write(session, rg, jc, document, existing, "collection.put")
    return json_response(answer, 201 if created else 200)


@bp.patch(paths.COLLECTION, strict_slashes=False)
def patch_collection(sub: str, rg: str, jc: str) -> Response:
    """Merge a partial document into a collection."""
    body = read_json(MAX_COLLECTION_BYTES)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    with transaction() as session:
        existing = collections.get_collection(session, g.subscription_id, rg, jc,
                                              for_update=True)
        service = get_cloud_service(session, g.subscription_id, rg)
        current = collection_resource(existing, service)
        document = read_collection(merge_patch(current, body), jc, existing.label)
        answer, _ = _write(session, rg, jc, document, existing, "collection.patch")
    return json_response(answer)


@bp.delete(paths.COLLECTION, strict_slashes=False)
def delete_collection(sub: str, rg: str, jc: str) -> WerkzeugResponse:
    """Delete a collection with its jobs and history: hidden at once, purged by a long
    operation; recorded in the audit when accepted."""
    rt = runtime()
    with transaction() as session:
        collection_id = collections.delete_collection(session, call(), rg, jc)
        start_operation(session, request_id(), g.subscription_id, "collection.delete",
                        {"collection_id": collection_id}, rt.clock.now(), rt.node_id)
    wake_after_commit(rt.db, rt.settings.home)  # engines drop calls readied for its jobs
    return long_running()


@bp.post(paths.COLLECTION + "/enable", strict_slashes=False)
def enable_collection(sub: str, rg: str, jc: str) -> WerkzeugResponse:
    """Enable every job of the collection, which then reads `Enabled`."""
    return _set_job_states(rg, jc, JobState.ENABLED)


@bp.post(paths.COLLECTION + "/disable", strict_slashes=False)
def disable_collection(sub: str, rg: str, jc: str) -> WerkzeugResponse:
    """Disable every job of the collection, which then reads `Disabled`."""
    return _set_job_states(rg, jc, JobState.DISABLED)


def _set_job_states(rg: str, jc: str, state: str) -> WerkzeugResponse:
    """Start the long operation that enables or disables every job of a collection, if it
    changes anything; recorded in the audit now, and its jobs stamped with whom the request
    names."""
    rt = runtime()
    context = call()
    with transaction() as session:
        collection = collections.get_collection(session, g.subscription_id, rg, jc,
                                                for_update=True)
        if not job_states_would_change(session, collection, state):
            return Response(b"", status=200)
        verb = "enable" if state == JobState.ENABLED else "disable"
        record_change(session, context, f"collection.{verb}", Target(rg, collection.name),
                      detail=f"jobs {ARROW} {state}")
        start_operation(session, request_id(), g.subscription_id, "collection.jobs",
                        {"collection_id": collection.id, "state": state,
                         "actor": context.actor}, context.now, rt.node_id)
    return long_running()


def long_running() -> WerkzeugResponse:
    """The answer to a long operation just recorded: under 2016-03-01, 202 with where to
    poll it (`Azure-AsyncOperation`) and how soon (`Retry-After`), the work done in the
    background; under the older versions, once the work is done."""
    rt = runtime()
    operation_id = request_id()
    if is_current_version():
        rt.operations.submit(operation_id)
        url = (f"{base_url()}/subscriptions/{g.subscription_id}/providers/{PROVIDER}/"
               f"operations/{operation_id}?api-version={CURRENT_VERSION}")
        return Response(b"", status=202, headers={"Azure-AsyncOperation": url,
                                                  "Retry-After": "1"})
    rt.operations.run(operation_id)
    with snapshot() as session:
        operation = get_operation(session, g.subscription_id, operation_id)
        if operation.status == FAILED:
            error = SchedulerError(operation.error_message or "The operation failed.")
            error.code = operation.error_code or error.code
            return answer_error(error, operation.http_status or 500)
    return Response(b"", status=200)


@bp.get(paths.OPERATION, strict_slashes=False)
def operation_status(sub: str, operation_id: str) -> Response:
    """A long operation as Resource Manager's status document."""
    with snapshot() as session:
        operation = get_operation(session, g.subscription_id, operation_id)
        document: dict[str, Any] = {
            "id": f"/subscriptions/{g.subscription_id}/providers/{PROVIDER}/operations/"
                  f"{operation.id}",
            "name": operation.id, "status": operation.status,
            "startTime": format_datetime(operation.created_at)}
        if operation.status != IN_PROGRESS:
            document["endTime"] = format_datetime(operation.updated_at)
        if operation.status == FAILED:
            document["error"] = {"code": operation.error_code or "InternalError",
                                 "message": operation.error_message or ""}
    headers = {"Retry-After": "1"} if operation.status == IN_PROGRESS else None
    return json_response(document, headers=headers)
