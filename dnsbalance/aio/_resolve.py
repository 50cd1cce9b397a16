"""``dnsbalance.aio.resolve_channel()``: the asyncio wiring of the same parts.

DNS is polled with ``dns.asyncresolver`` in a task. The Kubernetes side reuses
the thread-based watcher and merge (one Kubernetes client library for both
drivers); the merge thread hands each decision to the event loop with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from dnsbalance._channel.aio import BalancedChannel
from dnsbalance._dns.aio import make_resolver, poll_lookup
from dnsbalance._endpoints import Endpoint
from dnsbalance._merge.thread import MergedSide
from dnsbalance._poll.aio import AsyncDnsPoller
from dnsbalance._settings import (
    ApiSide,
    ChannelSettings,
    dns_mode_channel,
    settings_for,
    warn_empty_start,
    weak_callback,
    with_arguments_of,
)

__all__ = ["resolve_channel"]


@with_arguments_of(settings_for)
async def resolve_channel(*args: Any, **kwargs: Any) -> BalancedChannel:
    """A ``grpc.aio.Channel`` balanced over the ready pods of a headless Service.

    The arguments are :func:`dnsbalance.resolve_channel`'s. Call it on the event loop
    that will use the channel, and ``await channel.close()`` (or ``async with``).
    """
    settings = settings_for(*args, **kwargs)
    factory = settings.channel_factory(grpc.aio.insecure_channel, grpc.aio.secure_channel)
    poller = settings.poller(AsyncDnsPoller, poll_lookup, make_resolver)
    if settings.mode == "dns":
        assert poller is not None
        await poller.poll_once()
        channel = dns_mode_channel(settings, poller, BalancedChannel, factory, BalancedChannel.want)
        warn_empty_start(settings, channel.endpoints)
        return channel
    api = await asyncio.to_thread(ApiSide.open, settings)
    return await _merged(settings, api, poller, factory)


async def _merged(
    settings: ChannelSettings, api: ApiSide, poller: AsyncDnsPoller | None, factory: Any
) -> BalancedChannel:
    """Modes "auto" and "api": the merge runs on its thread and hands each decision to
    the event loop."""
    try:
        if poller is not None:
            await poller.poll_once()
        side = MergedSide(settings, api, poller)
    except BaseException:
        await asyncio.to_thread(api.close)  # its watcher may be running (mode "auto")
        raise

    async def stop() -> None:
        if poller is not None:
            await poller.stop()
        await asyncio.to_thread(side.stop)

    channel = BalancedChannel(
        plan=side.plan,
        factory=factory,
        endpoints=side.initial,
        on_close=stop,
        discrepancies=side.discrepancies,
        **settings.channel_args(),
    )
    loop = asyncio.get_running_loop()
    want = weak_callback(channel, lambda ch, endpoints: ch.want(endpoints))

    def hand_to_loop(endpoints: tuple[Endpoint, ...]) -> None:  # on the merge thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(want, endpoints)

    def follow_dns(callback: Any) -> None:
        assert poller is not None
        poller.on_change = callback
        poller.start()

    side.start(hand_to_loop, follow_dns)
    warn_empty_start(settings, channel.endpoints)
    return channel
