"""The supervisor of `serve --role all`, with small real child processes: restarts with a
growing delay, a child that could never start, and the end of the line when `serve` is gone."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from scheduler.supervise import (
    MAX_DELAY_SECONDS,
    STEADY_SECONDS,
    Child,
    Exited,
    Supervisor,
    how_it_ended,
    restart_delay,
)

# A child that says it is ready on its lifeline, then exits with the status it is given.
READY_THEN_EXIT = ("import socket, sys; line = socket.socket(fileno=int(sys.argv[1])); "
                   "line.sendall(b'ready\\n'); sys.exit(int(sys.argv[2]))")


def python(code: str, *args: object) -> list[str]:
    """A command line that runs `code` in a new Python, with `args` as its arguments."""
    return [sys.executable, "-c", code, *map(str, args)]


def test_restarts_wait_twice_as_long_each_time_up_to_a_cap_and_start_over_after_a_steady_run(
        ) -> None:
    delays = [restart_delay(None, 0.5)]
    for _ in range(7):
        delays.append(restart_delay(delays[-1], 0.5))
    assert delays == [1, 2, 4, 8, 16, MAX_DELAY_SECONDS, MAX_DELAY_SECONDS, MAX_DELAY_SECONDS]
    assert restart_delay(MAX_DELAY_SECONDS, STEADY_SECONDS) == 1


def test_an_end_is_told_by_its_status_or_its_signal() -> None:
    assert how_it_ended(3) == "exited with status 3"
    assert how_it_ended(-signal.SIGKILL) == "was killed by signal SIGKILL"


def test_a_child_that_dies_after_it_was_ready_is_started_again_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    ended: list[Exited] = []

    def after(exited: Exited) -> None:
        ended.append(exited)
        if len(ended) == 2:  # serve is asked to stop, as by SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

    child = Child("worker", lambda start, line: python(READY_THEN_EXIT, line, start + 2), after)
    began = time.monotonic()
    with caplog.at_level(logging.INFO, logger="scheduler.supervise"):
        assert Supervisor([child]).run() == 0
    assert [(e.start, e.returncode) for e in ended] == [(1, 3), (2, 4)]
    assert time.monotonic() - began >= 1, "restarted without waiting"
    first = ended[0].pid
    assert f"worker (pid {first}) exited with status 3; restarting it in 1 s" in caplog.text
    assert f"worker restarted (pid {ended[1].pid})" in caplog.text


def test_a_child_that_ends_before_it_was_ever_ready_ends_serve_with_its_status(
        caplog: pytest.LogCaptureFixture) -> None:
    never_ready = Child("api", lambda _start, _line: python("import sys; sys.exit(5)"))
    starts: list[int] = []

    def waiting(start: int, line: int) -> list[str]:
        starts.append(start)
        return python("import signal; signal.pause()")  # until it is stopped

    other = Child("engine", waiting)
    began = time.monotonic()
    assert Supervisor([other, never_ready]).run() == 5
    assert time.monotonic() - began < 30, "the other child was not stopped"
    assert starts == [1]
    assert "api (pid" in caplog.text and "exited with status 5 before it was ready" in caplog.text


def test_a_child_reads_the_end_of_its_line_at_once_when_serve_is_killed() -> None:
    # serve is a Python that supervises one child, which waits for the end of its line.
    child = ("import socket, sys; line = socket.socket(fileno=int(sys.argv[1])); "
             "print('started', flush=True); line.recv(1); print('serve is gone', flush=True)")
    serve = ("import sys; from scheduler.supervise import Child, Supervisor; "
             f"Supervisor([Child('c', lambda s, line: [sys.executable, '-c', {child!r}, "
             "str(line)])]).run()")
    process = subprocess.Popen([sys.executable, "-c", serve], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        process.kill()
        process.wait(10)
        # A line held open by anything but serve would leave the child waiting for good.
        assert select.select([process.stdout], [], [], 10)[0], "the child did not see it"
        assert process.stdout.readline() == "serve is gone\n"
    finally:
        process.kill()
        process.wait(10)
