"""The shared clock of the thread driver's DNS pollers.

Every poll costs a thread wake-up, and on a busy or virtual machine that, with the
interpreter's cold caches, costs more than the poll itself: measured here, 100
pollers each on its own timer spent ~0.5 ms of CPU per poll, the same polls run
back to back ~0.2 ms. So one daemon thread per process ("dnsbalance-poll-clock")
keeps every sync poller's next due time and wakes for the earliest; polls due
within :data:`COALESCE` of it (and within their own interval times its jitter: a
tenth by default, the width of the jitter itself) run in the same round.

The clock thread only runs a poller's *repeat* poll (see ``DnsPoller.clock_begin``):
the last answers asked again with a short timeout, and recorded when they are
unchanged. A round sends every due poll's questions first, then waits for all their
answers together: one sleep per round instead of one per poll (a sleep and wake-up
cost more CPU than the poll's own work). The round's questions to one server go out
from one socket (:class:`UdpRound`), as one lookup's questions do: a fresh random
source port each round, and message IDs distinct on it. Anything else — a change, an
error, a slow server, a fallback to dnspython — is handed to the poller's own thread,
so the clock never blocks on a rebuild or a DNS timeout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

log = logging.getLogger(__name__)

COALESCE = 0.5
"""Polls due within this many seconds of the earliest run in the same round (a poll
may so run up to this much early, and at most its interval times its jitter early).
A round costs ~0.5 ms of CPU beyond its polls on this project's VMs (three thread
wake-ups, a socket): 100 idle channels at the default 5 s interval, in steady state,
made 3.0 rounds a second at 0.25 s (their pollers 0.19-0.20 CPU s a minute) and 1.7 at
0.5 s (0.16-0.17), measured 2026-12-07."""


class Round(Protocol):
    """A poll a round has started: its questions sent on the round's :class:`UdpRound`,
    which hands it their answers until ``deadline`` (monotonic); :meth:`end` settles
    it once the round is over."""

    @property
    def deadline(self) -> float: ...

    def end(self) -> None: ...


class Scheduled(Protocol):
    def clock_poll(self, ticket: int) -> None:
        """Run on the clock thread when due; must return quickly."""


Server = tuple[str, int]
Receiver = Callable[[bytes], None]


class UdpRound:
    """The UDP sockets one round of the clock shares: one connected, non-blocking
    socket per server, made on first use (so a fresh random source port each round,
    as dnspython takes one per query), whose datagrams go to whoever expects their
    first two bytes (a DNS message ID, kept unique on the socket by the senders with
    :meth:`ids_in_use`). Connected, a socket only receives its server's datagrams."""

    def __init__(self) -> None:
        self._sockets: dict[Server, socket.socket] = {}
        self._expected: dict[Server, dict[bytes, Receiver]] = {}

    def ids_in_use(self, server: Server) -> set[bytes]:
        return set(self._expected.get(server, ()))

    def send(self, server: Server, messages: Sequence[bytes], receiver: Receiver) -> bool:
        """Send ``messages`` to ``server``; their answers will be handed to
        ``receiver`` as they come. False when a send failed (nothing expected then)."""
        expected = self._expected.setdefault(server, {})
        try:
            sock = self._sockets.get(server)
            if sock is None:
                family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sockets[server] = sock
                sock.setblocking(False)
                sock.connect(server)
            for message in messages:
                expected[message[:2]] = receiver
                sock.send(message)
        except OSError:
            for message in messages:
                expected.pop(message[:2], None)
            return False
        return True

    def wait(self, deadline: float) -> None:
        """Hand out answers as they come until every one expected came or
        ``deadline`` (monotonic) passed: one sleep for the whole round."""
        poller = select.poll()
        by_fd: dict[int, Server] = {}
        for server, sock in self._sockets.items():
            if self._expected[server]:
                by_fd[sock.fileno()] = server
                poller.register(sock, select.POLLIN)
        for _ in range(16 * sum(map(len, self._expected.values())) + 16):  # bounded
            left = deadline - time.monotonic()
            if not by_fd or left <= 0:
                return
            with contextlib.suppress(InterruptedError):
                for fd, _ in poller.poll(left * 1000):
                    server = by_fd[fd]
                    if not self._read(server):
                        poller.unregister(fd)
                        del by_fd[fd]

    def _read(self, server: Server) -> bool:
        """Take what has arrived for ``server`` (a bounded number of datagrams);
        False when nothing more is expected from it (all came, or the socket failed,
        e.g. an ICMP port unreachable: the polls hand over)."""
        expected, sock = self._expected[server], self._sockets[server]
        for _ in range(2 * len(expected) + 4):
            if not expected:
                return False
            try:
                datagram = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            receiver = expected.pop(datagram[:2], None)
            if receiver is not None:
                receiver(datagram)
        return bool(expected)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._expected.clear()


def _begin(poller: Scheduled, ticket: int, wire: UdpRound) -> Round | None:
    """``poller.clock_begin(ticket, wire)`` when it has one (its questions sent on
    ``wire``), else ``poller.clock_poll(ticket)``."""
    begin = getattr(poller, "clock_begin", None)
    if begin is None:
        poller.clock_poll(ticket)
        return None
    started: Round | None = begin(ticket, wire)
    return started


class _Entry(NamedTuple):
    """A due poll. Entries order by ``due``, then ``seq``, which is unique, so the
    fields after it are never compared; a tuple compares in C, where a dataclass's
    ordering ran Python code ~9 times per poll on the heap."""

    due: float
    seq: int
    window: float
    poller: Scheduled
    ticket: int


class PollClock:
    """A heap of due polls and the one thread that runs them: started when an entry
    arrives, ended when none is left (a process without channels has no clock)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        # Held while the thread sleeps; released to wake it for an earlier entry.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._thread: threading.Thread | None = None

    def schedule(self, poller: Scheduled, delay: float, *, window: float, ticket: int) -> None:
        """Call ``poller.clock_poll(ticket)`` in about ``delay`` seconds (up to
        ``window`` early, to share a round with other polls)."""
        entry = _Entry(time.monotonic() + delay, next(self._seq), window, poller, ticket)
        with self._lock:
            earliest = not self._heap or entry < self._heap[0]
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dnsbalance-poll-clock", daemon=True
                )
                self._thread.start()
        if earliest:
            with contextlib.suppress(RuntimeError):  # already released: a wake is pending
                self._wake.release()

    def pending(self) -> int:
        """Entries waiting (stale ones included until they fall due)."""
        with self._lock:
            return len(self._heap)

    def cancel(self, poller: Scheduled) -> None:
        """Forget ``poller``'s entries (it stopped); the thread ends once none is left."""
        with self._lock:
            kept = [entry for entry in self._heap if entry.poller is not poller]
            if len(kept) == len(self._heap):
                return
            heapq.heapify(kept)
            self._heap = kept
        with contextlib.suppress(RuntimeError):
            self._wake.release()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._heap:  # nothing to wait for: end; schedule() starts anew
                    self._thread = None
                    return
                wait = self._heap[0].due - time.monotonic()
            if wait > 0:
                self._wake.acquire(timeout=wait)
            wire = UdpRound()
            try:
                self._round(wire)
            finally:
                wire.close()

    def _round(self, wire: UdpRound) -> None:
        """Begin every due poll (their questions sent on ``wire``), wait for their
        answers together, then end each."""
        started: list[Round] = []
        for entry in self._take_due():
            try:
                begun = _begin(entry.poller, entry.ticket, wire)
            except Exception:  # a bug must not stop every poller
                log.exception("dnsbalance poll clock: unexpected error in a poll")
                continue
            if begun is not None:
                started.append(begun)
        if started:
            wire.wait(max(begun.deadline for begun in started))
        for begun in started:
            try:
                begun.end()
            except Exception:
                log.exception("dnsbalance poll clock: unexpected error in a poll")

    def _take_due(self) -> list[_Entry]:
        now = time.monotonic()
        due: list[_Entry] = []
        early: list[_Entry] = []
        with self._lock:
            while self._heap and self._heap[0].due <= now + COALESCE:
                entry = heapq.heappop(self._heap)
                (due if entry.due <= now + entry.window else early).append(entry)
            for entry in early:
                heapq.heappush(self._heap, entry)
        return due

    def _after_fork(self) -> None:
        """In a forked child: no thread, and the parent's pollers are not ours."""
        self._reset()


CLOCK = PollClock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CLOCK._after_fork)
