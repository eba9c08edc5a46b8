"""The options an engine node runs with come from the home's settings, in one place."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from scheduler.engine.options import EngineOptions, engine_options
from scheduler.settings import load_settings


def test_every_engine_setting_reaches_the_options_the_engine_runs_with(tmp_path: Path) -> None:
    (tmp_path / "scheduler.toml").write_text(
        "[engine]\nlease_seconds = 30\nbatch = 50\nmax_sleep_seconds = 0.5\n"
        "lookahead_seconds = 1.5\nhistory_keep = 10\nhistory_max_age_days = 7\n"
        "heartbeat_seconds = 2\ndead_after_seconds = 9\nnode_name = \"Rack-1\"\n")
    env = {"SCHEDULER_ENGINE_CONCURRENCY": "300", "SCHEDULER_ENGINE_TIMEOUT_SECONDS": "12.5"}
    options = engine_options(load_settings(tmp_path, env=env).engine, sqlite=False)
    assert options == EngineOptions(
        lease=timedelta(seconds=30), batch=50, max_sleep=0.5, timeout=12.5, history_keep=10,
        history_max_age=timedelta(days=7), concurrency=300,
        lookahead=timedelta(seconds=1.5), heartbeat=timedelta(seconds=2),
        dead_after=timedelta(seconds=9), sole=False, ticks_at_once=2, node_name="rack-1")
    assert options.alive_for == timedelta(seconds=7)


def test_an_engine_without_settings_runs_with_the_documented_defaults(tmp_path: Path) -> None:
    options = engine_options(load_settings(tmp_path, env={}).engine, sqlite=False)
    assert (options.lease, options.batch, options.max_sleep, options.timeout) == (
        timedelta(seconds=90), 500, 2.0, 60.0)
    assert (options.concurrency, options.lookahead, options.heartbeat, options.dead_after) == (
        20_000, timedelta(seconds=2.5), timedelta(seconds=1), timedelta(seconds=5))
    assert (options.history_keep, options.history_max_age) == (1000, timedelta(days=60))


def test_on_sqlite_the_engine_is_alone_and_ticks_one_at_a_time(tmp_path: Path) -> None:
    options = engine_options(load_settings(tmp_path, env={}).engine, sqlite=True)
    assert options.sole and options.ticks_at_once == 1
