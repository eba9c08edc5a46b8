"""Requests that race on one job or execution of a served home, its engine running: run now,
cancel, resume, PATCH and DELETE, in whatever order the database takes them, answer 2xx,
404, 409 or 412, never a 5xx, and leave the data consistent: nothing of a deleted job is
left, a refused request stored nothing, an execution is canceled once."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from scheduler.admin import init_home
from tests.e2e.support import ServerProcess, create_collection, free_port, wait_for
from tests.engine.harness import Receiver, serve_receiver
from tests.support import collection_xml, fresh_postgres_schema

ANSWERS = {200, 201, 202, 204, 404, 409, 412}
ROUNDS = {"postgresql": 50, "sqlite": 5}
# Rounds run this many at a time: the two calls of each race on threads of their own.
AT_ONCE = 8
CANCEL = {"status": "canceled"}

Call = Callable[[requests.Session], requests.Response]


@dataclass
class Served:
    """A served home (API and engine) with collection jc1, its database and its target."""

    server: ServerProcess
    jobs: str
    database: Engine
    target: Receiver
    rounds: int

    def job(self, manual: bool = False) -> dict[str, Any]:
        """A job that never fires by itself and calls the target; with `manual`, a run of
        it waits, paused, for `resume` before its one step runs."""
        call = {"type": "http", "request": {"uri": self.target.url("/race"), "method": "POST"}}
        action = ({"type": "sequence", "steps": [{"name": "go", "manual": True,
                                                  "action": call}]}
                  if manual else call)
        return {"startTime": "2099-01-01T00:00:00Z", "action": action}

    def rows(self, query: str, **params: Any) -> list[Any]:
        """The rows a query of the home's database reads."""
        with self.database.connect() as conn:
            return list(conn.execute(text(query), params).all())


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    """One served home for the module, API and engine, on either database; each race has
    jobs of its own in its collection."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update({"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
                "SCHEDULER_ENGINE_MAX_SLEEP_SECONDS": "0.2"})
    home = tmp_path_factory.mktemp(f"races-{request.param}") / "home"
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(serve_receiver())
        if request.param == "postgresql":
            url = env["SCHEDULER_DATABASE_URL"] = stack.enter_context(
                fresh_postgres_schema("races"))
        else:
            url = f"sqlite:///{home / 'scheduler.db'}"
        server = ServerProcess(home, init_home(home, ["localhost", "127.0.0.1"], env=env),
                               free_port(), env)
        server.start()
        stack.callback(server.stop)  # before the schema is dropped
        _session, jobs = create_collection(server, "P20Premium")
        database = create_engine(url)
        stack.callback(database.dispose)
        yield Served(server, jobs, database, target, ROUNDS[request.param])


@dataclass
class Round:
    """One race: its job, the execution made for it beforehand, and the two answers."""

    job_id: str
    execution_url: str | None = None
    answers: list[requests.Response] = field(default_factory=list)

    @property
    def execution_id(self) -> str:
        """The id of the execution made beforehand."""
        assert self.execution_url is not None
        return self.execution_url.rsplit("/", 1)[1]

    @property
    def statuses(self) -> list[int]:
        """The two answers' statuses, in the order of the calls."""
        return [answer.status_code for answer in self.answers]


def at_once(sessions: tuple[requests.Session, requests.Session], first: Call, second: Call
            ) -> list[requests.Response]:
    """Make both calls at the same moment, each on a thread and session of its own."""
    start = threading.Barrier(2)
    answers: list[requests.Response | None] = [None, None]

    def run(index: int, call: Call) -> None:
        start.wait()
        answers[index] = call(sessions[index])

    threads = [threading.Thread(target=run, args=(index, call))
               for index, call in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(answer is not None for answer in answers), "a call did not come back"
    return [answer for answer in answers if answer is not None]


class Races:
    """Rounds of one kind of race, run several at a time, each on a job of its own."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self._sessions = threading.local()
        self._opened: list[requests.Session] = []

    def sessions(self) -> tuple[requests.Session, requests.Session]:
        """This thread's two sessions, connected once and kept."""
        if not hasattr(self._sessions, "pair"):
            self._sessions.pair = (self.served.server.session(), self.served.server.session())
            self._opened.extend(self._sessions.pair)
        pair: tuple[requests.Session, requests.Session] = self._sessions.pair
        return pair

    def run(self, kind: str, first: Callable[[Round], Call], second: Callable[[Round], Call],
            *, manual: bool | None = None, execution: bool = False) -> list[Round]:
        """Race `first` against `second` on a new job (with a run of it made beforehand if
        `execution`) in each round; `manual` None alternates plain and manual jobs."""
        def one(number: int) -> Round:
            sessions = self.sessions()
            race = Round(f"{kind}-{number}")
            waits = number % 2 == 1 if manual is None else manual
            made = sessions[0].put(f"{self.served.jobs}/{race.job_id}",
                                   json=self.served.job(waits))
            assert made.status_code == 201, made.text
            if execution:
                started = sessions[0].post(self.url(race, "/run"))
                assert started.status_code == 202, started.text
                race.execution_url = started.headers["Location"]
            race.answers = at_once(sessions, first(race), second(race))
            return race

        with ThreadPoolExecutor(AT_ONCE) as pool:
            rounds = list(pool.map(one, range(self.served.rounds)))
        for session in self._opened:
            session.close()
        return rounds

    def url(self, race: Round, tail: str = "") -> str:
        """The round's job's URL, with `tail`."""
        return f"{self.served.jobs}/{race.job_id}{tail}"

    def run_now(self, race: Round) -> Call:
        """Run the round's job now."""
        return lambda session: session.post(self.url(race, "/run"))

    def delete(self, race: Round) -> Call:
        """Delete the round's job."""
        return lambda session: session.delete(self.url(race))

    def disable(self, race: Round) -> Call:
        """Disable the round's job with a PATCH."""
        return lambda session: session.patch(self.url(race), json={"state": "disabled"})

    def cancel(self, race: Round) -> Call:
        """Cancel the execution made beforehand."""
        return lambda session: session.patch(str(race.execution_url), json=CANCEL)

    def resume(self, race: Round) -> Call:
        """Resume the execution made beforehand."""
        return lambda session: session.post(f"{race.execution_url}/resume")


def _check_answers(rounds: list[Round], first: set[int], second: set[int]) -> None:
    """Every answer is one a race may give, and the first and second call's are among
    `first` and `second`."""
    for race in rounds:
        for answer in race.answers:
            assert answer.status_code in ANSWERS, (race.job_id, answer.request.method,
                                                   answer.status_code, answer.text)
        assert race.statuses[0] in first, (race.job_id, race.statuses, race.answers[0].text)
        assert race.statuses[1] in second, (race.job_id, race.statuses, race.answers[1].text)


def _check_stored_only_what_succeeded(served: Served, rounds: list[Round]) -> None:
    """A call that succeeded left its operation record, and one refused stored nothing,
    not even that."""
    answers = [answer for race in rounds for answer in race.answers]
    recorded = {row.id for row in served.rows("SELECT id FROM operations")}
    for answer in answers:
        key = answer.headers["x-ms-request-id"].replace("-", "").lower()
        assert (key in recorded) == (answer.status_code < 300), (
            answer.request.method, answer.request.url, answer.status_code)


def _check_deleted(served: Served, rounds: list[Round]) -> None:
    """The rounds' jobs are gone, and every execution and history entry of theirs with
    them: nothing refers to a job that is no more."""
    ids = {race.job_id for race in rounds}
    left = {row.job_id for row in served.rows("SELECT job_id FROM jobs")}
    assert not ids & left
    assert served.rows("SELECT e.id FROM executions e LEFT JOIN jobs j ON j.id = e.job_pk "
                       "WHERE e.job_pk IS NOT NULL AND j.id IS NULL") == []
    assert served.rows("SELECT h.id FROM job_history h LEFT JOIN jobs j ON j.id = h.job_pk "
                       "WHERE j.id IS NULL") == []
    made = {answer.headers["Location"].rsplit("/", 1)[1] for race in rounds
            for answer in race.answers if "Location" in answer.headers}
    made |= {race.execution_id for race in rounds if race.execution_url is not None}
    existing = {row.id for row in served.rows("SELECT id FROM executions")}
    assert not made & existing


def test_run_now_racing_delete_runs_the_job_or_finds_it_gone(served: Served) -> None:
    races = Races(served)
    rounds = races.run("run-delete", races.run_now, races.delete)
    _check_answers(rounds, {202, 404}, {200})
    _check_deleted(served, rounds)
    _check_stored_only_what_succeeded(served, rounds)


def test_cancel_racing_delete_of_its_job_cancels_or_finds_it_gone(served: Served) -> None:
    races = Races(served)
    rounds = races.run("cancel-delete", races.cancel, races.delete, execution=True)
    # 409: the engine finished the run first.
    _check_answers(rounds, {204, 404, 409}, {200})
    _check_deleted(served, rounds)
    _check_stored_only_what_succeeded(served, rounds)


def test_resume_racing_delete_of_its_job_resumes_or_finds_it_gone(served: Served) -> None:
    races = Races(served)
    rounds = races.run("resume-delete", races.resume, races.delete, manual=True,
                       execution=True)
    _check_answers(rounds, {202, 404}, {200})
    _check_deleted(served, rounds)
    _check_stored_only_what_succeeded(served, rounds)


def test_patch_racing_delete_patches_or_finds_the_job_gone(served: Served) -> None:
    races = Races(served)
    rounds = races.run("patch-delete", races.disable, races.delete, execution=True)
    _check_answers(rounds, {200, 404}, {200})
    _check_deleted(served, rounds)
    _check_stored_only_what_succeeded(served, rounds)


def test_run_now_racing_disabling_runs_before_or_is_refused_after(served: Served) -> None:
    races = Races(served)
    rounds = races.run("run-disable", races.run_now, races.disable)
    _check_answers(rounds, {202, 409}, {200})
    states = {row.job_id: row.state for row in served.rows("SELECT job_id, state FROM jobs")}
    assert {states[race.job_id] for race in rounds} == {"disabled"}
    for race in rounds:
        if race.statuses[0] == 202:
            execution_id = race.answers[0].headers["Location"].rsplit("/", 1)[1]
            assert served.rows("SELECT e.id FROM executions e JOIN jobs j ON j.id = e.job_pk "
                               "WHERE e.id = :id AND j.job_id = :job", id=execution_id,
                               job=race.job_id), race.job_id
    # What a node finds of a disabled job's runs it cancels: none is left to run.
    assert wait_for(lambda: not served.rows(
        "SELECT e.id FROM executions e JOIN jobs j ON j.id = e.job_pk "
        "WHERE j.state = 'disabled' AND e.status IN ('pending', 'running')"), 30)
    _check_stored_only_what_succeeded(served, rounds)


def test_cancel_racing_cancel_cancels_once(served: Served) -> None:
    races = Races(served)
    rounds = races.run("cancel-cancel", races.cancel, races.cancel, manual=True,
                       execution=True)
    _check_answers(rounds, {204, 409}, {204, 409})
    assert Counter(tuple(sorted(race.statuses)) for race in rounds) == Counter(
        {(204, 409): len(rounds)})
    for race in rounds:
        (status, revision), = served.rows("SELECT status, revision FROM executions "
                                          "WHERE id = :id", id=race.execution_id)
        assert (status, revision) == ("canceled", 1), race.job_id
    _check_stored_only_what_succeeded(served, rounds)


# --- against an engine's locks -------------------------------------------------------------
# A claim of an engine locks the runs it leases, then, to mark their jobs run, the jobs; a
# transaction of the test's own takes the same locks at moments the test chooses.

def _waiting_behind(served: Served, pid: int) -> int:
    """How many other connections wait for the connection `pid`, at once or in a chain."""
    rows = served.rows("SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity "
                       "WHERE cardinality(pg_blocking_pids(pid)) > 0")
    chain = {pid}
    while more := {row.pid for row in rows if set(row.blockers) & chain} - chain:
        chain |= more
    return len(chain) - 1


class ClaimLike:
    """A transaction that takes locks as an engine's claim does: a run's row, then its
    job's; rolled back at the end of its block unless it committed."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.conn = served.database.connect()
        self.pid = int(self.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def __enter__(self) -> ClaimLike:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.conn.close()

    def hold_run(self, execution_url: str) -> None:
        """Lock the run's row."""
        self.conn.execute(text("SELECT id FROM executions WHERE id = :id FOR UPDATE"),
                          {"id": execution_url.rsplit("/", 1)[1]})

    def wait_for_waiters(self, count: int) -> None:
        """Wait until `count` other connections wait for this one."""
        assert wait_for(lambda: _waiting_behind(self.served, self.pid) == count, 30), count

    def commit(self) -> None:
        """Commit what it holds so far."""
        self.conn.commit()

    def take_job_and_commit(self, job_id: str) -> bool:
        """Take the job's row, as a claim marks its job run, and commit; whether that went
        through (not when the database ended it to break a deadlock)."""
        try:
            self.conn.execute(text(
                "UPDATE jobs SET last_execution_time = last_execution_time WHERE job_id = :job"),
                {"job": job_id})
            self.conn.commit()
            return True
        except OperationalError:
            self.conn.rollback()
            return False


def _paused_job(served: Served, session: requests.Session, jobs: str, job_id: str
                ) -> tuple[str, str]:
    """A job whose runs wait, paused, for `resume` (no engine takes them), and one run of
    it: the job's URL and the run's."""
    job_url = f"{jobs}/{job_id}"
    assert session.put(job_url, json=served.job(manual=True)).status_code == 201
    return job_url, _started(session.post(f"{job_url}/run"))


def _started(answer: requests.Response) -> str:
    """The URL of the run a run-now answer started."""
    assert answer.status_code == 202, answer.text
    return answer.headers["Location"]


@pytest.mark.parametrize("served", ["postgresql"], indirect=True)
def test_delete_waits_for_an_engine_that_holds_a_run_and_then_takes_its_job(
    served: Served
) -> None:
    job_url, run = _paused_job(served, served.server.session(), served.jobs, "held-delete")
    with ThreadPoolExecutor(1) as pool, ClaimLike(served) as claim:
        claim.hold_run(run)
        deleting = pool.submit(served.server.session().delete, job_url)
        claim.wait_for_waiters(1)
        engine_went_through = claim.take_job_and_commit("held-delete")
        deleted = deleting.result(60)
    assert deleted.status_code == 200, deleted.text
    assert engine_went_through
    assert not served.rows("SELECT id FROM jobs WHERE job_id = 'held-delete'")


@pytest.mark.parametrize("served", ["postgresql"], indirect=True)
def test_cancel_and_delete_queued_behind_an_engine_both_go_through(served: Served) -> None:
    job_url, run = _paused_job(served, served.server.session(), served.jobs, "held-cancel")
    with ThreadPoolExecutor(2) as pool, ClaimLike(served) as claim:
        claim.hold_run(run)
        canceling = pool.submit(served.server.session().patch, run, json=CANCEL)
        claim.wait_for_waiters(1)
        deleting = pool.submit(served.server.session().delete, job_url)
        claim.wait_for_waiters(2)
        engine_went_through = claim.take_job_and_commit("held-cancel")
        canceled, deleted = canceling.result(60), deleting.result(60)
    assert (canceled.status_code, deleted.status_code) == (204, 200), (canceled.text,
                                                                       deleted.text)
    assert engine_went_through
    assert not served.rows("SELECT id FROM jobs WHERE job_id = 'held-cancel'")


@pytest.mark.parametrize("served", ["postgresql"], indirect=True)
def test_delete_that_a_run_started_and_claimed_meanwhile_deadlocks_is_made_again(
    served: Served
) -> None:
    session = served.server.session()
    job_url, first = _paused_job(served, session, served.jobs, "held-again")
    with (ThreadPoolExecutor(2) as pool, ClaimLike(served) as holder,
          ClaimLike(served) as claim):
        holder.hold_run(first)
        deleting = pool.submit(served.server.session().delete, job_url)
        holder.wait_for_waiters(1)
        # The delete waits for the first run before it takes the job: a run starts meanwhile.
        starting = pool.submit(session.post, f"{job_url}/run")
        assert wait([starting], 10).done, "the run waited for the delete"
        claim.hold_run(_started(starting.result()))
        holder.commit()  # the delete takes the job, and waits for the new run
        claim.wait_for_waiters(1)
        engine_went_through = claim.take_job_and_commit("held-again")
        deleted = deleting.result(60)
    assert deleted.status_code == 200, deleted.text
    assert engine_went_through
    assert not served.rows("SELECT id FROM jobs WHERE job_id = 'held-again'")


@pytest.mark.parametrize("served", ["postgresql"], indirect=True)
def test_deleting_all_jobs_waits_for_an_engine_that_holds_a_run_and_then_takes_its_job(
    served: Served
) -> None:
    session = served.server.session()
    collection = served.jobs.removesuffix("/jc1/jobs").replace("/~/", "/") + "/held-all"
    assert session.put(collection, data=collection_xml("P20Premium")).status_code == 202
    jobs = served.jobs.replace("/jc1/", "/held-all/")
    _job_url, run = _paused_job(served, session, jobs, "held-all")
    with ThreadPoolExecutor(1) as pool, ClaimLike(served) as claim:
        claim.hold_run(run)
        deleting = pool.submit(served.server.session().delete, jobs)
        claim.wait_for_waiters(1)
        engine_went_through = claim.take_job_and_commit("held-all")
        deleted = deleting.result(60)
    assert deleted.status_code == 200, deleted.text
    assert engine_went_through
    assert session.get(jobs).json() == []
