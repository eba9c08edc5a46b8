"""Operation status: `GET /{subscription}/operations/{requestId}`."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, g

from scheduler.api import xml
from scheduler.api.responses import xml_response
from scheduler.api.runtime import snapshot
from scheduler.services.operations import FAILED, IN_PROGRESS, get_operation
from scheduler.services.records import OperationRecord

bp = Blueprint("operations", __name__)


def operation_xml(operation: OperationRecord) -> str:
    """An operation as ASM's `<Operation>`: the id as a GUID, status, and error if it failed."""
    parts = [
        xml.element("ID", value=str(uuid.UUID(hex=operation.id))),
        xml.element("Status", value=operation.status),
    ]
    if operation.status != IN_PROGRESS and operation.http_status is not None:
        parts.append(xml.element("HttpStatusCode", value=str(operation.http_status)))
    if operation.status == FAILED:
        parts.append(xml.element("Error",
                                 xml.element("Code", value=operation.error_code or ""),
                                 xml.element("Message", value=operation.error_message or "")))
    return xml.document("Operation", *parts)


@bp.get("/<sub>/operations/<operation_id>")
def get_operation_status(sub: str, operation_id: str) -> Response:
    """The status of an operation of this subscription."""
    with snapshot() as session:
        operation = get_operation(session, g.subscription_id, operation_id)
        return xml_response(operation_xml(operation))
