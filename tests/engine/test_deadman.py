"""The engines' dead man's switch (`engine.heartbeat_url`): one call to the monitor per
interval for the whole cluster, its `/fail` variant while occurrences are being missed, no
call from a node cut off from the database, and a monitor that does not answer delays no
firing. Engine nodes on the fake clock, a real monitor on loopback, real databases."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.actions.http import HttpCaller
from scheduler.clock import FrozenClock
from scheduler.engine.deadman import PING_TIMEOUT, DeadMansSwitch, dead_mans_switch, fail_url
from scheduler.engine.runner import http_pinger, ping_caller
from scheduler.settings import SettingsError, load_settings
from tests.engine.harness import MakeDriver, NodeDriver, Receiver
from tests.support import (
    JOBS,
    START,
    OutageDatabase,
    Tenant,
    copy_home_rows,
    fresh_postgres_schema,
    outage_database,
)

EVERY_MINUTE = {"frequency": "minute", "interval": 1}
SwitchOn = Callable[..., DeadMansSwitch]


# --- the test databases -----------------------------------------------------------------------

@pytest.fixture
def outage(home: dict[str, Any]) -> Iterator[OutageDatabase]:
    """A database of the test's own, which it can cut off, holding the home's subscription."""
    with outage_database(home["home"]) as database:
        yield database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, home: dict[str, Any]) -> Iterator[str]:
    """The suite's databases (the home's SQLite file, a fresh PostgreSQL schema); or, for a
    test parametrized indirectly with "outage", its own database (`outage`)."""
    if request.param == "outage":
        yield request.getfixturevalue("outage").url
        return
    sqlite_url = f"sqlite:///{Path(home['home']) / 'scheduler.db'}"
    if request.param == "sqlite":
        yield sqlite_url
        return
    with fresh_postgres_schema("t") as url:
        copy_home_rows(sqlite_url, url)
        yield url


# --- nodes with the switch on -----------------------------------------------------------------

@pytest.fixture
def switch_on(clock: FrozenClock) -> Iterator[SwitchOn]:
    """Turn a node's dead man's switch on before it begins: `switch_on(driver, url,
    interval=60, timeout=PING_TIMEOUT)`, its calls made as production makes them (to a
    monitor on loopback, which jobs may not call unless `outbound.allow_private_networks`)."""
    callers: list[tuple[NodeDriver, HttpCaller]] = []

    def switch(driver: NodeDriver, url: str, interval: float = 60.0,
               timeout: float = PING_TIMEOUT) -> DeadMansSwitch:
        caller = ping_caller(clock)
        callers.append((driver, caller))
        made = DeadMansSwitch(url, timedelta(seconds=interval), http_pinger(caller), timeout)
        driver.loop.dead_mans_switch = made
        return made

    yield switch
    for driver, caller in callers:
        driver.run(caller.close())


def at(clock: FrozenClock, seconds: float) -> datetime:
    """Set the clock `seconds` after the start (12:00:00)."""
    moment = START + timedelta(seconds=seconds)
    clock.set(moment)
    return moment


def tick_timers(*nodes: NodeDriver) -> None:
    """Run the nodes' timers due at the clock's time (heartbeats, the switch's tries), and
    wait for what they started, calls to the monitor included."""
    for node in nodes:
        node.run_timers()
        node.settle()
        switch = node.loop.dead_mans_switch
        if switch is not None:
            node.run(switch.sent())


def paths(monitor: Receiver) -> list[str]:
    """The paths the monitor was called on, in order."""
    return [request.path for request in monitor.requests]


# --- settings ---------------------------------------------------------------------------------

def test_the_switch_is_off_unless_a_heartbeat_url_is_set(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={}).engine
    assert (settings.heartbeat_url, settings.heartbeat_interval_seconds) == ("", 60.0)
    assert dead_mans_switch(settings, http_pinger(HttpCaller(False))) is None


def test_the_heartbeat_url_and_its_interval_come_from_the_environment(tmp_path: Path) -> None:
    env = {"SCHEDULER_ENGINE_HEARTBEAT_URL": "https://hc-ping.com/5f1c",
           "SCHEDULER_ENGINE_HEARTBEAT_INTERVAL_SECONDS": "15"}
    switch = dead_mans_switch(load_settings(tmp_path, env=env).engine,
                              http_pinger(HttpCaller(False)))
    assert switch is not None
    assert (switch.url, switch.interval, switch.timeout) == (
        "https://hc-ping.com/5f1c", timedelta(seconds=15), 10.0)


@pytest.mark.parametrize("url", [
    "hc-ping.com/5f1c", "ftp://hc-ping.com/5f1c", "https://", "https://user:pw@hc-ping.com/x",
    "https://hc-ping.com/x#fragment", "https://hc-ping.com/a b", "https://hc-ping.com:99999/x",
])
def test_a_heartbeat_url_that_is_no_http_url_of_a_host_is_refused_naming_the_setting(
    tmp_path: Path, url: str
) -> None:
    (tmp_path / "scheduler.toml").write_text(f"[engine]\nheartbeat_url = {url!r}\n")
    with pytest.raises(SettingsError, match=r"engine\.heartbeat_url must be an http or https"):
        load_settings(tmp_path, env={})


@pytest.mark.parametrize("interval", ["0", "-5"])
def test_a_heartbeat_interval_not_above_zero_is_refused(tmp_path: Path, interval: str) -> None:
    env = {"SCHEDULER_ENGINE_HEARTBEAT_INTERVAL_SECONDS": interval}
    with pytest.raises(SettingsError, match=r"engine\.heartbeat_interval_seconds must be above 0"):
        load_settings(tmp_path, env=env)


@pytest.mark.parametrize(("url", "fail"), [
    ("https://hc-ping.com/5f1c", "https://hc-ping.com/5f1c/fail"),
    ("https://hc-ping.com/5f1c/", "https://hc-ping.com/5f1c/fail"),
    ("http://10.0.0.7:8000/ping/abc?rid=1", "http://10.0.0.7:8000/ping/abc/fail?rid=1"),
    ("https://monitor.example", "https://monitor.example/fail"),
])
def test_the_fail_variant_appends_fail_to_the_path(url: str, fail: str) -> None:
    assert fail_url(url) == fail


# --- once per interval for the cluster --------------------------------------------------------

def test_two_nodes_on_one_database_call_the_monitor_once_per_interval_between_them(
    make_driver: MakeDriver, clock: FrozenClock, start_receiver: Callable[..., Receiver],
    switch_on: SwitchOn
) -> None:
    monitor = start_receiver()
    first = make_driver("node-a")
    second = make_driver("node-b", events=first.events)
    switch_on(first, monitor.url("/ping"))
    switch_on(second, monitor.url("/ping"))
    first.begin()  # 12:00:00, the first call
    at(clock, 20)
    second.begin()  # its tries come 20 s into each interval: the call is taken by then
    called_at: list[float] = [0.0]
    for seconds in range(30, 301, 10):
        at(clock, seconds)
        tick_timers(first, second)
        called_at += [float(seconds)] * (len(monitor.requests) - len(called_at))
    assert called_at == [0, 60, 120, 180, 240, 300]

    at(clock, 305)
    first.stop()  # the other node calls from its next try on
    for seconds in range(310, 501, 10):
        at(clock, seconds)
        tick_timers(second)
        called_at += [float(seconds)] * (len(monitor.requests) - len(called_at))
    assert called_at == [0, 60, 120, 180, 240, 300, 380, 440, 500]
    assert paths(monitor) == ["/ping"] * 9
    assert {request.method for request in monitor.requests} == {"GET"}


# --- /fail while occurrences are being missed -------------------------------------------------

def test_occurrences_recorded_as_missed_make_the_next_call_the_fail_one(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    start_receiver: Callable[..., Receiver], switch_on: SwitchOn
) -> None:
    monitor = start_receiver()
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(recurrence=EVERY_MINUTE))
    switch_on(driver, monitor.url("/ping"))
    driver.begin()
    at(clock, 10)
    assert driver.step() == 1  # 12:00:10
    at(clock, 60)
    tick_timers(driver)
    assert paths(monitor) == ["/ping", "/ping"]

    # The node stands still until 12:04:30 (its process stopped, say). Its first pass then
    # fires the 12:04:10 occurrence and records the three before it as missed; no
    # occurrence is late any more when the switch tries next.
    at(clock, 270)
    driver.run_pass()
    tick_timers(driver)
    assert paths(monitor) == ["/ping", "/ping", "/ping/fail"]
    assert len(receiver.requests) == 2
    driver.record()

    # Nothing was missed since: the next call is the plain one again.
    at(clock, 310)
    driver.step()  # 12:05:10
    assert len(receiver.requests) == 3
    at(clock, 330)
    tick_timers(driver)
    assert paths(monitor) == ["/ping", "/ping", "/ping/fail", "/ping"]


def test_an_occurrence_no_node_made_a_minute_after_its_time_makes_the_call_the_fail_one(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    start_receiver: Callable[..., Receiver], switch_on: SwitchOn,
    caplog: pytest.LogCaptureFixture
) -> None:
    monitor = start_receiver()
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(recurrence=EVERY_MINUTE))
    switch_on(driver, monitor.url("/ping"))
    driver.begin()  # 12:00:00; from now on the node's passes stall, its timers go on
    with caplog.at_level(logging.WARNING, logger="scheduler.engine.deadman"):
        for minute in (1, 2):
            at(clock, 60 * minute)
            tick_timers(driver)
        # 12:00:10 is 110 s late at 12:02:00, but a working node may be a little late
        assert paths(monitor) == ["/ping", "/ping", "/ping/fail"]
        assert "an occurrence still not made 110 s after its time" in caplog.text
    assert receiver.requests == []

    at(clock, 130)
    assert driver.step() == 1  # the passes resume: 12:02:10 fires, two are missed
    at(clock, 180)
    tick_timers(driver)
    at(clock, 190)
    assert driver.step() == 1
    at(clock, 240)
    tick_timers(driver)
    assert paths(monitor)[3:] == ["/ping/fail", "/ping"]


# --- a monitor that does not answer -----------------------------------------------------------

def test_a_monitor_that_does_not_answer_delays_no_firing(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    start_receiver: Callable[..., Receiver], switch_on: SwitchOn
) -> None:
    monitor = start_receiver()
    held = monitor.holds["/ping"] = threading.Event()
    switch = switch_on(driver, monitor.url("/ping"))
    assert collection.call("PUT", f"{JOBS}/once", receiver.job()).status_code == 201
    try:
        driver.begin()  # the call goes out, and the monitor holds it
        at(clock, 10)
        assert driver.step() == 1
        [execution] = collection.call("GET", f"{JOBS}/once/executions").get_json()
        assert execution["status"] == "completed"
        assert len(receiver.requests) == 1
        with pytest.raises(TimeoutError):  # still waiting for the monitor
            driver.run(asyncio.wait_for(switch.sent(), 0.1))
        assert paths(monitor) == ["/ping"]
    finally:
        held.set()
    driver.run(switch.sent())


def test_a_failing_monitor_is_logged_once_per_streak_of_failures(
    driver: NodeDriver, clock: FrozenClock, start_receiver: Callable[..., Receiver],
    switch_on: SwitchOn, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = start_receiver()
    held = monitor.holds["/ping"] = threading.Event()
    switch = switch_on(driver, monitor.url("/ping"), timeout=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="scheduler.engine.deadman"):
            driver.begin()
            driver.run(switch.sent())
            for minute in (1, 2):  # no answer within 0.2 s, three times
                at(clock, 60 * minute)
                tick_timers(driver)
            del monitor.holds["/ping"]
            at(clock, 180)
            tick_timers(driver)  # answered
            monitor.answers["/ping"] = (503, {}, b"")
            at(clock, 240)
            tick_timers(driver)
    finally:
        held.set()
    messages = [record.getMessage() for record in caplog.records
                if record.name == "scheduler.engine.deadman"]
    assert len(monitor.requests) == 5
    assert messages == [
        "dead man's switch: the call to 127.0.0.1 failed (Http Action - Request to host "
        "'127.0.0.1' failed: no answer within 0.2 s); trying every 60 s",
        "dead man's switch: 127.0.0.1 answered again",
        "dead man's switch: the call to 127.0.0.1 failed (answered 503 Service Unavailable); "
        "trying every 60 s",
    ]


# --- a node cut off from the database ---------------------------------------------------------

@pytest.mark.parametrize("database_url", ["outage"], indirect=True)
def test_a_node_cut_off_from_the_database_calls_nothing_and_reports_the_missed_once_back(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    outage: OutageDatabase, start_receiver: Callable[..., Receiver], switch_on: SwitchOn,
    caplog: pytest.LogCaptureFixture
) -> None:
    monitor = start_receiver()
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(recurrence=EVERY_MINUTE))
    switch_on(driver, monitor.url("/ping"))
    driver.begin()
    at(clock, 10)
    assert driver.step() == 1  # 12:00:10

    outage.cut_off()
    with caplog.at_level(logging.WARNING, logger="scheduler.engine.deadman"):
        for seconds in range(20, 300, 10):  # the switch tries at 12:01, 12:02, 12:03, 12:04
            at(clock, seconds)
            tick_timers(driver)
    assert paths(monitor) == ["/ping"], "a node cut off from the database called the monitor"
    cut_off = [r for r in caplog.records if "no call while the database" in r.getMessage()]
    assert len(cut_off) == 1, "the outage is logged once"
    outage.let_in()

    # Back at 12:05:00: the first pass records 12:01:10, 12:02:10 and 12:03:10 as missed and
    # fires 12:04:10, and the next call says so.
    at(clock, 300)
    driver.run_pass()
    tick_timers(driver)
    assert paths(monitor) == ["/ping", "/ping/fail"]
    statuses = [e["status"] for e in collection.call("GET", f"{JOBS}/minutely/history")
                .get_json()]
    assert statuses.count("missed") == 3
