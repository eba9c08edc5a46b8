"""Cloud services and job collections: the XML half of the ASM API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from xml.etree.ElementTree import Element

from flask import Blueprint, Response, g, request

from scheduler.api import xml
from scheduler.api.responses import accepted, xml_response
from scheduler.api.runtime import call, request_id, runtime, snapshot, transaction
from scheduler.domain.quotas import canonical_plan
from scheduler.domain.recurrence import FREQUENCIES
from scheduler.errors import BadRequest, InvalidXmlRequest
from scheduler.services import check_name, collections
from scheduler.services import cloudservices as services
from scheduler.services.audit import Target, record_change
from scheduler.services.calls import wake_after_commit, wake_on_commit
from scheduler.services.operations import start_operation
from scheduler.services.records import CloudServiceRecord, CollectionRecord

bp = Blueprint("cloudservices", __name__)

CS = "/<sub>/cloudservices/<cs>"
COLLECTIONS = CS + "/resources/scheduler/jobcollections"
PASS_THROUGH = CS + "/resources/scheduler/~/jobcollections"


# --- documents -----------------------------------------------------------------------------

def _frequency_and_interval(gap: timedelta) -> tuple[str, int]:
    seconds = int(gap.total_seconds())
    for name, size in (("Day", 86400), ("Hour", 3600), ("Minute", 60)):
        if seconds >= size and seconds % size == 0:
            return name, seconds // size
    return "Second", max(seconds, 1)


def collection_xml(collection: CollectionRecord, service: CloudServiceRecord,
                   root: bool = False) -> str:
    """A job collection as ASM's `<Resource>`."""
    limits = collections.collection_limits(collection, runtime().settings.plans)
    frequency, interval = _frequency_and_interval(limits.min_recurrence)
    ready = collection.lifecycle == services.ACTIVE
    status = (xml.element("Error", xml.element("HttpCode", value="200"),
                          xml.element("Message", value="OK"))
              + xml.element("Result", value="Succeeded") if ready
              else xml.element("Result", value="InProgress"))
    return xml.element(
        "Resource",
        xml.element("CloudServiceSettings", xml.element("GeoRegion", value=service.geo_region)),
        xml.element("ETag", value=collection.etag),
        xml.element("IntrinsicSettings",
                    xml.element("Plan", value=collection.plan),
                    xml.element("Quota",
                                xml.element("MaxJobCount", value=str(limits.max_job_count)),
                                *([xml.element("MaxJobOccurrence",
                                               value=str(collection.max_job_occurrence))]
                                  if collection.max_job_occurrence else []),
                                xml.element("MaxRecurrence",
                                            xml.element("Frequency", value=frequency),
                                            xml.element("Interval", value=str(interval))))),
        xml.element("Label", value=xml.encode_label(collection.label)),
        xml.element("Name", value=collection.name),
        xml.element("OperationStatus", status,
                    xml.element("Type", value=collection.last_operation)),
        "<PromotionCode/>",
        xml.element("ResourceProviderNamespace", value="Scheduler"),
        xml.element("SchemaVersion", value="1.1"),
        xml.element("State", value=collection.state),
        '<SubState i:nil="true"/>',
        xml.element("Type", value="jobcollections"),
        root=root,
    )


def cloud_service_xml(service: CloudServiceRecord, members: Sequence[CollectionRecord],
                      root: bool = False) -> str:
    """A cloud service with its job collections as `Resources`."""
    return xml.element(
        "CloudService",
        xml.element("Name", value=service.name),
        xml.element("Label", value=service.label),
        xml.element("Description", value=service.description),
        xml.element("GeoRegion", value=service.geo_region),
        *([xml.element("Email", value=service.email)] if service.email else []),
        xml.element("Resources", *(collection_xml(c, service) for c in members)),
        root=root,
    )


# --- cloud services ------------------------------------------------------------------------

@bp.get("/<sub>/cloudservices", strict_slashes=False)
def list_cloud_services(sub: str) -> Response:
    """All cloud services of the subscription, with their collections."""
    with snapshot() as session:
        parts = [cloud_service_xml(s, collections.list_collections(session, s.id))
                 for s in services.list_cloud_services(session, g.subscription_id)]
    return xml_response(xml.document("CloudServices", *parts))


@bp.get(CS, strict_slashes=False)
def get_cloud_service(sub: str, cs: str) -> Response:
    """One cloud service."""
    with snapshot() as session:
        service = services.get_cloud_service(session, g.subscription_id, cs)
        body = cloud_service_xml(service, collections.list_collections(session, service.id),
                                 root=True)
    return xml_response(body, headers={"ETag": service.etag})


def _cloud_service_fields(root: Element) -> services.CloudServiceFields:
    label = xml.text(root, "Label", max_length=100)
    region = xml.text(root, "GeoRegion", max_length=100)
    if not label:
        raise InvalidXmlRequest("<Label> is required.")
    if not region:
        raise InvalidXmlRequest("<GeoRegion> is required.")
    return services.CloudServiceFields(
        label=label, description=xml.text(root, "Description") or "", geo_region=region,
        email=xml.text(root, "Email", max_length=256) or None,
    )


@bp.put(CS, strict_slashes=False)
def create_cloud_service(sub: str, cs: str) -> Response:
    """Create a cloud service (asynchronous)."""
    check_name(cs, "cloud service name")
    fields = _cloud_service_fields(xml.parse_xml(request.get_data(), xml.CLOUD_SERVICE))
    rt = runtime()
    context = call()
    with transaction() as session:
        service = services.begin_create_cloud_service(session, g.subscription_id, cs, fields,
                                                      context.now)
        record_change(session, context, "cloudservice.create", Target(cs),
                      detail=f"region: {fields.geo_region}")
        start_operation(session, request_id(), g.subscription_id, "cloudservice.create",
                        {"cloud_service_id": service.id}, context.now, rt.node_id)
    rt.operations.submit(request_id())
    return accepted({"ETag": service.etag})


@bp.delete(CS, strict_slashes=False)
def delete_cloud_service(sub: str, cs: str) -> Response:
    """Delete a cloud service, its collections and their jobs (asynchronous); recorded in
    the audit when accepted."""
    rt = runtime()
    context = call()
    with transaction() as session:
        service_id = services.begin_delete_cloud_service(session, g.subscription_id, cs)
        record_change(session, context, "cloudservice.delete", Target(cs))
        start_operation(session, request_id(), g.subscription_id, "cloudservice.delete",
                        {"cloud_service_id": service_id}, context.now, rt.node_id)
    rt.operations.submit(request_id())
    wake_after_commit(rt.db, rt.settings.home)  # engines drop calls readied for its jobs
    return accepted()


# --- job collections -----------------------------------------------------------------------

@bp.route(COLLECTIONS, methods=["GET", "POST"], strict_slashes=False)
def check_name_availability(sub: str, cs: str) -> Response:
    """`?op=checknameavailability&resourceName=NAME`."""
    if request.args.get("op", "").lower() != "checknameavailability":
        raise BadRequest("Use ?op=checknameavailability&resourceName=NAME on this path.")
    name = request.args.get("resourceName") or request.args.get("resourcename")
    if not name:
        raise BadRequest("The query parameter resourceName is required.")
    with snapshot() as session:
        available = collections.is_name_available(session, g.subscription_id, cs, name)
    reason = "" if available else f"The job collection name {name} is already in use."
    flag = "true" if available else "false"
    return xml_response(xml.document(
        "AvailabilityResponse",
        xml.element("Result", value=flag),
        xml.element("IsAvailable", value=flag),
        xml.element("Reason", value=reason),
    ))


def _collection_fields(root: Element) -> tuple[collections.CollectionFields, str | None]:
    plans = list(runtime().settings.plans)
    given = xml.text(root, "IntrinsicSettings", "Plan", max_length=64) or "Standard"
    plan = canonical_plan(given, plans)
    if plan is None:
        raise BadRequest(f"Plan must be one of {', '.join(plans)} (or Premium); got {given!r}.")
    quota = xml.child(root, "IntrinsicSettings", "Quota")
    frequency = xml.text(quota, "MaxRecurrence", "Frequency", max_length=16)
    if frequency:
        matched = [f for f in FREQUENCIES if f == frequency.lower()]
        if not matched:
            raise BadRequest(f"Quota.MaxRecurrence.Frequency must be one of "
                             f"{', '.join(f.title() for f in FREQUENCIES)}.")
        frequency = matched[0]
    fields = collections.CollectionFields(
        plan=plan,
        label=xml.decode_label(xml.text(root, "Label", max_length=400)),
        max_job_count=xml.integer(quota, "MaxJobCount"),
        max_job_occurrence=xml.integer(quota, "MaxJobOccurrence"),
        max_recurrence_frequency=frequency or None,
        max_recurrence_interval=xml.integer(quota, "MaxRecurrence", "Interval"),
        state=_collection_state(root),
    )
    return fields, xml.text(root, "ETag", max_length=64) or None


def _collection_state(root: Element) -> str:
    """The `<State>` a collection is put in. The document is the whole desired collection,
    as in Azure's PUT: without `<State>` it is started, as without `<Quota>` it has none."""
    given = xml.text(root, "State", max_length=64)
    if not given:
        return collections.STARTED
    matched = [state for state in collections.COLLECTION_STATES if state.lower() == given.lower()]
    if not matched:
        raise BadRequest(f"<State> must be one of {', '.join(collections.COLLECTION_STATES)}; "
                         f"got {given!r}.")
    return matched[0]


@bp.put(COLLECTIONS + "/<jc>", strict_slashes=False)
def put_collection(sub: str, cs: str, jc: str) -> Response:
    """Create or update a job collection (asynchronous)."""
    check_name(jc, "job collection name")
    fields, etag = _collection_fields(xml.parse_xml(request.get_data(), xml.JOB_COLLECTION))
    rt = runtime()
    context = call()
    with transaction() as session:
        collection, created = collections.put_collection(
            session, context, cs, jc, fields,
            if_match=etag or request.headers.get("If-Match"),
        )
        start_operation(session, request_id(), g.subscription_id, "collection.put",
                        {"collection_id": collection.id}, context.now, rt.node_id)
        if not created:  # engines drop calls readied for a suspended collection's jobs
            wake_on_commit(session, rt.settings.home)
    rt.operations.submit(request_id())
    return accepted({"ETag": collection.etag})


@bp.delete(COLLECTIONS + "/<jc>", strict_slashes=False)
def delete_collection(sub: str, cs: str, jc: str) -> Response:
    """Delete a job collection with its jobs and history (asynchronous); recorded in the
    audit when accepted."""
    rt = runtime()
    context = call()
    with transaction() as session:
        collection_id = collections.delete_collection(session, context, cs, jc)
        start_operation(session, request_id(), g.subscription_id, "collection.delete",
                        {"collection_id": collection_id}, context.now, rt.node_id)
    rt.operations.submit(request_id())
    wake_after_commit(rt.db, rt.settings.home)  # engines drop calls readied for its jobs
    return accepted()


@bp.get(COLLECTIONS + "/<jc>", strict_slashes=False)
@bp.get(PASS_THROUGH + "/<jc>", strict_slashes=False)
def get_collection(sub: str, cs: str, jc: str) -> Response:
    """One job collection as `<Resource>`."""
    with snapshot() as session:
        collection, service = collections.get_collection_with_service(
            session, g.subscription_id, cs, jc)
        body = collection_xml(collection, service, root=True)
    return xml_response(body, headers={"ETag": collection.etag})
