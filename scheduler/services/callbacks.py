"""A target posts the result of a call it accepted (202) to its callback URL: the result is
kept for the engine, which records it as the attempt's outcome (`decide`, the retry policy,
the error action, the job's history, as for any attempt) when a node next claims the
execution; the engines are woken once it commits.

The URL's token is its only credential: it is checked, in constant time, against the hash
the engine kept, and that hash is cleared as the result is kept, so that the URL works
once. A wrong or used token, an unknown execution and one that waits for no callback get
the same answer, so that trying URLs tells nothing.
"""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scheduler.db.executions import event_row, insert_events
from scheduler.db.models import EXECUTIONS
from scheduler.domain.callbacks import CallbackResult, redacted, token_digest
from scheduler.domain.executions import EventKind, clipped_text
from scheduler.domain.states import ExecutionStatus
from scheduler.services.errors import NotFound

# The one answer to a callback URL that takes no result.
NO_CALLBACK_MESSAGE = "No execution waits for a callback at this URL."


def receive_callback(session: Session, execution_id: str, token: str,
                     result: CallbackResult, now: datetime) -> None:
    """Keep the result a target posted for the engine to record, and kill the URL; 404 if
    no execution waits for a callback with this token."""
    execution_id = execution_id.lower()
    stored = session.scalar(select(EXECUTIONS.c.callback_hash).where(
        EXECUTIONS.c.id == execution_id, EXECUTIONS.c.status == ExecutionStatus.RUNNING))
    digest = token_digest(token)
    if stored is None or not hmac.compare_digest(stored, digest):
        raise NotFound(NO_CALLBACK_MESSAGE)
    # A target that echoes its token back does not get it kept.
    result = CallbackResult(result.status, redacted(result.output, token),
                            redacted(result.message, token))
    # Only while the hash is still there: of two posts at once, one keeps its result.
    kept = session.execute(update(EXECUTIONS).where(
        EXECUTIONS.c.id == execution_id, EXECUTIONS.c.status == ExecutionStatus.RUNNING,
        EXECUTIONS.c.callback_hash == digest,
    ).values(callback_hash=None, callback_result=result.dumps(), callback_deadline=now))
    if not kept.rowcount:  # type: ignore[attr-defined]
        raise NotFound(NO_CALLBACK_MESSAGE)
    detail = {"status": result.status}
    if result.message:
        detail["message"] = clipped_text(result.message)
    insert_events(session.connection(), [
        event_row(execution_id, now, EventKind.CALLBACK, detail=detail)])
