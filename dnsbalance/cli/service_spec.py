"""core/v1 Services as data.

:func:`check_service` tells a well-formed core/v1 Service from anything else, field by
field, so that what is built from it is valid (kubernetes-validate, strict) and
malformed input fails with a :class:`~dnsbalance.ConversionError` naming the field,
never with a ``KeyError``; the accessors (:func:`spec_of`, :func:`ports_of`, ...) read
a Service without trusting its shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from dnsbalance._exceptions import ConversionError

__all__ = [
    "EXPOSED_TYPES",
    "EXTERNAL_SPEC_FIELDS",
    "SERVER_METADATA",
    "check_service",
    "describe",
    "is_core_service",
    "is_headless",
    "is_int",
    "is_service_name",
    "metadata_of",
    "ports_of",
    "selector_of",
    "service_type",
    "spec_of",
]


# Set by the API server; never sent back on create.
SERVER_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
# Only meaningful with node ports or a load balancer (dropped from NodePort/LoadBalancer).
EXTERNAL_SPEC_FIELDS = (
    "healthCheckNodePort",
    "externalTrafficPolicy",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "loadBalancerClass",
    "allocateLoadBalancerNodePorts",
)
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
EXPOSED_TYPES = ("NodePort", "LoadBalancer")  # reachable from outside the cluster
PROTOCOLS = ("TCP", "UDP", "SCTP")
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")

_TOP_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}
_METADATA_FIELDS = {
    "name",
    "namespace",
    "generateName",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    *SERVER_METADATA,
}
_SPEC_FIELDS = {
    "type",
    "selector",
    "ports",
    "clusterIP",
    "clusterIPs",
    "publishNotReadyAddresses",
    "ipFamilies",
    "ipFamilyPolicy",
    "sessionAffinity",
    "sessionAffinityConfig",
    "internalTrafficPolicy",
    "externalIPs",
    "externalName",
    "trafficDistribution",
    *EXTERNAL_SPEC_FIELDS,
}
_PORT_FIELDS = ("name", "protocol", "port", "targetPort", "appProtocol", "nodePort")


# -- checking a Service ----------------------------------------------------------------


def describe(service: Mapping[str, Any]) -> str:
    """``service/web`` or ``service/web (namespace app)`` for messages."""
    metadata = service.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = metadata.get("name")
    text = f"service/{name if isinstance(name, str) and name else '?'}"
    namespace = metadata.get("namespace")
    return f"{text} (namespace {namespace})" if isinstance(namespace, str) and namespace else text


def is_core_service(obj: Any) -> bool:
    """A ``v1`` ``Service`` (not, say, a Knative ``serving.knative.dev/v1`` Service). One
    with no or a non-string apiVersion counts too, so that it is refused, not passed on."""
    if not isinstance(obj, Mapping) or obj.get("kind") != "Service":
        return False
    api_version = obj.get("apiVersion")
    return api_version == "v1" or not isinstance(api_version, str)


def spec_of(service: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = service.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def metadata_of(service: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = service.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def service_type(service: Mapping[str, Any]) -> str:
    kind = spec_of(service).get("type")
    return kind if isinstance(kind, str) and kind else "ClusterIP"


def is_headless(service: Mapping[str, Any]) -> bool:
    """``clusterIP: None`` (or ``clusterIPs: [None, ...]``)."""
    spec = spec_of(service)
    ips = spec.get("clusterIPs")
    first = ips[0] if isinstance(ips, list) and ips else None
    return spec.get("clusterIP") == "None" or first == "None"


def ports_of(service: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    ports = spec_of(service).get("ports")
    return [p for p in ports if isinstance(p, Mapping)] if isinstance(ports, list) else []


def selector_of(service: Mapping[str, Any]) -> dict[str, str]:
    selector = spec_of(service).get("selector")
    return dict(selector) if isinstance(selector, Mapping) else {}


def check_service(service: Any, *, strict: bool = False) -> list[str]:
    """Raise ConversionError unless ``service`` is a well-formed core/v1 Service.

    Fields this module does not know: ``strict`` (manifests, where they are most likely
    typos) refuses them; otherwise (an object read from a possibly newer API server)
    they are returned as warnings and kept by ``replace``.
    """
    if not isinstance(service, Mapping):
        raise ConversionError(f"expected a Service object, got {type(service).__name__}")
    if service.get("kind") != "Service":
        raise ConversionError(f"expected kind Service, got {service.get('kind')!r}")
    if service.get("apiVersion") != "v1":
        raise ConversionError(
            f"{describe(service)}: apiVersion must be v1, got {service.get('apiVersion')!r}"
        )
    what = describe(service)
    problems: list[str] = []
    unknown: list[str] = [str(key) for key in service if key not in _TOP_FIELDS]
    metadata = service.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ConversionError(f"{what}: metadata must be an object")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ConversionError(f"{what}: metadata.name is required (generateName is not enough)")
    if len(name) > 63 or not _DNS1035.fullmatch(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1035 label")
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str)
        or (namespace and (len(namespace) > 63 or not _DNS1123.fullmatch(namespace)))
    ):
        problems.append(f"metadata.namespace {namespace!r} is not a DNS-1123 label")
    for key in ("labels", "annotations"):
        if not _is_str_map(metadata.get(key)):
            problems.append(f"metadata.{key} must map strings to strings")
    if not _is_str_list(metadata.get("finalizers")):
        problems.append("metadata.finalizers must be a list of strings")
    if metadata.get("generateName") is not None and not isinstance(
        metadata.get("generateName"), str
    ):
        problems.append("metadata.generateName must be a string")
    problems.extend(_owner_problems(metadata.get("ownerReferences")))
    unknown.extend(f"metadata.{key}" for key in metadata if key not in _METADATA_FIELDS)
    problems.extend(_status_problems(service.get("status")))
    spec = service.get("spec")
    if not isinstance(spec, Mapping):
        raise ConversionError(f"{what}: spec must be an object")
    problems.extend(_spec_problems(spec))
    unknown.extend(f"spec.{key}" for key in spec if key not in _SPEC_FIELDS)
    ports = spec.get("ports")
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        if isinstance(port, Mapping):
            unknown.extend(f"spec.ports[{i}].{key}" for key in port if key not in _PORT_FIELDS)
    if strict and unknown:
        problems.append(f"unknown field {', '.join(unknown)}")
    if problems:
        raise ConversionError(f"{what}: {'; '.join(problems)}")
    return [f"{what}: unknown field {field} (kept as is)" for field in unknown]


def _fields_ok(value: Any, fields: Mapping[str, Any], required: tuple[str, ...] = ()) -> bool:
    """``value`` is a mapping with only ``fields``, each null or passing its check."""
    return (
        isinstance(value, Mapping)
        and all(key in fields and (v is None or fields[key](v)) for key, v in value.items())
        and all(value.get(key) is not None for key in required)
    )


def _list_of(check: Any) -> Any:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_PORT_STATUS = {"port": lambda v: is_int(v), "protocol": _is_str, "error": _is_str}
_INGRESS = {
    "ip": _is_str,
    "hostname": _is_str,
    "ipMode": _is_str,
    "ports": _list_of(lambda v: _fields_ok(v, _PORT_STATUS, ("port", "protocol"))),
}
_CONDITION = {
    "type": _is_str,
    "status": _is_str,
    "lastTransitionTime": _is_str,
    "reason": _is_str,
    "message": _is_str,
    "observedGeneration": lambda v: is_int(v),
}
_CONDITION_REQUIRED = ("type", "status", "lastTransitionTime", "reason", "message")
_STATUS = {
    "loadBalancer": lambda v: _fields_ok(
        v, {"ingress": _list_of(lambda i: _fields_ok(i, _INGRESS))}
    ),
    "conditions": _list_of(lambda v: _fields_ok(v, _CONDITION, _CONDITION_REQUIRED)),
}


def _status_problems(status: Any) -> list[str]:
    """The server writes status; a manifest's must still have its shape (it is copied)."""
    if status is None or _fields_ok(status, _STATUS):
        return []
    return ["status must be {loadBalancer: {ingress: [...]}, conditions: [...]}"]


def _is_str_map(value: Any) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )


def _is_str_list(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _owner_problems(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(ref, Mapping)
        and all(isinstance(ref.get(key), str) for key in ("apiVersion", "kind", "name", "uid"))
        for ref in value
    ):
        return ["metadata.ownerReferences must be a list of {apiVersion, kind, name, uid}"]
    return []


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _spec_problems(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    kind = spec.get("type", "ClusterIP")
    if kind is not None and kind not in SERVICE_TYPES:
        problems.append(f"spec.type {kind!r} is not one of {', '.join(SERVICE_TYPES)}")
    if not _is_str_map(spec.get("selector")):
        problems.append("spec.selector must map strings to strings")
    for key in ("clusterIP", "externalName", "loadBalancerIP", "loadBalancerClass"):
        if spec.get(key) is not None and not isinstance(spec.get(key), str):
            problems.append(f"spec.{key} must be a string")
    for key in ("clusterIPs", "externalIPs", "loadBalancerSourceRanges"):
        if not _is_str_list(spec.get(key)):
            problems.append(f"spec.{key} must be a list of strings")
    families = spec.get("ipFamilies")
    if families is not None and (
        not isinstance(families, list) or any(f not in ("IPv4", "IPv6") for f in families)
    ):
        problems.append("spec.ipFamilies must be a list of IPv4/IPv6")
    choices = {
        "ipFamilyPolicy": ("SingleStack", "PreferDualStack", "RequireDualStack"),
        "sessionAffinity": ("None", "ClientIP"),
        "internalTrafficPolicy": ("Cluster", "Local"),
        "externalTrafficPolicy": ("Cluster", "Local"),
    }
    for key, allowed in choices.items():
        if spec.get(key) is not None and spec.get(key) not in allowed:
            problems.append(f"spec.{key} must be one of {', '.join(allowed)}")
    for key in ("publishNotReadyAddresses", "allocateLoadBalancerNodePorts"):
        if spec.get(key) is not None and not isinstance(spec.get(key), bool):
            problems.append(f"spec.{key} must be true or false")
    if spec.get("healthCheckNodePort") is not None and not is_int(spec.get("healthCheckNodePort")):
        problems.append("spec.healthCheckNodePort must be an integer")
    if spec.get("trafficDistribution") is not None and not isinstance(
        spec.get("trafficDistribution"), str
    ):
        problems.append("spec.trafficDistribution must be a string")
    affinity = spec.get("sessionAffinityConfig")
    if affinity is not None and not _affinity_ok(affinity):
        problems.append("spec.sessionAffinityConfig must be {clientIP: {timeoutSeconds: N}}")
    problems.extend(_ports_problems(spec.get("ports")))
    return problems


def _affinity_ok(value: Any) -> bool:
    if not isinstance(value, Mapping) or set(value) - {"clientIP"}:
        return False
    client = value.get("clientIP")
    if client is None:
        return True
    if not isinstance(client, Mapping) or set(client) - {"timeoutSeconds"}:
        return False
    timeout = client.get("timeoutSeconds")
    return timeout is None or is_int(timeout)


# Which rule the API applies to which port field (pkg/apis/core/validation,
# validateServicePort): ports[].name is ValidateDNS1123Label; a string targetPort is
# IsValidPortName, IANA_SVC_NAME (a container port's name).
SERVICE_PORT_NAME_RULE = (
    "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending "
    "with a letter or digit"
)
CONTAINER_PORT_NAME_RULE = (
    "IANA_SVC_NAME: at most 15 lowercase letters, digits and '-', at least one letter, "
    "no '--', not starting or ending with '-'"
)


def service_port_name_ok(name: str) -> bool:
    """A valid ``spec.ports[].name`` (DNS-1123 label)."""
    return len(name) <= 63 and bool(_DNS1123.fullmatch(name))


def container_port_name_ok(name: str) -> bool:
    """A valid string ``targetPort`` (IANA_SVC_NAME, as a container port's name)."""
    return (
        len(name) <= 15
        and bool(_IANA_SVC_NAME.fullmatch(name))
        and "--" not in name
        and any(c.isalpha() for c in name)
    )


def _ports_problems(ports: Any) -> list[str]:
    if ports is None:
        return []
    if not isinstance(ports, list):
        return ["spec.ports must be a list"]
    problems: list[str] = []
    names: set[str] = set()
    numbers: set[tuple[int, str]] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, Mapping):
            problems.append(f"{path} must be an object")
            continue
        number = port.get("port")
        if not is_int(number) or not 1 <= number <= 65535:
            problems.append(f"{path}.port must be an integer from 1 to 65535, got {number!r}")
            continue
        protocol = port.get("protocol", "TCP")
        if protocol is None:
            protocol = "TCP"
        if protocol not in PROTOCOLS:
            problems.append(f"{path}.protocol must be one of {', '.join(PROTOCOLS)}")
            continue
        name = port.get("name")
        if name is not None and not isinstance(name, str):
            problems.append(f"{path}.name must be a string")
        elif name:
            if not service_port_name_ok(name):
                problems.append(
                    f"{path}.name {name!r} is not a valid Service port name "
                    f"({SERVICE_PORT_NAME_RULE})"
                )
            if name in names:
                problems.append(f"{path}.name {name!r} is used twice")
            names.add(name)
        elif len(ports) > 1:
            problems.append(f"{path}.name is required when a Service has more than one port")
        if (number, protocol) in numbers:
            problems.append(f"{path}: port {number}/{protocol} is used twice")
        numbers.add((number, protocol))
        target = port.get("targetPort")
        if isinstance(target, str):
            if not container_port_name_ok(target):
                problems.append(
                    f"{path}.targetPort {target!r} is not a valid container port name "
                    f"({CONTAINER_PORT_NAME_RULE})"
                )
        elif target is not None and not (is_int(target) and 1 <= target <= 65535):
            problems.append(f"{path}.targetPort must be a port number 1-65535 or a port name")
        node_port = port.get("nodePort")
        if node_port is not None and (not is_int(node_port) or not 0 <= node_port <= 65535):
            problems.append(f"{path}.nodePort must be an integer from 0 to 65535")
        if port.get("appProtocol") is not None and not isinstance(port.get("appProtocol"), str):
            problems.append(f"{path}.appProtocol must be a string")
    return problems


def is_service_name(name: str) -> bool:
    """A DNS-1035 label of at most 63 characters."""
    return len(name) <= 63 and bool(_DNS1035.fullmatch(name))
