"""The ``ports`` line of ``dnsbalance check``: does the target's port reach the pods?

Pure: it reads the Service's spec and the target, nothing else, so the verdict does not
depend on whether any endpoint is ready. A headless Service maps no port: DNS gives pod
addresses, and the client dials them at the target's number. A number that is one of the
Service's ``port`` values but none of its ``targetPort`` values therefore reaches no pod
(when ``targetPort`` is a container port's name, the pods' number is theirs to say, but it
is not the Service port: that would be a ``targetPort`` of that number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dnsbalance._target import Target

from .service_spec import is_headless, ports_of

__all__ = ["PortsVerdict", "ports_verdict"]


@dataclass(frozen=True)
class PortsVerdict:
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str | None = None


def _target_of(port: Mapping[str, Any]) -> Any:
    target = port.get("targetPort")
    return port.get("port") if target in (None, 0, "") else target


def _shown(ports: list[Mapping[str, Any]]) -> str:
    return ", ".join(
        f"{p.get('name') or '(unnamed)'} {p.get('port')}->{_target_of(p)}" for p in ports
    )


def _better_target(target: Target, port: Mapping[str, Any]) -> str:
    """The target to use instead of the Service port ``port``."""
    where = f"{target.service}.{target.namespace}"
    if port.get("name"):
        return (
            f"use {where}:{port['name']} (the Service port's name: DNS SRV records and the "
            "EndpointSlices give the pods' port for it)"
        )
    pods = _target_of(port)
    if isinstance(pods, int):
        return f"use {where}:{pods} (the pods' port), or name the Service port and use the name"
    return (
        f"name the Service port (ports[].name) and use {where}:<that name>, or "
        f"kubernetes:///{where} (the first port, read from the API)"
    )


def ports_verdict(service: Mapping[str, Any], target: Target) -> PortsVerdict:
    """What the ``ports`` line says for ``target`` of ``service`` (see the module doc)."""
    ports = ports_of(service)
    shown = _shown(ports)
    unnamed = [str(p.get("port")) for p in ports if not p.get("name")]
    if target.port is None:
        if not ports:
            return PortsVerdict("fail", "the Service has no ports", "give it a named port")
        first = _shown(ports[:1])
        return _unnamed_or(
            unnamed,
            shown,
            f"no port in the target: the Service's first port, {first}, is used (the pods' "
            "port the EndpointSlices list for it)",
        )
    if target.port_name is not None:
        if target.port_name not in {p.get("name") for p in ports}:
            return PortsVerdict(
                "fail",
                f"the Service has no port named {target.port_name!r} (ports: {shown or 'none'})",
                "use one of its port names in the target, or name the port in the Service",
            )
        return _unnamed_or(unnamed, shown, shown)
    targets = [_target_of(p) for p in ports]
    if target.port in targets:
        return _unnamed_or(unnamed, shown, shown)
    headless = is_headless(service)
    service_port = next((p for p in ports if p.get("port") == target.port), None)
    if service_port is not None:
        pods = _target_of(service_port)
        what = f"{pods}, a port name of the pods" if isinstance(pods, str) else f"{pods}, the pods'"
        if headless:
            return PortsVerdict(
                "fail",
                f"{target.port} is the Service's port, not the pods': a headless Service maps "
                f"no port, so the pods are dialed at {target.port}, where they do not listen "
                f"(its targetPort is {what})",
                _better_target(target, service_port),
            )
        return PortsVerdict(
            "warn",
            f"{target.port} is the Service's port, not the pods' (targetPort {what}): it "
            "works through the cluster IP, but once the Service is headless the pods are "
            f"dialed at {target.port}, where they do not listen",
            _better_target(target, service_port),
        )
    if any(isinstance(t, str) for t in targets):
        return _unnamed_or(unnamed, shown, shown)  # a named targetPort may map to it
    return PortsVerdict(
        "fail" if headless else "warn",
        f"port {target.port} is none of the Service's ports ({shown or 'none'}): the pods "
        "listen on the targetPort values",
        "use a port name of the Service (svc.ns:grpc), or a targetPort number",
    )


def _unnamed_or(unnamed: list[str], shown: str, ok: str) -> PortsVerdict:
    if unnamed:
        return PortsVerdict(
            "warn",
            f"ports without a name: {', '.join(unnamed)} (ports: {shown})",
            "name every port (name: grpc): named ports give SRV records and svc.ns:portname "
            "targets",
        )
    return PortsVerdict("ok", ok or "no ports (headless without ports)")
