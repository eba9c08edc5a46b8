"""Job writes at once on one collection of a served home: quotas hold exactly, a job created
by many clients at once is created once, and no write gets a 5xx. The tests share a server
for each database, each in a subscription of its own."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.support import ServerProcess, as_new_subscription, create_collection
from tests.support import fresh_postgres_schema, http_job

QUOTA = 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, shared_server_factory: Callable[..., ServerProcess],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A served home on either database whose Standard plan allows QUOTA jobs, shared by the
    module's tests."""
    env = {"SCHEDULER_PLANS_STANDARD_MAX_JOB_COUNT": str(QUOTA)}
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            env["SCHEDULER_DATABASE_URL"] = stack.enter_context(
                fresh_postgres_schema("writes"))
        server = shared_server_factory(env)
        stack.callback(server.stop)  # before the schema is dropped
        yield server


@pytest.fixture
def served(shared: ServerProcess, tmp_path: Path) -> ServerProcess:
    """The shared home, as a subscription of the test's own sees it: its collection is the
    test's alone."""
    return as_new_subscription(shared, tmp_path)


def at_once(server: ServerProcess, calls: list[Callable[[requests.Session], int]]
            ) -> Counter[int]:
    """Run each call on a thread and session of its own, all released together; their
    statuses."""
    sessions = [server.session() for _ in calls]
    for session in sessions:  # connected and handshaken before the race
        assert session.get(f"{server.base_url}/healthz").status_code == 200
    start = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(call: Callable[[requests.Session], int], session: requests.Session) -> None:
        start.wait()
        statuses.append(call(session))

    threads = [threading.Thread(target=run, args=pair) for pair in zip(calls, sessions,
                                                                          strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for session in sessions:
        session.close()
    return Counter(statuses)


def test_fifty_creates_at_once_against_a_quota_of_ten_make_ten(served: ServerProcess) -> None:
    session, jobs = create_collection(served, "Standard")
    calls = [lambda s, n=n: s.put(f"{jobs}/race-{n}", json=http_job()).status_code
             for n in range(50)]
    statuses = at_once(served, calls)
    assert statuses == Counter({201: QUOTA, 409: 50 - QUOTA})
    assert len(session.get(jobs).json()) == QUOTA


def test_one_new_job_put_by_twenty_clients_at_once_is_created_once(
    served: ServerProcess
) -> None:
    session, jobs = create_collection(served, "Standard")
    calls = [lambda s: s.put(f"{jobs}/same", json=http_job()).status_code] * 20
    statuses = at_once(served, calls)
    assert statuses == Counter({201: 1, 200: 19})
    assert [job["id"] for job in session.get(jobs).json()] == ["same"]


def test_replacing_patching_and_deleting_jobs_at_once_loses_nothing(
    served: ServerProcess
) -> None:
    session, jobs = create_collection(served, "Standard")
    for n in range(QUOTA):
        assert session.put(f"{jobs}/j{n}", json=http_job()).status_code == 201
    calls: list[Callable[[requests.Session], int]] = []
    for n in range(5):
        calls.append(lambda s, n=n: s.put(f"{jobs}/j{n}", json=http_job()).status_code)
        calls.append(lambda s, n=n: s.patch(f"{jobs}/j{n}", json={"state": "disabled"})
                     .status_code)
        calls.append(lambda s, n=n + 5: s.delete(f"{jobs}/j{n}").status_code)
    statuses = at_once(served, calls)
    assert statuses == Counter({200: 15})
    left = {job["id"]: job["state"] for job in session.get(jobs).json()}
    assert sorted(left) == [f"j{n}" for n in range(5)]
    assert session.put(f"{jobs}/one-more", json=http_job()).status_code == 201
