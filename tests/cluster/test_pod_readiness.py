"""A pod's Ready condition followed before its EndpointSlice says it, on the real control
plane: with kube-controller-manager stopped (SIGSTOP) the slices cannot follow the pods,
so a channel that calls a pod made Ready meanwhile read it from the pod, and one that
stops calling it when it is made not Ready again read that too. With rbac.yaml alone
(no access to pods), the slices alone decide and nothing is read early."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from benchmarks._common import TcpProxy
from dnsbalance._kube.pod_watch import PodWatcher
from dnsbalance.testing import ControlPlane
from dnsbalance.testing._controlplane.cluster import PodRef
from tests.kits.backends import demo_pb2_grpc, wait_until
from tests.kits.cli import run

from .kit import open_channel, stub_for, until_absent, until_seen
from .test_rbac import MANIFESTS, kubectl

LABELS = {"app": "greeter"}


def _greeter(cluster: ControlPlane, namespace: str) -> tuple[set[str], PodRef]:
    """Two Ready pods and a third listed in the slices as not ready; their backends and
    the third pod."""
    cluster.create_service(namespace, "greeter", selector=LABELS)
    ready = [cluster.add_pod(namespace, f"g{i}", node="node-a", labels=LABELS) for i in range(2)]
    late = cluster.add_pod(namespace, "late", node="node-a", labels=LABELS, ready=False)
    cluster.wait_for_ready(namespace, "greeter", [p.ip for p in ready])
    assert wait_until(lambda: late.ip in cluster.listed_addresses(namespace, "greeter"), 30)
    return {p.backend for p in ready}, late


def _followed_early(
    cluster: ControlPlane,
    namespace: str,
    stub: demo_pb2_grpc.DemoServiceStub,
    backends: set[str],
    late: PodRef,
) -> None:
    """With the controllers stopped, ``late`` made Ready is called, and made not Ready
    again is not: read from the pod, as its slice never moved."""
    assert until_seen(stub, backends, timeout=15) == backends
    with cluster.controllers_paused():
        cluster.set_ready(namespace, late.name, True)
        everyone = backends | {late.backend}
        assert until_seen(stub, everyone, timeout=15) == everyone
        cluster.set_ready(namespace, late.name, False)
        assert until_absent(stub, late.backend, timeout=15)
        assert cluster.listed_addresses(namespace, "greeter")[late.ip] is False


@pytest.mark.parametrize("mode", ["api", "auto"])
def test_a_pod_made_ready_is_called_before_its_slice_says_so(
    cluster: ControlPlane, namespace: str, mode: str
) -> None:
    backends, late = _greeter(cluster, namespace)
    with stub_for(open_channel(cluster, namespace, "greeter", mode)) as stub:
        _followed_early(cluster, namespace, stub, backends, late)


def test_the_shipped_pods_role_is_enough(
    cluster: ControlPlane, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """rbac.yaml and rbac-pods.yaml, applied as their comments say."""
    kubectl(cluster, "apply", "-k", str(MANIFESTS), "-n", namespace)
    kubectl(cluster, "apply", "-n", namespace, "-f", str(MANIFESTS / "rbac-pods.yaml"))
    backends, late = _greeter(cluster, namespace)
    token = cluster.kubeconfig_for(namespace, "dnsbalance", path=tmp_path / "sa")
    caplog.set_level(logging.INFO, logger="dnsbalance")
    with stub_for(open_channel(cluster, namespace, "greeter", "api", kubeconfig=token)) as stub:
        _followed_early(cluster, namespace, stub, backends, late)
    assert not [r for r in caplog.records if "not following the pods" in r.getMessage()]


def test_with_rbac_yaml_alone_the_slices_alone_decide(
    cluster: ControlPlane, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kubectl(cluster, "apply", "-k", str(MANIFESTS), "-n", namespace)
    backends, late = _greeter(cluster, namespace)
    token = cluster.kubeconfig_for(namespace, "dnsbalance", path=tmp_path / "sa")
    caplog.set_level(logging.INFO, logger="dnsbalance")

    def notes() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "not following the pods" in r.getMessage()]

    with stub_for(open_channel(cluster, namespace, "greeter", "api", kubeconfig=token)) as stub:
        assert until_seen(stub, backends, timeout=15) == backends
        assert wait_until(lambda: bool(notes()), 10)
        with cluster.controllers_paused():
            cluster.set_ready(namespace, late.name, True)
            everyone = backends | {late.backend}
            assert until_seen(stub, everyone, timeout=3) == backends  # 3 s of calls
        assert until_seen(stub, everyone, timeout=30) == everyone  # the slice caught up
    assert len(notes()) == 1
    assert notes()[0].levelno == logging.INFO
    assert "HTTP 403" in notes()[0].getMessage()
    assert "manifests/rbac-pods.yaml" in notes()[0].getMessage()


def test_check_says_whether_the_shipped_roles_let_the_pods_be_read(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """``dnsbalance check`` as the ServiceAccount, asking the real authorizer: with
    rbac.yaml alone, then with rbac-pods.yaml too (applied as its comment says)."""
    kubectl(cluster, "apply", "-k", str(MANIFESTS), "-n", namespace)
    _greeter(cluster, namespace)
    token = cluster.kubeconfig_for(namespace, "dnsbalance", path=tmp_path / "sa")

    def pods_line() -> str:
        _, out, _ = run(
            "check",
            f"greeter.{namespace}:grpc",
            "--kubeconfig",
            str(token),
            "--nameserver",
            cluster.dns_address,
            "--cluster-domain",
            "cluster.local",
        )
        return next(line for line in out.splitlines() if line.split()[1:2] == ["pods:"])

    assert pods_line() == (
        "ok    pods: not granted (cannot get services, list pods, watch pods), and optional: "
        "the EndpointSlices alone decide, so a pod is called once the EndpointSlice "
        "controller marks it ready; manifests/rbac-pods.yaml grants it"
    )
    kubectl(cluster, "apply", "-n", namespace, "-f", str(MANIFESTS / "rbac-pods.yaml"))
    assert pods_line() == (
        f'ok    pods: may get the Service and list and watch its pods in namespace "{namespace}": '
        "a pod made Ready is called before its EndpointSlice says so"
    )


def test_while_the_pod_watch_is_down_no_pod_counts(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The pod watch reaches the API server through a TCP relay. The relay cuts every
    connection: the watcher hands on no Ready pods, then lists them again. The relay
    goes (none accepted): no Ready pods, for as long as it is gone."""
    from kubernetes import config

    _, late = _greeter(cluster, namespace)
    ready = client.CoreV1Api(cluster.admin).list_namespaced_pod(namespace)
    want = {(p.metadata.uid, p.status.pod_ip) for p in ready.items if p.metadata.name != late.name}
    handed: list[frozenset[tuple[str, str]]] = []
    upstream = cluster.api_url.removeprefix("https://")
    with TcpProxy("127.0.0.1", [upstream]) as relay:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "relayed")
        kubeconfig.write_text(kubeconfig.read_text().replace(upstream, relay.address))
        api = config.new_client_from_config(config_file=str(kubeconfig))
        watcher = PodWatcher(api, namespace=namespace, service="greeter", on_change=handed.append)
        watcher.start()
        try:
            assert wait_until(lambda: bool(handed) and handed[-1] == want, 15), handed
            before = len(handed)
            relay.cut()
            assert wait_until(lambda: frozenset() in handed[before:], 15), handed
            assert wait_until(lambda: handed[-1] == want, 15), handed  # back, from a list
            relay.close()
            assert wait_until(lambda: handed[-1] == frozenset(), 15), handed
            assert watcher.following  # still trying: back once the API is reachable
        finally:
            watcher.stop()
            api.close()


def test_a_refused_token_is_tried_again_not_given_up(
    cluster: ControlPlane, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """401 (a token that rotated under the request) is an error to retry, unlike 403: once
    the token is good again, the pods are followed."""
    _greeter(cluster, namespace)
    want = {
        (p.metadata.uid, p.status.pod_ip)
        for p in client_pods(cluster, namespace)
        if p.metadata.name != "late"
    }
    handed: list[frozenset[tuple[str, str]]] = []
    caplog.set_level(logging.INFO, logger="dnsbalance")
    token = json.loads(cluster.kubeconfig.read_text())["users"][0]["user"]["token"]
    configuration = client.Configuration()
    configuration.host = cluster.api_url
    configuration.ssl_ca_cert = str(cluster.ca_file)
    configuration.api_key = {"authorization": "Bearer not-a-token"}
    with client.ApiClient(configuration) as api:
        watcher = PodWatcher(api, namespace=namespace, service="greeter", on_change=handed.append)
        watcher.start()
        try:
            assert not wait_until(lambda: bool(handed), 2), handed  # refused, trying again
            assert watcher.following
            configuration.api_key = {"authorization": f"Bearer {token}"}
            assert wait_until(lambda: bool(handed) and handed[-1] == want, 15), handed
        finally:
            watcher.stop()
    assert not [r for r in caplog.records if "not following the pods" in r.getMessage()]


def test_a_service_without_a_selector_is_left_to_its_slices_with_a_debug_line(
    cluster: ControlPlane, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's promise: no pods to read, so nothing handed on and the watcher ends,
    saying so at DEBUG only (its slices are made by hand: no INFO line to act on)."""
    cluster.create_service(namespace, "by-hand", selector=None)
    handed: list[frozenset[tuple[str, str]]] = []
    caplog.set_level(logging.DEBUG, logger="dnsbalance")
    watcher = PodWatcher(
        cluster.admin, namespace=namespace, service="by-hand", on_change=handed.append
    )
    watcher.start()
    try:
        assert wait_until(lambda: not watcher.following and "selects no pods" in caplog.text, 15)
    finally:
        watcher.stop()
    assert handed == []
    mine = [r for r in caplog.records if r.name.startswith("dnsbalance._kube.pod_watch")]
    assert [r.levelno for r in mine] == [logging.DEBUG], [r.getMessage() for r in mine]


def client_pods(cluster: ControlPlane, namespace: str) -> list[Any]:
    return list(client.CoreV1Api(cluster.admin).list_namespaced_pod(namespace).items)
