"""The thread driver of the DNS poll: the shared poll clock settles unchanged polls,
a named thread per poller runs the rest; the policy decides.

All decisions live in :mod:`dnsbalance._poll.policy`; the timing in :mod:`dnsbalance._poll.clock`;
this module only calls the lookup, records and reports changes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import ClosedError, DnsBalanceError

from .clock import CLOCK, COALESCE, UdpRound
from .policy import PollResult
from .tracker import PollTracker

log = logging.getLogger(__name__)

Lookup = Callable[[], tuple[Endpoint, ...]]
REPEAT_TIMEOUT = 0.25
"""How long the poll clock waits for repeat answers before handing the poll over."""


class RepeatExchange(Protocol):
    """A repeat poll in flight (``dnsbalance._dns.sync.RepeatExchange``): by when its
    answers are due, whether all came, and how to settle it."""

    deadline: float

    @property
    def complete(self) -> bool: ...

    def finish(self) -> tuple[Endpoint, ...] | None: ...


class ClockRound:
    """One poller's repeat poll in a round of the poll clock: ``exchange`` in flight;
    :meth:`end` settles it (or hands it to the poller's thread)."""

    def __init__(self, poller: DnsPoller, exchange: RepeatExchange) -> None:
        self.poller = poller
        self.exchange = exchange

    @property
    def deadline(self) -> float:
        return self.exchange.deadline

    def end(self) -> None:
        self.poller._clock_end(self.exchange)


class DnsPoller(PollTracker[Lookup]):
    """Re-polls ``lookup`` and calls ``on_change`` for real changes.

    ``poll_once()`` polls on the caller's thread (used for the first answer);
    ``start()`` starts polling; ``poll_now()`` polls at once; ``stop()`` stops and
    joins the poller's thread (within about a second, plus one in-flight lookup's
    timeout). ``on_change`` runs on the poller's thread; its exceptions are logged,
    never fatal.

    The shared poll clock (:mod:`dnsbalance._poll.clock`) times the polls: when one falls
    due it runs the lookup's cheap ``repeat`` check (a :class:`PollLookup`'s), and
    when the answers are the last ones, records them there. Everything else — the
    first poll, a change, an error, a lookup without ``repeat``, ``poll_now`` —
    runs on the poller's own thread, which sleeps until handed a poll.
    """

    def _start_driver(self) -> None:
        # Held while the thread sleeps; a release (a hand-off, poll_now, stop) wakes it.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._busy = threading.Lock()  # one poll at a time, on whichever thread
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticket = 0
        self._repeat: Callable[[float], tuple[Endpoint, ...] | None] | None = getattr(
            self._lookup, "repeat", None
        )
        self._repeat_start: Callable[[float, UdpRound], RepeatExchange | None] | None = getattr(
            self._lookup, "repeat_start", None
        )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll_once(self) -> PollResult:
        """Poll now on this thread, update the state and report a change if any."""
        if self._stopped.is_set():
            raise ClosedError("poller is stopped")
        with self._busy:
            try:
                endpoints = self._lookup()
            except DnsBalanceError as exc:
                return self.record_error(exc)
            return self.record_answer(endpoints)

    def start(self) -> None:
        if self._stopped.is_set():
            raise ClosedError("poller is stopped")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._schedule(self._delay)

    def poll_now(self) -> None:
        """Poll at once on the poller's thread (e.g. when the API saw a change)."""
        self._hand_off()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread and join it; idempotent."""
        self._stopped.set()
        CLOCK.cancel(self)
        self._hand_off()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "%s: thread still busy after %.1f s (a lookup in flight)", self._name, timeout
                )

    def clock_poll(self, ticket: int) -> None:
        """The poll clock says a poll is due (on the clock's thread; never blocks
        for long): the repeat check when it can settle the poll, else a hand-off."""
        if self._stopped.is_set() or ticket != self._ticket:
            return  # stopped, or rescheduled since
        if self._repeat is None or not self._state.steady:
            self._hand_off()
            return
        if not self._busy.acquire(blocking=False):
            self._schedule(min(COALESCE, self.policy.interval / 2))  # a poll is running
            return
        try:
            endpoints = self._repeat(REPEAT_TIMEOUT)
            if endpoints is not None and endpoints is self._state.endpoints:
                self._schedule(self.record_answer(endpoints).delay)
                return
        finally:
            self._busy.release()
        self._hand_off()

    def clock_begin(self, ticket: int, wire: UdpRound) -> ClockRound | None:
        """The poll clock's round begins (on its thread): the repeat poll's questions
        sent on the round's ``wire``, whose answers the clock waits for with the
        round's others; None when there is
        nothing to wait for (stale ticket, a hand-off, a lookup without
        ``repeat_start``: then this did what :meth:`clock_poll` does)."""
        if self._stopped.is_set() or ticket != self._ticket:
            return None
        start = self._repeat_start
        if start is None or not self._state.steady:
            self.clock_poll(ticket)
            return None
        if not self._busy.acquire(blocking=False):
            self._schedule(min(COALESCE, self.policy.interval / 2))  # a poll is running
            return None
        try:
            exchange = start(REPEAT_TIMEOUT, wire)
        except BaseException:
            self._busy.release()
            raise
        if exchange is None:
            self._busy.release()
            self.clock_poll(ticket)
            return None
        return ClockRound(self, exchange)

    def _clock_end(self, exchange: RepeatExchange) -> None:
        try:
            endpoints = exchange.finish()
            if endpoints is not None and endpoints is self._state.endpoints:
                self._schedule(self.record_answer(endpoints).delay)
                return
        finally:
            self._busy.release()
        self._hand_off()

    def _schedule(self, delay: float) -> None:
        with self._lock:
            self._ticket += 1
            ticket = self._ticket
        window = min(COALESCE, self.policy.interval * self.policy.jitter)
        CLOCK.schedule(self, delay, window=window, ticket=ticket)

    def _hand_off(self) -> None:
        with contextlib.suppress(RuntimeError):  # already released: a poll is pending
            self._wake.release()

    def _run(self) -> None:
        while True:
            self._wake.acquire()
            if self._stopped.is_set():
                return
            try:
                delay = self.poll_once().delay
            except ClosedError:
                return
            except Exception:  # a bug must not kill the poller: back off and go on
                log.exception("%s: unexpected error in poll", self._name)
                delay = self.policy.max_backoff
            if self._stopped.is_set():
                return
            self._schedule(delay)
