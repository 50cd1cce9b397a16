"""The asyncio twin: ``await dnsbalance.aio.resolve_channel(...)`` gives a balanced,
self-refreshing ``grpc.aio.Channel``; ``await dnsbalance.aio.discover(...)`` finds
endpoints without blocking the loop. Same arguments, same decisions (shared code)
as the sync API."""

from dnsbalance._channel.aio import BalancedChannel
from dnsbalance._dns.aio import discover
from dnsbalance._wiring import resolve_aio_channel as resolve_channel

__all__ = ["BalancedChannel", "discover", "resolve_channel"]
