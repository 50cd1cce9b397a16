"""convert-service --strategy replace of a LoadBalancer whose delete is held by the
cloud controller's finalizer, against FakeKubernetesAPI holding deletes as the real
server does (issue 14, item 9)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import yaml

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


def test_replace_waits_for_the_finalizer_with_progress(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    add_lb(kube, "edge")
    cloud = threading.Timer(4.0, kube.remove_finalizers, ("Service", NS, "edge"))
    cloud.start()  # the cloud controller removes the load balancer, then its finalizer
    try:
        code, _out, err = convert(
            kubeconfig,
            "edge",
            "--strategy",
            "replace",
            "--force",
            "--backup-dir",
            str(tmp_path),
            "--delete-timeout",
            "20",
        )
    finally:
        cloud.cancel()
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
