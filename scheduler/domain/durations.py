"""ISO-8601 durations (`PT30S`, `P1D`), .NET TimeSpan text (`00:01:00`), and instants as
Azure writes them (`2026-03-01T12:00:00Z`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_ISO = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE | re.ASCII,
)
_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2}(?:\.\d+)?)$",
    re.ASCII,
)
MAX_DURATION = timedelta(days=548)


def parse_duration(text: str) -> timedelta:
    """Read a duration; raises ValueError for anything else, and for years or months."""
    match = _ISO.fullmatch(text) or _TIMESPAN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT30S")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    try:
        value = timedelta(
            weeks=parts.get("weeks", 0),
            days=parts.get("days", 0),
            hours=parts.get("hours", 0),
            minutes=parts.get("minutes", 0),
            seconds=parts.get("seconds", 0),
        )
    except OverflowError:
        value = timedelta.max
    if value > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than 18 months")
    return value


@dataclass(frozen=True, slots=True)
class Duration:
    """A length of time and the text a job wrote it as: a job's answer says it back as
    written (`PT30S` stays `PT30S`, `00:00:30` stays `00:00:30`)."""

    value: timedelta
    text: str

    @classmethod
    def parse(cls, text: str) -> Duration:
        """A duration read from its text; raises ValueError as `parse_duration` does."""
        return cls(parse_duration(text), text)


def format_datetime(value: datetime) -> str:
    """UTC ISO-8601 with a Z, as Azure echoes times."""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return text + "Z"


def format_iso_duration(value: timedelta) -> str:
    """A duration as ISO-8601 in days, hours, minutes and seconds (`PT30S`, `P1DT2H`);
    `PT0S` for none."""
    whole = int(value.total_seconds())
    fraction = value.microseconds
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    second_text = f"{seconds}.{fraction:06d}".rstrip("0") if fraction else str(seconds)
    time = "".join(f"{amount}{unit}" for amount, unit in
                   ((hours, "H"), (minutes, "M")) if amount)
    if seconds or fraction:
        time += f"{second_text}S"
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text != "P" else "PT0S"
