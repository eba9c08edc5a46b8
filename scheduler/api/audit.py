"""The audit over the API: who changed a collection or a job, when, what and why, newest
first."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, g, request

from scheduler.api.origin import absolute_url
from scheduler.api.requests import check_api_version, count_parameter
from scheduler.api.responses import json_response
from scheduler.api.runtime import read_connection
from scheduler.domain.durations import format_datetime
from scheduler.errors import InvalidQueryParameter
from scheduler.services import collections
from scheduler.services.audit import MAX_PAGE, Change, Target, read_changes

bp = Blueprint("audit", __name__)

COLLECTION = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>"
PAGE_SIZE = 100
# The two names a page's position may be given by: the link's own, and a plain one.
POSITION_PARAMETERS = ("$skipToken", "before")
# Ids are the database's: any whole number a query parameter can spell (18 digits).
MAX_ID = 10**18 - 1


@bp.before_request
def _api_version() -> None:
    check_api_version()


def change_json(change: Change) -> dict[str, Any]:
    """One change as the audit's JSON; `jobId`, `detail` and `note` only where set."""
    document: dict[str, Any] = {"id": change.id, "time": format_datetime(change.at),
                                "actor": change.actor, "kind": change.kind}
    for key, value in (("jobId", change.target.job_id), ("detail", change.detail),
                       ("note", change.note)):
        if value is not None:
            document[key] = value
    document["requestId"] = change.request_id
    return document


def _position() -> int | None:
    """The id a page starts before: `$skipToken` (as a `nextLink` carries it) or `before`."""
    given = [name for name in POSITION_PARAMETERS if name in request.args]
    if len(given) > 1:
        raise InvalidQueryParameter("Give $skipToken or before, not both.")
    return count_parameter(given[0], MAX_ID, minimum=1) if given else None


def _page(target: Target) -> Response:
    """One page of the target's changes, newest first, with the link to the next."""
    top = count_parameter("$top", MAX_PAGE, minimum=1) or PAGE_SIZE
    before = _position()
    conn = read_connection()
    collections.collection_id(conn, g.subscription_id, target.cloud_service or "",
                              target.collection or "")  # 404 naming what does not exist
    changes = read_changes(conn, g.subscription_id, target, before_id=before,
                           limit=top + 1)
    document: dict[str, Any] = {"value": [change_json(c) for c in changes[:top]]}
    if len(changes) > top:
        query = {"api-version": request.args.get("api-version", "2014-04-01"),
                 "$top": str(top), "$skipToken": str(changes[top - 1].id)}
        document["nextLink"] = absolute_url(f"{request.path}?{urlencode(query)}")
    return json_response(document)


@bp.get(COLLECTION + "/audit", strict_slashes=False)
def collection_audit(sub: str, cs: str, jc: str) -> Response:
    """The changes made to a collection and its jobs: `$top` (at most 1,000), and
    `$skipToken` or `before` for the page after a change."""
    return _page(Target(cs, jc))


@bp.get(COLLECTION + "/jobs/<job_id>/audit", strict_slashes=False)
def job_audit(sub: str, cs: str, jc: str, job_id: str) -> Response:
    """The changes made to one job, deleted or not (its collection must exist)."""
    return _page(Target(cs, jc, job_id))
