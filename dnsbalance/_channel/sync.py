"""BalancedChannel: a grpc.Channel that swaps its underlying channel without dropping calls.

How a call finds its channel: every multicallable handed out (and so every stub
made once) looks up the *current* slot at call time. Reading the slot and
counting the call in flight happen under one lock, so the drainer can never see
a slot idle while a call is about to start on it (the swap-and-drain race in
docs/grpcio-facts.md). The call's grpc multicallable is made in that same step, so
never on a channel close() has closed (grpcio 1.85 crashes making one there);
a call that close() overtakes between that step and grpc raises ClosedError,
like any call after close.

How a rebuild goes: a new grpc channel with the identical target string and
options is built while the old one is still open (grpcio then shares the
surviving endpoints' connections), the caller waits, bounded, for it to be
READY, the slots are swapped, and the old slot is handed to the drainer. The
drainer closes it on its own thread once its in-flight calls, futures and
streams are done, or when ``drain_timeout`` passes (grpc's close cancels what
is still running, and can block ~200 ms: never on a caller's path).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import ClosedError

from .base import BalancedBase, _Slot

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Connectivity = Callable[[grpc.ChannelConnectivity], None]

if TYPE_CHECKING:  # the stubs are generic; the runtime classes are not
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamBase = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable
    _StreamStreamBase = grpc.StreamStreamMultiCallable


SyncSlot = _Slot[grpc.Channel]


_READY = grpc.ChannelConnectivity.READY.value[0]
_IDLE = grpc.ChannelConnectivity.IDLE.value[0]
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN.value[0]
READY_STEP = 0.1
"""Seconds between checks of ``stopped`` while a new channel is not READY yet."""


def wait_ready(channel: grpc.Channel, timeout: float, stopped: Callable[[], bool]) -> bool:
    """Start connecting ``channel`` now and wait, on this thread, until it is READY
    (True), ``timeout`` passes or ``stopped()`` (False).

    grpc's own ``channel_ready_future`` starts a connectivity-polling thread per
    channel, which only starts connecting once it runs, hands each state to a new
    delivery thread, and keeps watching for up to 0.2 s after the future is done (a
    ``close()`` in that time blocks until it ends). grpc's channel core offers the two
    calls that thread makes, ``check_connectivity_state`` and
    ``watch_connectivity_state`` (which returns at the next state change or at its
    deadline): made here, the resolution starts at once and no thread is started.
    A channel without them (another grpc implementation) is waited for with
    ``channel_ready_future``.
    """
    deadline = time.monotonic() + timeout
    core = getattr(channel, "_channel", None)
    check = getattr(core, "check_connectivity_state", None)
    watch = getattr(core, "watch_connectivity_state", None)
    if check is None or watch is None:
        return _wait_ready_future(channel, deadline, stopped)
    try:
        state = check(True)
        for _ in range(10 * int(timeout / READY_STEP) + 10):  # bounded; the deadline ends it
            if state == _READY:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or stopped() or state == _SHUTDOWN:
                return False
            watch(state, time.time() + min(READY_STEP, left))  # grpc takes wall-clock time
            state = check(False)
            if state == _IDLE:  # idle again (e.g. its resolution failed): connect again
                state = check(True)
    except ValueError:  # the channel was closed under us
        return False
    return bool(state == _READY)


def _wait_ready_future(channel: grpc.Channel, deadline: float, stopped: Callable[[], bool]) -> bool:
    future = grpc.channel_ready_future(channel)
    try:
        while not stopped():
            try:
                future.result(timeout=max(0.0, min(READY_STEP, deadline - time.monotonic())))
                return True
            except grpc.FutureTimeoutError:
                if time.monotonic() >= deadline:
                    return False
        # grpc's connectivity thread behind the future watches the channel for up to
        # 0.2 s more, and raises in that thread if the channel closes under it.
        time.sleep(0.25)
        return False
    finally:
        future.cancel()


class _Slots:
    """The current slot, the retired ones and the lock that guards them.

    Shared by the channel, its multicallables and its drainer thread; it holds no
    reference to the BalancedChannel, so an unclosed channel can still be
    collected (and then warns and closes itself).
    """

    def __init__(self, name: str, first: SyncSlot, drain_timeout: float | None) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.drained = threading.Condition(self.lock)
        self.current = first
        self.retired: list[SyncSlot] = []
        self.closed = False
        self.drain_timeout = drain_timeout

    def acquire_call(self, key: tuple[Any, ...]) -> tuple[SyncSlot, Any]:
        """The slot a new call runs on, counted in flight, and its multicallable for
        ``key``, all under one lock: a drain never sees the slot idle while a call is
        starting, and the multicallable is never made on a channel close() has closed
        (grpcio crashes making one on a closed channel)."""
        with self.lock:
            if self.closed:
                raise ClosedError(f"{self.name}: channel is closed")
            slot = self.current
            multicallable = slot.callable(key)
            slot.inflight += 1
            return slot, multicallable

    def release(self, slot: SyncSlot) -> None:
        with self.lock:
            slot.inflight -= 1
            if slot.inflight == 0 and slot.retired_at is not None:
                self.drained.notify_all()

    def release_when_done(self, slot: SyncSlot, call: Any) -> Any:
        """Release ``slot`` once ``call`` (a future or response iterator) terminates."""
        try:
            call.add_done_callback(lambda _call: self.release(slot))
        except BaseException:
            self.release(slot)
            raise
        return call

    def swap(self, new: SyncSlot) -> SyncSlot | None:
        """Make ``new`` current and retire the old slot; ``None`` when closed."""
        with self.lock:
            if self.closed:
                return None
            old, self.current = self.current, new
            old.retired_at = time.monotonic()
            self.retired.append(old)
            self.drained.notify_all()
            return old

    def close(self) -> list[SyncSlot]:
        """Mark closed; return every slot still to close (empty if already closed)."""
        with self.lock:
            if self.closed:
                return []
            self.closed = True
            slots = [*self.retired, self.current]
            self.retired.clear()
            self.drained.notify_all()
            return slots

    def drain_loop(self) -> None:
        """Close retired channels once idle or past ``drain_timeout``; exit on close()."""
        while True:
            with self.lock:
                done: list[SyncSlot] = []
                while not done:
                    if self.closed:
                        return
                    now = time.monotonic()
                    wait: float | None = None
                    for slot in self.retired:
                        assert slot.retired_at is not None
                        if slot.inflight == 0:
                            done.append(slot)
                        elif self.drain_timeout is not None:
                            left = slot.retired_at + self.drain_timeout - now
                            if left <= 0:
                                done.append(slot)
                            else:
                                wait = left if wait is None else min(wait, left)
                    if not done:
                        self.drained.wait(wait)
                for slot in done:
                    self.retired.remove(slot)
            for slot in done:
                if slot.inflight:
                    log.warning(
                        "%s: drain timeout: cancelling %d calls still running on generation %d",
                        self.name,
                        slot.inflight,
                        slot.generation,
                    )
                slot.channel.close()


class BalancedChannel(BalancedBase[grpc.Channel], grpc.Channel):
    """A ``grpc.Channel`` over a changing set of endpoints; see :func:`dnsbalance.resolve_channel`.

    ``endpoints``, ``target`` and ``generation`` describe the channel in use now.
    Thread-safe. Close it (or use it as a context manager) to stop its threads.
    """

    def _open(self, first: SyncSlot) -> None:
        self._rebuild_lock = threading.Lock()
        self._subscriptions: list[tuple[Connectivity, bool]] = []
        self._slots = _Slots(self._name, first, self._drain_timeout)
        self._drainer = threading.Thread(
            target=self._slots.drain_loop, name=f"dnsbalance-drain-{self._name}", daemon=True
        )
        self._drainer.start()

    @property
    def _slot(self) -> SyncSlot:
        return self._slots.current

    @property
    def closed(self) -> bool:
        return self._slots.closed

    # -- rebuilds -----------------------------------------------------------------

    def update(self, endpoints: Sequence[Endpoint], *, force: bool = False) -> bool:
        """Rebuild onto ``endpoints`` if they differ from the current ones (or ``force``);
        with subsetting, only when the subset to dial differs (``endpoints`` are adopted
        either way).

        Returns whether a rebuild happened. Blocks up to ``ready_timeout`` waiting
        for the new channel; called from the poller's thread, not the call path.
        """
        members = tuple(endpoints)
        new = self._dialed(members)
        old: SyncSlot | None = None
        with self._rebuild_lock:
            if self._slots.closed:
                return False
            if not force and new == self._slot.endpoints:
                # With subsetting, a change outside the subset: new endpoints, same channel.
                slot, before = self._slot, self._adopt(members)
                if before == members:
                    return False
            else:
                slot = self._next_slot(new)
                self._wait_ready(slot.channel, new)
                old = self._slots.swap(slot)
                if old is None:  # closed while we waited
                    slot.channel.close()
                    return False
                before = self._adopt(members)
                for callback, try_to_connect in self._subscriptions:
                    old.channel.unsubscribe(callback)
                    slot.channel.subscribe(callback, try_to_connect)
        self._announce(old, slot, before, members)
        return old is not None

    def rebuild(self) -> None:
        """Rebuild onto the current endpoints (e.g. to re-resolve at once)."""
        self.update(self.endpoints, force=True)

    def _wait_ready(self, channel: grpc.Channel, endpoints: tuple[Endpoint, ...]) -> None:
        if not endpoints:
            return
        ready = wait_ready(channel, self._ready_timeout, lambda: self._slots.closed)
        if not ready and not self._slots.closed:
            log.warning(
                "%s: new channel not ready after %.1f s; swapping anyway",
                self._name,
                self._ready_timeout,
            )

    # -- the call path ------------------------------------------------------------

    # -- connectivity -------------------------------------------------------------

    def subscribe(self, callback: Connectivity, try_to_connect: bool = False) -> None:
        """Follow the connectivity of the current channel, across rebuilds."""
        with self._rebuild_lock:
            if self._slots.closed:
                raise ClosedError(f"{self._name}: channel is closed")
            self._subscriptions.append((callback, try_to_connect))
            self._slots.current.channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Connectivity) -> None:
        with self._rebuild_lock:
            self._subscriptions = [s for s in self._subscriptions if s[0] is not callback]
            if not self._slots.closed:
                self._slots.current.channel.unsubscribe(callback)

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Stop refreshing and close every underlying channel (cancelling in-flight calls,
        as ``grpc.Channel.close`` does). Idempotent."""
        slots = self._slots.close()
        if not slots:
            return
        if self._on_close is not None:
            try:
                self._on_close()
            except Exception:
                log.exception("%s: stopping the endpoint source failed", self._name)
        with self._rebuild_lock:  # a rebuild in progress finishes (and closes its channel)
            self._subscriptions.clear()
        for slot in slots:
            slot.channel.close()
        if self._drainer is not threading.current_thread():
            self._drainer.join(5.0)

    def __enter__(self) -> BalancedChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        slots = getattr(self, "_slots", None)
        if slots is not None and not slots.closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
            self.close()


class _MultiCallable:
    """Looks up the current slot at call time; holds the channel so a stub keeps it alive."""

    def __init__(self, owner: BalancedChannel, key: tuple[Any, ...]) -> None:
        self._owner = owner
        self._slots = owner._slots
        self._key = key

    def _start(self, invoke: Callable[[Any], Any], *, until_done: bool = False) -> Any:
        """``invoke(multicallable)`` on the current slot, counted in flight until it
        returns (or, ``until_done``, until the future or stream it returns terminates)."""
        slot, multicallable = self._slots.acquire_call(self._key)
        try:
            call = invoke(multicallable)
        except ValueError as exc:
            self._slots.release(slot)
            if self._slots.closed:  # close() closed the grpc channel as this call started
                raise ClosedError(f"{self._slots.name}: channel is closed") from exc
            raise
        except BaseException:
            self._slots.release(slot)
            raise
        if until_done:
            return self._slots.release_when_done(slot, call)
        self._slots.release(slot)
        return call


class _UnaryUnary(_MultiCallable, _UnaryUnaryBase):
    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call(request, *args, **kwargs))

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call.with_call(request, *args, **kwargs))

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call.future(request, *args, **kwargs), until_done=True)


class _StreamUnary(_MultiCallable, _StreamUnaryBase):
    def __call__(self, request_iterator: Iterator[Any], *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call(request_iterator, *args, **kwargs))

    def with_call(self, request_iterator: Iterator[Any], *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call.with_call(request_iterator, *args, **kwargs))

    def future(self, request_iterator: Iterator[Any], *args: Any, **kwargs: Any) -> Any:
        return self._start(
            lambda call: call.future(request_iterator, *args, **kwargs), until_done=True
        )


class _UnaryStream(_MultiCallable, _UnaryStreamBase):
    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call(request, *args, **kwargs), until_done=True)


class _StreamStream(_MultiCallable, _StreamStreamBase):
    def __call__(self, request_iterator: Iterator[Any], *args: Any, **kwargs: Any) -> Any:
        return self._start(lambda call: call(request_iterator, *args, **kwargs), until_done=True)


BalancedChannel._proxies = {
    "unary_unary": _UnaryUnary,
    "unary_stream": _UnaryStream,
    "stream_unary": _StreamUnary,
    "stream_stream": _StreamStream,
}
