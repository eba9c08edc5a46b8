"""Alerts: the alerts made of a collection's jobs' events (of one job's, under the job) with
their delivery to each channel, and the collection's default alert rules."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from scheduler.api.requests import check_api_version, count_parameter, field_error, read_json
from scheduler.api.responses import json_response
from scheduler.api.runtime import call, read_connection, transaction
from scheduler.api.schemas.job_codec import decode_alerts, encode_alerts
from scheduler.api.schemas.jobs import parse_alerts
from scheduler.domain import InvalidField
from scheduler.domain.durations import format_datetime
from scheduler.services import alerts as services
from scheduler.services.alerts import DEFAULT_TOP, MAX_TOP, SentAlert
from scheduler.services.calls import record_and_wake
from scheduler.services.errors import NotFound

bp = Blueprint("alerts", __name__)

# Matched in lower case: the request adapter lower-cases these words.
COLLECTION = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>"
MAX_RULES_BYTES = 8 * 1024


@bp.before_request
def _api_version() -> None:
    check_api_version()


def alert_document(alert: SentAlert) -> dict[str, Any]:
    """An alert as answered: what it tells, and its delivery to each channel."""
    document: dict[str, Any] = {
        "id": alert.id, "jobId": alert.job_id, "event": alert.event,
        "occurrence": alert.occurrence, "executionId": alert.execution_id,
        "createdAt": format_datetime(alert.created_at), "subject": alert.subject,
        "text": alert.text, "facts": alert.facts, "channels": alert.channels,
        "status": alert.status, "attempts": alert.attempts, "deliveries": alert.deliveries,
    }
    if alert.next_attempt_at is not None:
        document["nextAttemptAt"] = format_datetime(alert.next_attempt_at)
    if alert.finished_at is not None:
        document["finishedAt"] = format_datetime(alert.finished_at)
    return document


def _top() -> int:
    return count_parameter("$top", MAX_TOP, minimum=1) or DEFAULT_TOP


@bp.get(COLLECTION + "/alerts", strict_slashes=False)
def list_collection_alerts(sub: str, cs: str, jc: str) -> Response:
    """The alerts of the collection's jobs, newest first: `{"value": [...]}`; `$top`
    (default 100, at most 1,000)."""
    found = services.list_alerts(read_connection(), g.subscription_id, cs, jc, top=_top())
    return json_response({"value": [alert_document(alert) for alert in found]})


@bp.get(COLLECTION + "/jobs/<job_id>/alerts", strict_slashes=False)
def list_job_alerts(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """The alerts of one job, newest first, as the collection's."""
    found = services.list_alerts(read_connection(), g.subscription_id, cs, jc, job_id,
                                 top=_top())
    return json_response({"value": [alert_document(alert) for alert in found]})


@bp.get(COLLECTION + "/defaultalerts", strict_slashes=False)
def get_default_alerts(sub: str, cs: str, jc: str) -> Response:
    """The collection's default alert rules; 404 when it has none."""
    rules = services.read_default_rules(read_connection(), g.subscription_id, cs, jc)
    if rules is None:
        raise NotFound(f"The job collection {jc} has no default alert rules.")
    return json_response(encode_alerts(rules))


@bp.put(COLLECTION + "/defaultalerts", strict_slashes=False)
def put_default_alerts(sub: str, cs: str, jc: str) -> Response:
    """Set the collection's default alert rules (200, as stored)."""
    try:
        rules = decode_alerts(parse_alerts(read_json(MAX_RULES_BYTES), ""))
    except InvalidField as exc:
        raise field_error(exc) from None
    context = call()
    with transaction() as session:
        services.put_default_rules(session, context, cs, jc, rules)
        record_and_wake(session, context, "alerts.default", 200, wake=False)
    return json_response(encode_alerts(rules))


@bp.delete(COLLECTION + "/defaultalerts", strict_slashes=False)
def delete_default_alerts(sub: str, cs: str, jc: str) -> Response:
    """Take the collection's default alert rules away (204)."""
    context = call()
    with transaction() as session:
        services.delete_default_rules(session, context, cs, jc)
        record_and_wake(session, context, "alerts.default", 204, wake=False)
    return Response(b"", status=204)
