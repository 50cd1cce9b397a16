"""Topology-aware routing, as kube-proxy does it: pure decisions, no I/O.

A Service with ``service.kubernetes.io/topology-mode: Auto`` or
``spec.trafficDistribution: PreferClose`` (``PreferSameZone``, ``PreferSameNode``)
gets hints from the EndpointSlice controller, and kube-proxy sends a node's traffic to
the endpoints hinted for its zone (or node). :func:`choose` makes the same choice for a
client that knows its own zone and node, so a move from a ClusterIP Service to a
headless one keeps calls in the zone.

What the controller writes (the shapes the tests use):

- ``topology-mode: Auto`` (``staging/src/k8s.io/endpointslice/topologycache``,
  ``TopologyCache.AddHints``): every *ready* endpoint gets exactly one
  ``hints.forZones`` entry, its own zone first, then some are moved to zones short of
  endpoints in proportion to their nodes' CPU (``redistributeHints``), so an endpoint in
  zone a may be hinted for zone b. Not-ready endpoints carry no hints (the reconciler
  builds them fresh from the pods). Hints are removed from every slice when the
  controller cannot allocate them (fewer endpoints than zones, nodes of one zone only,
  an endpoint without a zone, the overload threshold: ``getAllocations``).
- ``trafficDistribution: PreferClose``/``PreferSameZone``
  (``staging/src/k8s.io/endpointslice/trafficdist/trafficdist.go``,
  ``preferCloseHeuristic.update``): every ready endpoint with a ``zone`` gets
  ``forZones: [{name: <its zone>}]``; with ``PreferSameNode`` also
  ``forNodes: [{name: <its nodeName>}]``. No redistribution. Without a
  trafficDistribution, ``defaultHeuristic`` removes every hint.

What kube-proxy does with them (``pkg/proxy/topology.go``), and so :func:`choose`:

- ``topologyModeFromHints`` looks at the *ready* endpoints only. ``PreferSameNode``
  when every ready endpoint has a node hint and one is hinted for this node (behind the
  ``PreferSameTrafficDistribution`` gate, on here); else ``PreferSameZone`` when every
  ready endpoint has a zone hint and one is hinted for this node's zone; else no
  topology: every endpoint. "Hinted for no endpoint of my zone" and "one endpoint
  without a hint" both mean every endpoint, never an empty set.
- ``availableForTopology``: in a mode, an endpoint is used when its hints name the
  node (or zone); there is no further fallback (it happened when choosing the mode).
- ``internalTrafficPolicy: Local`` (``CategorizeEndpoints``, ``UsesLocalEndpoints``):
  only endpoints whose ``nodeName`` is this node (``pkg/proxy/endpointslicecache.go``
  ``isLocal``), ready ones, else serving-terminating ones; hints play no part; none on
  this node means no endpoint at all (kube-proxy drops the traffic).

Older kube-proxies (``canUseTopology``, 1.21-1.26) also required the Service annotation;
current ones decide from the hints alone, as here: the slices are the source of truth.

Where dnsbalance must differ, it says so in the rule it reports: a client that does not
know its zone uses every endpoint (kube-proxy reads its Node's label; ``all: no zone
known``), and ``Local`` without a known node uses every endpoint (``all: Local policy,
no node known``) instead of none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from dnsbalance._endpoints import Endpoint, normalize

ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_HINTS = 8  # pkg/apis/discovery/validation: maxZoneHints (forNodes has the same bound)

# IsValidLabelValue (k8s.io/apimachinery/pkg/util/validation): at most 63 characters,
# alphanumeric at both ends, '-', '_' and '.' inside; the empty value is valid but names
# no zone, so it is treated as no zone.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# ValidateNodeName = NameIsDNSSubdomain: a lowercase RFC 1123 subdomain, at most 253.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def valid_zone_name(value: object) -> bool:
    """A zone name as the API accepts it in ``hints.forZones[].name`` (a label value)."""
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def valid_node_name(value: object) -> bool:
    """A node name as the API accepts it in ``nodeName`` (a DNS subdomain)."""
    return isinstance(value, str) and len(value) <= 253 and bool(_SUBDOMAIN.match(value))


@dataclass(frozen=True, kw_only=True)
class TopologyChoice:
    """The endpoints to use and why.

    ``rule``: ``"zone-hints"``, ``"node-hints"``, ``"local-policy"`` (a subset was
    chosen), ``"off"`` (``topology=False``), or ``"all: <why>"`` (every endpoint, e.g.
    ``"all: no zone known"``, ``"all: not every endpoint hinted"``, ``"all: none hinted
    for zone b"``). ``in_zone``/``out_of_zone``: how many chosen endpoints are in the
    client's zone by their own ``zone`` field, and how many elsewhere or of no known
    zone (with Auto hints, an endpoint lent from another zone counts as out of zone).
    ``available``: how many endpoints there were to choose from.
    """

    endpoints: tuple[Endpoint, ...]
    zone: str | None
    node: str | None
    rule: str
    in_zone: int
    out_of_zone: int
    available: int

    @property
    def subset(self) -> bool:
        """Whether some usable endpoints were left out."""
        return len(self.endpoints) < self.available

    def __str__(self) -> str:
        where = f"zone {self.zone}" if self.zone else "no zone"
        if self.node:
            where += f", node {self.node}"
        return (
            f"{self.rule} ({where}): {len(self.endpoints)} of {self.available} endpoints, "
            f"{self.in_zone} in zone, {self.out_of_zone} out of zone"
        )


def choose(
    endpoints: Iterable[Endpoint],
    *,
    zone: str | None,
    node: str | None = None,
    internal_traffic_policy: str | None = None,
    enabled: bool = True,
) -> TopologyChoice:
    """The subset of the usable ``endpoints`` a kube-proxy on ``node`` in ``zone`` would
    send this client's calls to (see the module documentation for the rules followed).

    ``internal_traffic_policy``: the Service's ``spec.internalTrafficPolicy`` when known
    (``None`` when the Service cannot be read). ``enabled=False``: every endpoint.
    """
    usable = normalize(endpoints)
    zone = zone or None
    node = node or None

    def result(chosen: Iterable[Endpoint], rule: str) -> TopologyChoice:
        picked = normalize(chosen)
        inside = sum(1 for ep in picked if zone is not None and ep.zone == zone)
        return TopologyChoice(
            endpoints=picked,
            zone=zone,
            node=node,
            rule=rule,
            in_zone=inside,
            out_of_zone=len(picked) - inside,
            available=len(usable),
        )

    if not enabled:
        return result(usable, "off")
    if internal_traffic_policy == "Local":
        if node is None:
            return result(usable, "all: Local policy, no node known")
        local = [ep for ep in usable if ep.node_name == node]
        ready = [ep for ep in local if ep.ready]
        return result(ready or local, "local-policy")
    ready = [ep for ep in usable if ep.ready]
    if not ready:
        return result(usable, "all: no ready endpoint")
    # topologyModeFromHints: node hints first, then zone hints, over ready endpoints.
    if node is not None and all(ep.node_hints for ep in ready):
        for_node = [ep for ep in ready if node in ep.node_hints]
        if for_node:
            return result(for_node, "node-hints")
    if not any(ep.zone_hints for ep in ready):
        return result(usable, "all: no hints")
    if not all(ep.zone_hints for ep in ready):
        return result(usable, "all: not every endpoint hinted")
    if zone is None:
        return result(usable, "all: no zone known")
    for_zone = [ep for ep in ready if zone in ep.zone_hints]
    if not for_zone:
        return result(usable, f"all: none hinted for zone {zone}")
    return result(for_zone, "zone-hints")


SUBSET_RULES = frozenset({"zone-hints", "node-hints", "local-policy"})


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where the client runs, as far as it knows: the inputs of :func:`choose` that do
    not come from the slices. ``pending``: the Node's zone is still being read;
    ``why``: why no zone is known (said once, at INFO)."""

    zone: str | None = None
    node: str | None = None
    internal_traffic_policy: str | None = None
    enabled: bool = True
    pending: bool = False
    why: str = ""


def decide(ready: Iterable[Endpoint], placement: Placement) -> TopologyChoice:
    """:func:`choose` for a client at ``placement``, over the API's whole ready set
    (``ready``: what kube-proxy looks at, never a DNS-narrowed subset)."""
    choice = choose(
        ready,
        zone=placement.zone,
        node=placement.node,
        internal_traffic_policy=placement.internal_traffic_policy,
        enabled=placement.enabled,
    )
    if choice.rule == "all: no zone known" and placement.pending:
        return replace(choice, rule=f"all: zone not known yet (reading Node {placement.node})")
    return choice


def applied(
    agreed: tuple[Endpoint, ...],
    choice: TopologyChoice,
    known: Iterable[Endpoint] = (),
) -> TopologyChoice:
    """``choice`` (made over the API's ready set) applied to the ``agreed`` endpoints
    (DNS and the API cross-checked): the agreed ones the rule keeps. When the rule keeps
    a subset none of which is agreed yet (the zone's pods are new and DNS lags), the
    rule's own endpoints are used, the API's word, as the merge does when nothing is
    agreed: an empty channel would fail every call. ``known``: endpoints that carry the
    zones (the API's), to count in and out of the zone when ``agreed`` holds DNS's."""
    if choice.rule in SUBSET_RULES:
        keys = {(ep.address, ep.port) for ep in choice.endpoints}
        kept = tuple(ep for ep in agreed if (ep.address, ep.port) in keys) or choice.endpoints
    else:
        kept = agreed
    zones = {(ep.address, ep.port): ep.zone for ep in (*known, *choice.endpoints)}
    inside = sum(
        1
        for ep in kept
        if choice.zone is not None and zones.get((ep.address, ep.port)) == choice.zone
    )
    return replace(
        choice,
        endpoints=kept,
        in_zone=inside,
        out_of_zone=len(kept) - inside,
        available=max(choice.available, len(agreed)),
    )
