"""The asyncio driver of the DNS poll: a task that sleeps, looks up and records.

State, decisions, warnings and the change callback are :class:`PollTracker`'s,
shared with the thread driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import ClosedError, DnsBalanceError
from dnsbalance._poll.tracker import PollTracker

from .policy import PollResult

log = logging.getLogger(__name__)

AsyncLookup = Callable[[], Awaitable[tuple[Endpoint, ...]]]


class AsyncDnsPoller(PollTracker[AsyncLookup]):
    """Re-polls ``lookup`` in an asyncio task; ``on_change`` runs on the event loop.

    ``poll_now()`` may be called from any thread (the API side's merge thread does).
    """

    def _start_driver(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopped = False

    async def poll_once(self) -> PollResult:
        if self._stopped:
            raise ClosedError("poller is stopped")
        try:
            endpoints = await self._lookup()
        except DnsBalanceError as exc:
            return self.record_error(exc)
        return self.record_answer(endpoints)

    def start(self) -> None:
        """Start the task on the running loop."""
        if self._stopped:
            raise ClosedError("poller is stopped")
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = self._loop.create_task(self._run(), name=self._name)

    def poll_now(self) -> None:
        """Wake the task to poll at once; safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def stop(self) -> None:
        """Cancel the task and wait for it. Idempotent."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        assert self._wake is not None
        delay = self._delay
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                delay = (await self.poll_once()).delay
            except ClosedError:
                return
            except Exception:  # a bug must not kill the poller: back off and go on
                log.exception("%s: unexpected error in poll", self._name)
                delay = self.policy.max_backoff
