"""The thread driver of the DNS poll: runs lookups on a named thread, applies the policy.

All decisions live in :mod:`dnsbalance._policy`; this module only sleeps, calls
the lookup and reports changes.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._endpoints import Change, Endpoint
from ._exceptions import ClosedError, DnsBalanceError
from ._metrics import TargetMetrics
from ._policy import PollPolicy, PollResult, PollState, on_answer, on_error

__all__ = ["DnsPoller", "PollTracker"]

log = logging.getLogger(__name__)

Lookup = Callable[[], tuple[Endpoint, ...]]
L = TypeVar("L")
ChangeCallback = Callable[[Change], None]


class PollTracker(Generic[L]):
    """What the DNS poll drivers share: the lookup, the poll state, the policy's
    decisions, the warning on failure and the change callback. Drivers only do the
    lookups and the sleeping (:class:`DnsPoller` on a thread, the asyncio one in a
    task), set up in their ``_start_driver``."""

    def __init__(
        self,
        lookup: L,
        *,
        policy: PollPolicy | None = None,
        on_change: ChangeCallback | None = None,
        name: str = "dnsbalance-poller",
        rng: random.Random | None = None,
        metrics: TargetMetrics | None = None,
    ) -> None:
        self.policy = policy or PollPolicy()
        self._metrics = metrics
        self.on_change = on_change
        self._rng = rng or random.Random()
        self._name = name
        self._lock = threading.Lock()
        self._state = PollState()
        self._delay = self.policy.interval
        self._lookup = lookup
        self._start_driver()

    def _start_driver(self) -> None:
        """The driver's own state (events, thread or task handles)."""

    @property
    def state(self) -> PollState:
        return self._state

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._state.endpoints

    def record_error(self, exc: DnsBalanceError) -> PollResult:
        """A poll failed: keep the last known good set, back off, warn."""
        if self._metrics is not None:
            self._metrics.resolution_error()
        with self._lock:
            result = on_error(self._state, exc, self.policy, self._rng)
            self._state, self._delay = result.state, result.delay
        log.warning(
            "%s: DNS poll failed (%s); keeping %d endpoints, next poll in %.1f s",
            self._name,
            exc,
            len(result.state.endpoints),
            result.delay,
        )
        return result

    def record_answer(self, endpoints: tuple[Endpoint, ...]) -> PollResult:
        """A poll answered: apply the policy and report a real change."""
        with self._lock:
            result = on_answer(self._state, endpoints, self.policy, self._rng)
            self._state, self._delay = result.state, result.delay
        if result.change is not None and self.on_change is not None:
            try:
                self.on_change(result.change)
            except Exception:
                log.exception("%s: change callback failed", self._name)
        return result


class DnsPoller(PollTracker[Lookup]):
    """Re-polls ``lookup`` on a daemon thread and calls ``on_change`` for real changes.

    ``poll_once()`` polls on the caller's thread (used for the first answer);
    ``start()`` starts the thread; ``poll_now()`` wakes it early; ``stop()`` stops
    and joins it (within about a second, plus one in-flight lookup's timeout).
    ``on_change`` runs on the poller thread; its exceptions are logged, never fatal.
    """

    def _start_driver(self) -> None:
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll_once(self) -> PollResult:
        """Poll now on this thread, update the state and report a change if any."""
        if self._stopped.is_set():
            raise ClosedError("poller is stopped")
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

    def poll_now(self) -> None:
        """Wake the thread to poll at once (e.g. when the API saw a change)."""
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread and join it; idempotent."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "%s: thread still busy after %.1f s (a lookup in flight)", self._name, timeout
                )

    def _run(self) -> None:
        delay = self._delay  # what the last poll (e.g. the caller's first) asked for
        while not self._stopped.is_set():
            self._wake.wait(delay)
            if self._stopped.is_set():
                return
            self._wake.clear()
            try:
                delay = self.poll_once().delay
            except ClosedError:
                return
            except Exception:  # a bug must not kill the poller: back off and go on
                log.exception("%s: unexpected error in poll", self._name)
                delay = self.policy.max_backoff
