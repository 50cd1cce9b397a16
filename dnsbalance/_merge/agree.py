"""Which endpoints the channel uses when both DNS and the Kubernetes API speak: pure.

The API is the fast signal, DNS the cluster's published view (it lags the API by
about its TTL). In mode ``"auto"``:

- an endpoint the API calls ready is used at once, as in mode ``"api"``, whether
  DNS lists it yet or not: DNS serves the same EndpointSlices, only later (its TTL
  and caches), so waiting for it adds delay and no information (it took 0.4-3 s on
  a real control plane with CoreDNS's cache). While DNS does not list it, the
  driver re-polls DNS every 0.2 s; if DNS still lacks it after ``window`` (the DNS
  TTL + 1 s), that is a discrepancy;
- an endpoint DNS lists but the API does not call ready (not ready, terminating,
  gone) is dropped at once; if DNS still lists it after ``window`` that is a
  discrepancy too;
- without an API view (unconfigured, forbidden, unreachable) DNS alone decides.

In mode ``"api"`` the API's ready endpoints are the membership (DNS unused).

When nothing is ready, one policy for modes ``"auto"`` and ``"api"``:

- the API still lists endpoints for the Service but none is ready (pods exist and
  readiness fails everywhere at once, typically a shared dependency): **panic mode**,
  as Envoy below its panic threshold: keep calling the listed endpoints that are still
  ``serving`` or were in the last set, each reported as a ``"panic"`` discrepancy (a
  calling client fails no worse than an empty channel, and recovers at once);
- the Service's slices are gone or list no endpoints: the channel is emptied (pod IPs
  are reused by other pods; calling them is worse than failing fast);
- ``panic_mode=False`` empties the channel in both cases;
- without an API view (unreadable) mode ``"api"`` keeps its last set and mode
  ``"auto"`` follows DNS alone, whose own rule holds (two NXDOMAIN in a row empty it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dnsbalance._endpoints import Discrepancy, Endpoint, normalize

Key = tuple[str, int]
REPOLL_INTERVAL = 0.2


def _key(endpoint: Endpoint) -> Key:
    return (endpoint.address, endpoint.port)


@dataclass(frozen=True)
class MergeState:
    """When each disagreement was first seen, and the last set decided."""

    api_only_since: Mapping[Key, float] = field(default_factory=dict)
    dns_only_since: Mapping[Key, float] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()
    panic_since: float | None = None


@dataclass(frozen=True)
class Agreement:
    state: MergeState
    endpoints: tuple[Endpoint, ...]
    """The endpoints the channel should use now."""
    discrepancies: tuple[Discrepancy, ...]
    """Disagreements older than the window."""
    repoll_dns: bool
    """API endpoints DNS does not list yet: poll DNS again in REPOLL_INTERVAL."""
    next_deadline: float | None
    """When such an endpoint's window ends (re-evaluate then), if any."""
    panic: bool = False
    """No endpoint is ready and listed ones are used anyway (panic mode)."""


def dialable(
    endpoints: tuple[Endpoint, ...], port: int | None
) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]]:
    """(those grpc can dial, those it cannot): the local DNS serves A/AAAA records,
    which carry no port, so grpc dials every address at the channel's one ``port``; an
    endpoint whose slice puts it at another port (a rollout that changes a named
    targetPort's number) would be dialed at a port it does not serve, so it is left
    out. Costs no connection; costs those pods' capacity until the rollout is done."""
    if port is None:
        return endpoints, ()
    kept = tuple(ep for ep in endpoints if ep.port == port)
    return kept, tuple(ep for ep in endpoints if ep.port != port)


def panic_endpoints(
    *,
    listed: tuple[Endpoint, ...],
    serving: tuple[Endpoint, ...],
    last: tuple[Endpoint, ...],
) -> tuple[Endpoint, ...]:
    """Panic mode's set when no endpoint is ready: the listed endpoints still
    ``serving``, and those of the last set the API still lists. Nothing listed (slices
    gone or empty): nothing."""
    keys = {_key(ep) for ep in listed}
    return normalize(
        [*(ep for ep in serving if _key(ep) in keys), *(ep for ep in last if _key(ep) in keys)]
    )


def agree(
    state: MergeState,
    *,
    mode: Literal["auto", "api"],
    dns: tuple[Endpoint, ...] | None,
    api: tuple[Endpoint, ...] | None,
    now: float,
    window: float,
    listed: tuple[Endpoint, ...] = (),
    serving: tuple[Endpoint, ...] = (),
    panic_mode: bool = True,
) -> Agreement:
    """Decide the endpoint set from the DNS view (``None``: no answer yet) and the
    API's ready endpoints (``None``: no API view); ``listed``/``serving``: what else
    the API lists (see :func:`panic_endpoints`)."""
    if api is not None and not api:
        panicked = (
            panic_endpoints(listed=listed, serving=serving, last=state.endpoints)
            if panic_mode
            else ()
        )
        if panicked:
            started = state.panic_since if state.panic_since is not None else now
            notes = tuple(Discrepancy(ep, "panic", started) for ep in panicked)
            return Agreement(
                MergeState(endpoints=panicked, panic_since=started),
                panicked,
                notes,
                False,
                None,
                panic=True,
            )
        if mode == "api":
            return _settled(())  # slices gone or empty (or panic mode off): fail fast
        # Mode "auto" goes on below: nothing is chosen, late DNS-only entries reported.
    if mode == "api":
        if api is None:
            return _settled(state.endpoints)
        return _settled(normalize(api))
    if api is None:
        return _settled(normalize(dns or ()))

    in_dns = {_key(ep): ep for ep in dns or ()}
    ready = {_key(ep): ep for ep in api}
    api_only: dict[Key, float] = {}
    dns_only: dict[Key, float] = {}
    chosen: list[Endpoint] = []
    late: list[Discrepancy] = []
    deadline: float | None = None
    for key, ep in ready.items():
        if key in in_dns:
            chosen.append(ep if ep.hostname else in_dns[key])
            continue
        chosen.append(ep)  # the API's word, at once; DNS is re-polled to cross-check
        since = state.api_only_since.get(key, now)
        api_only[key] = since
        if now - since >= window:
            late.append(Discrepancy(ep, "api-only", since))
        else:
            end = since + window
            deadline = end if deadline is None else min(deadline, end)
    for key, ep in in_dns.items():
        if key in ready:
            continue
        since = state.dns_only_since.get(key, now)
        dns_only[key] = since
        if now - since >= window:
            late.append(Discrepancy(ep, "dns-only", since))
    endpoints = normalize(chosen)
    return Agreement(
        state=MergeState(api_only_since=api_only, dns_only_since=dns_only, endpoints=endpoints),
        endpoints=endpoints,
        discrepancies=tuple(sorted(late, key=lambda d: d.endpoint.sort_key())),
        repoll_dns=deadline is not None,
        next_deadline=deadline,
    )


def _settled(endpoints: tuple[Endpoint, ...]) -> Agreement:
    """A decision with nothing pending and nothing to compare."""
    return Agreement(MergeState(endpoints=endpoints), endpoints, (), False, None)
