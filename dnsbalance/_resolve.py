"""resolve_channel(): wires a target, an endpoint source and a BalancedChannel together."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import grpc

from ._channel import BalancedChannel, OnChange
from ._discovery import discover, make_resolver
from ._endpoints import Change, Endpoint
from ._exceptions import ConfigError
from ._grpc_config import (
    ChannelPlan,
    GrpcOptions,
    authority_for,
    grpc_dns_resolver,
    native_resolver_warning,
    plan_channel,
    service_config_json,
)
from ._policy import PollPolicy
from ._poller import DnsPoller
from ._target import Target, parse_target

__all__ = ["ChannelSettings", "Mode", "resolve_channel"]

log = logging.getLogger(__name__)

Mode = Literal["auto", "dns", "api"]
MODES = ("auto", "dns", "api")


@dataclass(frozen=True, kw_only=True)
class ChannelSettings:
    """Validated settings of one balanced channel (see :func:`resolve_channel`)."""

    mode: Mode = "auto"
    poll_interval: float = 5.0
    dns_timeout: float = 2.0
    drain_timeout: float | None = 30.0
    nameservers: tuple[str, ...] | None = None
    health_check: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.drain_timeout is not None and not self.drain_timeout >= 0:
            raise ConfigError(f"drain_timeout must be >= 0 or None, got {self.drain_timeout}")
        if not self.dns_timeout > 0:
            raise ConfigError(f"dns_timeout must be positive, got {self.dns_timeout}")
        PollPolicy(interval=self.poll_interval)  # validates the interval


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
) -> BalancedChannel:
    """A ``grpc.Channel`` balanced round-robin over the ready pods of a headless Service,
    kept up to date as pods come and go.

    - ``target``: ``svc.ns:8000``, ``kubernetes:///svc.ns:grpc``, ``dns:///...`` (see
      :func:`parse_target`).
    - ``credentials``: a secure channel; the target is the Service name, so TLS name
      checks work unchanged.
    - ``options``: grpc channel options; ``service_config`` (dict or JSON) is merged
      with round_robin; ``health_check`` turns on grpc client-side health checking.
    - ``mode``: ``"dns"`` never touches the Kubernetes API; ``"auto"`` and ``"api"``
      also read EndpointSlices (until that lands, they act as ``"dns"``).
    - ``poll_interval``: seconds between DNS polls (>= 0.2, jittered +/-10%).
    - ``nameservers``: ``host[:port]`` DNS servers to poll, and the one grpc resolves
      against; default: resolv.conf (or the server named in a ``dns://`` target).
    - ``drain_timeout``: how long an old channel's in-flight calls may run after a
      rebuild before they are cancelled (``None``: no limit).
    - ``on_change(old, new)``: called after each rebuild with both endpoint tuples.

    Stubs made once keep working across rebuilds. Close the channel when done.
    """
    settings = ChannelSettings(
        mode=mode,
        poll_interval=poll_interval,
        dns_timeout=dns_timeout,
        drain_timeout=drain_timeout,
        nameservers=tuple(nameservers) if nameservers else None,
        health_check=health_check,
    )
    if isinstance(target, str):
        target = parse_target(target, namespace=namespace, cluster_domain=cluster_domain)
    servers = settings.nameservers or ((target.dns_server,) if target.dns_server else None)
    authority = authority_for(servers[0]) if servers else None
    grpc_options: GrpcOptions = (
        *((str(k), v) for k, v in options),
        ("grpc.service_config", service_config_json(service_config, health_check=health_check)),
    )
    resolver_kind = grpc_dns_resolver()
    if authority and resolver_kind == "native":
        log.warning(native_resolver_warning(target))

    def plan(endpoints: Sequence[Endpoint]) -> ChannelPlan:
        return plan_channel(
            target, endpoints, dns_authority=authority, options=grpc_options, resolver=resolver_kind
        )

    def factory(channel_plan: ChannelPlan) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(channel_plan.target, options=channel_plan.options)
        return grpc.secure_channel(channel_plan.target, credentials, options=channel_plan.options)

    resolver = make_resolver(servers, timeout=settings.dns_timeout)
    poller = DnsPoller(
        partial(discover, target, resolver=resolver),
        policy=PollPolicy(interval=settings.poll_interval),
        name=f"dnsbalance-poll-{target.service}.{target.namespace}",
    )
    poller.poll_once()
    channel = BalancedChannel(
        name=str(target),
        plan=plan,
        factory=factory,
        endpoints=poller.endpoints,
        drain_timeout=settings.drain_timeout,
        on_change=on_change,
        on_close=poller.stop,
    )
    poller.on_change = _weak_update(channel)
    poller.start()
    return channel


def _weak_update(channel: BalancedChannel) -> Any:
    """A change callback that does not keep ``channel`` alive (so an unclosed one is
    collected, warns and closes itself)."""
    ref = weakref.ref(channel)

    def update(change: Change) -> None:
        alive = ref()
        if alive is not None:
            alive.update(change.new)

    return update
