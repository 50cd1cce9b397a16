"""``dnsbalance check`` and ``resolve`` say what the library does (issue 22, items 2-4):
a Role without ``watch`` is a warning (the library re-lists), a numeric target that is
the Service's port and not the pods' fails from the spec alone, and a target without a
port follows the library's rule (the API alone says the port) in every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dnsbalance import resolve_channel
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI, Pod
from tests.kits import NS
from tests.kits.cli import run
from tests.kits.cluster import Cluster

JSON = dict[str, Any]


def greeter(cluster: Cluster, name: str, *, target_port: int | str = "grpc") -> JSON:
    """A headless Service whose port 8000 maps to the pods' port named grpc (50051)."""
    return cluster.create_service(
        FakeKubernetesAPI.service(
            name,
            NS,
            ports=[("grpc", 8000, target_port)],
            selector={"app": name},
            cluster_ip="None",
        )
    )


def pods(
    cluster: Cluster, dns: DNSResponder, name: str, ips: list[str], *, ready: bool = True
) -> None:
    """What the EndpointSlice controller and CoreDNS publish for ``name``'s pods."""
    fake = cluster.need_fake()
    fake.apply_slice(
        f"{name}-a", NS, name, endpoints=[(ip, ready) for ip in ips], ports=[("grpc", 50051, "TCP")]
    )
    dns.set_service(name, NS, [Pod(ip=ip) for ip in ips if ready], ports={"grpc": 50051})


def check(cluster: Cluster, dns: DNSResponder, target: str, *extra: str) -> tuple[int, str, str]:
    return run(
        "check",
        target,
        "--nameserver",
        dns.address,
        "--kubeconfig",
        str(cluster.kubeconfig),
        *extra,
    )


def lines(out: str) -> dict[str, str]:
    """``{check name: "status  detail"}`` of a text report."""
    found = {}
    for line in out.splitlines()[1:-1]:
        if line.startswith(" "):
            continue
        status, rest = line.split(maxsplit=1)
        name, _, detail = rest.partition(": ")
        found[name] = f"{status}  {detail}"
    return found


# -- item 2: a Role without watch ----------------------------------------------------------


def test_a_role_without_watch_is_a_warning_naming_the_verb(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    """The library, allowed to list but not watch, logs one WARNING and re-lists every
    poll interval (dnsbalance._kube.watch): check says that, and exits 0."""
    greeter(cluster, unique_service)
    pods(cluster, embedded_dns, unique_service, ["10.7.4.1"])
    cluster.need_fake().deny("watch", "endpointslices", namespace=NS)
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:grpc")
    assert code == 0, out
    rbac = lines(out)["rbac"]
    assert rbac.startswith(
        "warn  may list but not watch endpointslices.discovery.k8s.io in namespace "
        '"app": dnsbalance re-lists them every poll interval (5 s by default)'
    ), rbac
    assert 'fix: add "watch" to the Role\'s verbs (manifests/rbac.yaml)' in out
    assert "falls back to DNS only" not in out
    assert lines(out)["endpoints"].startswith("ok")


def test_a_role_without_list_still_fails(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    greeter(cluster, unique_service)
    pods(cluster, embedded_dns, unique_service, ["10.7.4.2"])
    cluster.need_fake().deny("list", "endpointslices", namespace=NS)
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:grpc")
    assert code == 1
    assert lines(out)["rbac"].startswith(
        "fail  this identity cannot list endpointslices.discovery.k8s.io"
    )
    assert "mode auto falls back to DNS only" in out


# -- item 3: the Service's port is not the pods' -------------------------------------------


@pytest.mark.parametrize("ready", [True, False], ids=["ready", "none-ready"])
def test_the_service_port_is_a_failure_when_the_target_port_is_a_name(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str, ready: bool
) -> None:
    """8000 -> targetPort grpc -> the pods' 50051: every call to :8000 fails, and the spec
    alone says so, whatever the endpoints' state."""
    greeter(cluster, unique_service)
    pods(cluster, embedded_dns, unique_service, ["10.7.5.1"], ready=ready)
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:8000")
    assert code == 1, out
    assert lines(out)["ports"] == (
        "fail  8000 is the Service's port, not the pods': a headless Service maps no "
        "port, so the pods are dialed at 8000, where they do not listen (its targetPort "
        "is grpc, a port name of the pods)"
    ), out
    assert f"fix: use {unique_service}.{NS}:grpc (the Service port's name" in out


def test_the_service_port_fails_with_a_numeric_target_port_too(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    greeter(cluster, unique_service, target_port=50051)
    pods(cluster, embedded_dns, unique_service, ["10.7.5.2"])
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:8000")
    assert code == 1, out
    assert lines(out)["ports"].startswith(
        "fail  8000 is the Service's port, not the pods': a headless Service maps no port"
    )
    assert f"fix: use {unique_service}.{NS}:grpc" in out
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:50051")
    assert code == 0, out
    assert lines(out)["ports"].startswith("ok")


# -- item 4: a target without a port -------------------------------------------------------


def test_a_target_without_a_port_follows_the_library_in_check_and_resolve(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    greeter(cluster, unique_service)
    pods(cluster, embedded_dns, unique_service, ["10.7.6.1", "10.7.6.2"])
    target = f"kubernetes:///{unique_service}.{NS}"
    kubeconfig = str(cluster.kubeconfig)
    # the library: mode auto without a port reads the API alone
    with resolve_channel(target, mode="auto", kubeconfig=kubeconfig) as channel:
        assert sorted(ep.hostport for ep in channel.endpoints) == [
            "10.7.6.1:50051",
            "10.7.6.2:50051",
        ]
    for mode in ("auto", "api"):
        code, out, err = run(
            "resolve",
            target,
            "--kubeconfig",
            kubeconfig,
            "--nameserver",
            embedded_dns.address,
            "--mode",
            mode,
        )
        assert (code, err) == (0, ""), (mode, out, err)
        assert "10.7.6.1  50051" in out
        assert "A/AAAA" not in out
        code, out, err = check(cluster, embedded_dns, target, "--mode", mode)
        assert code == 0, (mode, out, err)
        assert lines(out)["dns"].startswith(
            f"ok  not asked: {target} names no port, so the Service's first port is used, "
            "which only the API can tell"
        ), out
        assert lines(out)["ports"].startswith(
            "ok  no port in the target: the Service's first port, grpc 8000->grpc"
        ), out
        assert lines(out)["endpoints"].startswith("ok  the API lists 2 ready endpoints")
    for command in ("resolve", "check"):
        code, _, err = run(command, target, "--mode", "dns", "--nameserver", embedded_dns.address)
        assert code == 2
        assert "add a port or a port name" in err


def test_a_target_without_a_port_needs_the_api(embedded_dns: DNSResponder) -> None:
    target = "kubernetes:///web.app"
    code, out, err = run("resolve", target, "--nameserver", embedded_dns.address)
    assert code == 1
    assert "a target without a port needs the Kubernetes API" in err
    code, out, _ = run("check", target, "--nameserver", embedded_dns.address)
    assert code == 1
    assert lines(out)["api"].startswith("fail  no Kubernetes API configuration")


def test_under_the_library_role_the_service_lines_say_what_they_need(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    """Issue 22 item 8f: manifests/rbac.yaml grants endpointslices only (the library's
    needs); the service and ports lines need get on services and say so."""
    greeter(cluster, unique_service)
    pods(cluster, embedded_dns, unique_service, ["10.7.7.1"])
    cluster.need_fake().deny("get", "services", namespace=NS)
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:grpc")
    assert code == 0, out
    assert lines(out)["service"].startswith("warn  not checked: cannot get services")
    assert lines(out)["ports"] == (
        "warn  not checked: the Service could not be read (check reads it with get on "
        "services, which manifests/rbac.yaml does not grant)"
    )
    assert out.count('add get on services to the Role (apiGroups: [""], resources: ') == 2


# -- issue 24: a pod's readiness before its slice (manifests/rbac-pods.yaml) ---------------

PODS_GRANTED = (
    'ok  may get the Service and list and watch its pods in namespace "app": a pod made '
    "Ready is called before its EndpointSlice says so"
)


def test_the_pods_line_says_a_pod_is_read_before_its_slice(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    """On both sides (the real one's admin may do anything); the real authorizer with
    the shipped manifests is tests/cluster/test_pod_readiness.py's."""
    greeter(cluster, unique_service)
    embedded_dns.set_service(unique_service, NS, [Pod(ip="10.7.8.1")], ports={"grpc": 50051})
    _, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:grpc")
    assert lines(out)["pods"] == PODS_GRANTED


@pytest.mark.parametrize(
    ("verb", "resource"), [("watch", "pods"), ("list", "pods"), ("get", "services")]
)
def test_without_rbac_pods_yaml_the_pods_line_is_ok_and_names_it(
    kube: FakeKubernetesAPI,
    tmp_path: Path,
    embedded_dns: DNSResponder,
    unique_service: str,
    verb: str,
    resource: str,
) -> None:
    """Optional (list pods reads pod specs): not granted is no warning, and says what it
    costs and which manifest grants it. Each verb alone, which only the fake can refuse
    (the real authorizer with rbac.yaml alone: tests/cluster/test_pod_readiness.py)."""
    path = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    cluster = Cluster(kubeconfig=path, namespace=NS, fake=kube)
    greeter(cluster, unique_service)
    pods(cluster, embedded_dns, unique_service, ["10.7.8.2"])
    kube.deny(verb, resource, namespace=NS)
    code, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:grpc")
    assert code == 0, out
    assert lines(out)["pods"] == (
        f"ok  not granted (cannot {verb} {resource}), and optional: the EndpointSlices "
        "alone decide, so a pod is called once the EndpointSlice controller marks it "
        "ready; manifests/rbac-pods.yaml grants it"
    )


def test_a_service_without_a_selector_has_no_pods_to_read(
    cluster: Cluster, embedded_dns: DNSResponder, unique_service: str
) -> None:
    cluster.create_service(
        FakeKubernetesAPI.service(
            unique_service, NS, ports=[("grpc", 8000, 50051)], cluster_ip="None"
        )
    )
    embedded_dns.set_service(unique_service, NS, [Pod(ip="10.7.8.3")], ports={"grpc": 50051})
    _, out, _ = check(cluster, embedded_dns, f"{unique_service}.{NS}:grpc")
    assert lines(out)["pods"] == (
        "ok  not used: the Service has no selector, so its EndpointSlices are not the "
        "controller's and alone decide"
    )
