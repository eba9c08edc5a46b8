"""`serve --role all` keeps its parts running: the API and the engine each run in a child
process, restarted with a growing delay when it dies, and ended when `serve` ends, however it
ends.

Each child gets one end of a socket pair, its lifeline; `serve` holds the other. Nothing
but `serve`'s own end keeps the line open, so when `serve` is gone (a clean exit, or
`kill -9`) the child reads the end of the line at once, with no race with its start: it
stops as on its stop signal, and exits outright if that takes longer than a few seconds. The
child says on the same line when it is ready, so that `serve` can tell a child that could
never start (a port in use) from one that died after it ran.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from scheduler.clock import Clock, SystemClock

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
# A child that ran this long before it died is started again after FIRST_DELAY_SECONDS: its
# death is news, not one more of a crash loop.
STEADY_SECONDS = 60.0
# How long `serve`, stopping, waits for its children to stop before it kills them: the
# engine waits for the calls it has in flight, each of which may take a minute.
STOP_SECONDS = 90.0
# How long a child whose `serve` is gone may take to stop before it exits outright.
ORPHAN_GRACE_SECONDS = 5.0
READY = b"ready\n"
# The signals `serve` acts on: stop (SIGTERM, SIGINT), and a child's exit (SIGCHLD).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WATCHED_SIGNALS = (*STOP_SIGNALS, signal.SIGCHLD)


def restart_delay(previous: float | None, ran_seconds: float) -> float:
    """How long to wait before starting again a child that died after running `ran_seconds`:
    1 s, then twice the delay before at each death in a row, at most 30 s; 1 s again once a
    child had run for a minute."""
    if previous is None or ran_seconds >= STEADY_SECONDS:
        return FIRST_DELAY_SECONDS
    return min(previous * 2, MAX_DELAY_SECONDS)


def how_it_ended(returncode: int) -> str:
    """A process's end in words: `exited with status 1`, `was killed by signal SIGKILL`."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"was killed by signal {name}"


@dataclass(frozen=True, slots=True)
class Exited:
    """One run of a child that has ended: which start of it, its pid and exit status (a
    negative status is the signal that killed it)."""

    start: int
    pid: int
    returncode: int


def _nothing_to_do(_exited: Exited) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Child:
    """A process `serve` keeps running. `command(start, lifeline)` is its command line at
    its `start`th start (1, 2, ...), given the descriptor of its end of the lifeline;
    `on_exit` runs in `serve` after each of its runs has ended."""

    name: str
    command: Callable[[int, int], list[str]]
    on_exit: Callable[[Exited], None] = _nothing_to_do


@dataclass(slots=True)
class _Running:
    child: Child
    start: int
    process: subprocess.Popen[bytes]
    line: socket.socket  # serve's end of the child's lifeline
    started: float


class Supervisor:
    """Runs children until SIGTERM or SIGINT, restarting each one that dies.

    A child that dies before it was ever ready ends `serve` with its exit status: what kept
    it from starting (a port in use, a refused setting) would keep it from starting again.
    """

    def __init__(self, children: Sequence[Child], clock: Clock | None = None) -> None:
        self.children = list(children)
        self.clock = clock or SystemClock()
        self.selector = selectors.DefaultSelector()
        self.running: dict[str, _Running] = {}
        self.starts: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.due: dict[str, float] = {}  # the children waiting to start again, and when
        self.ever_ready: set[str] = set()
        self.stopping = False
        self.status = 0

    def run(self) -> int:
        """Start the children and keep them running until asked to stop; then stop them.
        Returns the exit status for `serve`."""
        with _signals_waking(self.selector) as signals:
            for child in self.children:
                self._start(child)
            while not self.stopping:
                self._wait(signals)
                self._reap()
                self._start_due()
            self._stop_all()
        self.selector.close()
        return self.status

    # --- the loop --------------------------------------------------------------------------

    def _wait(self, signals: int) -> None:
        """Sleep until a signal, a message from a child, or the next restart is due."""
        timeout = None
        if self.due:
            timeout = max(0.0, min(self.due.values()) - self.clock.monotonic())
        for key, _events in self.selector.select(timeout):
            if key.fileobj == signals:
                self._take_signals(signals)
            else:
                self._hear(key.data)

    def _take_signals(self, signals: int) -> None:
        with contextlib.suppress(BlockingIOError):
            if any(number in STOP_SIGNALS for number in os.read(signals, 512)):
                self.stopping = True

    def _hear(self, running: _Running) -> None:
        """Read what a child said on its lifeline: that it is ready, or nothing more."""
        try:
            said = running.line.recv(64)
        except BlockingIOError:  # nothing new
            return
        except OSError:
            said = b""
        if READY in said:
            self.ever_ready.add(running.child.name)
        if not said:  # its process is gone, or closed its end: SIGCHLD tells which
            self._stop_listening(running)

    def _reap(self) -> None:
        for running in list(self.running.values()):
            returncode = running.process.poll()
            if returncode is not None:
                self._hear(running)  # a last word: it may have been ready before it died
                self._ended(running, returncode)
                if not self.stopping:
                    self._plan_restart(running, returncode)

    def _plan_restart(self, running: _Running, returncode: int) -> None:
        name, pid = running.child.name, running.process.pid
        if name not in self.ever_ready:
            log.error("%s (pid %d) %s before it was ready; serve stops", name, pid,
                      how_it_ended(returncode),
                      extra={"child": name, "pid": pid, "returncode": returncode})
            self.status = returncode if returncode > 0 else 1
            self.stopping = True
            return
        now = self.clock.monotonic()
        delay = restart_delay(self.delays.get(name), now - running.started)
        self.delays[name] = delay
        self.due[name] = now + delay
        log.warning("%s (pid %d) %s; restarting it in %g s", name, pid,
                    how_it_ended(returncode), delay,
                    extra={"child": name, "pid": pid, "returncode": returncode,
                           "restart_in_seconds": delay})

    def _start_due(self) -> None:
        now = self.clock.monotonic()
        for child in self.children:
            if child.name in self.due and self.due[child.name] <= now:
                del self.due[child.name]
                running = self._start(child)
                log.info("%s restarted (pid %d)", child.name, running.process.pid,
                         extra={"child": child.name, "pid": running.process.pid})

    # --- a child's life --------------------------------------------------------------------

    def _start(self, child: Child) -> _Running:
        start = self.starts[child.name] = self.starts.get(child.name, 0) + 1
        ours, theirs = socket.socketpair()
        try:
            # Only the child gets its end; ours is not inheritable, so no other child (nor
            # anything a child starts) holds the line open after serve is gone.
            process = subprocess.Popen(child.command(start, theirs.fileno()),
                                       pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        running = _Running(child, start, process, ours, self.clock.monotonic())
        self.running[child.name] = running
        self.selector.register(ours, selectors.EVENT_READ, running)
        return running

    def _stop_listening(self, running: _Running) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(running.line)

    def _ended(self, running: _Running, returncode: int) -> None:
        """A run of a child has ended: forget it, and let its owner clean up after it."""
        self._stop_listening(running)
        running.line.close()
        del self.running[running.child.name]
        try:
            running.child.on_exit(Exited(running.start, running.process.pid, returncode))
        except Exception:  # what is left of a dead child must not stop the others
            log.exception("cleaning up after %s (pid %d) failed", running.child.name,
                          running.process.pid)

    def _stop_all(self) -> None:
        """SIGTERM to every child, then wait for them (killing those that take too long)."""
        self.due.clear()
        for running in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                running.process.send_signal(signal.SIGTERM)
        deadline = self.clock.monotonic() + STOP_SECONDS
        for running in list(self.running.values()):
            try:
                returncode = running.process.wait(
                    max(0.0, deadline - self.clock.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop within %g s; killing it",
                            running.child.name, running.process.pid, STOP_SECONDS)
                running.process.kill()
                returncode = running.process.wait()
            self._ended(running, returncode)


@contextlib.contextmanager
def _signals_waking(selector: selectors.BaseSelector) -> Iterator[int]:
    """While in the block, the signals `serve` acts on are written to a pipe the selector
    watches; yields the pipe's reading end."""
    reading, writing = os.pipe()
    os.set_blocking(reading, False)
    os.set_blocking(writing, False)
    previous_handlers = {number: signal.signal(number, _note_signal)
                         for number in WATCHED_SIGNALS}
    previous_fd = signal.set_wakeup_fd(writing, warn_on_full_buffer=False)
    selector.register(reading, selectors.EVENT_READ)
    try:
        yield reading
    finally:
        selector.unregister(reading)
        signal.set_wakeup_fd(previous_fd)
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        os.close(reading)
        os.close(writing)


def _note_signal(_number: int, _frame: object) -> None:
    """A handler that does nothing: the wake-up pipe carries the signal's number."""


class Lifeline:
    """A child's end of its line to `serve`: it says there when the child is ready, and
    ends the child once `serve` is gone, whatever ended it.

    `stop_signal` is the one the child stops on (the engine's SIGTERM hands back what it
    holds; the API's SIGQUIT drops its connections at once); a child still running
    `grace_seconds` after it exits outright.
    """

    def __init__(self, fd: int, stop_signal: signal.Signals,
                 grace_seconds: float = ORPHAN_GRACE_SECONDS) -> None:
        self.line = socket.socket(fileno=fd)
        self.stop_signal, self.grace_seconds = stop_signal, grace_seconds
        self.serve_pid = os.getppid()

    def watch(self) -> None:
        """Watch the line on a thread of this process."""
        threading.Thread(target=self._end_when_serve_is_gone, name="lifeline",
                         daemon=True).start()

    def ready(self) -> None:
        """Tell `serve` that this child is ready."""
        with contextlib.suppress(OSError):  # serve is gone: the watching thread stops us
            self.line.sendall(READY)

    def _end_when_serve_is_gone(self) -> None:
        with contextlib.suppress(OSError):
            while self.line.recv(64):
                pass
        log.warning("serve (pid %d) is gone: stopping", self.serve_pid,
                    extra={"serve_pid": self.serve_pid})
        main = threading.main_thread().ident
        if main is not None:  # the main thread runs the handler, and is woken by it
            signal.pthread_kill(main, self.stop_signal)
        threading.Event().wait(self.grace_seconds)
        log.error("still running %g s after serve was gone: exiting now", self.grace_seconds)
        os._exit(1)
