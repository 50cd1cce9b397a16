"""resolve_channel(): wires a target, an endpoint source and a BalancedChannel together."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import grpc

from ._channel import BalancedChannel, OnChange
from ._discovery import discover, make_resolver
from ._exceptions import ConfigError, KubernetesError
from ._grpc_config import (
    ChannelPlan,
    GrpcOptions,
    authority_for,
    grpc_dns_resolver,
    native_resolver_warning,
    plan_channel,
    service_config_json,
)
from ._kube import SliceWatcher, load_api_client
from ._local_dns import local_name
from ._policy import PollPolicy
from ._poller import DnsPoller
from ._source import MergedSource
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
    api_client: Any = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    include_terminating: bool = False,
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
      WARNING, when the API is unconfigured, forbidden or unreachable.
    - ``poll_interval``: seconds between DNS polls (>= 0.2, jittered +/-10%).
    - ``nameservers``: ``host[:port]`` DNS servers to poll (default: resolv.conf, or the
      server named in a ``dns://`` target); in mode ``"dns"`` grpc resolves against it.
    - ``drain_timeout``: how long an old channel's in-flight calls may run after a
      rebuild before they are cancelled (``None``: no limit).
    - ``on_change(old, new)``: called after each rebuild with both endpoint tuples.
    - ``api_client`` / ``kubeconfig`` / ``context``: Kubernetes API configuration
      (default: in-cluster service account, else ``KUBECONFIG``, else ``~/.kube/config``).
    - ``include_terminating``: also use endpoints that are terminating but still
      serving (for long drains).

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
    grpc_options: GrpcOptions = (
        *((str(k), v) for k, v in options),
        ("grpc.service_config", service_config_json(service_config, health_check=health_check)),
    )
    resolver_kind = grpc_dns_resolver()

    def factory(channel_plan: ChannelPlan) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(channel_plan.target, options=channel_plan.options)
        return grpc.secure_channel(channel_plan.target, credentials, options=channel_plan.options)

    poller = None
    if settings.mode != "api":
        poller = DnsPoller(
            partial(discover, target, resolver=make_resolver(servers, timeout=dns_timeout)),
            policy=PollPolicy(interval=settings.poll_interval),
            name=f"dnsbalance-poll-{target.service}.{target.namespace}",
        )
    if settings.mode == "dns":
        assert poller is not None
        authority = authority_for(servers[0]) if servers else None
        if authority and resolver_kind == "native":
            log.warning(native_resolver_warning(target))
        poller.poll_once()
        channel = BalancedChannel(
            name=str(target),
            plan=partial(
                plan_channel,
                target,
                dns_authority=authority,
                options=grpc_options,
                resolver=resolver_kind,
            ),
            factory=factory,
            endpoints=poller.endpoints,
            drain_timeout=settings.drain_timeout,
            on_change=on_change,
            on_close=poller.stop,
        )
        poller.on_change = _weak(channel, lambda ch, change: ch.update(change.new))
        poller.start()
        return channel
    return _with_api(
        target,
        settings,
        poller=poller,
        factory=factory,
        grpc_options=grpc_options,
        resolver_kind=resolver_kind,
        on_change=on_change,
        api_client=api_client,
        kubeconfig=kubeconfig,
        context=context,
        include_terminating=include_terminating,
    )


def _with_api(
    target: Target,
    settings: ChannelSettings,
    *,
    poller: DnsPoller | None,
    factory: Callable[[ChannelPlan], grpc.Channel],
    grpc_options: GrpcOptions,
    resolver_kind: str,
    on_change: OnChange | None,
    api_client: Any,
    kubeconfig: str | os.PathLike[str] | None,
    context: str | None,
    include_terminating: bool,
) -> BalancedChannel:
    """Modes "auto" and "api": the channel dials the agreed set through the local DNS."""
    mode: Literal["auto", "api"] = "api" if settings.mode == "api" else "auto"
    api_error: KubernetesError | None = None
    client = None
    try:
        client = load_api_client(api_client=api_client, kubeconfig=kubeconfig, context=context)
    except KubernetesError as exc:
        if mode == "api":
            raise
        api_error = exc
    if client is None and mode == "api":
        raise KubernetesError(
            'mode="api" needs Kubernetes API access: run in a pod with a service account, '
            "set KUBECONFIG, or pass api_client=/kubeconfig="
        )
    owns_client = client is not None and api_client is None
    watcher = None
    api_endpoints = None
    if client is not None:
        watcher = SliceWatcher(
            client,
            namespace=target.namespace,
            service=target.service,
            port=target.port,
            include_terminating=include_terminating,
            name=f"dnsbalance-watch-{target.service}.{target.namespace}",
        )
        try:
            api_endpoints = watcher.list_once()
        except KubernetesError as exc:
            if mode == "api":
                if owns_client:
                    client.close()
                raise
            api_error = exc
    if poller is not None:
        poller.poll_once()
    local = local_name()
    source = MergedSource(
        name=str(target),
        mode=mode,
        namespace=target.namespace,
        poller=poller,
        local=local,
        api_endpoints=api_endpoints,
        api_error=api_error,
    )
    initial, _ = source.evaluate()
    if resolver_kind == "native":
        log.warning(native_resolver_warning(target))

    def stop() -> None:
        for part in (watcher, poller, source):
            if part is not None:
                part.stop()
        local.close()
        if owns_client and client is not None:
            client.close()

    channel = BalancedChannel(
        name=str(target),
        plan=partial(
            plan_channel,
            target,
            dns_authority=local.authority,
            options=grpc_options,
            resolver=resolver_kind,
            name=local.name,
        ),
        factory=factory,
        endpoints=initial,
        drain_timeout=settings.drain_timeout,
        on_change=on_change,
        on_close=stop,
        discrepancies=lambda: source.discrepancies,
    )
    source.sink = _weak(channel, lambda ch, endpoints: ch.update(endpoints))
    if poller is not None:
        poller.on_change = source.dns_changed
        poller.start()
    if watcher is not None:
        watcher.on_view = source.api_view
        watcher.start()
    source.start()
    return channel


def _weak(channel: BalancedChannel, action: Callable[[BalancedChannel, Any], object]) -> Any:
    """A callback that does not keep ``channel`` alive (so an unclosed one is collected,
    warns and closes itself)."""
    ref = weakref.ref(channel)

    def callback(value: Any) -> None:
        alive = ref()
        if alive is not None:
            action(alive, value)

    return callback
