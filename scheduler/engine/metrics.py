"""What an engine node counts and times, as Prometheus metrics."""

from __future__ import annotations

from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scheduler.domain.states import Trigger
from scheduler.engine.recorder import AttemptRecord

# Lateness is milliseconds when all is well and seconds when the node is overloaded.
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The span over which a node's heartbeat reports its unrunnable attempts, for `/readyz`.
UNRUNNABLE_WINDOW = timedelta(minutes=1)


class RecentIncrease:
    """How much a labelled counter grew over the last `window`, by label, from readings of
    it taken as time goes by (at each heartbeat): an increase is reported for `window` at
    least, and at most one interval between readings more."""

    def __init__(self, counter: Counter, label: str, window: timedelta) -> None:
        self.counter, self.label, self.window = counter, label, window
        self._readings: deque[tuple[datetime, dict[str, float]]] = deque()

    def read(self, now: datetime) -> dict[str, int]:
        """Read the counter at `now`: by label, how much it grew since the newest earlier
        reading at least `window` old (since it began, if none is); labels that did not
        grow are left out."""
        totals = self._totals()
        self._readings.append((now, totals))
        start = now - self.window
        while len(self._readings) > 1 and self._readings[1][0] <= start:
            self._readings.popleft()
        since, before = self._readings[0]
        if since > start:
            before = {}
        return {label: int(total - before.get(label, 0.0)) for label, total in totals.items()
                if total > before.get(label, 0.0)}

    def _totals(self) -> dict[str, float]:
        """The counter's value now, by label."""
        return {sample.labels[self.label]: sample.value
                for metric in self.counter.collect() for sample in metric.samples
                if sample.name.endswith("_total")}


class EngineMetrics:
    """The metrics of one engine node.

    In a served process (prometheus-client's multiprocess mode) they are written to the
    shared directory and `registry` is None; otherwise they live in `registry`, a private
    one, so that any number of engines can run in one process (tests).
    """

    def __init__(self, shared: bool = False) -> None:
        self.registry = None if shared else CollectorRegistry(auto_describe=True)
        where = self.registry
        self.lateness = Histogram(
            "scheduler_engine_lateness_seconds",
            "From an occurrence's scheduled time to its first attempt's request being sent",
            buckets=LATENESS_BUCKETS, registry=where)
        self.attempts = Counter(
            "scheduler_engine_attempts", "Attempts made, by action type and outcome",
            ["action_type", "outcome"], registry=where)
        self.missed = Counter(
            "scheduler_engine_missed_occurrences",
            "Occurrences recorded as missed: due while no engine could fire them",
            registry=where)
        self.skipped = Counter(
            "scheduler_engine_skipped_occurrences",
            "Runs recorded as skipped: on a day an exclusion calendar of their job names, or "
            "by their job's overlap policy (concurrencyPolicy)", registry=where)
        self.backfilled = Counter(
            "scheduler_engine_backfilled_runs",
            "Runs of past occurrences a backfill asked for, first attempted", registry=where)
        self.fired = Counter(
            "scheduler_engine_occurrences_fired", "Occurrences made into executions",
            registry=where)
        self.readied = Gauge(
            "scheduler_engine_readied_calls",
            "Calls leased and made ready, waiting for their scheduled instant",
            multiprocess_mode="livesum", registry=where)
        self.inflight = Gauge(
            "scheduler_engine_inflight_calls", "Calls sent and not yet answered",
            multiprocess_mode="livesum", registry=where)
        self.tick_seconds = Histogram(
            "scheduler_engine_tick_seconds",
            "One tick: claiming due jobs, making their executions, moving the jobs on",
            buckets=DURATION_BUCKETS, registry=where)
        self.recording_seconds = Histogram(
            "scheduler_engine_recording_seconds",
            "Recording one batch of finished attempts", buckets=DURATION_BUCKETS,
            registry=where)
        self.unrunnable = Counter(
            "scheduler_engine_unrunnable_attempts",
            "Attempts failed before their call could be made, by reason: secret (the job's "
            "secrets do not open with this home's keys), definition (its stored definition "
            "does not read), placeholder (a placeholder with no value or where none may stand), "
            "action (its call could not be prepared otherwise)",
            ["reason"], registry=where)
        self.recent_unrunnable = RecentIncrease(self.unrunnable, "reason", UNRUNNABLE_WINDOW)
        self.waiting_for_nodes = Gauge(
            "scheduler_engine_executions_waiting_for_nodes",
            "Open executions whose runOn names no live engine node: they run once one of "
            "those nodes is alive (as the last engine to count them found)",
            multiprocess_mode="livemostrecent", registry=where)
        self.callbacks_pending = Gauge(
            "scheduler_engine_callbacks_pending",
            "Executions whose target accepted the call (202) and that wait for it to post "
            "the result to their callback URL (as the last engine to count them found)",
            multiprocess_mode="livemostrecent", registry=where)
        self.takeovers = Counter(
            "scheduler_engine_lease_takeovers",
            "Executions taken over from engine nodes that stopped", registry=where)
        self.alerts_made = Counter(
            "scheduler_engine_alerts_made",
            "Alerts made of jobs' events (failed, faulted, missed, late, recovered, "
            "durationOver), each once across the nodes", registry=where)
        self.alerts_sent = Counter(
            "scheduler_engine_alerts_sent",
            "Alerts delivered to every channel their rules name", registry=where)
        self.alerts_failed = Counter(
            "scheduler_engine_alerts_failed",
            "Alerts some channel still refused after the last try", registry=where)
        self.alert_tries_failed = Counter(
            "scheduler_engine_alert_deliveries_failed",
            "Tries to deliver an alert to one channel that failed (each is retried, with "
            "backoff, up to the last try)", registry=where)

    def count_attempts(self, finished: Iterable[AttemptRecord]) -> None:
        """Count a recorded batch: attempts by type and outcome, and the lateness of each
        occurrence's first attempt."""
        tally: Tally[tuple[str, str]] = Tally()
        backfilled = 0
        for record in finished:
            stage = record.definition.stage(record.action_name, record.step)
            kind = stage.action.kind if stage is not None else "none"
            tally[kind, "succeeded" if record.outcome.success else "failed"] += 1
            if record.attempts == 0:  # the execution's first attempt
                if record.trigger == Trigger.BACKFILL:  # its occurrence is long past
                    backfilled += 1
                    continue
                lateness = (record.started - record.scheduled_time).total_seconds()
                self.lateness.observe(max(lateness, 0.0))
        # One increment per kind of attempt, not per attempt: a batch holds thousands.
        for (kind, outcome), count in tally.items():
            self.attempts.labels(kind, outcome).inc(count)
        if backfilled:
            self.backfilled.inc(backfilled)

    def held(self, readied: int, inflight: int) -> None:
        """How many calls the node holds now."""
        self.readied.set(readied)
        self.inflight.set(inflight)
