"""What a Service's pods say about their readiness, before the slices do: pure, no I/O.

A pod's Ready status patch reaches an EndpointSlice only after the EndpointSlice
controller has seen it, queued the Service and written the slice (on the real control
plane here 15-25 ms calm, 16-340 ms under the benchmark's load, and as long as the
controller is down when it restarts), and every watcher of the slices waits that long.
The controller's rule is known (``podToEndpoint`` in
staging/src/k8s.io/endpointslice/utils.go): ``serving`` is the pod's Ready condition,
``terminating`` its deletionTimestamp, ``ready = publishNotReadyAddresses || (serving &&
!terminating)``; only pods with an IP and not Succeeded/Failed are endpoints at all.

So a watch of the Service's pods (:mod:`dnsbalance._kube.pod_watch`) tells which pods
the controller *will* write as ready, and :func:`dnsbalance._kube.slices.read_slice` uses
that in one direction only: an endpoint its slice lists as not ready and not
terminating, written by the EndpointSlice controller, whose ``targetRef`` is a pod (by
UID, so a pod made anew under the same name is another pod) now Ready at that very
address, is used now. Nothing else changes: the slices still add and remove endpoints,
and a pod that turns not Ready, or goes, takes back only what its Ready added. The
slice says the rest, as it did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .topology import valid_node_name, valid_zone_name

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"

ReadyPairs = frozenset[tuple[str, str]]
"""(pod UID, IP) of every Ready pod, an IP each: what :func:`read_slice` matches."""


def ready_pod(obj: Any) -> tuple[str, frozenset[str]]:
    """A pod's UID ("" when it has none) and the IPs at which the EndpointSlice
    controller will write it serving and not terminating: its Ready condition True, no
    deletionTimestamp, not Succeeded or Failed; none otherwise."""
    if not isinstance(obj, Mapping):
        return "", frozenset()
    metadata = obj.get("metadata")
    status = obj.get("status")
    if not isinstance(metadata, Mapping) or not isinstance(status, Mapping):
        return "", frozenset()
    uid = metadata.get("uid")
    if not isinstance(uid, str) or not uid:
        return "", frozenset()
    if metadata.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return uid, frozenset()
    conditions = status.get("conditions")
    if not isinstance(conditions, list) or not any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    ):
        return uid, frozenset()
    ips = {status.get("podIP")}
    listed = status.get("podIPs")
    if isinstance(listed, list):
        ips.update(entry.get("ip") for entry in listed if isinstance(entry, Mapping))
    return uid, frozenset(ip for ip in ips if isinstance(ip, str) and ip)


class ReadyPods:
    """The Ready pods of one Service, as a pod list and watch tells them. Not
    thread-safe: one watcher thread owns it."""

    def __init__(self) -> None:
        self._ips: dict[str, frozenset[str]] = {}
        self.pairs: ReadyPairs = frozenset()

    def reset(self, objs: Iterable[Any]) -> bool:
        """A list's pods replace everything; whether :attr:`pairs` changed."""
        self._ips = {}
        for obj in objs:
            uid, ips = ready_pod(obj)
            if ips:
                self._ips[uid] = ips
        return self._publish()

    def apply(self, kind: str, obj: Any) -> bool:
        """An ADDED, MODIFIED or DELETED pod; whether :attr:`pairs` changed."""
        uid, ips = ready_pod(obj)
        if not uid:
            return False
        if kind == "DELETED" or not ips:
            if self._ips.pop(uid, None) is None:
                return False
        elif self._ips.get(uid) == ips:
            return False
        else:
            self._ips[uid] = ips
        return self._publish()

    def _publish(self) -> bool:
        pairs = frozenset((uid, ip) for uid, ips in self._ips.items() for ip in ips)
        changed = pairs != self.pairs
        self.pairs = pairs
        return changed


def selector_of(service: Any) -> str | None:
    """A Service's ``spec.selector`` as a label selector (``k=v,...``), or ``None``:
    no selector (its slices are made by hand, no pod speaks for them), or one the API
    would not have accepted (keys and values are label names and values)."""
    spec = service.get("spec") if isinstance(service, Mapping) else None
    selector = spec.get("selector") if isinstance(spec, Mapping) else None
    if not isinstance(selector, Mapping) or not selector:
        return None
    parts: list[str] = []
    for key, value in sorted(selector.items()):
        if not (_label_key(key) and (value == "" or valid_zone_name(value))):
            return None
        parts.append(f"{key}={value}")
    return ",".join(parts)


def _label_key(key: object) -> bool:
    """A qualified name: an optional DNS-subdomain prefix and '/', then a name of at
    most 63 characters (apimachinery's IsQualifiedName: the name part has the rule of a
    non-empty label value, the prefix that of a node name)."""
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    return (not prefix or valid_node_name(prefix)) and valid_zone_name(name)


def speaks_for(obj: Mapping[str, Any]) -> bool:
    """Whether a slice is the EndpointSlice controller's, the one whose rule a pod's
    readiness foretells (not the mirroring controller's, not one made by hand)."""
    labels = (obj.get("metadata") or {}).get("labels")
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_LABEL) == CONTROLLER


def pod_uid(item: Mapping[str, Any]) -> str | None:
    """The UID of the pod an endpoint's ``targetRef`` names, if it names a pod."""
    ref = item.get("targetRef")
    if not isinstance(ref, Mapping) or ref.get("kind") != "Pod":
        return None
    uid = ref.get("uid")
    return uid if isinstance(uid, str) and uid else None
