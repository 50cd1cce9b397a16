"""The asyncio BalancedChannel: a ``grpc.aio.Channel`` that swaps its underlying channel.

Simpler than the thread twin, because asyncio gives two things for free: a call
reads the current channel and starts on it within one step of the event loop
(no drain can run in between), and ``grpc.aio.Channel.close(grace)`` already
waits for in-flight calls before it cancels them. So a rebuild builds the new
channel (identical target and options: connections are shared), waits, bounded,
for it to be ready, swaps, and closes the old one with ``grace=drain_timeout`` in
a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import ClosedError

from .base import BalancedBase, _Slot

log = logging.getLogger(__name__)

AioSlot = _Slot[grpc.aio.Channel]
NO_LIMIT = 365 * 24 * 3600.0  # drain_timeout=None: grpc.aio takes grace=None as "cancel now"


class BalancedChannel(BalancedBase[grpc.aio.Channel], grpc.aio.Channel):
    """A ``grpc.aio.Channel`` over a changing set of endpoints; see
    :func:`dnsbalance.aio.resolve_channel`. Use it on the loop it was made on."""

    def _open(self, first: AioSlot) -> None:
        self._current = first
        self._closed = False
        self._rebuilding = asyncio.Lock()
        self._drains: set[asyncio.Task[None]] = set()
        self._draining: set[AioSlot] = set()
        self._wanted: tuple[Endpoint, ...] | None = None
        self._updater: asyncio.Task[None] | None = None

    @property
    def _slot(self) -> AioSlot:
        return self._current

    @property
    def closed(self) -> bool:
        return self._closed

    # -- rebuilds -----------------------------------------------------------------

    def want(self, endpoints: Sequence[Endpoint]) -> None:
        """Ask for a rebuild onto ``endpoints`` without waiting (call on the loop). Only
        the latest wish counts when several arrive during one rebuild."""
        if self._closed:
            return
        self._wanted = tuple(endpoints)
        if self._updater is None or self._updater.done():
            self._updater = asyncio.get_running_loop().create_task(
                self._follow_wishes(), name=f"dnsbalance-update-{self._name}"
            )

    async def _follow_wishes(self) -> None:
        while self._wanted is not None and not self._closed:
            wanted, self._wanted = self._wanted, None
            try:
                await self.update(wanted)
            except Exception:  # keep the current channel; the next change tries again
                log.exception("%s: rebuild failed", self._name)

    async def update(self, endpoints: Sequence[Endpoint], *, force: bool = False) -> bool:
        """Rebuild onto ``endpoints`` if they differ (or ``force``); whether it did. With
        subsetting, only when the subset to dial differs (``endpoints`` are adopted
        either way)."""
        members = tuple(endpoints)
        new = self._dialed(members)
        replaced: AioSlot | None = None
        async with self._rebuilding:
            slot = self._current
            if self._closed:
                return False
            if not force and new == slot.endpoints:
                # With subsetting, a change outside the subset: new endpoints, same channel.
                before = self._adopt(members)
                if before == members:
                    return False
            else:
                replaced, slot = slot, self._next_slot(new)
                if new:
                    try:
                        await asyncio.wait_for(slot.channel.channel_ready(), self._ready_timeout)
                    except TimeoutError:
                        log.warning(
                            "%s: new channel not ready after %.1f s; swapping anyway",
                            self._name,
                            self._ready_timeout,
                        )
                if self.closed:  # closed while we waited
                    await slot.channel.close()
                    return False
                self._current = slot
                before = self._adopt(members)
                self._drain(replaced)
        self._announce(replaced, slot, before, members)
        return replaced is not None

    async def rebuild(self) -> None:
        await self.update(self.endpoints, force=True)

    def _drain(self, slot: AioSlot) -> None:
        """Close ``slot``'s channel in the background once its calls are done (grpc.aio's
        ``close(grace)`` waits for them, then cancels what is left)."""
        grace = NO_LIMIT if self._drain_timeout is None else self._drain_timeout
        self._draining.add(slot)

        async def drain() -> None:
            try:
                await slot.channel.close(grace=grace)
            finally:
                self._draining.discard(slot)

        task = asyncio.get_running_loop().create_task(
            drain(), name=f"dnsbalance-drain-{self._name}"
        )
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    # -- the call path ------------------------------------------------------------

    def _callable(self, key: tuple[Any, ...]) -> Any:
        if self._closed:
            raise ClosedError(f"{self._name}: channel is closed")
        return self._current.callable(key)

    # -- connectivity (of the channel in use) -------------------------------------

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._current.channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._current.channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._current.channel.channel_ready()

    # -- lifecycle ----------------------------------------------------------------

    async def close(self, grace: float | None = None) -> None:
        """Stop refreshing, then close: calls running now get ``grace`` seconds (``None``:
        cancelled at once, as ``grpc.aio`` does), and so do old channels still draining.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        updater, self._updater = self._updater, None
        if updater is not None and not updater.done():
            updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await updater
        if self._on_close is not None:
            try:
                await self._on_close()
            except Exception:
                log.exception("%s: stopping the endpoint sources failed", self._name)
        async with self._rebuilding:
            # The channel in use, and the old ones still draining, get ``grace``; then the
            # drain tasks (whose own, longer wait that close ends) are awaited too.
            slots = [self._current, *self._draining]
            results = await asyncio.gather(
                *[slot.channel.close(grace) for slot in slots],
                *list(self._drains),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, BaseException):
                log.debug("%s: closing a channel: %r", self._name, result)

    async def __aenter__(self) -> BalancedChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(
                f"unclosed {self!r}: await channel.close()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )


class _MultiCallable:
    """Looks up the channel in use at call time; holds the BalancedChannel alive."""

    def __init__(self, owner: BalancedChannel, key: tuple[Any, ...]) -> None:
        self._owner = owner
        self._key = key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner._callable(self._key)(*args, **kwargs)


class _UnaryUnary(_MultiCallable, grpc.aio.UnaryUnaryMultiCallable[Any, Any]):
    pass


class _UnaryStream(_MultiCallable, grpc.aio.UnaryStreamMultiCallable[Any, Any]):
    pass


if TYPE_CHECKING:
    _StreamUnaryBase = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamBase = grpc.aio.StreamStreamMultiCallable[Any, Any]
else:  # grpcio 1.63 (our lower bound) does not subscript these two
    _StreamUnaryBase = grpc.aio.StreamUnaryMultiCallable
    _StreamStreamBase = grpc.aio.StreamStreamMultiCallable


class _StreamUnary(_MultiCallable, _StreamUnaryBase):
    pass


class _StreamStream(_MultiCallable, _StreamStreamBase):
    pass


BalancedChannel._proxies = {
    "unary_unary": _UnaryUnary,
    "unary_stream": _UnaryStream,
    "stream_unary": _StreamUnary,
    "stream_stream": _StreamStream,
}
