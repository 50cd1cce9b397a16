"""kubectl 1.20 (Debian's kubernetes-client) against FakeKubernetesAPI: a real client
other than the Python one, so the fake stays honest where dnsbalance depends on it.
Skips only when that kubectl is absent and not under CI=true (scripts/check installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from dnsbalance.testing import FakeKubernetesAPI

NS = "app"
KUBECTL = Path(os.environ.get("DNSBALANCE_KUBECTL") or "/opt/kubectl-1.20/usr/bin/kubectl")
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


@pytest.fixture(scope="module")
def kubectl_path() -> Path:
    if not os.access(KUBECTL, os.X_OK):
        hint = (
            f"kubectl 1.20 not found at {KUBECTL}: apt-get download kubernetes-client and "
            "dpkg-deb -x it into /opt/kubectl-1.20 (scripts/check does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(hint)
        pytest.skip(hint)
    return KUBECTL


class Kubectl:
    def __init__(self, path: Path, kubeconfig: Path) -> None:
        self.base = [str(path), f"--kubeconfig={kubeconfig}", "--request-timeout=10s"]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=30, input=stdin
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self(*args, stdin=stdin)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


@pytest.fixture
def kubectl(kubectl_path: Path, kube: FakeKubernetesAPI, tmp_path: Path) -> Kubectl:
    return Kubectl(kubectl_path, kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS))


def manifest(name: str, **spec: object) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"name": "grpc", "port": 8000}], **spec},
    }
    return yaml.safe_dump(body)


def test_get_create_replace_delete_services(kubectl: Kubectl, kube: FakeKubernetesAPI) -> None:
    kubectl.ok("create", "--validate=false", "-f", "-", stdin=manifest("web"))
    got = json.loads(kubectl.ok("get", "service", "web", "-n", NS, "-o", "json"))
    assert got["spec"]["clusterIP"].startswith("10.96.")
    assert "web" in kubectl.ok("get", "svc", "-n", NS)
    # replace keeps the allocated cluster IP when the body leaves it out
    changed = manifest("web", sessionAffinity="ClientIP")
    kubectl.ok("replace", "--validate=false", "-f", "-", stdin=changed)
    now = kube.get_object("Service", NS, "web")
    assert now is not None
    assert now["spec"]["sessionAffinity"] == "ClientIP"
    assert now["spec"]["clusterIP"] == got["spec"]["clusterIP"]
    # clusterIP is immutable: the real 422 text reaches kubectl's user
    headless = manifest("web", clusterIP="None")
    refused = kubectl("replace", "--validate=false", "-f", "-", stdin=headless)
    assert refused.returncode == 1
    assert "may not change once set" in refused.stderr
    kubectl.ok("delete", "service", "web", "-n", NS)
    assert kube.get_object("Service", NS, "web") is None
    missing = kubectl("get", "service", "web", "-n", NS)
    assert missing.returncode == 1
    assert 'services "web" not found' in missing.stderr


def test_a_finalizer_holds_kubectl_delete(kubectl: Kubectl, kube: FakeKubernetesAPI) -> None:
    body = yaml.safe_load(manifest("edge", type="LoadBalancer"))
    body["metadata"]["finalizers"] = [LB_FINALIZER]
    kubectl.ok("create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(body))
    kubectl.ok("delete", "service", "edge", "-n", NS, "--wait=false")
    stamp = kubectl.ok(
        "get", "service", "edge", "-n", NS, "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    assert stamp  # still there, being deleted
    kube.remove_finalizers("Service", NS, "edge")
    assert kubectl("get", "service", "edge", "-n", NS).returncode == 1


def test_endpointslices_get_and_watch(kubectl: Kubectl, kube: FakeKubernetesAPI) -> None:
    kube.apply_slice("web-a", NS, "web", endpoints=["10.0.0.1"], ports=[("grpc", 80, "TCP")])
    listed = json.loads(
        kubectl.ok(
            "get",
            "endpointslices.discovery.k8s.io",
            "-n",
            NS,
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        )
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web-a"]
    template = 'jsonpath={.metadata.name}={.endpoints[*].addresses[0]}{"\\n"}'
    command = [*kubectl.base, "get", "endpointslices.discovery.k8s.io", "-n", NS]
    lines: list[str] = []
    with subprocess.Popen(
        [*command, "--watch", "-o", template],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as watch:
        stdout = watch.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
        reader.start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any("10.0.0.1" in x for x in lines):
                time.sleep(0.05)
            kube.apply_slice(
                "web-a", NS, "web", endpoints=["10.0.0.1", "10.0.0.2"], ports=[("grpc", 80, "TCP")]
            )
            while time.monotonic() < deadline and not any("10.0.0.2" in x for x in lines):
                time.sleep(0.05)
        finally:
            watch.terminate()  # our own child, by its handle
            watch.wait(5)
            reader.join(5)
    assert any(x.strip() == "web-a=10.0.0.1" for x in lines), lines
    assert any(x.strip() == "web-a=10.0.0.1 10.0.0.2" for x in lines), lines


def test_auth_can_i(kubectl: Kubectl, kube: FakeKubernetesAPI) -> None:
    can = ("auth", "can-i", "list", "endpointslices.discovery.k8s.io", "-n", NS)
    assert kubectl.ok(*can).strip() == "yes"
    kube.deny("list", "endpointslices", namespace=NS)
    denied = kubectl(*can)
    assert denied.returncode == 1
    assert denied.stdout.strip() == "no"
    watch = ("auth", "can-i", "watch", "endpointslices.discovery.k8s.io", "-n", NS)
    assert kubectl.ok(*watch).strip() == "yes"  # a Role may allow list and not watch


def test_nodes_are_cluster_scoped_for_kubectl(kubectl: Kubectl, kube: FakeKubernetesAPI) -> None:
    kube.apply_node("node-b1", zone="zone-b")
    shown = kubectl.ok("get", "nodes", "-L", "topology.kubernetes.io/zone", "--no-headers")
    assert shown.split()[0] == "node-b1"
    assert shown.split()[-1] == "zone-b"
    got = json.loads(kubectl.ok("get", "no", "node-b1", "-o", "json"))
    assert got["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-b"
    assert "namespace" not in got["metadata"]
    kube.deny("get", "nodes")
    refused = kubectl("get", "node", "node-b1")
    assert refused.returncode == 1
    assert 'cannot get resource "nodes" in API group "" at the cluster scope' in refused.stderr
    kube.allow_all()
    kubectl.ok("delete", "node", "node-b1")
    assert kube.get_object("Node", "", "node-b1") is None
