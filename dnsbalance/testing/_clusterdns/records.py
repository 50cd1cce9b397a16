"""The records CoreDNS publishes for a headless Service, computed without I/O.

For a headless Service ``<svc>`` in namespace ``<ns>`` under the cluster zone ``<zone>``,
CoreDNS's ``kubernetes`` plugin answers:

- ``<svc>.<ns>.svc.<zone>`` A (IPv4 pods) and AAAA (IPv6 pods), one record per ready pod;
- for each *named* port, ``_<port-name>._tcp.<svc>.<ns>.svc.<zone>`` SRV
  ``0 <weight> <port> <target>.<svc>.<ns>.svc.<zone>.`` per pod, where ``<port>`` is the
  endpoint (target) port and ``<target>`` the pod's hostname, else its dashed IP;
- ``<target>.<svc>.<ns>.svc.<zone>`` A/AAAA for each of those targets;
- nothing at all when no pod is ready: the name then answers NXDOMAIN.

Dashed IPs follow CoreDNS's ``endpointHostname``: it replaces the separators of the
address text the API holds. The API holds IPv6 addresses in Go's canonical (RFC 5952,
compressed, lower-case) form, which is also what :mod:`ipaddress` prints, so
``fd00::1`` becomes ``fd00--1``; a text ending with ``-`` gets a ``0`` appended
(``fd00::`` becomes ``fd00--0``), as CoreDNS does since 1.11. ``::1`` becomes ``--1``:
CoreDNS does not fix a leading dash either.

The SRV weight is CoreDNS's: 100 divided by the number of records of that priority
(all records have priority 0), floored, at least 1.
"""

from __future__ import annotations

import abc
import ipaddress
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import dns.name
import dns.rrset

from dnsbalance._endpoints import dashed_ip

__all__ = ["Pod", "ServicePublisher", "ServiceRegistry", "service_rrsets"]

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def _check_label(kind: str, value: str, pattern: re.Pattern[str], max_len: int = 63) -> None:
    if not isinstance(value, str) or len(value) > max_len or not pattern.fullmatch(value):
        raise ValueError(
            f"{kind} {value!r} is not a valid DNS label "
            f"(lower-case letters, digits and '-', at most {max_len} characters)"
        )


@dataclass(frozen=True, kw_only=True)
class Pod:
    """A ready pod behind a headless Service: its IP and, optionally, its DNS hostname.

    ``ip`` is normalised to its canonical text (``FD00::0001`` becomes ``fd00::1``).
    ``hostname`` is the endpoint's ``hostname`` (set for StatefulSet pods and pods with
    ``spec.hostname`` + ``spec.subdomain``); it names the SRV target instead of the dashed IP.
    """

    ip: str
    hostname: str | None = None

    def __post_init__(self) -> None:
        try:
            canonical = str(ipaddress.ip_address(self.ip))
        except ValueError:
            raise ValueError(f"pod IP {self.ip!r} is not an IPv4 or IPv6 address") from None
        object.__setattr__(self, "ip", canonical)
        if self.hostname is not None:
            _check_label("pod hostname", self.hostname, _DNS1123_LABEL)

    @property
    def version(self) -> int:
        """4 or 6."""
        return 6 if ":" in self.ip else 4

    @property
    def target(self) -> str:
        """The first label of the pod's name under the Service: hostname, else dashed IP."""
        return self.hostname if self.hostname is not None else dashed_ip(self.ip)


def _check_ports(ports: Mapping[str, int]) -> dict[str, int]:
    checked: dict[str, int] = {}
    for name, port in ports.items():
        # A Service port's name (what CoreDNS publishes SRV records for): the API checks
        # it as a DNS-1123 label (IANA_SVC_NAME is the rule for container ports).
        _check_label("port name", name, _DNS1123_LABEL)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port {name!r}: {port!r} is not a port number (1-65535)")
        checked[name] = port
    return checked


def _service_name(service: str, namespace: str, zone: str) -> dns.name.Name:
    _check_label("service name", service, _DNS1035_LABEL)
    _check_label("namespace", namespace, _DNS1123_LABEL)
    return dns.name.Name((service, namespace, "svc")).concatenate(dns.name.from_text(zone))


def service_rrsets(
    *,
    service: str,
    namespace: str,
    zone: str,
    pods: Iterable[Pod],
    ports: Mapping[str, int],
    ttl: int = 5,
) -> list[dns.rrset.RRset]:
    """The RRsets CoreDNS publishes for a headless Service with these ready ``pods``.

    ``ports`` maps each port name to its endpoint (target) port; only named ports get
    SRV records, under ``_<name>._tcp``. The result is ordered: Service A, AAAA, SRV by
    port name, then the targets' A/AAAA by name. No pods: an empty list.
    """
    svc_name = _service_name(service, namespace, zone)
    checked_ports = _check_ports(ports)
    unique = sorted(
        {pod.ip: pod for pod in pods}.values(),
        key=lambda p: (p.version, int(ipaddress.ip_address(p.ip))),
    )
    if not unique:
        return []
    rrsets: list[dns.rrset.RRset] = []
    for version, rdtype in ((4, "A"), (6, "AAAA")):
        ips = [p.ip for p in unique if p.version == version]
        if ips:
            rrsets.append(dns.rrset.from_text_list(svc_name, ttl, "IN", rdtype, ips))
    weight = max(1, 100 // len(unique))
    targets = [(p.target, p) for p in unique]
    for port_name, port in sorted(checked_ports.items()):
        owner = dns.name.Name((f"_{port_name}", "_tcp")).concatenate(svc_name)
        srv = [f"0 {weight} {port} {target}.{svc_name}" for target, _ in targets]
        rrsets.append(dns.rrset.from_text_list(owner, ttl, "IN", "SRV", srv))
    by_name: dict[tuple[str, str], list[str]] = {}
    for target, pod in targets:
        by_name.setdefault((target, "A" if pod.version == 4 else "AAAA"), []).append(pod.ip)
    for (target, rdtype), ips in sorted(by_name.items()):
        owner = dns.name.Name((target,)).concatenate(svc_name)
        rrsets.append(dns.rrset.from_text_list(owner, ttl, "IN", rdtype, ips))
    return rrsets


@dataclass(frozen=True)
class _Service:
    pods: tuple[Pod, ...]
    ports: Mapping[str, int]


def _as_pod(pod: Pod | str) -> Pod:
    return pod if isinstance(pod, Pod) else Pod(ip=pod)


class ServiceRegistry:
    """Thread-safe in-memory state of many headless Services, rendered as CoreDNS would.

    Each Service remembers its pods (unique by IP) and its named ports. A Service whose
    last pod was removed stays known (with its ports) but publishes no records.
    """

    def __init__(self, *, zone: str = "cluster.local", ttl: int = 5) -> None:
        self.zone = dns.name.from_text(zone).to_text(omit_final_dot=True)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._services: dict[tuple[str, str], _Service] = {}

    def set_service(
        self,
        service: str,
        namespace: str,
        pods: Iterable[Pod | str],
        ports: Mapping[str, int] | None = None,
    ) -> None:
        """Create or replace a Service: its pods and its ports (default: no named port)."""
        _service_name(service, namespace, self.zone)
        entry = _Service(
            tuple({p.ip: p for p in map(_as_pod, pods)}.values()), _check_ports(ports or {})
        )
        with self._lock:
            self._services[service, namespace] = entry

    def add_pod(
        self,
        service: str,
        namespace: str,
        pod: Pod | str,
        *,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        """Add (or replace, by IP) one pod; creates the Service if needed.

        ``ports``, when given, replaces the Service's ports; else they are kept.
        """
        _service_name(service, namespace, self.zone)
        new = _as_pod(pod)
        checked = None if ports is None else _check_ports(ports)
        with self._lock:
            old = self._services.get((service, namespace), _Service((), {}))
            pods = (*(p for p in old.pods if p.ip != new.ip), new)
            self._services[service, namespace] = _Service(
                pods, old.ports if checked is None else checked
            )

    def remove_pod(self, service: str, namespace: str, ip: str) -> None:
        """Remove the pod with this IP; raise KeyError if the Service or the IP is unknown."""
        ip = Pod(ip=ip).ip
        with self._lock:
            old = self._get(service, namespace)
            pods = tuple(p for p in old.pods if p.ip != ip)
            if len(pods) == len(old.pods):
                raise KeyError(f"no pod {ip} in service {namespace}/{service}")
            self._services[service, namespace] = _Service(pods, old.ports)

    def remove_service(self, service: str, namespace: str) -> None:
        """Forget a Service; raise KeyError if it is unknown."""
        with self._lock:
            self._get(service, namespace)
            del self._services[service, namespace]

    def pods(self, service: str, namespace: str) -> tuple[Pod, ...]:
        """The Service's pods (empty if unknown)."""
        with self._lock:
            entry = self._services.get((service, namespace))
        return entry.pods if entry else ()

    def ports(self, service: str, namespace: str) -> dict[str, int]:
        """The Service's named ports (empty if unknown)."""
        with self._lock:
            entry = self._services.get((service, namespace))
        return dict(entry.ports) if entry else {}

    def rrsets(
        self, service: str | None = None, namespace: str | None = None
    ) -> list[dns.rrset.RRset]:
        """The records of every Service, or of one if ``service`` and ``namespace`` are given."""
        if (service is None) != (namespace is None):
            raise TypeError("give both service and namespace, or neither")
        with self._lock:
            if service is not None and namespace is not None:
                entry = self._services.get((service, namespace))
                items = [((service, namespace), entry)] if entry else []
            else:
                items = sorted(self._services.items())
        out: list[dns.rrset.RRset] = []
        for (svc, ns), svc_entry in items:
            out += service_rrsets(
                service=svc,
                namespace=ns,
                zone=self.zone,
                pods=svc_entry.pods,
                ports=svc_entry.ports,
                ttl=self.ttl,
            )
        return out

    def _get(self, service: str, namespace: str) -> _Service:
        try:
            return self._services[service, namespace]
        except KeyError:
            raise KeyError(f"no service {namespace}/{service}") from None


class ServicePublisher(abc.ABC):
    """The publishing API shared by :class:`~dnsbalance.testing.DNSResponder` and
    :class:`~dnsbalance.testing.BindServer`: each change updates the registry and then
    publishes the Service's old and new records through :meth:`_apply`, in order."""

    def __init__(self, *, zone: str, ttl: int) -> None:
        self.registry = ServiceRegistry(zone=zone, ttl=ttl)
        self._publish_lock = threading.Lock()  # registry changes and publishing, in order

    def set_service(
        self,
        service: str,
        namespace: str,
        pods: Iterable[Pod | str],
        ports: Mapping[str, int] | None = None,
    ) -> None:
        """Create or replace a Service's pods and named ports (default: none)."""
        pods = list(pods)
        self._publish(
            service, namespace, lambda: self.registry.set_service(service, namespace, pods, ports)
        )

    def add_pod(
        self,
        service: str,
        namespace: str,
        pod: Pod | str,
        *,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        """Add (or replace, by IP) a pod; ``ports`` given replaces the Service's ports."""
        self._publish(
            service, namespace, lambda: self.registry.add_pod(service, namespace, pod, ports=ports)
        )

    def remove_pod(self, service: str, namespace: str, ip: str) -> None:
        """Remove a pod; the last one gone, the Service's names answer NXDOMAIN."""
        self._publish(service, namespace, lambda: self.registry.remove_pod(service, namespace, ip))

    def remove_service(self, service: str, namespace: str) -> None:
        """Forget a Service and unpublish its records."""
        self._publish(service, namespace, lambda: self.registry.remove_service(service, namespace))

    def pods(self, service: str, namespace: str) -> tuple[Pod, ...]:
        return self.registry.pods(service, namespace)

    def _publish(self, service: str, namespace: str, change: Callable[[], None]) -> None:
        with self._publish_lock:
            old = self.registry.rrsets(service, namespace)
            change()
            self._apply(service, namespace, old, self.registry.rrsets(service, namespace))

    @abc.abstractmethod
    def _apply(
        self,
        service: str,
        namespace: str,
        old: list[dns.rrset.RRset],
        new: list[dns.rrset.RRset],
    ) -> None:
        """Make the server answer ``new`` where it answered ``old``."""
