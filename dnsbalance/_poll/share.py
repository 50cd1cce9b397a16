"""One DNS poller per question per process: channels that ask the same thing share it.

Channels share a poller when their :class:`PollKey` is equal: the same driver (the
thread driver, or the asyncio driver on the same event loop), the same name and record
plan (the Service's DNS name and the target's port: a number asks A and AAAA, a name
asks SRV), the same nameservers, the same DNS timeout and the same
:class:`~dnsbalance._poll.policy.PollPolicy`. Everything a poller decides (backoff, two
NXDOMAIN to empty) depends on nothing else, so a shared poller's decision is the one
each channel's own poller would have made; what the channels decide from it (the
cross-check with the API, panic mode, topology) stays per channel, downstream.

Sync and asyncio channels do not share a poller: an asyncio poller is a task on one
event loop (``dnsbalance.aio`` promises its DNS never runs on a thread), a sync one runs
on the poll clock and a thread; asyncio channels on one loop share among themselves.

Lifecycle (:class:`~dnsbalance._shares.Shares`): the first channel makes the poller and
polls once; later channels take its state as it is (no query of their own; while the
first poll is in flight they wait for it) and get, on ``start()``, any change since; the
last ``stop()`` stops the poller. Changes reach the channels one after another on the
poller's thread (or task), in order: in mode "dns" each sync channel's rebuild waits
for its new channel to be READY, which is at once while any endpoint of the new set
answers. A failed poll is logged once under the poller's name
(``dnsbalance-poll-<svc>.<ns>``, as before) and counted in every channel's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dnsbalance._endpoints import Change, Endpoint, diff
from dnsbalance._shares import Shares
from dnsbalance._target import Target

from .aio import AsyncDnsPoller
from .policy import PollPolicy, PollState
from .sync import DnsPoller
from .tracker import ChangeCallback, ErrorCounter, PollTracker

log = logging.getLogger(__name__)

P = TypeVar("P", bound=PollTracker[Any])


@dataclass(frozen=True)
class PollKey:
    """Channels with equal keys share one DNS poller."""

    driver: object
    """``"thread"``, or the asyncio event loop the poller's task runs on."""
    name: str
    port: int | str
    servers: tuple[str, ...] | None
    timeout: float
    policy: PollPolicy


def poll_key(
    target: Target,
    *,
    servers: tuple[str, ...] | None,
    timeout: float,
    policy: PollPolicy,
    driver: object,
) -> PollKey:
    """The key of a channel's DNS poll (``target`` has a port: mode "dns" needs one)."""
    assert target.port is not None
    return PollKey(driver, target.fqdn, target.port, servers, timeout, policy)


class _Members:
    """What every channel of a shared poller hears: its changes, and its failed polls in
    their metrics. Changes are handed on under one lock, in order; a channel that starts
    takes the same lock to catch up, so it never gets an older set after a newer one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # who is in
        self.deliver = threading.Lock()  # one change (or catch-up) at a time
        self.handles: list[_Handle[Any]] = []

    def changed(self, change: Change) -> None:
        with self.deliver:
            with self.lock:
                handles = list(self.handles)
            for handle in handles:
                handle.hear(change)

    def resolution_error(self) -> None:
        with self.lock:
            handles = list(self.handles)
        for handle in handles:
            if handle.metrics is not None:
                handle.metrics.resolution_error()


class _Share(Generic[P]):
    def __init__(self, key: PollKey, make: Callable[[ErrorCounter], P]) -> None:
        self.key = key
        self.members = _Members()
        self.poller: P = make(self.members)
        self.poller.on_change = self.members.changed
        self.polled = False
        self.first = threading.Lock()  # the thread driver's first poll
        self.first_async = asyncio.Lock()  # the asyncio driver's


class _Handle(Generic[P]):
    """One channel's part in a shared poller; the wiring calls it its poller."""

    def __init__(self, share: _Share[P], metrics: ErrorCounter | None) -> None:
        self._share: _Share[P] = share
        self.metrics = metrics
        self.on_change: ChangeCallback | None = None
        self._seen: tuple[Endpoint, ...] = ()
        self._left = False

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._share.poller.endpoints

    @property
    def state(self) -> PollState:
        return self._share.poller.state

    def hear(self, change: Change) -> None:
        if self.on_change is not None:
            try:
                self.on_change(change)
            except Exception:
                log.exception("%s: change callback failed", self._share.poller.name)

    def _join(self) -> None:
        """From now on hear every change, after the one since :meth:`_seen` was taken."""
        members = self._share.members
        with members.deliver:
            change = diff(self._seen, self._share.poller.endpoints)
            if change is not None:
                self.hear(change)
            with members.lock:
                if not self._left and self not in members.handles:
                    members.handles.append(self)

    def _leave(self) -> bool:
        """Out; True for the first call (idempotent)."""
        members = self._share.members
        with members.lock:
            if self._left:
                return False
            self._left = True
            if self in members.handles:
                members.handles.remove(self)
        return True


POLLERS: Shares[PollKey, _Share[Any]] = Shares()


class SharedPoller(_Handle[DnsPoller]):
    """A channel's part in a shared thread-driver poller (``DnsPoller``'s interface)."""

    def poll_once(self) -> None:
        """The first channel polls; the others take the poller's state as it is (once
        the first poll, if in flight, is over)."""
        share = self._share
        with share.first:
            if not share.polled:
                share.poller.poll_once()
                share.polled = True
        self._seen = share.poller.endpoints

    def poll_now(self) -> None:
        self._share.poller.poll_now()

    def start(self) -> None:
        self._join()
        self._share.poller.start()

    def stop(self) -> None:
        """Leave; the last channel stops the poller. Idempotent."""
        if self._leave() and POLLERS.release(self._share.key, self._share):
            self._share.poller.stop()


class SharedAsyncPoller(_Handle[AsyncDnsPoller]):
    """A channel's part in a shared asyncio poller (``AsyncDnsPoller``'s interface)."""

    async def poll_once(self) -> None:
        share = self._share
        async with share.first_async:
            if not share.polled:
                await share.poller.poll_once()
                share.polled = True
        self._seen = share.poller.endpoints

    def poll_now(self) -> None:
        self._share.poller.poll_now()

    def start(self) -> None:
        self._join()
        self._share.poller.start()

    async def stop(self) -> None:
        if self._leave() and POLLERS.release(self._share.key, self._share):
            await self._share.poller.stop()


def shared_poller(
    key: PollKey, make: Callable[[ErrorCounter], DnsPoller], *, metrics: ErrorCounter | None
) -> SharedPoller:
    """Join (or start) the thread-driver poller of ``key``; ``make(metrics)`` builds it
    (cheaply: it starts nothing) when this is the first channel."""
    share = POLLERS.acquire(key, lambda: _Share(key, make))
    assert isinstance(share.poller, DnsPoller)
    return SharedPoller(share, metrics)


def shared_async_poller(
    key: PollKey, make: Callable[[ErrorCounter], AsyncDnsPoller], *, metrics: ErrorCounter | None
) -> SharedAsyncPoller:
    """Join (or start) the asyncio poller of ``key`` (whose driver is the running loop)."""
    share = POLLERS.acquire(key, lambda: _Share(key, make))
    assert isinstance(share.poller, AsyncDnsPoller)
    return SharedAsyncPoller(share, metrics)
