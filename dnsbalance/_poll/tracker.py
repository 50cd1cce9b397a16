"""What the DNS poll drivers share: the lookup, the poll state, the policy's decisions,
the warning on failure and the change callback (the drivers: :mod:`.sync`, :mod:`.aio`)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from dnsbalance._endpoints import Change, Endpoint
from dnsbalance._exceptions import DnsBalanceError

from .policy import PollPolicy, PollResult, PollState, on_answer, on_error

log = logging.getLogger(__name__)


L = TypeVar("L")


ChangeCallback = Callable[[Change], None]


class ErrorCounter(Protocol):
    """Where a poller counts its failed polls (a channel's metrics, or every channel's of
    a shared poller)."""

    def resolution_error(self) -> None: ...


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
        metrics: ErrorCounter | None = None,
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
    def name(self) -> str:
        """The poller's name (its thread's; its log lines start with it)."""
        return self._name

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
