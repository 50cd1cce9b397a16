"""What both BalancedChannels (thread and asyncio) share: the slot of one underlying
channel, the multicallable factories, and the introspection and announcement of
rebuilds. How calls are counted, channels swapped and drained differs, and lives
in :mod:`dnsbalance._channel.sync` and :mod:`dnsbalance._channel.aio`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import grpc
import grpc.aio

from dnsbalance._endpoints import Discrepancy, Endpoint
from dnsbalance._metrics import metrics_for

from .config import ChannelPlan
from .subset import Subsetting, dialed

if TYPE_CHECKING:
    from dnsbalance._kube.topology import TopologyChoice

log = logging.getLogger(__name__)

OnChange = Callable[[tuple[Endpoint, ...], tuple[Endpoint, ...]], None]

# How long a rebuild waits for the new channel to be READY before swapping anyway.
READY_TIMEOUT = 5.0

C = TypeVar("C", grpc.Channel, grpc.aio.Channel)


@dataclass(eq=False)
class _Slot(Generic[C]):
    """One underlying grpc channel (sync or asyncio) and the calls running on it;
    ``endpoints``: what it dials (the subset, with subsetting)."""

    channel: C
    plan: ChannelPlan
    endpoints: tuple[Endpoint, ...]
    generation: int
    inflight: int = 0
    retired_at: float | None = None
    callables: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def callable(self, key: tuple[Any, ...]) -> Any:
        found = self.callables.get(key)
        if found is None:
            kind, method, serializer, deserializer, registered = key
            factory = getattr(self.channel, kind)
            found = factory(method, serializer, deserializer, _registered_method=registered)
            self.callables[key] = found
        return found


CallKey = tuple[Any, ...]
Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]


class MultiCallableFactories:
    """The four multicallable factories of ``grpc.Channel`` and ``grpc.aio.Channel``,
    written once for both BalancedChannels: each returns a proxy (a class from
    ``_proxies``) that finds the channel in use when it is called."""

    _proxies: ClassVar[Mapping[str, Callable[[Any, CallKey], Any]]]

    def _proxy(
        self,
        kind: str,
        method: str,
        serializer: Serializer | None,
        deserializer: Deserializer | None,
        registered: bool | None,
    ) -> Any:
        return self._proxies[kind](self, (kind, method, serializer, deserializer, registered))

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._proxy(
            "unary_unary", method, request_serializer, response_deserializer, _registered_method
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._proxy(
            "unary_stream", method, request_serializer, response_deserializer, _registered_method
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._proxy(
            "stream_unary", method, request_serializer, response_deserializer, _registered_method
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._proxy(
            "stream_stream", method, request_serializer, response_deserializer, _registered_method
        )


class BalancedBase(MultiCallableFactories, Generic[C]):
    """Introspection and rebuild announcements of a BalancedChannel whose current slot
    is ``_slot``."""

    def __init__(
        self,
        *,
        name: str,
        plan: Callable[[Sequence[Endpoint]], ChannelPlan],
        factory: Callable[[ChannelPlan], C],
        endpoints: Sequence[Endpoint] = (),
        drain_timeout: float | None = 30.0,
        ready_timeout: float = READY_TIMEOUT,
        on_change: OnChange | None = None,
        on_close: Callable[[], Any] | None = None,
        discrepancies: Callable[[], tuple[Discrepancy, ...]] | None = None,
        topology: Callable[[], TopologyChoice | None] | None = None,
        subsetting: Subsetting | None = None,
    ) -> None:
        """Both channels are made alike; ``_open`` then sets up the driver's own parts.
        ``on_close`` stops the endpoint sources (a coroutine function for asyncio).
        ``subsetting``: dial only a subset of the endpoints handed in."""
        self._name = name
        self._plan = plan
        self._factory: Callable[[ChannelPlan], C] = factory
        self._drain_timeout = drain_timeout
        self._ready_timeout = ready_timeout
        self._on_change = on_change
        self._on_close = on_close
        self._discrepancies = discrepancies
        self._topology = topology
        self._subsetting = subsetting
        self._metrics = metrics_for(name)
        self._members: tuple[Endpoint, ...] = tuple(endpoints)
        self._open(self._first_slot(self._members))

    def _open(self, first: _Slot[C]) -> None:
        """Start using ``first``: the driver's slots, threads or tasks."""
        raise NotImplementedError

    @property
    def _slot(self) -> _Slot[C]:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def _first_slot(self, endpoints: tuple[Endpoint, ...]) -> _Slot[C]:
        first = self._dialed(endpoints)
        plan = self._plan(first)
        self._metrics.endpoints(len(endpoints), rebuilt=False)
        if self._subsetting is not None:
            self._metrics.subset(len(first))
        return _Slot(self._factory(plan), plan, first, 0)

    def _dialed(self, endpoints: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """What a channel for ``endpoints`` dials: all of them, or this client's subset."""
        return endpoints if self._subsetting is None else dialed(endpoints, self._subsetting)

    def _next_slot(self, endpoints: tuple[Endpoint, ...]) -> _Slot[C]:
        """A new channel dialing ``endpoints`` (not yet in use)."""
        plan = self._plan(endpoints)
        return _Slot(self._factory(plan), plan, endpoints, self._slot.generation + 1)

    def _adopt(self, members: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """Make ``members`` the channel's endpoints; returns the ones they replace.
        Called under the driver's rebuild lock, with or without a rebuild: with
        subsetting, a change outside the subset changes the endpoints, not the channel."""
        old, self._members = self._members, members
        return old

    def _announce(
        self,
        old: _Slot[C] | None,
        new: _Slot[C],
        before: tuple[Endpoint, ...],
        after: tuple[Endpoint, ...],
    ) -> None:
        """After a rebuild from ``old`` to ``new`` (``old`` is ``None`` when, with
        subsetting, the endpoints changed outside the subset and ``new`` stayed): the
        metrics, one INFO line, then the user's ``on_change(before, after)``."""
        self._metrics.endpoints(len(after), rebuilt=old is not None)
        subset = ""
        if self._subsetting is not None:
            self._metrics.subset(len(new.endpoints))
            subset = f", dialing {len(new.endpoints)} (subset_size {self._subsetting.size})"
        if old is not None:
            log.info(
                "%s: rebuilt channel, generation %d: %d -> %d endpoints%s, target %s",
                self._name,
                new.generation,
                len(before),
                len(after),
                subset,
                new.plan.target,
            )
        else:
            log.info(
                "%s: %d -> %d endpoints%s: subset unchanged, no rebuild",
                self._name,
                len(before),
                len(after),
                subset,
            )
        if self._on_change is not None:
            try:
                self._on_change(before, after)
            except Exception:
                log.exception("%s: on_change callback failed", self._name)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint the channel may use now (DNS and the API agreed, the topology
        rules applied); with ``subset_size`` it dials :attr:`subset` of them."""
        return self._members

    @property
    def subset(self) -> tuple[Endpoint, ...]:
        """The endpoints the channel in use dials: its subset with ``subset_size``,
        else every endpoint (then equal to :attr:`endpoints`)."""
        return self._slot.endpoints

    @property
    def target(self) -> str:
        """The grpc target string in use (``dns://.../svc.ns.svc.cluster.local:8000``)."""
        return self._slot.plan.target

    @property
    def generation(self) -> int:
        """How many times the underlying channel has been rebuilt."""
        return self._slot.generation

    @property
    def discrepancies(self) -> tuple[Discrepancy, ...]:
        """Where DNS and the Kubernetes API have disagreed for longer than the DNS TTL
        + 1 s (mode "auto"); empty otherwise."""
        return self._discrepancies() if self._discrepancies is not None else ()

    @property
    def topology(self) -> TopologyChoice | None:
        """The topology rule applied last (modes "auto" and "api"): the client's
        ``zone`` and ``node``, the ``rule`` (``"zone-hints"``, ``"node-hints"``,
        ``"local-policy"``, ``"off"`` or ``"all: <why>"``), the ``endpoints`` chosen and
        how many are ``in_zone`` / ``out_of_zone``. ``None`` in mode "dns" (DNS carries
        no zones)."""
        return self._topology() if self._topology is not None else None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.endpoints)} endpoints"
        kind = "aio.BalancedChannel" if ".aio." in type(self).__module__ else "BalancedChannel"
        return f"<{kind} {self._name} gen={self.generation} {state}>"
