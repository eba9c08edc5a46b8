"""Charts drawn on the server as inline SVG: a strip of runs, a calendar heatmap and
duration bars. Colours come from the stylesheet by class, so the page's policy allows no
inline style."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from html import escape

from markupsafe import Markup

from scheduler.services.dashboard import Run
from scheduler.ui.words import absolute, span

CELL, GAP = 10, 2
# A past day's cell is of the first kind its runs have, in this order.
DAY_KINDS = ("failed", "missed", "completed", "skipped")


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def run_strip(runs: Sequence[Run], length: int = 20) -> Markup:
    """The latest runs, oldest on the left: one cell each, its class its kind (completed,
    retried, failed, missed, skipped, canceled, running, pending, paused, waiting)."""
    shown = list(reversed(runs[:length]))
    width = length * (CELL + GAP)
    cells = []
    for index, run in enumerate(shown):
        x = (length - len(shown) + index) * (CELL + GAP)
        label = f"{run_words(run)} · scheduled {absolute(run.scheduled_time)}"
        cells.append(f'<rect class="run {escape(run.kind)}" x="{x}" y="0" width="{CELL}" '
                     f'height="{CELL * 2}" rx="2">{_title(label)}</rect>')
    return Markup(f'<svg class="strip" role="img" viewBox="0 0 {width} {CELL * 2}" '
                  f'width="{width}" height="{CELL * 2}" aria-label="last {len(shown)} runs: '
                  f'{escape(_summary(shown))}">{"".join(cells)}</svg>')


def run_words(run: Run) -> str:
    """What a strip's cell says of its run: its kind and attempts; a waiting run what it
    waits for, a skipped one why (it never made an attempt), a backfilled one so."""
    if run.status == "waiting":
        text = "waiting behind an open run of its job (concurrency policy)"
    elif run.status == "skipped":
        text = f"skipped: {run.message}" if run.message else "skipped"
    else:
        text = f"{run.kind} · {run.attempts} attempt(s)"
    return f"{text} · backfill" if run.trigger == "backfill" else text


def _summary(runs: Sequence[Run]) -> str:
    counts = Counter(run.kind for run in runs)
    return ", ".join(f"{n} {kind}" for kind, n in counts.most_common()) or "none"


def heatmap(past: Mapping[date, Counter[str]], planned: Mapping[date, int | None],
            today: date,
            days_back: int = 90, days_ahead: int = 30) -> Markup:
    """A calendar of the last `days_back` days (completed, failed, missed, or all skipped)
    and the next `days_ahead` (planned: a count, or None for some not counted): weeks as
    columns, days as rows."""
    first = today - timedelta(days=days_back - 1)
    first -= timedelta(days=first.weekday())
    last = today + timedelta(days=days_ahead)
    cells = []
    day = first
    while day <= last:
        column = (day - first).days // 7
        row = day.weekday()
        kind, label = _day_cell(day, past.get(day, Counter()), planned.get(day, 0), today)
        cells.append(f'<rect class="day {kind}" x="{column * (CELL + GAP)}" '
                     f'y="{row * (CELL + GAP)}" width="{CELL}" height="{CELL}" rx="2">'
                     f"{_title(label)}</rect>")
        day += timedelta(days=1)
    width = ((last - first).days // 7 + 1) * (CELL + GAP)
    height = 7 * (CELL + GAP)
    return Markup(f'<svg class="heatmap" role="img" viewBox="0 0 {width} {height}" '
                  f'width="{width}" height="{height}" aria-label="runs per day, the last '
                  f'{days_back} days and the next {days_ahead}">{"".join(cells)}</svg>')


def _day_cell(day: date, counts: Counter[str], planned: int | None, today: date
              ) -> tuple[str, str]:
    if day > today:
        return ("planned" if planned != 0 else "empty",
                f"{day:%a %Y-%m-%d}: {'runs' if planned is None else planned} planned")
    if not counts:
        return "empty", f"{day:%a %Y-%m-%d}: no runs"
    # The worst of the day; a day whose runs were all skipped (calendars, overlap) says so.
    kind = next((kind for kind in DAY_KINDS if counts.get(kind)), "completed")
    words = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return kind, f"{day:%a %Y-%m-%d}: {words}"


def duration_bars(runs: Sequence[Run]) -> Markup:
    """Each ended run's duration as a bar, oldest on the left, scaled to the longest."""
    timed = [(run, run.duration) for run in reversed(runs) if run.duration is not None]
    if not timed:
        return Markup('<p class="quiet">No run has ended yet.</p>')
    longest = max(duration.total_seconds() for _, duration in timed) or 1.0
    height, bar = 60, 8
    bars = []
    for index, (run, duration) in enumerate(timed):
        tall = max(1, round(height * duration.total_seconds() / longest))
        bars.append(f'<rect class="bar {escape(run.kind)}" x="{index * (bar + GAP)}" '
                    f'y="{height - tall}" width="{bar}" height="{tall}">'
                    f"{_title(f'{span(duration)} · {absolute(run.scheduled_time)}')}</rect>")
    width = len(timed) * (bar + GAP)
    return Markup(f'<svg class="durations" role="img" viewBox="0 0 {width} {height}" '
                  f'width="{width}" height="{height}" aria-label="durations of the last '
                  f'{len(timed)} runs, longest {escape(span(timedelta(seconds=longest)))}">'
                  f'{"".join(bars)}</svg>')


def today_of(now: datetime) -> date:
    """The UTC day of a time (the heatmap's days are UTC days)."""
    return now.date()
