"""What the underlying grpc channel is built from: target string, options, service config.

Pure functions. The rule that drives them (measured: docs/grpcio-facts.md):
grpcio shares TCP/HTTP2 connections between two channels only when the target
string AND the options are identical. So every rebuild of one BalancedChannel
uses the same ``dns:`` target and the same options tuple, and the surviving
endpoints keep their connections; only a new endpoint opens a new one.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnsbalance._endpoints import Endpoint, host_port
from dnsbalance._exceptions import ConfigError
from dnsbalance._target import Target

from .outlier import load_balancing_config

log = logging.getLogger(__name__)

ROUND_ROBIN: list[dict[str, Any]] = [{"round_robin": {}}]
GrpcOptions = tuple[tuple[str, Any], ...]


def service_config_json(
    user: Mapping[str, Any] | str | None,
    *,
    health_check: bool = False,
    outlier_detection: Mapping[str, Any] | None = None,
) -> str:
    """The service config: round_robin, merged with the user's (their methodConfig,
    retryPolicy and so on survive; an explicit loadBalancingConfig of theirs wins),
    plus ``healthCheckConfig`` when ``health_check``; with ``outlier_detection`` (a
    config checked by :func:`~dnsbalance._channel.outlier.outlier_config`) round_robin
    is wrapped in grpc's outlier detection policy. Deterministic text, so the channel
    options stay identical across rebuilds."""
    if user is None:
        config: dict[str, Any] = {}
    elif isinstance(user, str):
        try:
            loaded = json.loads(user)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"service_config is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError("service_config must be a JSON object")
        config = loaded
    elif isinstance(user, Mapping):
        config = copy.deepcopy(dict(user))
    else:
        raise ConfigError(f"service_config must be a dict or JSON text, not {type(user).__name__}")
    own = [key for key in ("loadBalancingConfig", "loadBalancingPolicy") if key in config]
    if own and outlier_detection is not None:
        raise ConfigError(
            f"outlier_detection wraps dnsbalance's round_robin, but service_config names its "
            f"own {own[0]}, which wins: put outlier_detection_experimental in your "
            "loadBalancingConfig yourself, or drop one of the two"
        )
    if "loadBalancingPolicy" in config and "loadBalancingConfig" not in config:
        log.debug("service_config names loadBalancingPolicy; keeping it instead of round_robin")
    elif outlier_detection is not None:
        config["loadBalancingConfig"] = load_balancing_config(outlier_detection, ROUND_ROBIN)
    else:
        config.setdefault("loadBalancingConfig", ROUND_ROBIN)
    if health_check:
        config.setdefault("healthCheckConfig", {"serviceName": ""})
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"service_config cannot be written as JSON: {exc}") from exc


def grpc_dns_resolver() -> str:
    """Which DNS resolver grpcio uses: ``ares`` (the default, c-ares) or ``native``."""
    value = os.environ.get("GRPC_DNS_RESOLVER", "").strip().lower()
    return "native" if value == "native" else "ares"


@dataclass(frozen=True)
class ChannelPlan:
    """The target string and options of one underlying grpc channel."""

    target: str
    options: GrpcOptions
    port: int | None


def plan_channel(
    target: Target,
    endpoints: Sequence[Endpoint],
    *,
    dns_authority: str | None,
    options: GrpcOptions,
    resolver: str = "ares",
    name: str | None = None,
) -> ChannelPlan:
    """Plan the grpc channel for ``endpoints``.

    The target is ``dns://<authority>/<name>:<port>`` (``dns:///...`` without an
    authority): the same string on every rebuild while the port stays. ``name`` is
    the Service's FQDN, or the channel's name on the local DNS server (then
    ``grpc.default_authority`` keeps ``:authority`` and TLS checks on the Service
    name). With ``GRPC_DNS_RESOLVER=native`` grpc silently ignores an authority, so
    then (and only then) an explicit ``ipv4:``/``ipv6:`` address list is used, which
    costs a reconnect to every backend per change; :func:`native_resolver_warning`
    says so.
    """
    port = channel_port(target, endpoints)
    authority = ("grpc.default_authority", f"{target.fqdn}:{port if port is not None else 0}")
    if dns_authority and resolver == "native" and endpoints:
        return ChannelPlan(address_list(endpoints), (*options, authority), port)
    if name is not None and name != target.fqdn:
        options = (*options, authority)
    host = name or target.fqdn
    return ChannelPlan(
        f"dns://{dns_authority or ''}/{host}:{port if port is not None else 0}", options, port
    )


def native_resolver_warning(target: Target) -> str:
    return (
        f"{target}: GRPC_DNS_RESOLVER=native ignores the DNS server in a dns:// target, so "
        "dnsbalance dials explicit address lists instead; every change then reconnects to "
        "every backend. Unset GRPC_DNS_RESOLVER (or set it to 'ares') to keep connections."
    )


def channel_port(target: Target, endpoints: Sequence[Endpoint]) -> int | None:
    """The port to dial: the target's number, or for a named port the SRV port most
    endpoints publish (``None`` while none is known)."""
    if isinstance(target.port, int):
        return target.port
    if not endpoints:
        return None
    counts = Counter(ep.port for ep in endpoints)
    port, _ = max(counts.items(), key=lambda item: (item[1], -item[0]))
    if len(counts) > 1:
        log.warning(
            "%s: endpoints publish different ports for %r (%s); dialing %d",
            target,
            target.port,
            ", ".join(str(p) for p in sorted(counts)),
            port,
        )
    return port


def address_list(endpoints: Sequence[Endpoint]) -> str:
    """``ipv4:a:p,b:p`` or, with any IPv6 endpoint, ``ipv6:[a]:p,...`` (IPv4 mapped)."""
    if all(ep.version == 4 for ep in endpoints):
        return "ipv4:" + ",".join(ep.hostport for ep in endpoints)
    parts = []
    for ep in endpoints:
        address = ep.address if ep.version == 6 else f"::ffff:{ep.address}"
        parts.append(host_port(address, ep.port))
    return "ipv6:" + ",".join(parts)
