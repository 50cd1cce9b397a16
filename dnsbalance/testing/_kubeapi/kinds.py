"""The resources the fake serves: their names, defaulting and validation (their dicts are
built by ``builders``).

Defaulting follows the v1 / discovery.k8s.io/v1 defaulters (Service ``type``,
``sessionAffinity``, ``ports[].protocol`` and ``targetPort``, ``ipFamilies``,
``ipFamilyPolicy``, ``internalTrafficPolicy``, ``externalTrafficPolicy`` for NodePort
and LoadBalancer, ``allocateLoadBalancerNodePorts``; EndpointSlice ``ports[].protocol``
and ``ports[].name``). Validation covers what tools around dnsbalance trip on (names,
types, ports, headless NodePort/LoadBalancer, address types and addresses), with the
field paths and messages of ``pkg/apis/core/validation`` and
``pkg/apis/discovery/validation``; it is not the full validation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .status import FieldError

__all__ = [
    "ENDPOINT_SLICES",
    "NODES",
    "RESOURCES",
    "SERVICES",
    "Resource",
    "default_service",
    "default_slice",
    "resource_for",
    "validate_name",
    "validate_service",
    "validate_slice",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    resource: str  # plural, as in URLs and RBAC
    kind: str
    group: str
    version: str
    return_deleted_object: bool  # DELETE answers the object (else a Status Success)
    name_rule: str  # "dns1035" or "subdomain"
    namespaced: bool = True  # False: cluster-scoped (Nodes), stored under namespace ""
    generation: bool = False  # metadata.generation kept (its strategy sets one)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


SERVICES = Resource("services", "Service", "", "v1", True, "dns1035")
# Services and Nodes have no metadata.generation: their strategies never set one.
ENDPOINT_SLICES = Resource(
    "endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", False, "subdomain", generation=True
)
# Node: no ReturnDeletedObject in pkg/registry/core/node/storage (DELETE answers a Status)
NODES = Resource("nodes", "Node", "", "v1", False, "subdomain", namespaced=False)
RESOURCES: dict[str, Resource] = {r.resource: r for r in (SERVICES, ENDPOINT_SLICES, NODES)}


def resource_for(name: str) -> Resource:
    """``"Service"``, ``"services"``, ``"EndpointSlice"``, ``"endpointslices"``, ..."""
    key = name.lower()
    for res in RESOURCES.values():
        if key in (res.resource, res.kind.lower(), res.qualified):
            return res
    raise ValueError(f"unknown kind or resource {name!r}: use Service, EndpointSlice or Node")


# -- names ----------------------------------------------------------------------------

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
    "[a-z0-9])?)*')"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _dns1123_label_errors(value: str) -> list[str]:
    """apimachinery's IsDNS1123Label: what ``ValidateDNS1123Label`` reports."""
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        errors.append(_DNS1123_LABEL_MSG)
    return errors


def _port_name_errors(value: str) -> list[str]:
    """apimachinery's IsValidPortName (IANA_SVC_NAME), in its order."""
    errors = []
    if len(value) > 15:
        errors.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", value):
        errors.append("must contain at least one letter (a-z)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def validate_name(res: Resource, metadata: Mapping[str, Any]) -> list[FieldError]:
    name = metadata.get("name") or ""
    if not name:
        return [FieldError.required("metadata.name", "name or generateName is required")]
    if res.name_rule == "dns1035":
        if len(name) > 63:
            return [FieldError.invalid("metadata.name", name, "must be no more than 63 characters")]
        if not _DNS1035.match(name):
            return [FieldError.invalid("metadata.name", name, _DNS1035_MSG)]
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        return [FieldError.invalid("metadata.name", name, _SUBDOMAIN_MSG)]
    return []


# -- Services -------------------------------------------------------------------------

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]


def needs_cluster_ip(spec: Mapping[str, Any]) -> bool:
    return bool(spec.get("type", "ClusterIP") != "ExternalName")


def needs_node_ports(spec: Mapping[str, Any]) -> bool:
    kind = spec.get("type", "ClusterIP")
    if kind == "NodePort":
        return True
    return bool(
        kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False
    )


def is_headless(spec: Mapping[str, Any]) -> bool:
    ips = spec.get("clusterIPs") or []
    return spec.get("clusterIP") == "None" or (len(ips) > 0 and ips[0] == "None")


def default_service(obj: JSON) -> None:
    """The v1 defaulters for a Service (in place); clusterIP/nodePorts are allocated later."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    kind = spec["type"]
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        if client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            # SetDefaults_Service: a missing, 0 or "" targetPort is the port
            if port.get("targetPort") in (None, 0, "") and isinstance(port.get("port"), int):
                port["targetPort"] = port["port"]
    if spec.get("clusterIP") and not spec.get("clusterIPs") and needs_cluster_ip(spec):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("clusterIPs") and not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0]
    obj["status"] = {"loadBalancer": {}}


def validate_service(obj: Mapping[str, Any]) -> list[FieldError]:
    """Type rules, ports and clusterIP shape (allocation checks happen in the store)."""
    errors = validate_name(SERVICES, obj.get("metadata") or {})
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        errors.append(FieldError.not_supported("spec.type", kind, SERVICE_TYPES))
        return errors
    ports = spec.get("ports") or []
    headless = is_headless(spec)
    if not ports and kind != "ExternalName" and not headless:
        errors.append(FieldError.required("spec.ports", ""))
    if headless and kind in ("NodePort", "LoadBalancer"):
        errors.append(
            FieldError.invalid(
                "spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services"
            )
        )
    if kind == "ExternalName":
        if spec.get("clusterIP") or spec.get("clusterIPs"):
            errors.append(
                FieldError.forbidden("spec.clusterIP", "must be empty for ExternalName services")
            )
        if not spec.get("externalName"):
            errors.append(FieldError.required("spec.externalName", ""))
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errors.append(
                FieldError.invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            )
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            errors.append(FieldError.invalid(path, port, "must be an object"))
            continue
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errors.append(FieldError.required(f"{path}.name", ""))
        elif name:  # validateServicePort: a DNS-1123 label (not IANA_SVC_NAME)
            errors.extend(
                FieldError.invalid(f"{path}.name", name, m) for m in _dns1123_label_errors(name)
            )
        if name and name in names:
            errors.append(FieldError.duplicate(f"{path}.name", name))
        names.add(name)
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            errors.append(
                FieldError.invalid(f"{path}.port", number, "must be between 1 and 65535, inclusive")
            )
        protocol = port.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            errors.append(FieldError.not_supported(f"{path}.protocol", protocol, PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, str):  # ValidatePortNumOrName: a container port's name
            errors.extend(
                FieldError.invalid(f"{path}.targetPort", target, m)
                for m in _port_name_errors(target)
            )
        elif isinstance(target, int) and not 1 <= target <= 65535:
            errors.append(
                FieldError.invalid(
                    f"{path}.targetPort", target, "must be between 1 and 65535, inclusive"
                )
            )
        node_port = port.get("nodePort")
        if node_port and kind == "ClusterIP":
            errors.append(
                FieldError.forbidden(
                    f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'"
                )
            )
    return errors


# -- EndpointSlices -------------------------------------------------------------------

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"


def is_mirrored_slice_of(obj: Mapping[str, Any], namespace: str, service: str) -> bool:
    """A slice the EndpointSlice mirroring controller made from ``Endpoints/<service>``."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (
        meta.get("namespace") == namespace
        and labels.get("kubernetes.io/service-name") == service
        and labels.get(MANAGED_BY) == MIRRORING_CONTROLLER
    )


ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


def default_slice(obj: JSON) -> None:
    for port in obj.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("name", "")
            port.setdefault("protocol", "TCP")
    for endpoint in obj.get("endpoints") or []:
        if isinstance(endpoint, dict):  # a struct, never omitted: {} when unset
            endpoint.setdefault("conditions", {})


_IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RFC1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _rfc1123_label_errors(path: str, value: str) -> list[FieldError]:
    """ValidateDNS1123Label."""
    found = []
    if len(value) > 63:
        found.append(FieldError.invalid(path, value, "must be no more than 63 characters"))
    if not _RFC1123_LABEL.match(value):
        found.append(FieldError.invalid(path, value, _RFC1123_LABEL_MSG))
    return found


def _address_errors(path: str, j: int, address_type: str, address: Any) -> list[FieldError]:
    """One IP address of an IPv4/IPv6 slice, as validateEndpoints: unparsable at
    ``addresses[j]``, the other family at ``addresses``. Loopback and link-local
    addresses are NOT refused here (the real server does): tests run backends on
    127.0.0.0/8."""
    try:
        parsed = ipaddress.ip_address(address) if isinstance(address, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        return [FieldError.invalid(f"{path}[{j}]", address, _IP_MSG)]
    if parsed.version != (4 if address_type == "IPv4" else 6):
        return [FieldError.invalid(path, address, f"must be an {address_type} address")]
    return []


def validate_slice(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """ValidateEndpointSlice(Update): endpoint errors are ignored on an update that leaves
    ``endpoints`` as they were."""
    errors = validate_name(ENDPOINT_SLICES, obj.get("metadata") or {})
    address_type = obj.get("addressType")
    if not address_type:
        errors.append(FieldError.required("addressType", ""))
    elif address_type not in ADDRESS_TYPES:
        errors.append(FieldError.not_supported("addressType", address_type, ADDRESS_TYPES))
    errors += _ports_errors(obj.get("ports") or [])
    endpoint_errors = _endpoints_errors(obj.get("endpoints"), address_type)
    if old is None or obj.get("endpoints") != old.get("endpoints"):
        errors += endpoint_errors
    if old is not None and address_type != old.get("addressType"):
        # the declarative validation of 1.37 renders no value here
        errors.append(FieldError.invalid("addressType", None, "field is immutable"))
    return errors


def _endpoints_errors(endpoints: Any, address_type: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    if endpoints is None:
        endpoints = []
    if not isinstance(endpoints, list):
        return [FieldError.invalid("endpoints", endpoints, "must be a list")]
    if len(endpoints) > 1000:
        return [
            FieldError(
                "endpoints", "FieldValueTooMany", "must have at most 1000 items", len(endpoints)
            )
        ]
    for i, endpoint in enumerate(endpoints):
        path = f"endpoints[{i}].addresses"
        addresses = endpoint.get("addresses") if isinstance(endpoint, dict) else None
        if not addresses:
            errors.append(FieldError.required(path))
            continue
        if len(addresses) > 100:
            errors.append(
                FieldError(path, "FieldValueTooMany", "must have at most 100 items", len(addresses))
            )
        if address_type in ("IPv4", "IPv6"):
            for j, address in enumerate(addresses):
                errors += _address_errors(path, j, address_type, address)
    return errors


def _ports_errors(ports: list[Any]) -> list[FieldError]:
    """validatePorts: names (RFC 1123 labels, unique) and protocols; port numbers are not
    range-checked by the real server either."""
    errors: list[FieldError] = []
    seen: list[Any] = []
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            errors.append(FieldError.invalid(f"ports[{i}]", port, "must be an object"))
            continue
        name = port.get("name") or ""
        if name:
            errors += _rfc1123_label_errors(f"ports[{i}].name", str(name))
        if name in seen:
            errors.append(FieldError.duplicate(f"ports[{i}].name", name))
        seen.append(name)
        protocol = port.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            errors.append(FieldError.not_supported(f"ports[{i}].protocol", protocol, PROTOCOLS))
    return errors
