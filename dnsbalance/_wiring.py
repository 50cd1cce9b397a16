"""resolve_channel(): wires a target, an endpoint source and a BalancedChannel together."""

from __future__ import annotations

from typing import Any

import grpc

from ._channel.sync import BalancedChannel
from ._dns.sync import make_resolver, poll_lookup
from ._merge.thread import MergedSide
from ._poll.sync import DnsPoller
from ._settings import (
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
def resolve_channel(*args: Any, **kwargs: Any) -> BalancedChannel:
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
    - ``on_change(old, new)``: called after each rebuild with both endpoint tuples.
    - ``api_client`` / ``kubeconfig`` / ``context``: Kubernetes API configuration
      (default: in-cluster service account, else ``KUBECONFIG``, else ``~/.kube/config``).
    - ``include_terminating``: also use endpoints that are terminating but still
      serving (for long drains).
    - ``poll_policy``: a :class:`PollPolicy` for full control of the DNS poll (interval,
      jitter, longest backoff, NXDOMAIN confirmations); overrides ``poll_interval``.
    - ``panic_mode`` (default True): when the API lists endpoints but none is ready,
      keep calling those still serving or in use (one WARNING); ``False`` empties the
      channel. Slices gone or empty always empty it.

    Stubs made once keep working across rebuilds. Close the channel when done.
    """
    settings = settings_for(*args, **kwargs)
    factory = settings.channel_factory(grpc.insecure_channel, grpc.secure_channel)
    poller = settings.poller(DnsPoller, poll_lookup, make_resolver)
    if settings.mode == "dns":
        assert poller is not None
        poller.poll_once()
        channel = dns_mode_channel(
            settings, poller, BalancedChannel, factory, BalancedChannel.update
        )
        warn_empty_start(settings, channel.endpoints)
        return channel
    return _merged(settings, ApiSide.open(settings), poller, factory)


def _merged(
    settings: ChannelSettings, api: ApiSide, poller: DnsPoller | None, factory: Any
) -> BalancedChannel:
    """Modes "auto" and "api": the channel dials the agreed set through the local DNS."""
    try:
        if poller is not None:
            poller.poll_once()
        side = MergedSide(settings, api, poller)
    except BaseException:
        api.close()  # its watcher may be running already (mode "auto")
        raise

    def stop() -> None:
        if poller is not None:
            poller.stop()
        side.stop()

    channel = BalancedChannel(
        plan=side.plan,
        factory=factory,
        endpoints=side.initial,
        on_close=stop,
        discrepancies=side.discrepancies,
        **settings.channel_args(),
    )

    def follow_dns(callback: Any) -> None:
        assert poller is not None
        poller.on_change = callback
        poller.start()

    side.start(weak_callback(channel, lambda ch, endpoints: ch.update(endpoints)), follow_dns)
    warn_empty_start(settings, channel.endpoints)
    return channel
