"""Callback URLs: a target that accepted a call (202) posts its result here, with no client
certificate (the URL's token is the credential; see `scheduler.services.callbacks`)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, current_app, request

from scheduler.api.requests import field_error, read_json
from scheduler.api.responses import json_response
from scheduler.api.runtime import runtime, transaction
from scheduler.domain import InvalidField
from scheduler.domain.callbacks import CALLBACK_PREFIX, CALLBACK_STATUSES, CallbackResult
from scheduler.errors import PayloadTooLarge
from scheduler.services.callbacks import NO_CALLBACK_MESSAGE, receive_callback
from scheduler.services.calls import wake_on_commit
from scheduler.services.errors import NotFound

bp = Blueprint("callbacks", __name__)

MAX_CALLBACK_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 1024
# An execution id, and a token as the engine makes them (`secrets.token_urlsafe(32)`):
# anything else waits for no callback, and is answered without a look at the database.
_EXECUTION_ID = re.compile(r"[0-9a-fA-F]{32}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@bp.post(CALLBACK_PREFIX + "/<execution_id>/<token>", strict_slashes=False)
def post_callback(execution_id: str, token: str) -> Response:
    """Take the result of an attempt whose target accepted its call (202): 202 once kept,
    for the engine to record; 404 for a URL no execution waits at (wrong, used, canceled,
    timed out: the same answer for all); 400 naming a bad field; 413 past 64 KB."""
    result = _result()
    if not (_EXECUTION_ID.fullmatch(execution_id) and _TOKEN.fullmatch(token)):
        raise NotFound(NO_CALLBACK_MESSAGE)
    rt = runtime()
    with transaction() as session:
        receive_callback(session, execution_id, token, result, rt.clock.now())
        wake_on_commit(session, rt.settings.home)
    return json_response({"executionId": execution_id.lower(), "status": result.status,
                          "message": "The result is kept; the engine records it as the "
                                     "attempt's outcome."}, 202)


def _result() -> CallbackResult:
    """The posted result: `{"status": "completed"|"failed", "output": ..., "message": ...}`."""
    declared = request.content_length
    if declared is not None and declared > MAX_CALLBACK_BYTES:
        raise PayloadTooLarge(f"A callback's body is at most {MAX_CALLBACK_BYTES} bytes.")
    body = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if len(body) > MAX_CALLBACK_BYTES or (
            len(body) >= limit and request.environ["wsgi.input"].read(1)):
        raise PayloadTooLarge(f"A callback's body is at most {MAX_CALLBACK_BYTES} bytes.")
    try:
        return parse_callback(read_json(MAX_CALLBACK_BYTES))
    except InvalidField as exc:
        raise field_error(exc) from None


def parse_callback(document: Any) -> CallbackResult:
    """A callback's body, validated; raises InvalidField naming the field."""
    if not isinstance(document, dict):
        raise InvalidField("", "the body must be a JSON object")
    for key in document:
        if key not in ("status", "output", "message"):
            raise InvalidField(key, "is not a known field (status, output, message)")
    status = document.get("status")
    if status is None:
        raise InvalidField("status", "is required")
    if status not in CALLBACK_STATUSES:
        raise InvalidField("status", f"must be one of {', '.join(CALLBACK_STATUSES)}")
    message = document.get("message", "")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise InvalidField("message", "must be a string")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidField("message", f"must be at most {MAX_MESSAGE_CHARS} characters")
    output = document.get("output")
    try:
        json.dumps(output, allow_nan=False)
    except ValueError:
        raise InvalidField("output", "must be a JSON value") from None
    return CallbackResult(status, output, message)
