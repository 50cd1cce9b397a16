"""The shipped RBAC manifests, applied unchanged with the real kubectl to the real
authorizer, and what the library does with a token that has them and one that has not."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from dnsbalance.testing import ControlPlane
from dnsbalance.testing._controlplane.assets import default_assets
from tests.kits.backends import demo_pb2_grpc, wait_until

from .kit import open_channel, until_seen

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
LABELS = {"app": "greeter"}


def kubectl(cluster: ControlPlane, *args: str, stdin: str | None = None) -> str:
    """The kubectl built with the control plane (v1.37), as an admin."""
    done = subprocess.run(
        [str(default_assets() / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def apply_shipped_rbac(cluster: ControlPlane, namespace: str) -> None:
    """As the manifests' own comments say: ``kubectl apply -k manifests/ -n NS``, and
    rbac-topology.yaml with its subject's namespace replaced."""
    kubectl(cluster, "apply", "-k", str(MANIFESTS), "-n", namespace)
    topology = (MANIFESTS / "rbac-topology.yaml").read_text()
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        stdin=topology.replace("namespace: default", f"namespace: {namespace}"),
    )


def _greeter(cluster: ControlPlane, namespace: str) -> set[str]:
    cluster.create_service(namespace, "greeter", selector=LABELS)
    pods = [cluster.add_pod(namespace, f"g{i}", node="node-a", labels=LABELS) for i in range(2)]
    cluster.wait_for_ready(namespace, "greeter", [p.ip for p in pods])
    return {p.backend for p in pods}


def test_shipped_rbac_is_enough_for_mode_auto_and_the_zone(
    cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apply_shipped_rbac(cluster, namespace)
    backends = _greeter(cluster, namespace)
    token = cluster.kubeconfig_for(namespace, "dnsbalance", path=tmp_path / "sa")
    monkeypatch.setenv("NODE_NAME", "node-a")  # the downward API's spec.nodeName
    caplog.set_level(logging.WARNING, logger="dnsbalance")
    with open_channel(cluster, namespace, "greeter", "auto", kubeconfig=token) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert until_seen(stub, backends, timeout=15) == backends
        assert wait_until(lambda: channel.topology is not None, 10)
        assert channel.topology is not None
        assert channel.topology.zone == "zone-a"  # read from its Node: get nodes works
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_without_the_role_mode_auto_falls_back_with_one_warning(
    cluster: ControlPlane, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backends = _greeter(cluster, namespace)
    token = cluster.kubeconfig_for(namespace, "no-role", path=tmp_path / "sa")
    caplog.set_level(logging.WARNING, logger="dnsbalance")
    with open_channel(cluster, namespace, "greeter", "auto", kubeconfig=token) as channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert until_seen(stub, backends, timeout=15) == backends  # DNS alone, CoreDNS
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "cannot list endpointslices.discovery.k8s.io" in warnings[0]
    assert "HTTP 403" in warnings[0]
    assert "manifests/rbac.yaml" in warnings[0]
