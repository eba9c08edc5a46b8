"""How the processes report: log lines (text or JSON) and the Prometheus metrics port.

Log calls pass their fields as `extra` (`log.info("...", extra={"job_id": ...})`); the text
format appends them as `key=value`, the JSON format makes them keys of the line's object.

Metrics: `scheduler serve` gives every process it starts (gunicorn's workers, the engine)
one directory of prometheus-client's multiprocess mode, and one of them serves what all of
them wrote on `metrics.host`:`metrics.port`.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from scheduler.settings import MetricsSettings, metrics_directory, share_metrics_directory

# What every LogRecord has; anything else on a record came in `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed in `extra`."""
    return {key: value for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER message key=value ...`, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text (its traceback on the lines after)."""
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        extra = " ".join(f"{key}={_text_value(value)}"
                         for key, value in fields_of(record).items())
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the call's fields, and the
    traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, Any] = {"time": _timestamp(record),
                                    "level": record.levelname.lower(),
                                    "logger": record.name, "message": record.getMessage()}
        document.update(fields_of(record))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Send every logger's records at `level` and above to stderr, in `log_format`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic tells at info which database kind it checks, at every start: not news.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


@contextmanager
def shared_metrics(settings: MetricsSettings) -> Iterator[Path | None]:
    """While serving, a fresh directory for the multiprocess metrics of this process and
    those it starts (None when metrics are off), removed at the end."""
    if not settings.enabled:
        yield None
        return
    from prometheus_client import values

    directory = Path(tempfile.mkdtemp(prefix="scheduler-metrics-"))
    share_metrics_directory(directory)
    # prometheus-client picks its kind of value when first imported, from the environment
    # just set; metrics made from now on, here and in forked workers, are the shared kind.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def serve_metrics(settings: MetricsSettings) -> None:
    """Serve, on a thread of this process, the metrics every process of this `serve`
    wrote to their shared directory."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = metrics_directory()
    if directory is None:
        raise RuntimeError("serve_metrics needs the shared metrics directory")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    try:
        start_http_server(settings.port, addr=settings.host, registry=registry)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve metrics on {settings.host}:{settings.port}: "
                      f"{exc.strerror}") from None


def forget_process(pid: int) -> None:
    """A process of this `serve` has exited: its live gauges no longer count."""
    if metrics_directory() is None:
        return
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid)  # type: ignore[no-untyped-call]
