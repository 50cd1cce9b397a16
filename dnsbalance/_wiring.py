"""``resolve_channel()`` for both drivers, wired in one place; read it top to bottom.

Every mode starts the same way: the arguments become :class:`ChannelSettings`
(:func:`settings_for`, their one definition; both functions here repeat its parameter
list, which ``tests/test_wiring.py`` holds equal), then the channel joins the process's
DNS poller for its question (modes "dns" and "auto"; :mod:`dnsbalance._poll.share`: the
first channel makes it and polls once, later ones take its state). Then:

- mode "dns": the channel dials a name on the in-process local DNS server, which
  serves the poller's set; each change the poller reports is published there and
  the channel rebuilt (:func:`_follow_dns`).
- modes "auto" and "api": :class:`~dnsbalance._kube.feed.ApiFeed` joins the process's
  list and watch of the Service's EndpointSlices for its API identity
  (:mod:`dnsbalance._kube.share`; mode "auto" waits 5 s at most for the first list) and
  :class:`_Merged` runs the channel's own merge thread, which decides from both views
  and hands each new set to the channel.

What channels share is raw: the slices as the API sent them, the DNS poller's set. What
each decides from them (its port, ``include_terminating``, panic mode, topology, the
cross-check, ``on_change``) is its own. A channel's ``close()`` leaves the shared parts;
the last one stops them.

The sync driver uses grpc's channels, a :class:`~dnsbalance._poll.sync.DnsPoller` on the
shared poll clock and calls the channel's ``update`` on the deciding thread; the
asyncio driver uses grpc.aio's channels, an
:class:`~dnsbalance._poll.aio.AsyncDnsPoller` task, and hands each decision to the
event loop (``want``). The decisions themselves are the same code
(:mod:`dnsbalance._poll.policy`, :mod:`dnsbalance._merge.agree`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio

from dnsbalance._channel.base import OnChange

from ._channel import aio as aio_channel
from ._channel.config import ChannelPlan
from ._channel.local_dns import LocalName, local_name
from ._channel.subset import Subsetting, dialed
from ._channel.sync import BalancedChannel
from ._dns import aio as aio_dns
from ._dns import sync as sync_dns
from ._endpoints import Change, Discrepancy, Endpoint, Endpoints
from ._kube.feed import ApiFeed
from ._kube.topology import TopologyChoice
from ._merge.thread import MergeThread, PollerView
from ._metrics import metrics_for
from ._poll.aio import AsyncDnsPoller
from ._poll.policy import PollPolicy
from ._poll.share import shared_async_poller, shared_poller
from ._poll.sync import DnsPoller
from ._settings import ChannelSettings, Mode, settings_for
from ._target import Target

Owner = TypeVar("Owner")

log = logging.getLogger(__name__)


# -- the thread driver -----------------------------------------------------------------


def resolve_channel(
    target: str | Target,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    service_config: Mapping[str, Any] | str | None = None,
    health_check: bool = False,
    mode: Mode = "auto",
    poll_interval: float = 5.0,
    nameservers: Sequence[str] | None = None,
    cluster_domain: str | None = None,
    drain_timeout: float | None = 30.0,
    on_change: OnChange | None = None,
    namespace: str | None = None,
    dns_timeout: float = 2.0,
    api_client: Any = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    include_terminating: bool = False,
    poll_policy: PollPolicy | None = None,
    panic_mode: bool = True,
    zone: str | None = None,
    topology: bool = True,
    subset_size: int | None = None,
    subset_key: str | None = None,
    outlier_detection: bool | Mapping[str, Any] = False,
) -> BalancedChannel:
    """A ``grpc.Channel`` balanced round-robin over the ready pods of a headless Service,
    kept up to date as pods come and go.

    - ``target``: ``svc.ns:8000``, ``kubernetes:///svc.ns:grpc``, ``dns:///...`` (see
      :func:`parse_target`).
    - ``credentials``: a secure channel; the channel's authority is the Service name,
      so TLS name checks work unchanged.
    - ``options``: grpc channel options; ``service_config`` (dict or JSON) is merged
      with round_robin; ``health_check`` turns on grpc client-side health checking.
    - ``mode``: ``"dns"`` uses cluster DNS only and never touches the Kubernetes API
      (no RBAC needed); ``"api"`` uses the EndpointSlices' ready endpoints (like
      kuberesolver; lists before returning and raises KubernetesError if it cannot);
      ``"auto"`` (default) cross-checks both and falls back to DNS only, with one
      WARNING, when the API is unconfigured, forbidden, unreachable or takes more than
      5 s to list (it is picked up again when it answers).
    - ``poll_interval``: seconds between DNS polls (>= 0.2, jittered +/-10%).
    - ``nameservers``: ``host[:port]`` DNS servers to poll (default: resolv.conf, or the
      server named in a ``dns://`` target); in mode ``"dns"`` grpc resolves against it.
    - ``drain_timeout``: how long an old channel's in-flight calls may run after a
      rebuild before they are cancelled (``None``: no limit).
    - ``on_change(old, new)``: called after each rebuild with both endpoint tuples (with
      ``subset_size``, whenever ``channel.endpoints`` changes, rebuild or not).
    - ``api_client`` / ``kubeconfig`` / ``context``: Kubernetes API configuration
      (default: in-cluster service account, else ``KUBECONFIG``, else ``~/.kube/config``).
    - ``include_terminating``: also use endpoints that are terminating but still
      serving (for long drains).
    - ``poll_policy``: a :class:`PollPolicy` for full control of the DNS poll (interval,
      jitter, longest backoff, NXDOMAIN confirmations); overrides ``poll_interval``.
    - ``panic_mode`` (default True): when the API lists endpoints but none is ready,
      keep calling those still serving or in use (one WARNING); ``False`` empties the
      channel. Slices gone or empty always empty it.
    - ``zone`` / ``topology`` (modes "auto" and "api"): keep calls in the client's zone
      when the Service's slices carry topology hints (``topology-mode: Auto``,
      ``trafficDistribution: PreferClose``/``PreferSameNode``), by kube-proxy's rules.
      The zone: ``zone``, else ``DNSBALANCE_ZONE``, else the Node named by ``NODE_NAME``
      (its ``topology.kubernetes.io/zone`` label; ``manifests/rbac-topology.yaml``).
      ``topology=False``: every zone. ``channel.topology`` says what was applied.
    - ``subset_size`` / ``subset_key``: dial only ``subset_size`` of the endpoints,
      ranked by a hash salted per client (gRFC A68's rendezvous hashing: one endpoint
      more or less changes the subset by at most one), drawn last, from what the
      channel would otherwise call. ``subset_key`` (e.g. the pod's name) replaces the
      random salt. ``channel.endpoints`` stays the whole set, ``channel.subset`` is
      what is dialed; ``on_change`` gets the whole sets.
    - ``outlier_detection``: ``True`` wraps round_robin in grpc's outlier detection
      with dnsbalance's defaults (a pod failing more than 40 % of at least 10 calls in
      a 1 s sweep is ejected for 30 s, doubling, at most half the pods); a mapping is
      grpc's ``outlier_detection_experimental`` config in full. Ejections start afresh
      on each rebuild (a new grpc channel).

    Stubs made once keep working across rebuilds. Close the channel when done.
    """
    settings = settings_for(**locals())  # the parameters above, by name
    factory = settings.channel_factory(grpc.insecure_channel, grpc.secure_channel)
    poller = None
    if not settings.api_only:  # one poller per question in the process (_poll/share.py)
        poller = shared_poller(
            settings.poll_key("thread"),
            lambda metrics: DnsPoller(
                sync_dns.poll_lookup(
                    settings.target,
                    sync_dns.make_resolver(settings.servers, timeout=settings.dns_timeout),
                ),
                metrics=metrics,
                **settings.poller_options(),
            ),
            metrics=metrics_for(settings.name),
        )
    if poller is not None and settings.mode == "dns":
        try:
            poller.poll_once()
            local = local_name()
        except BaseException:
            poller.stop()  # leave the shared poller
            raise
        local.publish(dialed(poller.endpoints, settings.subsetting))

        def close_dns() -> None:
            poller.stop()
            local.close()

        try:
            channel = BalancedChannel(
                plan=settings.local_plan(local),
                factory=factory,
                endpoints=poller.endpoints,
                on_close=close_dns,
                **settings.channel_args(),
            )
        except BaseException:
            close_dns()
            raise
        _follow_dns(
            poller, local, weak_callback(channel, BalancedChannel.update), settings.subsetting
        )
        poller.start()
        warn_empty_start(settings, channel.endpoints)
        return channel

    try:
        feed = ApiFeed.open(settings)  # joins the Service's shared watch (_kube/share.py)
    except BaseException:
        if poller is not None:
            poller.stop()
        raise
    try:
        if poller is not None:
            poller.poll_once()
        merged = _Merged(settings, feed, poller)
    except BaseException:
        feed.close()  # its watcher may be running already (mode "auto")
        if poller is not None:
            poller.stop()
        raise

    def close_merged() -> None:
        if poller is not None:
            poller.stop()
        merged.stop()

    channel = BalancedChannel(
        plan=merged.plan,
        factory=factory,
        endpoints=merged.initial,
        on_close=close_merged,
        discrepancies=merged.discrepancies,
        topology=merged.topology,
        **settings.channel_args(),
    )
    merged.start(weak_callback(channel, BalancedChannel.update))  # on the merge thread
    warn_empty_start(settings, channel.endpoints)
    return channel


# -- the asyncio driver ----------------------------------------------------------------


async def resolve_aio_channel(
    target: str | Target,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    service_config: Mapping[str, Any] | str | None = None,
    health_check: bool = False,
    mode: Mode = "auto",
    poll_interval: float = 5.0,
    nameservers: Sequence[str] | None = None,
    cluster_domain: str | None = None,
    drain_timeout: float | None = 30.0,
    on_change: OnChange | None = None,
    namespace: str | None = None,
    dns_timeout: float = 2.0,
    api_client: Any = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    include_terminating: bool = False,
    poll_policy: PollPolicy | None = None,
    panic_mode: bool = True,
    zone: str | None = None,
    topology: bool = True,
    subset_size: int | None = None,
    subset_key: str | None = None,
    outlier_detection: bool | Mapping[str, Any] = False,
) -> aio_channel.BalancedChannel:
    """A ``grpc.aio.Channel`` balanced over the ready pods of a headless Service
    (``dnsbalance.aio.resolve_channel``).

    The arguments are :func:`dnsbalance.resolve_channel`'s. Call it on the event loop
    that will use the channel, and ``await channel.close()`` (or ``async with``). DNS
    is polled with ``dns.asyncresolver`` in a task; the Kubernetes side is the thread
    driver's watcher and merge thread (one Kubernetes client library for both), whose
    decisions reach the event loop through ``call_soon_threadsafe``.
    """
    settings = settings_for(**locals())  # the parameters above, by name
    factory = settings.channel_factory(grpc.aio.insecure_channel, grpc.aio.secure_channel)
    poller = None
    if not settings.api_only:  # shared by the channels on this event loop (_poll/share.py)
        poller = shared_async_poller(
            settings.poll_key(asyncio.get_running_loop()),
            lambda metrics: AsyncDnsPoller(
                aio_dns.poll_lookup(
                    settings.target,
                    aio_dns.make_resolver(settings.servers, timeout=settings.dns_timeout),
                ),
                metrics=metrics,
                **settings.poller_options(),
            ),
            metrics=metrics_for(settings.name),
        )
    if poller is not None and settings.mode == "dns":
        try:
            await poller.poll_once()
            local = local_name()
        except BaseException:
            await poller.stop()  # leave the shared poller
            raise
        local.publish(dialed(poller.endpoints, settings.subsetting))

        async def close_dns() -> None:
            await poller.stop()
            local.close()

        try:
            channel = aio_channel.BalancedChannel(
                plan=settings.local_plan(local),
                factory=factory,
                endpoints=poller.endpoints,
                on_close=close_dns,
                **settings.channel_args(),
            )
        except BaseException:
            await close_dns()
            raise
        _follow_dns(
            poller,
            local,
            weak_callback(channel, aio_channel.BalancedChannel.want),
            settings.subsetting,
        )
        poller.start()
        warn_empty_start(settings, channel.endpoints)
        return channel

    try:
        feed = await asyncio.to_thread(ApiFeed.open, settings)  # the shared watch
    except BaseException:
        if poller is not None:
            await poller.stop()
        raise
    try:
        if poller is not None:
            await poller.poll_once()
        merged = _Merged(settings, feed, poller)
    except BaseException:
        await asyncio.to_thread(feed.close)  # its watcher may be running (mode "auto")
        if poller is not None:
            await poller.stop()
        raise

    async def close_merged() -> None:
        if poller is not None:
            await poller.stop()
        await asyncio.to_thread(merged.stop)

    channel = aio_channel.BalancedChannel(
        plan=merged.plan,
        factory=factory,
        endpoints=merged.initial,
        on_close=close_merged,
        discrepancies=merged.discrepancies,
        topology=merged.topology,
        **settings.channel_args(),
    )
    loop = asyncio.get_running_loop()
    want = weak_callback(channel, aio_channel.BalancedChannel.want)

    def hand_to_loop(endpoints: Endpoints) -> None:  # on the merge thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(want, endpoints)

    merged.start(hand_to_loop)
    warn_empty_start(settings, channel.endpoints)
    return channel


# -- what both drivers share -----------------------------------------------------------


class FollowedPoller(PollerView, Protocol):
    """A DNS poller of either driver, as the wiring hooks it up."""

    on_change: Callable[[Change], None] | None

    def start(self) -> None: ...


def _follow_dns(
    poller: FollowedPoller,
    local: LocalName,
    rebuild: Callable[[Endpoints], object],
    subsetting: Subsetting | None,
) -> None:
    """Mode "dns": each change the poller reports is served on the local DNS (the
    client's subset of it, with subsetting), then the channel is rebuilt on it.

    grpc resolves the channel's name on the local DNS server, which serves the set
    the poller adopted (read as dnspython reads it, kept through errors and a single
    NXDOMAIN), never cluster DNS itself: grpc's own DNS reading (c-ares) takes
    messages dnspython refuses, and would see every flap."""

    def changed(change: Change) -> None:
        local.publish(dialed(change.new, subsetting))
        rebuild(change.new)

    poller.on_change = changed


class _Merged:
    """Modes "auto" and "api" around one channel: the local DNS name, the merge thread
    and the API feed; the driver owns the DNS poller (already polled once)."""

    def __init__(self, settings: ChannelSettings, feed: ApiFeed, poller: FollowedPoller | None):
        self._feed = feed
        self._poller = poller
        self.local = local_name()
        self.thread = MergeThread(
            name=settings.name,
            mode="api" if settings.api_only else "auto",
            namespace=settings.target.namespace,
            poller=poller,
            local=self.local,
            api_endpoints=feed.endpoints,
            api_error=feed.error,
            panic_mode=settings.panic_mode,
            target=settings.target,
            placement=feed.placement,
            subsetting=settings.subsetting,
        )
        self.initial, _ = self.thread.evaluate()
        self.plan: Callable[[Sequence[Endpoint]], ChannelPlan] = settings.local_plan(self.local)

    def discrepancies(self) -> tuple[Discrepancy, ...]:
        return self.thread.discrepancies

    def topology(self) -> TopologyChoice | None:
        return self.thread.topology

    def start(self, sink: Callable[[Endpoints], None]) -> None:
        """Hand decisions to ``sink`` (called on the merge thread) and start the DNS
        poller, the watcher and the merge thread."""
        self.thread.sink = sink
        if self._poller is not None:
            self._poller.on_change = self.thread.dns_changed
            self._poller.start()
        self._feed.follow(self.thread.api_view)
        self._feed.follow_placement(self.thread.placement_changed)
        self.thread.start()

    def stop(self) -> None:
        """Stop the watcher and the merge thread, release the local name (blocking)."""
        self._feed.close()
        self.thread.stop()
        self.local.close()


def warn_empty_start(settings: ChannelSettings, endpoints: Sequence[Endpoint]) -> None:
    """One WARNING when a channel starts with nothing to call (a typo in the name, a
    Service with no ready pod): calls would fail with UNAVAILABLE without a word."""
    if endpoints:
        return
    target = settings.target
    name = target.srv_name if target.port_name else target.fqdn
    servers = ", ".join(settings.servers or ()) or "resolv.conf's servers"
    asked = f"DNS name {name} via {servers}" if settings.mode != "api" else ""
    if settings.mode != "dns":
        slices = f"the EndpointSlices of service/{target.service} in namespace {target.namespace}"
        asked = f"{asked} and {slices}" if asked else slices
    log.warning(
        "%s starts with 0 endpoints: %s gave no ready endpoint (a typo in the name or the "
        "namespace? no ready pod?); calls fail with UNAVAILABLE until one appears",
        settings.name,
        asked,
    )


def weak_callback(
    owner: Owner, action: Callable[[Owner, Endpoints], object]
) -> Callable[[Endpoints], None]:
    """``action(owner, endpoints)`` without keeping ``owner`` alive, so an unclosed
    channel is collected (and then warns)."""
    ref = weakref.ref(owner)

    def callback(endpoints: Endpoints) -> None:
        alive = ref()
        if alive is not None:
            action(alive, endpoints)

    return callback
