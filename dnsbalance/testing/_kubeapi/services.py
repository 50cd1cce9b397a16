"""Service rules that need state: cluster IP and node port allocation, and update rules.

``ServiceAllocator`` hands out ``spec.clusterIP``/``clusterIPs`` from the service CIDR
(10.96.0.0/12 by default, sequentially from .11: .1 is the ``kubernetes`` Service and
.10 cluster DNS) and node ports from 30000-32767, with the allocators' error texts.
:func:`carry_allocations` is the Service REST's ``patchAllocatedValues``,
``normalizeClusterIPs`` and ``dropTypeDependentFields``; :func:`init_ip_families` its
``initIPFamilyFields`` (on this IPv4-only cluster); :func:`validate_service_update` the
immutability of cluster IPs (``may not change once set``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from . import kinds
from .status import FieldError, invalid

__all__ = ["ServiceAllocator", "carry_allocations", "init_ip_families", "validate_service_update"]

JSON = dict[str, Any]


class _Pools:
    """The cluster IPs and node ports in use."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        # .1 belongs to the ``kubernetes`` Service every cluster has (not stored here)
        self.ips: set[str] = {str(self.network.network_address + 1)}
        self.ports: set[int] = set()
        self._next_ip = 11  # .1 is the kubernetes Service, .10 cluster DNS
        self._next_port = 30000

    def take_ip(self, requested: str | None) -> str:
        if requested:
            address = ipaddress.ip_address(requested)
            if address not in self.network:
                raise _field_error(
                    "spec.clusterIPs",
                    [requested],
                    f"failed to allocate IP {requested}: the provided network does not match "
                    "the current range",
                )
            if requested in self.ips:
                raise _field_error(
                    "spec.clusterIPs",
                    [requested],
                    f"failed to allocate IP {requested}: provided IP is already allocated",
                )
            self.ips.add(requested)
            return requested
        size = self.network.num_addresses
        for _ in range(size):
            offset = self._next_ip
            self._next_ip = self._next_ip + 1 if self._next_ip + 1 < size - 1 else 2
            candidate = str(self.network.network_address + offset)
            if candidate not in self.ips:
                self.ips.add(candidate)
                return candidate
        raise _field_error("spec.clusterIPs", [], "range is full")

    def take_port(self, path: str, requested: int | None) -> int:
        if requested:
            if not 30000 <= requested <= 32767:
                raise _field_error(
                    path,
                    requested,
                    "provided port is not in the valid range. The range of valid ports is "
                    "30000-32767",
                )
            if requested in self.ports:
                raise _field_error(path, requested, "provided port is already allocated")
            self.ports.add(requested)
            return requested
        for _ in range(2768):
            candidate = self._next_port
            self._next_port = 30000 if candidate >= 32767 else candidate + 1
            if candidate not in self.ports:
                self.ports.add(candidate)
                return candidate
        raise _field_error(path, 0, "range is full")


class _FieldErrorRaised(Exception):
    def __init__(self, error: FieldError) -> None:
        super().__init__(str(error))
        self.error = error


def _field_error(path: str, value: Any, detail: str) -> _FieldErrorRaised:
    return _FieldErrorRaised(FieldError.invalid(path, value, detail))


def _service_ips(obj: JSON | None) -> set[str]:
    spec = (obj or {}).get("spec") or {}
    return {ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None"}


def _service_ports(obj: JSON | None) -> set[int]:
    spec = (obj or {}).get("spec") or {}
    return {p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")}


class ServiceAllocator:
    """Takes what a Service needs when it is written and frees what it no longer holds."""

    def __init__(self, cidr: str = "10.96.0.0/12") -> None:
        self._pools = _Pools(cidr)

    def allocate(self, obj: JSON, old: JSON | None) -> None:
        """Fill in the cluster IP and node ports ``obj`` needs beyond what ``old`` holds.

        Raises 422 Invalid (as a StatusError) when a requested value is taken or out of range.
        """
        spec = obj["spec"]
        held_ips, held_ports = _service_ips(old), _service_ports(old)
        taken_ips: list[str] = []
        taken_ports: list[int] = []
        try:
            if kinds.needs_cluster_ip(spec):
                if kinds.is_headless(spec):
                    spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
                elif not (spec.get("clusterIP") and spec["clusterIP"] in held_ips):
                    ip = self._pools.take_ip(spec.get("clusterIP") or None)
                    taken_ips.append(ip)
                    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            if kinds.needs_node_ports(spec):
                for i, port in enumerate(spec.get("ports") or []):
                    wanted = port.get("nodePort")
                    if wanted and wanted in held_ports:
                        continue
                    got = self._pools.take_port(f"spec.ports[{i}].nodePort", wanted)
                    taken_ports.append(got)
                    port["nodePort"] = got
        except _FieldErrorRaised as exc:
            self._pools.ips.difference_update(taken_ips)
            self._pools.ports.difference_update(taken_ports)
            name = obj["metadata"].get("name") or ""
            raise invalid("Service", "", name, [exc.error]) from None

    def free(self, holder: JSON | None, keep: JSON | None) -> None:
        """Give back the cluster IPs and node ports ``holder`` has and ``keep`` has not."""
        self._pools.ips.difference_update(_service_ips(holder) - _service_ips(keep))
        self._pools.ports.difference_update(_service_ports(holder) - _service_ports(keep))


def carry_allocations(obj: JSON, old: JSON) -> None:
    """patchAllocatedValues, normalizeClusterIPs and dropTypeDependentFields of the Service REST."""
    spec = obj.setdefault("spec", {})
    old_spec = old.get("spec") or {}
    if kinds.needs_cluster_ip(old_spec) and kinds.needs_cluster_ip(spec):
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP")
        if not spec.get("clusterIPs"):
            spec["clusterIPs"] = (
                [spec["clusterIP"]] if spec.get("clusterIP") else old_spec.get("clusterIPs")
            )
        elif spec.get("clusterIP") != old_spec.get("clusterIP") and spec.get(
            "clusterIPs"
        ) == old_spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
    if kinds.needs_node_ports(old_spec) and kinds.needs_node_ports(spec):
        old_ports = {p.get("name", ""): p.get("nodePort") for p in old_spec.get("ports") or []}
        in_use = {p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                previous = old_ports.get(port.get("name", ""))
                if previous and previous not in in_use:
                    port["nodePort"] = previous
    if kinds.needs_node_ports(old_spec) and not kinds.needs_node_ports(spec):
        for port, old_port in zip(
            spec.get("ports") or [], old_spec.get("ports") or [], strict=False
        ):
            if isinstance(port, dict) and port.get("nodePort") == old_port.get("nodePort"):
                port.pop("nodePort", None)
        if spec.get("type") != "LoadBalancer":
            for key in ("externalTrafficPolicy", "allocateLoadBalancerNodePorts"):
                if spec.get(key) == old_spec.get(key):
                    spec.pop(key, None)
    if not kinds.needs_cluster_ip(spec) and kinds.needs_cluster_ip(old_spec):
        for key in (
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "sessionAffinity",
            "internalTrafficPolicy",
        ):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)


def init_ip_families(obj: JSON, old: JSON | None) -> None:
    """initIPFamilyFields: ``ipFamilyPolicy`` from the request, else the old object's,
    else ``RequireDualStack`` for a headless Service without selector (which may list
    both families even on a single-stack cluster, and then does), else ``SingleStack``."""
    spec = obj.setdefault("spec", {})
    if not kinds.needs_cluster_ip(spec):
        return
    old_policy = ((old or {}).get("spec") or {}).get("ipFamilyPolicy")
    open_ended = kinds.is_headless(spec) and not spec.get("selector")
    if not spec.get("ipFamilyPolicy"):
        spec["ipFamilyPolicy"] = old_policy or ("RequireDualStack" if open_ended else "SingleStack")
    if open_ended:
        families = list(spec.get("ipFamilies") or ["IPv4"])
        if len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        spec["ipFamilies"] = families


def validate_service_update(obj: JSON, old: JSON) -> list[FieldError]:
    spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    if not (kinds.needs_cluster_ip(spec) and kinds.needs_cluster_ip(old_spec)):
        return []
    new_ips = spec.get("clusterIPs") or []
    errors = []
    for i, ip in enumerate(old_spec.get("clusterIPs") or []):
        if i < len(new_ips) and new_ips[i] != ip:
            errors.append(
                FieldError.invalid(f"spec.clusterIPs[{i}]", new_ips, "may not change once set")
            )
    return errors
