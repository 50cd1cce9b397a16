"""Target strings: which Kubernetes Service, namespace, port and cluster domain a client means.

Accepted forms (``PORT`` is a number or a port name)::

    kubernetes:///svc.ns:PORT      kubernetes:///svc:PORT      kubernetes://ns/svc:PORT
    kubernetes://svc.ns:PORT/      kubernetes://svc:PORT/      kubernetes://svc.ns:PORT
    kubernetes:///svc.ns           kubernetes://ns/svc         kubernetes://svc.ns/   (no port)
    kubernetes://svc.ns            kubernetes:svc.ns:PORT      kubernetes:/svc.ns:PORT
    dns:///svc.ns.svc.cluster.local:PORT
    dns://10.96.0.10:53/svc.ns.svc.cluster.local:PORT   (DNS server in the authority)
    svc.ns:PORT      svc:PORT      svc.ns.svc.cluster.local:PORT

The kubernetes forms are kuberesolver's (v6's ``parseResolverTarget``, which v3's
forms are a part of): a current grpc-go parses the target as a URL and hands
kuberesolver every ``kubernetes:`` URL. The path names the Service, and the
authority is the namespace; when the path is empty (``kubernetes://svc.ns:30/``,
``kubernetes://svc.ns``) or the authority has a port (``kubernetes://a:30``), the
authority names the Service. A URL without an authority (``kubernetes:svc.ns:30``,
``kubernetes:/svc.ns:30``) is read as ``kubernetes:///svc.ns:30``. Without a port,
the Service's first port is used (``port`` is ``None``; see ``_slices.first_port``),
which only the Kubernetes API can tell: mode "dns" refuses such a target.

Where kuberesolver would read one thing two ways, this refuses the target: a path
after an authority with a port (v6 reads ``kubernetes://ns:80/svc`` as the Service
``ns``), and a namespace in both the authority and the path. Beyond kuberesolver,
``svc.ns.svc.<cluster domain>`` is read as a Service's DNS name everywhere (v6 drops
what follows the namespace; v3 took ``ns.svc.<domain>`` as the namespace).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ._endpoints import host_port
from ._exceptions import TargetError

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RESOLV_CONF = Path("/etc/resolv.conf")
DEFAULT_NAMESPACE = "default"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"

# Service names are DNS-1035 labels; namespaces DNS-1123 labels; port names are a Service
# port's name, which the API checks as a DNS-1123 label (not IANA_SVC_NAME: that is the
# rule for container ports, e.g. a string targetPort).
_SERVICE_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PORT_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DOMAIN_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, kw_only=True)
class Target:
    """A parsed target: one port of one Service.

    ``port`` is an ``int`` for a numeric port, a ``str`` for a named port (which
    DNS resolves through SRV records) and ``None`` for "the Service's first port"
    (a kubernetes target without a port; only the API view can resolve it).
    ``dns_server`` is ``host:port`` when the target named a DNS server
    (``dns://10.96.0.10:53/...``), else ``None``.
    """

    service: str
    namespace: str
    port: int | str | None
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    dns_server: str | None = None

    @property
    def fqdn(self) -> str:
        """The Service's DNS name, without the trailing dot."""
        return f"{self.service}.{self.namespace}.svc.{self.cluster_domain}"

    @property
    def port_name(self) -> str | None:
        return self.port if isinstance(self.port, str) else None

    @property
    def srv_name(self) -> str:
        """The SRV name of a named port (``_grpc._tcp.svc.ns.svc.cluster.local``)."""
        if self.port_name is None:
            raise TargetError("a numeric port has no SRV record", target=str(self), part="port")
        return f"_{self.port_name}._tcp.{self.fqdn}"

    def __str__(self) -> str:
        """A target string that parses back to an equal Target (on the same machine:
        the cluster domain is written out unless it is the default parse_target
        would fill in)."""
        port = "" if self.port is None else f":{self.port}"
        if self.dns_server is not None:
            return f"dns://{self.dns_server}/{self.fqdn}{port}"
        name = f"{self.service}.{self.namespace}"
        if self.cluster_domain != default_cluster_domain():
            name = self.fqdn
        return f"kubernetes:///{name}{port}"


def parse_target(
    text: str,
    *,
    namespace: str | None = None,
    cluster_domain: str | None = None,
) -> Target:
    """Parse ``text`` into a :class:`Target`.

    A namespace or cluster domain written in ``text`` wins. Otherwise ``namespace``
    (else the pod's service-account namespace, else ``default``) and
    ``cluster_domain`` (else the ``svc.<domain>`` entry of resolv.conf's search
    list, else ``cluster.local``) fill the gaps. Raises :class:`TargetError`.
    """
    if not isinstance(text, str):
        raise TargetError("a target must be a string", target=repr(text), part="target")
    original = text
    text = text.strip()
    if not text:
        raise TargetError("empty target", target=original, part="target")
    if not text.isascii():
        # Kubernetes names, ports and DNS server addresses are ASCII. Checked first: some
        # non-ASCII letters and digits turn ASCII under lower() and int() (KELVIN SIGN, '٣').
        raise TargetError("non-ASCII character", target=original, part="target")

    authority: str | None = None
    scheme: str | None = None
    if "://" not in text and text[:11].lower() == "kubernetes:":
        # A URL without an authority (kubernetes:svc.ns:80, kubernetes:/svc.ns:80):
        # grpc-go hands kuberesolver v6 its path, read as in kubernetes:///svc.ns:80.
        rest = text[11:]
        text = "kubernetes:///" + (rest[1:] if rest.startswith("/") else rest)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("kubernetes", "dns"):
            raise TargetError(
                f"unknown scheme {scheme!r} (use kubernetes://, dns:// or no scheme)",
                target=original,
                part="scheme",
            )
        if "/" not in rest:
            if scheme == "dns":
                raise TargetError(
                    "dns:// must be followed by an authority and '/' (e.g. dns:///svc.ns:8000)",
                    target=original,
                    part="authority",
                )
            rest += "/"  # kuberesolver v6: kubernetes://svc.ns:30 is kubernetes://svc.ns:30/
        authority_text, text = rest.split("/", 1)
        authority = authority_text
        if scheme == "kubernetes" and _has_port(authority_text):
            # kuberesolver: an authority with a port names the Service (v6 drops any path).
            if text:
                raise TargetError(
                    f"a path after {authority_text!r}: the authority names the Service "
                    "when it has a port (kubernetes://svc.ns:8000) and the namespace when "
                    "the path names the Service (kubernetes://ns/svc:8000)",
                    target=original,
                    part="target",
                )
            authority, text = None, authority_text
        if scheme == "kubernetes" and not text:
            # kuberesolver: an empty path means the authority names the Service.
            authority, text = None, authority_text
            if not text:
                raise TargetError("empty target", target=original, part="target")
    elif ":" not in text and "/" in text:
        raise TargetError("unknown form; expected svc.ns:port", target=original, part="target")

    port: int | str | None = None
    if scheme == "kubernetes" and ":" not in text and not text.startswith("["):
        host = _split_host_port(f"{text}:0", original)[0]  # no port: the first one
    else:
        host, port_text = _split_host_port(text, original)
        port = _parse_port(port_text, original)

    ns_from_authority: str | None = None
    dns_server: str | None = None
    if authority:
        if scheme == "kubernetes":
            ns_from_authority = _check(_NAMESPACE_RE, authority, "namespace", original)
        else:
            dns_server = _parse_dns_server(authority, original)

    service, ns, domain = _split_service_name(host, original)
    if ns is not None and ns_from_authority is not None and ns != ns_from_authority:
        raise TargetError(
            f"namespace given twice ({ns_from_authority!r} and {ns!r})",
            target=original,
            part="namespace",
        )
    ns = ns or ns_from_authority or namespace or default_namespace()
    _check(_NAMESPACE_RE, ns, "namespace", original)
    domain = domain or cluster_domain or default_cluster_domain()
    _check_domain(domain, original)
    return Target(
        service=service, namespace=ns, port=port, cluster_domain=domain, dns_server=dns_server
    )


def _has_port(authority: str) -> bool:
    """Whether a kubernetes target's authority carries ``:PORT`` (as Go's url.Parse
    sees it; a port name is taken too, as kuberesolver v3 did)."""
    return ":" in authority and not authority.startswith("[")


def default_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's namespace from its service-account mount, else ``default``."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return DEFAULT_NAMESPACE
    return value if value and _NAMESPACE_RE.fullmatch(value) else DEFAULT_NAMESPACE


def default_cluster_domain(path: Path = RESOLV_CONF) -> str:
    """The cluster domain from resolv.conf's search list (``svc.<domain>``), else cluster.local."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return DEFAULT_CLUSTER_DOMAIN
    for line in lines:
        words = line.split()
        if not words or words[0] != "search":
            continue
        for entry in words[1:]:
            entry = entry.rstrip(".").lower()
            if entry.startswith("svc.") and len(entry) > 4:
                return entry[4:]
    return DEFAULT_CLUSTER_DOMAIN


def _split_host_port(text: str, original: str) -> tuple[str, str]:
    if text.startswith("["):
        raise TargetError("an IPv6 address is not a Service name", target=original, part="service")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise TargetError(
            "missing port (e.g. svc.ns:8000 or svc.ns:grpc)", target=original, part="port"
        )
    if ":" in host:
        if all(c in "0123456789abcdefABCDEF:." for c in host):
            raise TargetError(
                "an IPv6 address is not a Service name", target=original, part="service"
            )
        if "://" in original:  # a scheme is there: too many ':' after the name
            raise TargetError(
                f"unexpected ':' in {host!r}: one port or port name after the Service "
                "(e.g. kubernetes:///svc.ns:grpc)",
                target=original,
                part="port",
            )
        raise TargetError(
            f"unexpected ':' in {host!r} (a scheme needs '://', e.g. kubernetes:///svc.ns:8000)",
            target=original,
            part="scheme",
        )
    if not host:
        raise TargetError("empty service name", target=original, part="service")
    return host.rstrip(".").lower(), port_text


def _parse_port(text: str, original: str) -> int | str:
    if text.isdigit():
        port = _number(text)
        if not 1 <= port <= 65535:
            raise TargetError(
                f"port {text[:12]} out of range 1-65535", target=original, part="port"
            )
        return port
    if not text:
        raise TargetError("empty port", target=original, part="port")
    name = text.lower()
    if not _PORT_NAME_RE.fullmatch(name):
        raise TargetError(
            f"bad port {text[:70]!r}: a number 1-65535 or a Service port's name (a DNS-1123 "
            "label: at most 63 characters of a-z, 0-9 and '-', starting and ending with a "
            "letter or digit)",
            target=original,
            part="port",
        )
    return name


class HostPortError(ValueError):
    """What :func:`split_host_port` found wrong: ``"bracket"`` (an unclosed '['),
    ``"port"`` (not ASCII digits, or text after ']' that is not ':PORT')."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``[::1]:5353``, ``[::1]``, ``10.0.0.1:53``, ``10.0.0.1`` or ``::1`` -> (host, port):
    the one reader of a server written with an optional port. The host is not checked;
    a port of more than 5 digits comes back as 0 (out of range)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HostPortError("bracket")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not _is_digits(rest[1:]):
                raise HostPortError("port")
            port = _number(rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not _is_digits(port_text):
            raise HostPortError("port")
        port = _number(port_text)
    return host, port


def _is_digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` alone takes '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


def _parse_dns_server(authority: str, original: str) -> str:
    try:
        host, port = split_host_port(authority, 53)
    except HostPortError as exc:
        message = (
            "unclosed '[' in DNS server" if exc.problem == "bracket" else ("bad DNS server port")
        )
        raise TargetError(message, target=original, part="authority") from None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise TargetError(
            f"DNS server {host!r} must be an IP address", target=original, part="authority"
        ) from None
    if not 1 <= port <= 65535:
        raise TargetError(f"DNS server port {port} out of range", target=original, part="authority")
    return host_port(address, port)


def _number(digits: str) -> int:
    """ASCII ``digits`` as an int; 0 (never a valid port) for more than 5 digits, which
    also keeps int() from its 4300-digit limit."""
    return int(digits) if len(digits) <= 5 else 0


def _split_service_name(host: str, original: str) -> tuple[str, str | None, str | None]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise TargetError(
            f"{host} is an IP address, not a Service name", target=original, part="service"
        )
    labels = host.split(".")
    if any(not label for label in labels):
        raise TargetError(f"empty label in {host!r}", target=original, part="service")
    service = _check(_SERVICE_RE, labels[0], "service", original)
    if len(labels) == 1:
        return service, None, None
    namespace = _check(_NAMESPACE_RE, labels[1], "namespace", original)
    if len(labels) == 2:
        return service, namespace, None
    if labels[2] != "svc":
        raise TargetError(
            f"{host!r} is not a Service name (expected svc, svc.ns or svc.ns.svc.<cluster domain>)",
            target=original,
            part="service",
        )
    domain = ".".join(labels[3:]) or None
    return service, namespace, domain


_RULES = {
    "service": "a Service name is a DNS-1035 label: at most 63 lowercase letters, digits "
    "and '-', starting with a letter and ending with a letter or digit",
    "namespace": "a namespace is a DNS-1123 label: at most 63 lowercase letters, digits "
    "and '-', starting and ending with a letter or digit",
}


def _check(pattern: re.Pattern[str], value: str, part: str, original: str) -> str:
    if not pattern.fullmatch(value):
        rule = _RULES.get(part)
        why = f" ({rule})" if rule else ""
        raise TargetError(f"bad {part} {value!r}{why}", target=original, part=part)
    return value


def _check_domain(domain: str, original: str) -> None:
    labels = domain.rstrip(".").split(".")
    if len(domain) > 200 or not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        raise TargetError(f"bad cluster domain {domain!r}", target=original, part="cluster_domain")
