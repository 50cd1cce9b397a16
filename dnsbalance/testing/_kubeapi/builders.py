"""Builders of the two kinds' dicts, for tests: ``endpoint_slice`` and ``service``
(served as ``FakeKubernetesAPI.endpoint_slice`` and ``.service``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["EndpointSpec", "PortSpec", "endpoint_slice", "service"]

JSON = dict[str, Any]

EndpointSpec = str | Sequence[Any] | Mapping[str, Any]
PortSpec = int | Sequence[Any] | Mapping[str, Any]


def _endpoint(spec: EndpointSpec) -> JSON:
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, str):
        spec = (spec,)
    fields = list(spec) + [None] * (5 - len(spec))
    ip, ready, serving, terminating, hostname = fields[:5]
    endpoint: JSON = {"addresses": [ip]}
    conditions: JSON = {}
    for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if value is not None:
            conditions[key] = bool(value)
    endpoint["conditions"] = conditions
    if hostname:
        endpoint["hostname"] = hostname
    return endpoint


def endpoint_slice(
    name: str,
    namespace: str,
    service: str,
    endpoints: Iterable[EndpointSpec] = (),
    ports: Iterable[PortSpec] = (),
    address_type: str = "IPv4",
    *,
    labels: Mapping[str, str] | None = None,
) -> JSON:
    """A discovery.k8s.io/v1 EndpointSlice dict for ``service``.

    ``endpoints``: ``(ip, ready, serving, terminating, hostname)`` tuples (trailing
    items may be left out; ``None`` leaves a condition unset, which means ready/serving
    true and terminating false), bare IP strings, or full endpoint dicts. ``ports``:
    ``(name, port, protocol)`` tuples (``name`` may be ``""``, ``port`` ``None``), bare
    port numbers, or dicts.
    """
    port_list: list[JSON] = []
    for spec in ports:
        if isinstance(spec, Mapping):
            port_list.append(dict(spec))
            continue
        if isinstance(spec, int):
            spec = ("", spec)
        items = list(spec) + [None] * (3 - len(spec))
        port_name, number, protocol = items[:3]
        port: JSON = {"name": port_name or "", "protocol": protocol or "TCP"}
        if number is not None:
            port["port"] = int(number)
        port_list.append(port)
    all_labels = {"kubernetes.io/service-name": service}
    all_labels.update(labels or {})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "addressType": address_type,
        "endpoints": [_endpoint(e) for e in endpoints],
        "ports": port_list,
    }


def service(
    name: str,
    namespace: str,
    *,
    ports: Iterable[PortSpec] = (),
    selector: Mapping[str, str] | None = None,
    type: str = "ClusterIP",
    cluster_ip: str | None = None,
    publish_not_ready_addresses: bool | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    external_name: str | None = None,
) -> JSON:
    """A v1 Service dict. ``cluster_ip="None"`` makes it headless.

    ``ports``: port numbers, ``(name, port)``, ``(name, port, target_port)`` or
    ``(name, port, target_port, protocol)`` tuples, or dicts.
    """
    port_list: list[JSON] = []
    for spec in ports:
        if isinstance(spec, Mapping):
            port_list.append(dict(spec))
            continue
        if isinstance(spec, int):
            spec = (None, spec)
        items = list(spec) + [None] * (4 - len(spec))
        port_name, number, target, protocol = items[:4]
        port: JSON = {"port": int(number), "protocol": protocol or "TCP"}
        if port_name:
            port["name"] = port_name
        if target is not None:
            port["targetPort"] = target
        port_list.append(port)
    metadata: JSON = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec_out: JSON = {"type": type}
    if port_list:
        spec_out["ports"] = port_list
    if selector is not None:
        spec_out["selector"] = dict(selector)
    if cluster_ip is not None:
        spec_out["clusterIP"] = cluster_ip
    if publish_not_ready_addresses is not None:
        spec_out["publishNotReadyAddresses"] = publish_not_ready_addresses
    if external_name is not None:
        spec_out["externalName"] = external_name
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec_out}
