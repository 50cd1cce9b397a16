"""Turning a Service into a headless one: the decisions, free of I/O.

clusterIP is immutable, so there are two ways (see the ``kubernetes-facts`` notes):

- **twin** (default): a second Service ``<name>-headless`` with the same selector, ports
  (names, protocols, target ports), labels and the fields that shape its endpoints
  (``publishNotReadyAddresses``, IP families, ``trafficDistribution``,
  ``internalTrafficPolicy``, the topology-mode annotations: see
  :data:`.service_edits.TWIN_SPEC_FIELDS`), ``clusterIP: None``, and the annotation
  ``dnsbalance.io/mirrors: <name>``. The original
  is untouched, so nothing ever stops resolving. :func:`plan_twin`.
- **replace**: the Service itself, deleted and created again headless.
  :func:`plan_replace` builds the new object from
  :func:`.service_edits.clean_for_recreate`; NodePort
  and LoadBalancer Services lose their external exposure and are refused unless forced.

:func:`convert_documents` applies either to every core/v1 Service of a manifest (the
``-f`` mode of the CLI) and passes every other document through unchanged.

Every input is checked first (:func:`.service_spec.check_service`), so malformed input raises
:class:`~dnsbalance.ConversionError` with the field at fault, never a ``KeyError`` or
``TypeError``. Fields this module does not know (from a newer Kubernetes) are carried
by **replace** with a warning, never by **twin**, which copies only what it names; in
manifests (``strict``) they are refused, as most likely typos.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dnsbalance._exceptions import ConversionError

from .manifests import Document
from .service_edits import (
    MIRRORS_ANNOTATION,
    TWIN_SPEC_FIELDS,
    check_twin_owner,
    clean_for_recreate,
    twin_annotations,
)
from .service_spec import (
    EXPOSED_TYPES,
    EXTERNAL_SPEC_FIELDS,
    check_service,
    describe,
    is_core_service,
    is_headless,
    is_int,
    is_service_name,
    metadata_of,
    ports_of,
    selector_of,
    service_type,
    spec_of,
)

__all__ = [
    "ManifestResult",
    "Plan",
    "Strategy",
    "convert_documents",
    "plan_replace",
    "plan_twin",
    "twin_name_for",
]

JSON = dict[str, Any]
Strategy = Literal["twin", "replace"]


TWIN_SUFFIX = "-headless"


# What a twin copies (see TWIN_SPEC_FIELDS in service_edits); the rest (node ports, load
# balancer, session affinity: kube-proxy features a headless Service does not use) stays
# with the original.
_TWIN_PORT_FIELDS = ("name", "protocol", "port", "targetPort", "appProtocol")


# -- plans ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What converting one Service means.

    ``result`` is the twin (strategy twin) or the replacement (strategy replace), or
    ``None`` when the Service is already headless and there is nothing to do
    (``message`` says so). ``lost`` names the external exposure a forced replacement
    loses; ``warnings`` are one line each.
    """

    strategy: Strategy
    original: JSON
    result: JSON | None
    warnings: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    message: str = ""

    @property
    def name(self) -> str:
        return str(self.original["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self.original["metadata"].get("namespace")
        return namespace if isinstance(namespace, str) and namespace else None


def twin_name_for(name: str) -> str:
    """``<name>-headless``; ConversionError when that is longer than a Service name may be."""
    twin = name + TWIN_SUFFIX
    if len(twin) > 63:
        raise ConversionError(
            f"the twin name {twin!r} is longer than 63 characters: pass --twin-name"
        )
    return twin


def _common_checks(service: Any, strict: bool) -> tuple[JSON, list[str]]:
    unknown = check_service(service, strict=strict)
    original = copy.deepcopy(dict(service))
    if service_type(original) == "ExternalName":
        raise ConversionError(
            f"{describe(original)} is an ExternalName Service (a DNS alias, CNAME to "
            f"{spec_of(original).get('externalName')!r}): it has no endpoints to balance over"
        )
    if not is_headless(original) and not ports_of(original):
        raise ConversionError(f"{describe(original)}: spec.ports is required")
    return original, unknown


def _usage_warnings(service: Mapping[str, Any], result_name: str) -> list[str]:
    what = describe(service)
    warnings: list[str] = []
    if not selector_of(service):
        warnings.append(
            f"{what} has no selector: its endpoints must be managed by hand (the EndpointSlice "
            f"controller makes none); the headless Service publishes only EndpointSlices "
            f"labelled kubernetes.io/service-name={result_name}"
        )
    for port in ports_of(service):
        if not port.get("name"):
            warnings.append(
                f"{what}: port {port.get('port')} has no name: named ports are needed for "
                "`svc.ns:portname` targets and SRV records"
            )
    return warnings


def _already(original: JSON, strategy: Strategy) -> Plan:
    return Plan(
        strategy=strategy,
        original=original,
        result=None,
        message=f"{describe(original)} is already headless (clusterIP: None); nothing to do",
    )


def plan_twin(service: Any, *, twin_name: str | None = None, strict: bool = False) -> Plan:
    """The headless twin of ``service`` (see the module docstring); raises ConversionError.
    ``strict``: refuse unknown fields (see :func:`check_service`)."""
    original, _ = _common_checks(service, strict)  # unknown fields stay on the original
    if is_headless(original):
        return _already(original, "twin")
    name = str(original["metadata"]["name"])
    twin = twin_name or twin_name_for(name)
    if not is_service_name(twin):
        raise ConversionError(f"twin name {twin!r} is not a valid Service name (DNS-1035 label)")
    if twin == name:
        raise ConversionError("the twin name must differ from the Service's own name")
    metadata: JSON = {"name": twin}
    namespace = metadata_of(original).get("namespace")
    if namespace:
        metadata["namespace"] = namespace
    labels = metadata_of(original).get("labels")
    if labels:
        metadata["labels"] = dict(labels)
    metadata["annotations"] = {MIRRORS_ANNOTATION: name, **twin_annotations(original)}
    spec: JSON = {"type": "ClusterIP", "clusterIP": "None"}
    for key, value in spec_of(original).items():  # in the original's order
        if key == "selector" and value:
            spec[key] = dict(value)
        elif key == "ports" and value:
            spec[key] = [_twin_port(p) for p in ports_of(original)]
        elif key in TWIN_SPEC_FIELDS and value is not None:
            spec[key] = copy.deepcopy(value)
    result = {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
    warnings = _usage_warnings(original, twin)
    return Plan(strategy="twin", original=original, result=result, warnings=tuple(warnings))


def _twin_port(port: Mapping[str, Any]) -> JSON:
    return {
        key: copy.deepcopy(value)
        for key, value in port.items()
        if key in _TWIN_PORT_FIELDS and value not in (None, "")
    }


def plan_replace(
    service: Any, *, force: bool = False, strict: bool = False, preview: bool = False
) -> Plan:
    """The headless replacement of ``service``; raises ConversionError for ExternalName, and
    for NodePort/LoadBalancer (or externalIPs) unless ``force`` or ``preview`` (a preview
    shows what a forced run would do, with a warning). ``strict``: refuse unknown fields
    (see :func:`check_service`)."""
    original, unknown = _common_checks(service, strict)
    if is_headless(original):
        return _already(original, "replace")
    lost = _exposure(original)
    kind = service_type(original)
    if lost and not force and not preview:
        what = (
            f"{describe(original)} is a {kind} Service"
            if kind in EXPOSED_TYPES
            else (f"{describe(original)} has external IPs")
        )
        raise ConversionError(
            f"{what}: a headless Service cannot keep it, so replacing it loses "
            f"{'; '.join(lost)}. Pass --force to accept, or use --strategy twin (keeps the "
            "original as it is)"
        )
    result = clean_for_recreate(original)
    spec_in: JSON = result["spec"]
    spec: JSON = {"type": "ClusterIP", "clusterIP": "None"}
    for key, value in spec_in.items():
        if key in ("type", "clusterIP", "clusterIPs", "externalIPs", *EXTERNAL_SPEC_FIELDS):
            continue
        if key == "ports" and isinstance(value, list):
            value = [{k: v for k, v in p.items() if k != "nodePort"} for p in value]
        spec[key] = value
    result["spec"] = spec
    warnings = _usage_warnings(original, str(original["metadata"]["name"]))
    finalizers = metadata_of(original).get("finalizers") or []
    if finalizers:
        warnings.append(
            f"{describe(original)}: finalizers not carried to the headless Service: "
            f"{', '.join(map(str, finalizers))} (whoever set them adds them again if still "
            "needed)"
        )
    warnings.extend(unknown)
    if lost and force:
        warnings.append(f"{describe(original)}: --force: the replacement loses {'; '.join(lost)}")
    elif lost:
        warnings.append(
            f"{describe(original)}: the replacement would lose {'; '.join(lost)}; the real "
            "run refuses this without --force"
        )
    return Plan(
        strategy="replace",
        original=original,
        result=result,
        warnings=tuple(warnings),
        lost=tuple(lost),
    )


def _exposure(service: Mapping[str, Any]) -> list[str]:
    """The external exposure a headless replacement of ``service`` would lose."""
    kind = service_type(service)
    spec = spec_of(service)
    lost: list[str] = []
    if kind == "LoadBalancer":
        addresses: list[str] = []
        status = service.get("status")
        balancer = status.get("loadBalancer") if isinstance(status, Mapping) else None
        ingress = balancer.get("ingress") if isinstance(balancer, Mapping) else None
        for entry in ingress if isinstance(ingress, list) else []:
            if isinstance(entry, Mapping):
                addresses.extend(
                    str(entry[k]) for k in ("ip", "hostname") if isinstance(entry.get(k), str)
                )
        if isinstance(spec.get("loadBalancerIP"), str) and spec["loadBalancerIP"]:
            addresses.append(spec["loadBalancerIP"])
        where = ", ".join(dict.fromkeys(addresses)) or "(no address assigned yet)"
        lost.append(f"load balancer {where}")
    if kind in EXPOSED_TYPES:
        ports = [
            f"{p['nodePort']}" + (f" ({p['name']})" if p.get("name") else "")
            for p in ports_of(service)
            if is_int(p.get("nodePort")) and p["nodePort"]
        ]
        lost.append(f"node ports {', '.join(ports)}" if ports else "node ports (not allocated)")
    external = spec.get("externalIPs")
    if isinstance(external, list) and external:
        lost.append(f"external IPs {', '.join(str(ip) for ip in external)}")
    return lost


# -- manifests --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestResult:
    """The documents to write, in order (a ``kind: List`` stays a List), and warnings."""

    documents: list[Any]
    warnings: list[str]
    converted: int


@dataclass
class _Slot:
    where: str
    obj: Any


def convert_documents(
    documents: Sequence[Document],
    *,
    strategy: Strategy,
    force: bool = False,
    preview: bool = False,
) -> ManifestResult:
    """Convert every core/v1 Service of a manifest, pass everything else through.

    twin: each Service is followed by its twin; a twin already in the manifest (one whose
    ``dnsbalance.io/mirrors`` names a Service of the manifest) is brought up to date in
    place, so converting the output again changes nothing. replace: each Service becomes its
    replacement. Already headless Services and ExternalName Services pass through (the
    latter with a warning: an alias is no target, and refusing it would make ``-f``
    unusable on a whole chart). Anything else that cannot be converted raises
    ConversionError naming the document and its line.
    """
    slots: list[tuple[_Slot, list[_Slot] | None]] = []  # document, its List items
    for index, document in enumerate(documents, 1):
        where = f"document {index} (line {document.line})"
        value = document.value
        if not isinstance(value, Mapping):
            raise ConversionError(f"{where}: expected a Kubernetes object, got {_kind_of(value)}")
        if value.get("kind") == "List":
            items = value.get("items")
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ConversionError(f"{where}: a List's items must be a list")
            item_slots = []
            for i, item in enumerate(items):
                if not isinstance(item, Mapping):
                    raise ConversionError(
                        f"{where}, item {i}: expected a Kubernetes object, got {_kind_of(item)}"
                    )
                item_slots.append(_Slot(f"{where}, item {i}", item))
            slots.append((_Slot(where, value), item_slots))
        else:
            slots.append((_Slot(where, value), None))
    flat = [s for doc, items in slots for s in (items if items is not None else [doc])]
    services: dict[tuple[str, str], _Slot] = {}
    for slot in flat:
        if is_core_service(slot.obj):
            meta = metadata_of(slot.obj)
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if key in services and key[1]:
                raise ConversionError(f"{slot.where}: {describe(slot.obj)} appears twice")
            services[key] = slot
    plans, warnings, converted = _plans(
        flat, services, strategy=strategy, force=force, preview=preview
    )
    output: list[Any] = []
    for doc, items in slots:
        if items is None:
            output.extend(_emit(doc, plans))
        else:
            converted_items = [obj for item in items for obj in _emit(item, plans)]
            output.append({**doc.obj, "items": converted_items})
    return ManifestResult(documents=output, warnings=warnings, converted=converted)


def _kind_of(value: Any) -> str:
    return "a list" if isinstance(value, list) else type(value).__name__


def _plans(
    flat: list[_Slot],
    services: Mapping[tuple[str, str], _Slot],
    *,
    strategy: Strategy,
    force: bool,
    preview: bool,
) -> tuple[dict[int, list[Any]], list[str], int]:
    """For each slot (by id) the objects to emit instead of it; warnings; how many
    Services were converted."""
    emitted: dict[int, list[Any]] = {}
    warnings: list[str] = []
    converted = 0
    twins_in_place: dict[int, JSON] = {}
    for slot in flat:
        if not is_core_service(slot.obj):
            continue
        try:
            check_service(slot.obj, strict=True)
            if service_type(slot.obj) == "ExternalName":
                warnings.append(
                    f"{describe(slot.obj)} is an ExternalName Service: passed through unchanged "
                    "(it has no endpoints to balance over)"
                )
                continue
            if strategy == "replace":
                plan = plan_replace(slot.obj, force=force, strict=True, preview=preview)
            else:
                plan = plan_twin(slot.obj, strict=True)
        except ConversionError as exc:
            raise ConversionError(f"{slot.where}: {exc}") from None
        warnings.extend(plan.warnings)
        if plan.result is None:
            continue
        converted += 1
        if strategy == "replace":
            emitted[id(slot)] = [plan.result]
            continue
        twin_key = (plan.namespace or "", str(plan.result["metadata"]["name"]))
        existing = services.get(twin_key)
        if existing is None:
            emitted[id(slot)] = [slot.obj, plan.result]
            continue
        try:
            check_twin_owner(existing.obj, plan.name)
        except ConversionError as exc:
            raise ConversionError(f"{existing.where}: {exc}") from None
        twins_in_place[id(existing)] = plan.result
    for slot_id, twin in twins_in_place.items():
        emitted[slot_id] = [twin]
    return emitted, warnings, converted


def _emit(slot: _Slot, plans: Mapping[int, list[Any]]) -> list[Any]:
    """What to write for ``slot``. Services lose explicit ``null`` fields on the way (the
    API reads null as unset; the schema validators trip on it), other documents pass as
    they are."""
    objects = plans.get(id(slot)) or [slot.obj]
    return [_without_nulls(obj) if is_core_service(obj) else obj for obj in objects]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
