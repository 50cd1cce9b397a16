"""PollClock: one thread for every sync poller's repeat polls, coalescing close ones."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from dnsbalance._poll.clock import COALESCE, PollClock
from tests.kits.backends import wait_until


class Recorder:
    def __init__(self, done: threading.Event | None = None, expected: int = 1) -> None:
        self.calls: list[tuple[int, float, str]] = []
        self.done = done
        self.expected = expected

    def clock_poll(self, ticket: int) -> None:
        self.calls.append((ticket, time.monotonic(), threading.current_thread().name))
        if self.done is not None and len(self.calls) >= self.expected:
            self.done.set()


def wait_for_thread_end(clock: PollClock, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if clock._thread is None:
            return True
        time.sleep(0.01)
    return False


def test_a_due_poll_runs_on_the_clock_thread_with_its_ticket() -> None:
    clock = PollClock()
    done = threading.Event()
    poller = Recorder(done)
    clock.schedule(poller, 0.05, window=0.01, ticket=7)
    assert done.wait(2.0)
    assert poller.calls[0][0] == 7
    assert poller.calls[0][2] == "dnsbalance-poll-clock"
    assert wait_for_thread_end(clock)  # nothing left: no thread


def test_polls_due_close_together_share_a_round() -> None:
    clock = PollClock()
    done = threading.Event()
    first, second = Recorder(), Recorder(done)
    clock.schedule(first, 0.05, window=COALESCE, ticket=1)
    clock.schedule(second, 0.05 + COALESCE / 2, window=COALESCE, ticket=2)
    assert done.wait(2.0)
    assert first.calls
    assert second.calls
    assert abs(second.calls[0][1] - first.calls[0][1]) < COALESCE / 2


def test_a_poll_is_not_run_earlier_than_its_window() -> None:
    clock = PollClock()
    done = threading.Event()
    first, late = Recorder(), Recorder(done)
    start = time.monotonic()
    clock.schedule(first, 0.02, window=0.0, ticket=1)
    clock.schedule(late, 0.2, window=0.0, ticket=2)
    assert done.wait(2.0)
    assert late.calls[0][1] - start >= 0.2 - 0.005


def test_an_earlier_entry_wakes_the_sleeping_thread() -> None:
    clock = PollClock()
    done = threading.Event()
    slow, fast = Recorder(), Recorder(done)
    clock.schedule(slow, 10.0, window=0.0, ticket=1)
    time.sleep(0.02)
    start = time.monotonic()
    clock.schedule(fast, 0.02, window=0.0, ticket=2)
    assert done.wait(2.0)
    assert time.monotonic() - start < 5.0
    clock.cancel(slow)
    assert wait_for_thread_end(clock)
    assert not slow.calls


def test_cancel_forgets_a_stopped_poller() -> None:
    clock = PollClock()
    poller = Recorder()
    clock.schedule(poller, 0.1, window=0.0, ticket=1)
    assert clock.pending() == 1
    clock.cancel(poller)
    assert clock.pending() == 0
    assert wait_for_thread_end(clock)
    assert not poller.calls


def test_an_error_in_one_poll_does_not_stop_the_clock() -> None:
    clock = PollClock()

    class Failing:
        def clock_poll(self, ticket: int) -> None:
            raise RuntimeError("bug")

    done = threading.Event()
    ok = Recorder(done)
    clock.schedule(Failing(), 0.02, window=0.0, ticket=1)
    clock.schedule(ok, 0.1, window=0.0, ticket=2)
    assert done.wait(2.0)


class Exchange:
    """A repeat poll in flight: answered when the test writes to its socket pair."""

    def __init__(self, events: list[str], name: str) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.events, self.name = events, name
        self.deadline = time.monotonic() + 5.0
        self.complete = False

    def fileno(self) -> int:
        return self.ours.fileno()

    def read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            if self.ours.recv(16):
                self.complete = True

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


class Starter:
    """A poller whose repeat polls the clock waits on (``clock_begin``)."""

    def __init__(self, events: list[str], name: str, done: threading.Event) -> None:
        self.events, self.name, self.done = events, name, done
        self.exchange: Exchange | None = None

    def clock_poll(self, ticket: int) -> None:
        raise AssertionError("a poller with clock_begin is begun, not polled")

    def clock_begin(self, ticket: int) -> Starter:
        self.events.append(f"begin {self.name}")
        self.exchange = Exchange(self.events, self.name)
        return self

    def end(self) -> None:
        assert self.exchange is not None
        self.events.append(f"end {self.name} {'answered' if self.exchange.complete else 'late'}")
        self.exchange.close()
        self.done.set()


def test_a_round_sends_every_due_poll_before_it_waits_for_the_answers() -> None:
    """One sleep per round, not one per poll: every due poll is begun (its questions
    sent), then the clock waits on all their sockets together, then ends each."""
    clock = PollClock()
    events: list[str] = []
    done = threading.Event()
    pollers = [Starter(events, name, done) for name in ("a", "b", "c")]
    for i, poller in enumerate(pollers):
        clock.schedule(poller, 0.05, window=COALESCE, ticket=i)
    assert wait_until(lambda: len(events) >= 3, 2.0)
    assert events == ["begin a", "begin b", "begin c"]  # nothing ends before its answer
    for poller in pollers:
        assert poller.exchange is not None
        poller.exchange.theirs.send(b"answer")
    assert done.wait(2.0)
    assert wait_until(lambda: len(events) == 6, 2.0)
    assert events[3:] == ["end a answered", "end b answered", "end c answered"]
