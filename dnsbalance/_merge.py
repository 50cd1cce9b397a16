"""Which endpoints the channel uses when both DNS and the Kubernetes API speak: pure.

The API is the fast signal, DNS the cluster's published view (it lags the API by
about its TTL). In mode ``"auto"``:

- an endpoint the API calls ready and DNS lists is used;
- an endpoint the API calls ready that DNS does not list yet is *pending*: the
  driver re-polls DNS every 0.2 s, and uses it as soon as DNS agrees, or once
  ``window`` (the DNS TTL + 1 s) has passed, taking the API's word (a
  discrepancy);
- an endpoint DNS lists but the API does not call ready (not ready, terminating,
  gone) is dropped at once; if DNS still lists it after ``window`` that is a
  discrepancy too;
- when that leaves nothing although the API has ready endpoints (no DNS answer yet,
  or every pod replaced at once), the API's ready endpoints are used at once: an
  empty channel would fail every call;
- without an API view (unconfigured, forbidden, unreachable) DNS alone decides.

In mode ``"api"`` the API's ready endpoints are the membership (DNS unused); as
in kuberesolver, an API view with no ready endpoint keeps the last non-empty set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._endpoints import Endpoint, normalize

__all__ = ["Agreement", "Discrepancy", "MergeState", "agree"]

Key = tuple[str, int]
REPOLL_INTERVAL = 0.2


def _key(endpoint: Endpoint) -> Key:
    return (endpoint.address, endpoint.port)


@dataclass(frozen=True)
class Discrepancy:
    """DNS and the API disagree about ``endpoint`` since ``since`` (monotonic seconds).

    ``kind``: ``"api-only"`` (the API calls it ready, DNS does not list it) or
    ``"dns-only"`` (DNS lists it, the API does not call it ready).
    """

    endpoint: Endpoint
    kind: Literal["api-only", "dns-only"]
    since: float

    def __str__(self) -> str:
        if self.kind == "api-only":
            return f"{self.endpoint}: ready in the API but not in DNS"
        return f"{self.endpoint}: in DNS but not ready in the API"


@dataclass(frozen=True)
class MergeState:
    """When each disagreement was first seen, and the last set decided."""

    api_only_since: Mapping[Key, float] = field(default_factory=dict)
    dns_only_since: Mapping[Key, float] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class Agreement:
    state: MergeState
    endpoints: tuple[Endpoint, ...]
    """The endpoints the channel should use now."""
    discrepancies: tuple[Discrepancy, ...]
    """Disagreements older than the window."""
    repoll_dns: bool
    """Pending API endpoints: poll DNS again in REPOLL_INTERVAL."""
    next_deadline: float | None
    """When a pending endpoint's window ends (re-evaluate then), if any."""


def agree(
    state: MergeState,
    *,
    mode: Literal["auto", "api"],
    dns: tuple[Endpoint, ...] | None,
    api: tuple[Endpoint, ...] | None,
    now: float,
    window: float,
) -> Agreement:
    """Decide the endpoint set from the DNS view (``None``: no answer yet) and the
    API's ready endpoints (``None``: no API view)."""
    if mode == "api":
        if api is None:
            return _settled(state.endpoints)
        return _settled(normalize(api) or state.endpoints)  # none ready: keep the stale set
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
        since = state.api_only_since.get(key, now)
        api_only[key] = since
        if now - since >= window:
            chosen.append(ep)
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
    if not endpoints and ready:
        # Nothing agreed on, yet the API has ready endpoints (DNS has not answered yet, or
        # every pod was replaced at once): an empty channel fails every call, so take the
        # API's word now. DNS is still re-polled and late disagreements still reported.
        endpoints = normalize(ready.values())
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
