"""PollClock: one thread for every sync poller's repeat polls, coalescing close ones."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from dnsbalance._poll.clock import COALESCE, PollClock, UdpRound
from tests.kits.backends import wait_until

# How long a test waits for the clock thread to do what it must: an upper bound for a
# busy machine (the suite runs beside a control plane and builds), never a timing claim.
LIVENESS = 20.0


class Recorder:
    def __init__(self, done: threading.Event | None = None, expected: int = 1) -> None:
        self.calls: list[tuple[int, float, str]] = []
        self.done = done
        self.expected = expected

    def clock_poll(self, ticket: int) -> None:
        self.calls.append((ticket, time.monotonic(), threading.current_thread().name))
        if self.done is not None and len(self.calls) >= self.expected:
            self.done.set()


class Blocker:
    """A poll that holds the clock thread inside its round until released."""

    def __init__(self) -> None:
        self.running, self.release = threading.Event(), threading.Event()

    def clock_poll(self, ticket: int) -> None:
        self.running.set()
        self.release.wait(LIVENESS)


@contextlib.contextmanager
def clock_held(clock: PollClock) -> Iterator[None]:
    """Schedule inside the block without the clock running a round meanwhile: its
    thread is held in a round of its own, so however long the test thread is kept off
    the CPU between two ``schedule`` calls, every entry is there when the next round
    takes the due ones (a test that relies on the calls coming within ``delay`` of
    each other fails on a busy machine: CI did, 2026-12-07)."""
    blocker = Blocker()
    clock.schedule(blocker, 0.0, window=0.0, ticket=-1)
    assert blocker.running.wait(LIVENESS)
    try:
        yield
    finally:
        blocker.release.set()


def wait_for_thread_end(clock: PollClock, timeout: float = LIVENESS) -> bool:
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
    assert done.wait(LIVENESS)
    assert poller.calls[0][0] == 7
    assert poller.calls[0][2] == "dnsbalance-poll-clock"
    assert wait_for_thread_end(clock)  # nothing left: no thread


def test_polls_at_the_default_interval_due_up_to_half_a_second_apart_share_a_round() -> None:
    """A round takes every poll due within 0.5 s at the default 5 s interval (its
    jitter's width), so 100 idle channels make ~1.7 rounds a second, not 3 (README,
    "Where the time goes"): a round costs ~0.5 ms of CPU beyond its polls."""
    from dnsbalance._poll.policy import PollPolicy

    policy = PollPolicy()
    window = min(COALESCE, policy.interval * policy.jitter)  # as DnsPoller schedules
    clock = PollClock()
    done = threading.Event()
    first, second = Recorder(), Recorder(done)
    with clock_held(clock):
        clock.schedule(first, 0.05, window=window, ticket=1)
        clock.schedule(second, 0.45, window=window, ticket=2)
    assert done.wait(LIVENESS)
    assert first.calls
    # one round runs them back to back; separate rounds would be ~0.4 s apart
    assert abs(second.calls[0][1] - first.calls[0][1]) < 0.2


def test_polls_due_close_together_share_a_round() -> None:
    clock = PollClock()
    done = threading.Event()
    first, second = Recorder(), Recorder(done)
    with clock_held(clock):
        clock.schedule(first, 0.05, window=COALESCE, ticket=1)
        clock.schedule(second, 0.05 + COALESCE / 2, window=COALESCE, ticket=2)
    assert done.wait(LIVENESS)
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
    assert done.wait(LIVENESS)
    assert late.calls[0][1] - start >= 0.2 - 0.005


def test_an_earlier_entry_wakes_the_sleeping_thread() -> None:
    clock = PollClock()
    done = threading.Event()
    slow, fast = Recorder(), Recorder(done)
    clock.schedule(slow, 10.0, window=0.0, ticket=1)
    time.sleep(0.02)
    start = time.monotonic()
    clock.schedule(fast, 0.02, window=0.0, ticket=2)
    assert done.wait(LIVENESS)
    assert time.monotonic() - start < 5.0
    clock.cancel(slow)
    assert wait_for_thread_end(clock)
    assert not slow.calls


def test_cancel_forgets_a_stopped_poller() -> None:
    clock = PollClock()
    poller = Recorder()
    clock.schedule(poller, 10.0, window=0.0, ticket=1)  # not due before the cancel
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
    assert done.wait(LIVENESS)


class Server:
    """A UDP "DNS server" on loopback that the test answers by hand."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(LIVENESS)
        self.address: tuple[str, int] = self.sock.getsockname()

    def receive(self) -> tuple[bytes, tuple[str, int]]:
        message, peer = self.sock.recvfrom(512)
        return message, peer

    def close(self) -> None:
        self.sock.close()


class Starter:
    """A poller whose repeat polls the clock waits on (``clock_begin``): it sends one
    message named after it on the round's wire and is answered by the test."""

    def __init__(self, events: list[str], name: str, done: threading.Event, server: Server) -> None:
        self.events, self.name, self.done, self.server = events, name, done, server
        self.deadline = 0.0
        self.answer: bytes | None = None

    def clock_poll(self, ticket: int) -> None:
        raise AssertionError("a poller with clock_begin is begun, not polled")

    def clock_begin(self, ticket: int, wire: UdpRound) -> Starter:
        self.events.append(f"begin {self.name}")
        self.deadline = time.monotonic() + 5.0
        assert not wire.ids_in_use(self.server.address) & {self.name.encode() * 2}
        assert wire.send(self.server.address, [self.name.encode() * 2 + b"?"], self.take)
        return self

    def take(self, answer: bytes) -> None:
        self.answer = answer

    def end(self) -> None:
        self.events.append(f"end {self.name} {'answered' if self.answer else 'late'}")
        self.done.set()


def test_a_round_sends_every_due_poll_before_it_waits_for_the_answers() -> None:
    """One sleep per round, not one per poll: every due poll is begun (its questions
    sent), then the clock waits for all their answers together, then ends each. The
    round's messages to one server leave from one socket."""
    clock = PollClock()
    events: list[str] = []
    done = threading.Event()
    server = Server()
    try:
        pollers = [Starter(events, name, done, server) for name in ("a", "b", "c")]
        with clock_held(clock):
            for i, poller in enumerate(pollers):
                clock.schedule(poller, 0.05, window=COALESCE, ticket=i)
        received = [server.receive() for _ in pollers]
        assert events == ["begin a", "begin b", "begin c"]  # nothing ends before its answer
        assert len({peer for _, peer in received}) == 1  # one socket for the round
        for message, peer in reversed(received):  # answered in any order, by ID
            server.sock.sendto(message[:2] + b"!", peer)
        assert done.wait(LIVENESS)
        assert wait_until(lambda: len(events) == 6, LIVENESS)
        assert events[3:] == ["end a answered", "end b answered", "end c answered"]
        assert [p.answer for p in pollers] == [b"aa!", b"bb!", b"cc!"]
    finally:
        server.close()


def test_a_round_hands_each_answer_to_its_sender_by_id_and_ignores_the_rest() -> None:
    wire = UdpRound()
    server = Server()
    got: dict[str, list[bytes]] = {"x": [], "y": []}
    try:
        assert wire.send(server.address, [b"\x00\x01q", b"\x00\x02q"], got["x"].append)
        assert wire.ids_in_use(server.address) == {b"\x00\x01", b"\x00\x02"}
        assert wire.send(server.address, [b"\x00\x03q"], got["y"].append)
        peers = {server.receive()[1] for _ in range(3)}
        assert len(peers) == 1
        (peer,) = peers
        for reply in (b"\x00\x09stray", b"\x00\x03y", b"\x00\x01x", b"\x00\x01again"):
            server.sock.sendto(reply, peer)
        wire.wait(time.monotonic() + 0.5)  # \x00\x02 never comes: the deadline ends it
        assert got == {"x": [b"\x00\x01x"], "y": [b"\x00\x03y"]}
    finally:
        wire.close()
        server.close()


def test_a_round_stops_waiting_when_every_answer_came() -> None:
    wire = UdpRound()
    server = Server()
    got: list[bytes] = []
    try:
        assert wire.send(server.address, [b"\x00\x07q"], got.append)
        message, peer = server.receive()
        server.sock.sendto(message[:2] + b"a", peer)
        start = time.monotonic()
        wire.wait(start + 30.0)
        assert got == [b"\x00\x07a"]
        assert time.monotonic() - start < 10.0  # not the deadline: every answer came
    finally:
        wire.close()
        server.close()


def test_a_refused_round_ends_without_its_answers() -> None:
    """No server on the port: the ICMP port unreachable fails the socket's read, and
    the round ends early with the polls unanswered (they hand over to their threads)."""
    closed = Server()
    address = closed.address
    closed.close()
    wire = UdpRound()
    got: list[bytes] = []
    try:
        assert wire.send(address, [b"\x00\x05q"], got.append)
        start = time.monotonic()
        wire.wait(start + 30.0)
        assert got == []
        assert time.monotonic() - start < 10.0
    finally:
        wire.close()


def test_a_round_closes_its_sockets() -> None:
    wire = UdpRound()
    server = Server()
    try:
        assert wire.send(server.address, [b"\x00\x05q"], lambda _: None)
        (sock,) = wire._sockets.values()
        wire.close()
        assert sock.fileno() == -1
        assert not wire.ids_in_use(server.address)
    finally:
        server.close()
