"""Log lines as text and as JSON, with the fields a log call passes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from scheduler.telemetry import configure_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level back after a test configures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def log_one(log_format: str) -> str:
    """What one access-like line looks like in a format."""
    out = io.StringIO()
    configure_logging(log_format, "info", out)
    logging.getLogger("scheduler.access").info(
        "GET /x 200", extra={"request_id": "abc", "route": "/<sub>", "duration_ms": 1.5,
                             "subscription": "-"})
    logging.getLogger("scheduler.access").debug("not shown")
    return out.getvalue()


def test_the_json_format_writes_one_object_per_line_with_the_fields(
    restore_root_logger: None
) -> None:
    [line] = log_one("json").splitlines()
    document = json.loads(line)
    assert document["level"] == "info" and document["logger"] == "scheduler.access"
    assert document["message"] == "GET /x 200"
    assert document["request_id"] == "abc" and document["duration_ms"] == 1.5
    assert document["route"] == "/<sub>" and document["time"].endswith("Z")


def test_the_text_format_appends_the_fields_as_key_value(restore_root_logger: None) -> None:
    [line] = log_one("text").splitlines()
    assert " INFO scheduler.access GET /x 200 " in line
    assert line.endswith("request_id=abc route=/<sub> duration_ms=1.5 subscription=-")


def test_an_exception_stays_inside_its_json_line(restore_root_logger: None) -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("scheduler.engine").exception("pass failed", extra={"node": "n1"})
    [line] = out.getvalue().splitlines()
    document = json.loads(line)
    assert document["node"] == "n1" and "ValueError: boom" in document["exception"]
