"""kubectl, a real client other than the Python one, against FakeKubernetesAPI and against
kube-apiserver v1.37: the same commands, the same expectations, so the fake stays
honest where dnsbalance depends on it and the expectations are the real server's.

Two kubectls: Debian's 1.20 (``DNSBALANCE_KUBECTL``, else /opt/kubectl-1.20; scripts/check
extracts it) and the v1.37.2 that scripts/build-controlplane builds beside the control
plane. Each runs against the fake; v1.37 also against the session's control plane.
kubectl 1.20 is not run against the 1.37 server: that is 17 minor versions of skew, far
outside kubectl's supported +-1, so its failures would say nothing about either server.
A missing kubectl (or control plane) skips, and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from dnsbalance.testing import ControlPlane, FakeKubernetesAPI
from dnsbalance.testing._controlplane.assets import default_assets

from .kit import unavailable

KUBECTL_120 = Path(os.environ.get("DNSBALANCE_KUBECTL") or "/opt/kubectl-1.20/usr/bin/kubectl")
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
COMBINATIONS = [("1.20", "fake"), ("1.37", "fake"), ("1.37", "real")]


def kubectl_binary(version: str) -> Path:
    if version == "1.20":
        path = KUBECTL_120
        hint = (
            f"kubectl 1.20 not found at {path}: apt-get download kubernetes-client and "
            "dpkg-deb -x it into /opt/kubectl-1.20 (scripts/check does)"
        )
    else:
        path = default_assets() / "kubectl"
        hint = f"kubectl 1.37 not found at {path}: bash scripts/build-controlplane builds it"
    if not os.access(path, os.X_OK):
        unavailable(hint)
    return path


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


# -- the two servers, as the tests need them ------------------------------------------


class Server:
    """A server with an admin kubeconfig and namespace ``ns``, and the few writes the
    tests make behind kubectl's back (as a controller would)."""

    ns: str
    kubeconfig: Path
    api: client.ApiClient

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None:
        read = {
            "Service": lambda: client.CoreV1Api(self.api).read_namespaced_service(name, self.ns),
            "Node": lambda: client.CoreV1Api(self.api).read_node(name),
        }[kind]
        try:
            found: dict[str, Any] = self.api.sanitize_for_serialization(read())
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def put_slice(self, name: str, service: str, addresses: list[str]) -> None:
        body: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
            "ports": [{"name": "grpc", "port": 80, "protocol": "TCP"}],
        }
        api = client.DiscoveryV1Api(self.api)
        try:
            api.create_namespaced_endpoint_slice(self.ns, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            api.patch_namespaced_endpoint_slice(name, self.ns, {"endpoints": body["endpoints"]})

    def remove_finalizers(self, name: str) -> None:
        patch = {"metadata": {"finalizers": None}}
        client.CoreV1Api(self.api).patch_namespaced_service(
            name, self.ns, patch, _content_type="application/merge-patch+json"
        )

    def put_node(self, name: str, zone: str) -> None:
        labels = {"topology.kubernetes.io/zone": zone, "kubernetes.io/hostname": name}
        client.CoreV1Api(self.api).create_node({"metadata": {"name": name, "labels": labels}})

    def kubeconfig_without(self, verb: str, resource: str, group: str) -> Path:
        """A kubeconfig whose identity may do everything to ``resource`` but ``verb``."""
        raise NotImplementedError


class FakeServer(Server):
    def __init__(self, fake: FakeKubernetesAPI, tmp: Path, ns: str) -> None:
        self.fake, self.ns, self.api = fake, ns, fake.api_client()
        self.kubeconfig = fake.write_kubeconfig(tmp / "kubeconfig", namespace=ns)

    def kubeconfig_without(self, verb: str, resource: str, group: str) -> Path:
        namespace = None if resource == "nodes" else self.ns
        self.fake.deny(verb, resource, namespace=namespace)
        return self.kubeconfig


class RealServer(Server):
    def __init__(self, plane: ControlPlane, tmp: Path) -> None:
        self.plane, self.tmp = plane, tmp
        self.ns = plane.create_namespace()
        self.api = plane.api_client()
        self.kubeconfig = plane.write_kubeconfig(
            tmp / "kubeconfig", token=_token(plane), namespace=self.ns, user="admin"
        )

    def kubeconfig_without(self, verb: str, resource: str, group: str) -> Path:
        """A ServiceAccount bound to a Role with every other verb (none for Nodes:
        cluster-scoped, a Role cannot grant them)."""
        account = f"no-{verb}"
        if resource != "nodes":
            rbac = client.RbacAuthorizationV1Api(self.api)
            verbs = [
                v
                for v in ("get", "list", "watch", "create", "update", "patch", "delete")
                if v != verb
            ]
            rule = {"apiGroups": [group], "resources": [resource], "verbs": verbs}
            rbac.create_namespaced_role(self.ns, {"metadata": {"name": account}, "rules": [rule]})
            rbac.create_namespaced_role_binding(
                self.ns,
                {
                    "metadata": {"name": account},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": account,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": self.ns}],
                },
            )
        return self.plane.kubeconfig_for(self.ns, account, path=self.tmp / f"{account}.kubeconfig")


def _token(plane: ControlPlane) -> str:
    config = json.loads(plane.kubeconfig.read_text())
    token: str = config["users"][0]["user"]["token"]
    return token


@dataclass(frozen=True)
class Setup:
    version: str
    binary: Path
    server: Server


@pytest.fixture(params=COMBINATIONS, ids=[f"kubectl{v}-{s}" for v, s in COMBINATIONS])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    version, which = request.param
    binary = kubectl_binary(version)
    if which == "fake":
        with FakeKubernetesAPI(bookmark_interval=0.5) as fake:
            server: Server = FakeServer(fake, tmp_path, "app")
            yield Setup(version, binary, server)
            server.api.close()
        return
    plane: ControlPlane = request.getfixturevalue("control_plane")
    server = RealServer(plane, tmp_path)
    try:
        yield Setup(version, binary, server)
    finally:
        server.api.close()


@pytest.fixture
def server(setup: Setup) -> Server:
    return setup.server


@pytest.fixture
def kubectl(setup: Setup) -> Kubectl:
    return Kubectl(setup.binary, setup.server.kubeconfig)


def manifest(ns: str, name: str, **spec: object) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"name": "grpc", "port": 8000}], **spec},
    }
    return yaml.safe_dump(body)


# -- the tests ------------------------------------------------------------------------


def test_get_create_replace_delete_services(kubectl: Kubectl, server: Server) -> None:
    ns = server.ns
    kubectl.ok("create", "--validate=false", "-f", "-", stdin=manifest(ns, "web"))
    got = json.loads(kubectl.ok("get", "service", "web", "-n", ns, "-o", "json"))
    assert got["spec"]["clusterIP"].startswith("10.96.")
    assert "web" in kubectl.ok("get", "svc", "-n", ns)
    # replace keeps the allocated cluster IP when the body leaves it out
    changed = manifest(ns, "web", sessionAffinity="ClientIP")
    kubectl.ok("replace", "--validate=false", "-f", "-", stdin=changed)
    now = server.get_object("Service", "web")
    assert now is not None
    assert now["spec"]["sessionAffinity"] == "ClientIP"
    assert now["spec"]["clusterIP"] == got["spec"]["clusterIP"]
    # clusterIP is immutable: the real 422 text reaches kubectl's user
    headless = manifest(ns, "web", clusterIP="None")
    refused = kubectl("replace", "--validate=false", "-f", "-", stdin=headless)
    assert refused.returncode == 1
    assert "may not change once set" in refused.stderr
    kubectl.ok("delete", "service", "web", "-n", ns)
    assert server.get_object("Service", "web") is None
    missing = kubectl("get", "service", "web", "-n", ns)
    assert missing.returncode == 1
    assert 'services "web" not found' in missing.stderr


def test_a_finalizer_holds_kubectl_delete(kubectl: Kubectl, server: Server) -> None:
    ns = server.ns
    body = yaml.safe_load(manifest(ns, "edge", type="LoadBalancer"))
    body["metadata"]["finalizers"] = [LB_FINALIZER]
    kubectl.ok("create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(body))
    kubectl.ok("delete", "service", "edge", "-n", ns, "--wait=false")
    stamp = kubectl.ok(
        "get", "service", "edge", "-n", ns, "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    assert stamp  # still there, being deleted
    server.remove_finalizers("edge")  # the cloud controller is done
    assert kubectl("get", "service", "edge", "-n", ns).returncode == 1


def test_endpointslices_get_and_watch(kubectl: Kubectl, server: Server) -> None:
    ns = server.ns
    server.put_slice("web-a", "web", ["10.0.0.1"])
    listed = json.loads(
        kubectl.ok(
            "get",
            "endpointslices.discovery.k8s.io",
            "-n",
            ns,
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        )
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web-a"]
    template = 'jsonpath={.metadata.name}={.endpoints[*].addresses[0]}{"\\n"}'
    command = [*kubectl.base, "get", "endpointslices.discovery.k8s.io", "-n", ns]
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
            server.put_slice("web-a", "web", ["10.0.0.1", "10.0.0.2"])
            while time.monotonic() < deadline and not any("10.0.0.2" in x for x in lines):
                time.sleep(0.05)
        finally:
            watch.terminate()  # our own child, by its handle
            watch.wait(5)
            reader.join(5)
    assert any(x.strip() == "web-a=10.0.0.1" for x in lines), lines
    assert any(x.strip() == "web-a=10.0.0.1 10.0.0.2" for x in lines), lines


def test_auth_can_i(kubectl: Kubectl, server: Server, setup: Setup) -> None:
    if setup.version == "1.37" and isinstance(server, FakeServer):
        pytest.skip(
            "kubectl 1.37 posts its SelfSubjectAccessReview in protobuf, which the fake "
            "answers 415 (it decodes JSON only, as its documentation says)"
        )
    ns = server.ns
    can = ("auth", "can-i", "list", "endpointslices.discovery.k8s.io", "-n", ns)
    assert kubectl.ok(*can).strip() == "yes"
    limited = Kubectl(
        setup.binary, server.kubeconfig_without("list", "endpointslices", "discovery.k8s.io")
    )
    denied = limited(*can)
    assert denied.returncode == 1
    assert denied.stdout.strip() == "no"
    watch = ("auth", "can-i", "watch", "endpointslices.discovery.k8s.io", "-n", ns)
    assert limited.ok(*watch).strip() == "yes"  # a Role may allow list and not watch


def test_nodes_are_cluster_scoped_for_kubectl(
    kubectl: Kubectl, server: Server, setup: Setup
) -> None:
    name = f"{server.ns}-b1"
    server.put_node(name, zone="zone-b")
    try:
        shown = kubectl.ok(
            "get", "nodes", name, "-L", "topology.kubernetes.io/zone", "--no-headers"
        )
        assert shown.split()[0] == name
        assert shown.split()[-1] == "zone-b"
        got = json.loads(kubectl.ok("get", "no", name, "-o", "json"))
        assert got["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-b"
        assert "namespace" not in got["metadata"]
        limited = Kubectl(setup.binary, server.kubeconfig_without("get", "nodes", ""))
        refused = limited("get", "node", name)
        assert refused.returncode == 1
        assert 'cannot get resource "nodes" in API group "" at the cluster scope' in refused.stderr
    finally:
        if isinstance(server, FakeServer):
            server.fake.allow_all()
    kubectl.ok("delete", "node", name)
    assert server.get_object("Node", name) is None
