"""resolve_channel(): wires a target, an endpoint source and a BalancedChannel together."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import grpc

from ._channel import BalancedChannel, OnChange
from ._discovery import discover, make_resolver
from ._grpc_config import ChannelPlan
from ._local_dns import local_name
from ._poller import DnsPoller
from ._setup import ApiSide, ChannelSettings, Mode, settings_for, weak_callback
from ._source import MergedSource
from ._target import Target

__all__ = ["resolve_channel"]


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
    settings = settings_for(
        target,
        options=options,
        service_config=service_config,
        health_check=health_check,
        mode=mode,
        poll_interval=poll_interval,
        nameservers=nameservers,
        cluster_domain=cluster_domain,
        drain_timeout=drain_timeout,
        namespace=namespace,
        dns_timeout=dns_timeout,
    )

    def factory(plan: ChannelPlan) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(plan.target, options=plan.options)
        return grpc.secure_channel(plan.target, credentials, options=plan.options)

    poller = None
    if settings.mode != "api":
        poller = DnsPoller(
            partial(
                discover,
                settings.target,
                resolver=make_resolver(settings.servers, timeout=settings.dns_timeout),
            ),
            policy=settings.policy,
            name=f"dnsbalance-poll-{settings.thread_suffix}",
        )
    if settings.mode == "dns":
        assert poller is not None
        poller.poll_once()
        channel = BalancedChannel(
            name=settings.name,
            plan=settings.dns_plan(),
            factory=factory,
            endpoints=poller.endpoints,
            drain_timeout=settings.drain_timeout,
            on_change=on_change,
            on_close=poller.stop,
        )
        poller.on_change = weak_callback(channel, lambda ch, change: ch.update(change.new))
        poller.start()
        return channel
    api = ApiSide.open(
        settings,
        api_client=api_client,
        kubeconfig=kubeconfig,
        context=context,
        include_terminating=include_terminating,
    )
    return _merged(settings, api, poller, factory, on_change)


def _merged(
    settings: ChannelSettings,
    api: ApiSide,
    poller: DnsPoller | None,
    factory: Any,
    on_change: OnChange | None,
) -> BalancedChannel:
    """Modes "auto" and "api": the channel dials the agreed set through the local DNS."""
    if poller is not None:
        poller.poll_once()
    local = local_name()
    source = MergedSource(
        name=settings.name,
        mode="api" if settings.mode == "api" else "auto",
        namespace=settings.target.namespace,
        poller=poller,
        local=local,
        api_endpoints=api.endpoints,
        api_error=api.error,
    )
    initial, _ = source.evaluate()

    def stop() -> None:
        api.close()
        if poller is not None:
            poller.stop()
        source.stop()
        local.close()

    channel = BalancedChannel(
        name=settings.name,
        plan=settings.local_plan(local),
        factory=factory,
        endpoints=initial,
        drain_timeout=settings.drain_timeout,
        on_change=on_change,
        on_close=stop,
        discrepancies=lambda: source.discrepancies,
    )
    source.sink = weak_callback(channel, lambda ch, endpoints: ch.update(endpoints))
    if poller is not None:
        poller.on_change = source.dns_changed
        poller.start()
    if api.watcher is not None:
        api.watcher.on_view = source.api_view
        api.watcher.start()
    source.start()
    return channel
