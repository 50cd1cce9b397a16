from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsbalance import Target, TargetError, parse_target
from dnsbalance._target import default_cluster_domain, default_namespace


def t(service: str, namespace: str, port: int | str, **kw: str | None) -> Target:
    return Target(service=service, namespace=namespace, port=port, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kubernetes:///svc.ns:8000", t("svc", "ns", 8000)),
        ("kubernetes:///svc.ns:grpc", t("svc", "ns", "grpc")),
        ("kubernetes://ns/svc:8000", t("svc", "ns", 8000)),
        ("kubernetes:///svc:8000", t("svc", "default", 8000)),
        ("dns:///svc.ns.svc.cluster.local:8000", t("svc", "ns", 8000)),
        (
            "dns://10.96.0.10:53/svc.ns.svc.cluster.local:8000",
            t("svc", "ns", 8000, dns_server="10.96.0.10:53"),
        ),
        (
            "dns://10.96.0.10/svc.ns.svc.cluster.local:8000",
            t("svc", "ns", 8000, dns_server="10.96.0.10:53"),
        ),
        ("dns://[::1]:5353/svc.ns:8000", t("svc", "ns", 8000, dns_server="[::1]:5353")),
        ("svc.ns:8000", t("svc", "ns", 8000)),
        ("svc.ns:grpc", t("svc", "ns", "grpc")),
        ("svc:8000", t("svc", "default", 8000)),
        ("svc.ns.svc:8000", t("svc", "ns", 8000)),
        ("svc.ns.svc.corp.example.:8000", t("svc", "ns", 8000, cluster_domain="corp.example")),
        ("  Grpc-Server-Service.Example:HTTP2  ", t("grpc-server-service", "example", "http2")),
        ("KUBERNETES:///svc.ns:8000", t("svc", "ns", 8000)),
        ("kubernetes://ns/svc.ns:8000", t("svc", "ns", 8000)),
    ],
)
def test_accepted_forms(text: str, expected: Target) -> None:
    assert parse_target(text, namespace="default", cluster_domain="cluster.local") == expected


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("", "target"),
        ("svc.ns", "port"),
        ("svc.ns:", "port"),
        ("svc.ns:0", "port"),
        ("svc.ns:65536", "port"),
        ("svc.ns:-1", "port"),
        ("svc.ns:" + "a" * 64, "port"),
        ("svc.ns:-grpc", "port"),
        ("svc.ns:grpc-", "port"),
        ("svc.ns:1234x_", "port"),
        (":8000", "service"),
        ("kubernetes:///:8000", "service"),
        ("http://svc.ns:8000", "scheme"),
        ("dns:svc.ns:8000", "scheme"),
        ("[::1]:8000", "service"),
        ("dns:///[fd00::1]:8000", "service"),
        ("dns:///fd00::1:8000", "service"),
        ("10.0.0.1:8000", "service"),
        ("1svc.ns:8000", "service"),
        ("svc_x.ns:8000", "service"),
        ("svc.-ns:8000", "namespace"),
        ("svc..ns:8000", "service"),
        ("foo.example.com:8000", "service"),
        ("svc.ns.svc.bad_domain:8000", "cluster_domain"),
        ("dns://dns.example/svc.ns:8000", "authority"),
        ("dns://10.0.0.1:x/svc.ns:8000", "authority"),
        ("dns://10.0.0.1:0/svc.ns:8000", "authority"),
        ("dns://[::1/svc.ns:8000", "authority"),
        ("kubernetes://Bad_NS/svc:8000", "namespace"),
        ("kubernetes://a/svc.b:8000", "namespace"),
        ("a/b", "target"),
    ],
)
def test_rejected_forms_name_the_part(text: str, part: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text, namespace="default", cluster_domain="cluster.local")
    assert info.value.part == part
    assert repr(text.strip()) in str(info.value) or text == ""


def test_explicit_defaults_fill_gaps_but_text_wins() -> None:
    assert parse_target("svc:1", namespace="app").namespace == "app"
    assert parse_target("svc.ns:1", namespace="app").namespace == "ns"
    assert parse_target("svc.ns:1", cluster_domain="k8s.corp").fqdn == "svc.ns.svc.k8s.corp"
    assert parse_target("svc.ns.svc.a.b:1", cluster_domain="k8s.corp").cluster_domain == "a.b"


def test_port_names_are_service_port_names() -> None:
    """Issue 22 item 5: a target's port name is a Service port's name, which the API
    checks as a DNS-1123 label (``kubectl create service clusterip kc --tcp=8000:50051``
    names its port ``8000-50051``), not as IANA_SVC_NAME (the rule for container ports:
    at most 15 characters, a letter, no '--')."""
    for name in ("8000-50051", "grpc--web", "a-rather-long-service-port-name", "x" * 63):
        assert parse_target(f"kc.app:{name}").port == name
    assert parse_target("kc.app:8000").port == 8000  # digits alone are a number
    with pytest.raises(TargetError, match="DNS-1123 label"):
        parse_target("kc.app:" + "x" * 64)


def test_names() -> None:
    target = parse_target("svc.ns:grpc", cluster_domain="cluster.local")
    assert target.fqdn == "svc.ns.svc.cluster.local"
    assert target.srv_name == "_grpc._tcp.svc.ns.svc.cluster.local"
    assert target.port_name == "grpc"
    with pytest.raises(TargetError):
        _ = parse_target("svc.ns:80").srv_name


def test_namespace_from_service_account_file(tmp_path: Path) -> None:
    path = tmp_path / "namespace"
    assert default_namespace(path) == "default"
    path.write_text("payments\n")
    assert default_namespace(path) == "payments"
    path.write_text("Not A Namespace")
    assert default_namespace(path) == "default"


def test_cluster_domain_from_resolv_conf(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    assert default_cluster_domain(path) == "cluster.local"
    path.write_text(
        "nameserver 10.96.0.10\nsearch app.svc.k8s.corp svc.k8s.corp k8s.corp\noptions ndots:5\n"
    )
    assert default_cluster_domain(path) == "k8s.corp"
    path.write_text("search example.com\n")
    assert default_cluster_domain(path) == "cluster.local"


@given(st.text(max_size=80))
def test_any_text_gives_a_target_or_target_error(text: str) -> None:
    try:
        target = parse_target(text, namespace="default", cluster_domain="cluster.local")
    except TargetError:
        return
    assert target.service
    assert target.namespace
    assert target.port is None or target.port
    assert parse_target(str(target), namespace="default", cluster_domain="cluster.local") == target


@given(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
    st.integers(1, 65535),
)
def test_round_trip(service: str, namespace: str, port: int) -> None:
    target = parse_target(f"{service}.{namespace}:{port}", cluster_domain="cluster.local")
    assert parse_target(str(target), cluster_domain="cluster.local") == target


# kuberesolver v3.1.1's own tables (builder_test.go), as (target, service, namespace,
# port); namespace None = kuberesolver's "" (the pod's namespace, here "default");
# port None = useFirstPort. TestParseResolverTarget's resolver.Target{Scheme,
# Authority, Endpoint} rows are written as the string grpc-go 1.33 parses into them:
# "kubernetes://{Authority}/{Endpoint}".
KUBERESOLVER_PARSE_TARGETS = [
    ("kubernetes://a/", "a", None, None),
    ("kubernetes:///a", "a", None, None),
    ("kubernetes://a/b", "b", "a", None),
    ("kubernetes://a.b/", "a", "b", None),
    ("kubernetes:///a.b:80", "a", "b", 80),
    ("kubernetes:///a.b:port", "a", "b", "port"),
    ("kubernetes:///a:port", "a", None, "port"),
    ("kubernetes://x/a:port", "a", "x", "port"),
    ("kubernetes://a.x:port/", "a", "x", "port"),
    ("kubernetes://a.x:30/", "a", "x", 30),
]
KUBERESOLVER_PARSE_RESOLVER_TARGET = [
    ("kubernetes://a/", "a", None, None),
    ("kubernetes:///a", "a", None, None),
    ("kubernetes://a/b", "b", "a", None),
    ("kubernetes://a.b/", "a", "b", None),
    ("kubernetes:///a.b", "a", "b", None),
    ("kubernetes:///a.b:80", "a", "b", 80),
    ("kubernetes:///a.b:port", "a", "b", "port"),
    ("kubernetes://a/b:port", "b", "a", "port"),
    ("kubernetes://b.a:port/", "b", "a", "port"),
    ("kubernetes://b.a:80/", "b", "a", 80),
]
# kuberesolver v6.0.1: every target its README lists (``service-name``, ``namespace``
# and ``cluster_name`` filled in), and its builder_test.go rows, as (target, service,
# namespace, port). A current grpc-go parses a target as a URL and hands kuberesolver
# every kubernetes: URL, so v6 reads ``kubernetes://a:30`` too: when the URL has no
# path, or its authority has a port, the authority names the Service.
# TestParseResolverTarget's rows are URLs without a scheme ("a", "/a.b:80",
# "//a/b"): grpc-go gives kuberesolver the same URL for "kubernetes:" + row.
KUBERESOLVER6_README = [
    ("kubernetes:///web:8080", "web", None, 8080),
    ("kubernetes:///web:grpc", "web", None, "grpc"),
    ("kubernetes:///web.app:8080", "web", "app", 8080),
    ("kubernetes:///web.app.svc.cluster.local", "web", "app", None),
    ("kubernetes:///web.app.svc.cluster.local:8080", "web", "app", 8080),
    ("kubernetes://app/web:8080", "web", "app", 8080),
    ("kubernetes://web:8080/", "web", None, 8080),
    ("kubernetes://web.app:8080/", "web", "app", 8080),
    ("kubernetes://web.app.svc.cluster.local", "web", "app", None),
    ("kubernetes://web.app.svc.cluster.local:8080", "web", "app", 8080),
]
KUBERESOLVER6_PARSE_TARGETS = [
    ("kubernetes://a:30", "a", None, 30),
    ("kubernetes://a/", "a", None, None),
    ("kubernetes:///a", "a", None, None),
    ("kubernetes://a/b", "b", "a", None),
    ("kubernetes://a.b/", "a", "b", None),
    ("kubernetes:///a.b:80", "a", "b", 80),
    ("kubernetes:///a.b:port", "a", "b", "port"),
    ("kubernetes:///a:port", "a", None, "port"),
    ("kubernetes://x/a:port", "a", "x", "port"),
    ("kubernetes://a.x:30/", "a", "x", 30),
    ("kubernetes://a.b.svc.cluster.local", "a", "b", None),
    ("kubernetes://a.b.svc.cluster.local:80", "a", "b", 80),
    ("kubernetes:///a.b.svc.cluster.local", "a", "b", None),
    ("kubernetes:///a.b.svc.cluster.local:80", "a", "b", 80),
    ("kubernetes:///a.b.svc.cluster.local:port", "a", "b", "port"),
    ("kubernetes://kube-dns.kube-system:53", "kube-dns", "kube-system", 53),  # TestBuilder
]
KUBERESOLVER6_PARSE_RESOLVER_TARGET = [
    ("kubernetes:a", "a", None, None),
    ("kubernetes:/a", "a", None, None),
    ("kubernetes://a/b", "b", "a", None),
    ("kubernetes:a.b", "a", "b", None),
    ("kubernetes:/a.b", "a", "b", None),
    ("kubernetes:/a.b:80", "a", "b", 80),
    ("kubernetes:/a.b:port", "a", "b", "port"),
    ("kubernetes://a/b:port", "b", "a", "port"),
    ("kubernetes://a/b:80", "b", "a", 80),
    ("kubernetes:a.b.svc.cluster.local", "a", "b", None),
    ("kubernetes:/a.b.svc.cluster.local:80", "a", "b", 80),
    ("kubernetes:/a.b.svc.cluster.local:port", "a", "b", "port"),
    ("kubernetes://a.b.svc.cluster.local", "a", "b", None),
    ("kubernetes://a.b.svc.cluster.local:80", "a", "b", 80),
]


@pytest.mark.parametrize(
    ("text", "service", "namespace", "port"),
    KUBERESOLVER6_README + KUBERESOLVER6_PARSE_TARGETS + KUBERESOLVER6_PARSE_RESOLVER_TARGET,
)
def test_kuberesolver6_forms(
    text: str, service: str, namespace: str | None, port: int | str | None
) -> None:
    target = parse_target(text, namespace="default", cluster_domain="cluster.local")
    assert (target.service, target.namespace, target.port) == (
        service,
        namespace or "default",
        port,
    )
    again = parse_target(str(target), namespace="default", cluster_domain="cluster.local")
    assert again == target


@pytest.mark.parametrize(
    ("text", "part"),
    [
        # v6 would take the Service from the authority and drop the path; two names
        # for one thing are refused here, as ``kubernetes://a/svc.b:80`` is.
        ("kubernetes://svc.ns:80/other", "target"),
        # v6 would read "ns" as the Service and 80 as its port.
        ("kubernetes://ns:80/svc", "target"),
        ("kubernetes:svc.ns:80/x", "port"),
    ],
)
def test_a_path_after_an_authority_with_a_port_is_refused(text: str, part: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text, namespace="default", cluster_domain="cluster.local")
    assert info.value.part == part


# Beyond the tables: the examples with real-looking names, and the FQDN forms
# (dnsbalance reads svc.ns.svc.<domain> as a DNS name; kuberesolver would not).
MORE_KUBERNETES_FORMS = [
    ("kubernetes://svc.ns:30/", "svc", "ns", 30),
    ("kubernetes://svc:30/", "svc", None, 30),
    ("kubernetes:///svc", "svc", None, None),
    ("kubernetes://svc/", "svc", None, None),
    ("kubernetes://ns/svc", "svc", "ns", None),
    ("kubernetes://svc.ns/", "svc", "ns", None),
    ("kubernetes:///svc.ns.svc.cluster.local", "svc", "ns", None),
    ("kubernetes:///svc.ns.svc.cluster.local:80", "svc", "ns", 80),
    ("kubernetes://svc.ns.svc.cluster.local:80/", "svc", "ns", 80),
    ("kubernetes://svc.ns.svc.cluster.local/", "svc", "ns", None),
]


@pytest.mark.parametrize(
    ("text", "service", "namespace", "port"),
    KUBERESOLVER_PARSE_TARGETS + KUBERESOLVER_PARSE_RESOLVER_TARGET + MORE_KUBERNETES_FORMS,
)
def test_kuberesolver_forms(
    text: str, service: str, namespace: str | None, port: int | str | None
) -> None:
    target = parse_target(text, namespace="default", cluster_domain="cluster.local")
    assert (target.service, target.namespace, target.port) == (
        service,
        namespace or "default",
        port,
    )
    again = parse_target(str(target), namespace="default", cluster_domain="cluster.local")
    assert again == target


@pytest.mark.parametrize(
    "text",
    [
        "",  # TestParseTargets / TestParseResolverTarget: "target is empty"
        "kubernetes:///",
        "kubernetes:/",  # v6's TestParseResolverTarget: "/" is an error
        "kubernetes:",
        "kubernetes://",
        "kubernetes:///svc.ns:",
        "kubernetes:///[::1]",
    ],
)
def test_kuberesolver_errors_stay_errors(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text, namespace="default", cluster_domain="cluster.local")


@pytest.mark.parametrize(
    "text", ["svc.ns", "dns:///svc.ns.svc.cluster.local", "dns://10.0.0.1/svc.ns.svc.cluster.local"]
)
def test_only_kubernetes_targets_may_omit_the_port(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text, namespace="default", cluster_domain="cluster.local")
    assert info.value.part == "port"


@pytest.mark.parametrize(
    "text",
    [
        "dns://10.96.0.10:53/svc.ns.svc.cluster.local:8000",
        "dns://[::1]:5353/svc.ns:grpc",
        "svc.ns.svc.corp.example:8000",
        "kubernetes:///svc.ns.svc.corp.example",
    ],
)
def test_round_trip_keeps_dns_server_and_domain(text: str) -> None:
    target = parse_target(text, namespace="default", cluster_domain="cluster.local")
    assert parse_target(str(target), namespace="default", cluster_domain="cluster.local") == target
