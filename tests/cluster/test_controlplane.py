"""The ControlPlane kit itself: what it starts, what it cleans up, how it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from dnsbalance.testing import ControlPlane, ControlPlaneError
from dnsbalance.testing._controlplane.assets import find_assets


def test_missing_assets_name_the_build_script(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match="scripts/build-controlplane") as info:
        ControlPlane(assets=tmp_path)
    assert "kube-apiserver" in str(info.value)


def test_the_api_answers_with_admin_rights(control_plane: ControlPlane) -> None:
    with control_plane.api_client() as api:
        version = client.VersionApi(api).get_code()
        names = {n.metadata.name for n in client.CoreV1Api(api).list_node().items}
    assert version.git_version.startswith("v1.")
    assert {"node-a", "node-b", "node-c"} <= names


def test_a_service_account_token_is_held_to_rbac(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import config

    path = control_plane.kubeconfig_for(namespace, "reader", path=tmp_path / "kc")
    api = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    with api, pytest.raises(client.ApiException) as info:
        client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(namespace)
    assert info.value.status == 403
    assert "system:serviceaccount:" + namespace + ":reader" in info.value.body


def test_the_controller_writes_slices_and_coredns_answers(
    cluster: ControlPlane, namespace: str
) -> None:
    import dns.message
    import dns.query
    import dns.rdatatype

    labels = {"app": "greeter"}
    cluster.create_service(namespace, "greeter", selector=labels)
    pods = [cluster.add_pod(namespace, f"p{i}", node="node-a", labels=labels) for i in range(2)]
    cluster.wait_for_ready(namespace, "greeter", [p.ip for p in pods])
    host, port = cluster.dns_address.split(":")
    query = dns.message.make_query(f"greeter.{namespace}.svc.cluster.local", dns.rdatatype.A)
    for _ in range(100):  # CoreDNS follows the slices by watch: a few ms
        answer = dns.query.udp(query, host, port=int(port), timeout=2)
        got = {r.address for rrset in answer.answer for r in rrset}
        if got == {p.ip for p in pods}:
            break
        time.sleep(0.05)
    assert got == {p.ip for p in pods}


def test_a_dead_component_is_named_with_its_log(control_plane: ControlPlane) -> None:
    assets = find_assets()
    with ControlPlane(assets=assets["etcd"].parent) as plane:
        etcd = plane._components[0]
        os.kill(etcd.pid, 9)
        etcd._process.wait(10)
        with pytest.raises(ControlPlaneError, match="etcd exited") as info:
            plane.check()
    assert info.value.component == "etcd"


def test_close_stops_every_process_and_removes_its_files() -> None:
    plane = ControlPlane().start()
    pids = [c.pid for c in plane._components]
    directory = plane._dir
    plane.close()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert not directory.exists()
    assert sys.platform == "linux"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_new_pod_network_removes_namespaces_a_dead_run_left(cluster: ControlPlane) -> None:
    from dnsbalance.testing._controlplane.podnet import PodNetwork

    child = subprocess.Popen(["true"])
    child.wait()
    orphan = f"dnsb-{child.pid}-1"  # as a run killed before its close() would leave it
    subprocess.run(["ip", "netns", "add", orphan], check=True, timeout=30)
    network = PodNetwork()
    try:
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        assert orphan not in listed
        assert cluster.pod_network.namespace in listed  # a live run's namespace stays
    finally:
        network.close()
