"""PollClock: one thread for every sync poller's repeat polls, coalescing close ones."""

from __future__ import annotations

import threading
import time

from dnsbalance._poll.clock import COALESCE, PollClock


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
