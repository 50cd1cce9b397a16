"""convert-service --strategy replace of a LoadBalancer whose delete is held by the
cloud controller's finalizer, against FakeKubernetesAPI holding deletes as the real
server does (issue 14, item 9)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsbalance.cli import convert_replace
from dnsbalance.testing import FakeKubernetesAPI
from tests.kits.cli import convert

NS = "app"
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


def add_lb(kube: FakeKubernetesAPI, name: str) -> dict[str, Any]:
    body = kube.service(
        name, NS, ports=[("grpc", 8000, 50051)], selector={"app": name}, type="LoadBalancer"
    )
    body["metadata"]["finalizers"] = [LB_FINALIZER]
    return kube.put(body)


def release_after_two_looks(kube: FakeKubernetesAPI, name: str) -> threading.Thread:
    """Play the controller that holds ``name``'s delete: drop its finalizers once the
    delete is held and convert-service has looked at the held Service twice (so its
    first look found it still there, whatever the machine's speed)."""
    path = f"/api/v1/namespaces/{NS}/services/{name}"

    def release() -> None:
        for _ in range(20_000):  # bounded; convert-service polls every 50 ms to 1 s
            held = kube.get_object("Service", NS, name)
            if held is not None and held["metadata"].get("deletionTimestamp"):
                requests = kube.requests
                deleted = max(
                    i for i, r in enumerate(requests) if r.method == "DELETE" and r.path == path
                )
                looks = [r for r in requests[deleted:] if r.method == "GET" and r.path == path]
                if len(looks) >= 2:
                    kube.remove_finalizers("Service", NS, name)
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=release, name="test-cloud-controller", daemon=True)
    thread.start()
    return thread


def test_replace_waits_for_the_finalizer_with_progress(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(convert_replace, "WAIT_PROGRESS", 0.0)  # a progress line per look
    add_lb(kube, "edge")
    cloud = release_after_two_looks(kube, "edge")  # the cloud controller, when done
    code, _out, err = convert(
        kubeconfig,
        "edge",
        "--strategy",
        "replace",
        "--force",
        "--backup-dir",
        str(tmp_path),
        "--delete-timeout",
        "60",
    )
    cloud.join(10)
    assert code == 0, err
    assert "waiting for service/edge to go" in err
    assert f"finalizers: {LB_FINALIZER}" in err
    now = kube.get_object("Service", NS, "edge")
    assert now is not None
    assert now["spec"]["clusterIP"] == "None"
    assert "finalizers" not in now["metadata"]  # never copied onto the headless Service


def test_replace_times_out_with_a_ready_to_apply_manifest(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    add_lb(kube, "edge")
    code, _out, err = convert(
        kubeconfig,
        "edge",
        "--strategy",
        "replace",
        "--force",
        "--backup-dir",
        str(tmp_path),
        "--delete-timeout",
        "1",
    )
    assert code == 1
    held = kube.get_object("Service", NS, "edge")
    assert held is not None
    assert held["metadata"].get("deletionTimestamp")  # still being deleted
    [manifest] = tmp_path.glob("app.edge.*.headless.yaml")
    assert len(list(tmp_path.glob("app.edge.*.backup.yaml"))) == 1
    command = (
        f"kubectl wait --for=delete service/edge -n {NS} --timeout=10m "
        f"&& kubectl create -f {manifest}"
    )
    assert command in err
    # The command works: once the finalizer is done, the manifest creates the Service.
    kube.remove_finalizers("Service", NS, "edge")
    assert kube.get_object("Service", NS, "edge") is None
    [obj] = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    created = kube.put(obj)
    assert created["spec"]["clusterIP"] == "None"
    assert "finalizers" not in created["metadata"]


def test_the_replacement_carries_no_finalizer_of_the_original(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """Issue 22 item 8a: a finalizer belongs to whoever set it, for the object it was set
    on; the new Service inherits none, and the run names those left behind."""
    body = kube.service("web", NS, ports=[("grpc", 8000, 50051)], selector={"app": "web"})
    body["metadata"]["finalizers"] = ["example.com/hold"]
    kube.put(body)
    holder = release_after_two_looks(kube, "web")  # whoever holds the old one lets it go
    code, _out, err = convert(
        kubeconfig, "web", "--strategy", "replace", "--backup-dir", str(tmp_path)
    )
    holder.join(10)
    assert code == 0, err
    assert (
        "service/web (namespace app): finalizers not carried to the headless Service: "
        "example.com/hold" in err
    )
    now = kube.get_object("Service", NS, "web")
    assert now is not None
    assert now["spec"]["clusterIP"] == "None"
    assert "finalizers" not in now["metadata"]
