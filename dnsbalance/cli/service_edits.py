"""Edits of Service objects: clean copies to re-create or restore; an existing twin's checks."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dnsbalance._exceptions import ConversionError

from .service_spec import (
    EXPOSED_TYPES,
    EXTERNAL_SPEC_FIELDS,
    SERVER_METADATA,
    describe,
    is_headless,
    metadata_of,
    ports_of,
    selector_of,
    service_type,
    spec_of,
)

JSON = dict[str, Any]


MIRRORS_ANNOTATION = "dnsbalance.io/mirrors"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# What a twin copies from the original's spec besides selector and ports, and keeps in
# sync: what decides its endpoints and how clients pick among them.
# - publishNotReadyAddresses: which endpoints are ready (and in DNS);
# - ipFamilies, ipFamilyPolicy: which address families its slices hold;
# - trafficDistribution: the EndpointSlice controller writes zone (and node) hints on
#   the slices only when the Service asks (PreferClose, PreferSameZone, PreferSameNode);
# - internalTrafficPolicy: Local keeps calls on the client's node (dnsbalance reads it
#   from the Service the client dials, as kube-proxy does).
TWIN_SPEC_FIELDS = (
    "publishNotReadyAddresses",
    "ipFamilies",
    "ipFamilyPolicy",
    "trafficDistribution",
    "internalTrafficPolicy",
)
# Synced by value (the others are set once: ipFamilies cannot change on a live twin).
_SYNCED_SPEC_FIELDS = ("publishNotReadyAddresses", "trafficDistribution", "internalTrafficPolicy")
_SPEC_DEFAULTS: dict[str, Any] = {
    "publishNotReadyAddresses": False,
    "internalTrafficPolicy": "Cluster",
}
# The annotations that ask the controller for topology hints (the deprecated one wins
# when both are set: endpointslice controller's hintsEnabled). Others stay with the
# original.
TOPOLOGY_ANNOTATIONS = (
    "service.kubernetes.io/topology-mode",
    "service.kubernetes.io/topology-aware-hints",
)


def twin_annotations(original: Mapping[str, Any]) -> dict[str, str]:
    """The original's annotations a twin carries (the topology ones)."""
    annotations = metadata_of(original).get("annotations")
    if not isinstance(annotations, Mapping):
        return {}
    return {k: str(annotations[k]) for k in TOPOLOGY_ANNOTATIONS if k in annotations}


# -- recreating -----------------------------------------------------------------------


def _clean_metadata(service: Mapping[str, Any], *, drop_last_applied: bool) -> JSON:
    metadata = {k: copy.deepcopy(v) for k, v in metadata_of(service).items()}
    for key in SERVER_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations")
    if drop_last_applied and isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED_ANNOTATION, None)
        if not annotations:
            del metadata["annotations"]
    return metadata


def clean_for_recreate(service: Mapping[str, Any]) -> JSON:
    """A copy of ``service`` that can be created again as a new object.

    Drops the server-set metadata (resourceVersion, uid, creationTimestamp, generation,
    managedFields, selfLink, deletion fields), the finalizers (each belongs to whoever
    set it, for the object it was set on: the cloud controller's load-balancer-cleanup
    would never be removed from a headless Service), the ``last-applied-configuration``
    annotation, ``status``, ``clusterIP``/``clusterIPs``, and for NodePort and
    LoadBalancer the node ports, ``healthCheckNodePort``, ``externalTrafficPolicy`` and
    the load balancer fields. Keeps selector, ports and their names,
    ``publishNotReadyAddresses``, labels and the other annotations.
    """
    metadata = _clean_metadata(service, drop_last_applied=True)
    metadata.pop("finalizers", None)
    result = _reassemble(service, metadata)
    spec = dict(spec_of(service))
    spec.pop("clusterIP", None)
    spec.pop("clusterIPs", None)
    if service_type(service) in EXPOSED_TYPES:
        for key in EXTERNAL_SPEC_FIELDS:
            spec.pop(key, None)
        if "ports" in spec:
            spec["ports"] = [
                {k: v for k, v in p.items() if k != "nodePort"} for p in ports_of(service)
            ]
    result["spec"] = copy.deepcopy(spec)
    return result


def restore_copy(service: Mapping[str, Any], *, keep_allocations: bool = True) -> JSON:
    """``service`` as it was, ready to create again (a rollback): only server-set metadata
    and status are dropped. With ``keep_allocations`` it asks for its old cluster IPs and
    node ports back; without, the API allocates new ones."""
    result = _reassemble(service, _clean_metadata(service, drop_last_applied=False))
    spec = copy.deepcopy(dict(spec_of(service)))
    if not keep_allocations:
        spec.pop("clusterIPs", None)
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
        spec.pop("healthCheckNodePort", None)
        if "ports" in spec:
            spec["ports"] = [
                {k: v for k, v in p.items() if k != "nodePort"} for p in ports_of(service)
            ]
    result["spec"] = spec
    return result


def _reassemble(service: Mapping[str, Any], metadata: JSON) -> JSON:
    """A copy of ``service`` in its key order (apiVersion, kind first), with ``metadata``
    in place of its own and without status."""
    result: JSON = {"apiVersion": "v1", "kind": "Service"}
    for key, value in service.items():
        if key == "metadata":
            result["metadata"] = metadata
        elif key != "status":
            result[key] = copy.deepcopy(value)
    result.setdefault("metadata", metadata)
    return result


# -- an existing twin -----------------------------------------------------------------


def check_twin_owner(existing: Mapping[str, Any], original_name: str) -> None:
    """Raise ConversionError unless ``existing`` is a headless twin of ``original_name``."""
    annotations = metadata_of(existing).get("annotations")
    mirrors = annotations.get(MIRRORS_ANNOTATION) if isinstance(annotations, Mapping) else None
    if mirrors != original_name:
        owner = f"is {mirrors!r}" if mirrors else "is missing"
        raise ConversionError(
            f"{describe(existing)} already exists and is not the twin of "
            f"service/{original_name} (annotation {MIRRORS_ANNOTATION} {owner}): "
            "choose another name with --twin-name, or remove that Service"
        )
    if not is_headless(existing):
        raise ConversionError(
            f"{describe(existing)} mirrors service/{original_name} but is not headless: "
            "delete it and run again"
        )


def _port_key(port: Mapping[str, Any]) -> tuple[str, str, Any, Any, str]:
    protocol = port.get("protocol") or "TCP"
    target = port.get("targetPort")
    return (
        str(port.get("name") or ""),
        str(protocol),
        port.get("port"),
        port.get("port") if target in (None, 0, "") else target,
        str(port.get("appProtocol") or ""),
    )


def twin_differences(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """The mirrored fields in which ``existing`` differs from ``desired`` ([] = up to date)."""
    differences = []
    if selector_of(existing) != selector_of(desired):
        differences.append("spec.selector")
    if sorted(map(_port_key, ports_of(existing))) != sorted(map(_port_key, ports_of(desired))):
        differences.append("spec.ports")
    for key in _SYNCED_SPEC_FIELDS:
        default = _SPEC_DEFAULTS.get(key)
        if spec_of(existing).get(key, default) != spec_of(desired).get(key, default):
            differences.append(f"spec.{key}")
    if (metadata_of(existing).get("labels") or {}) != (metadata_of(desired).get("labels") or {}):
        differences.append("metadata.labels")
    have, want = twin_annotations(existing), twin_annotations(desired)
    differences.extend(
        f"metadata.annotations[{key}]"
        for key in TOPOLOGY_ANNOTATIONS
        if have.get(key) != want.get(key)
    )
    return differences


def updated_twin(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    """``existing`` (with its resourceVersion, for a conflict-checked update) carrying the
    mirrored fields of ``desired``."""
    result = copy.deepcopy(dict(existing))
    metadata = result.setdefault("metadata", {})
    labels = metadata_of(desired).get("labels")
    if labels:
        metadata["labels"] = dict(labels)
    else:
        metadata.pop("labels", None)
    annotations = metadata.setdefault("annotations", {})
    annotations[MIRRORS_ANNOTATION] = metadata_of(desired)["annotations"][MIRRORS_ANNOTATION]
    for key in TOPOLOGY_ANNOTATIONS:
        annotations.pop(key, None)
    annotations.update(twin_annotations(desired))
    spec = result.setdefault("spec", {})
    desired_spec = spec_of(desired)
    for key in ("selector", "ports", *_SYNCED_SPEC_FIELDS):
        if key in desired_spec:
            spec[key] = copy.deepcopy(desired_spec[key])
        else:
            spec.pop(key, None)
    result.pop("status", None)
    return result
