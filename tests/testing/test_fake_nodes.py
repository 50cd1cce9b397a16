"""FakeKubernetesAPI's Nodes: cluster-scoped, with labels, through the official client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from dnsbalance.testing import FakeKubernetesAPI


@pytest.fixture
def core(kube: FakeKubernetesAPI) -> Iterator[client.CoreV1Api]:
    with kube.api_client() as api_client:
        yield client.CoreV1Api(api_client)


def test_get_a_node_and_its_zone_label(kube: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    kube.apply_node("node-b1", zone="zone-b", region="r1")
    node = core.read_node("node-b1")
    assert node.metadata.labels["topology.kubernetes.io/zone"] == "zone-b"
    assert node.metadata.labels["topology.kubernetes.io/region"] == "r1"
    assert node.metadata.labels["kubernetes.io/hostname"] == "node-b1"
    assert node.metadata.namespace is None  # cluster-scoped
    assert node.metadata.uid
    assert node.status.conditions[0].type == "Ready"


def test_list_and_watch_nodes(kube: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    kube.apply_node("node-a1", zone="zone-a")
    kube.apply_node("node-b1", zone="zone-b")
    listed = core.list_node(label_selector="topology.kubernetes.io/zone=zone-b")
    assert [n.metadata.name for n in listed.items] == ["node-b1"]
    rv = listed.metadata.resource_version
    kube.apply_node("node-b1", zone="zone-b", labels={"pool": "big"})
    resp = core.list_node(
        watch=True, resource_version=rv, timeout_seconds=1, _preload_content=False
    )
    try:
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    finally:
        resp.release_conn()
    assert [(e["type"], e["object"]["metadata"]["labels"]["pool"]) for e in events] == [
        ("MODIFIED", "big")
    ]


def test_missing_node_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.read_node("node-x")
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["message"] == 'nodes "node-x" not found'


def test_forbidden_is_at_the_cluster_scope(kube: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    kube.apply_node("node-b1", zone="zone-b")
    kube.deny("get", "nodes")
    with pytest.raises(ApiException) as caught:
        core.read_node("node-b1")
    assert caught.value.status == 403
    assert json.loads(caught.value.body)["message"] == (
        'nodes "node-b1" is forbidden: User "system:serviceaccount:app:dnsbalance" cannot get '
        'resource "nodes" in API group "" at the cluster scope'
    )
    assert [n.metadata.name for n in core.list_node().items] == ["node-b1"]  # list: allowed


def test_a_namespaced_nodes_url_does_not_exist(kube: FakeKubernetesAPI) -> None:
    kube.apply_node("node-b1")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{kube.url}/api/v1/namespaces/app/nodes/node-b1", timeout=5)
    assert caught.value.code == 404
    caught.value.close()


def test_delete_answers_a_status(kube: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    kube.apply_node("node-b1")
    gone = core.delete_node("node-b1")
    assert gone["status"] == "Success"
    assert kube.get_object("Node", "", "node-b1") is None


def test_bad_names_and_labels_are_422(kube: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_node({"metadata": {"name": "Node_1"}})
    assert caught.value.status == 422
    with pytest.raises(ApiException) as caught:
        core.create_node(
            {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a b"}}}
        )
    assert caught.value.status == 422


def test_discovery_says_nodes_are_cluster_scoped(kube: FakeKubernetesAPI) -> None:
    with kube.api_client() as api_client:
        resources = client.CoreV1Api(api_client).get_api_resources().resources
    (nodes,) = [r for r in resources if r.name == "nodes"]
    assert (nodes.namespaced, nodes.kind, nodes.short_names) == (False, "Node", ["no"])


def test_nodes_and_slices_share_one_resource_version(kube: FakeKubernetesAPI) -> None:
    before = int(kube.resource_version)
    kube.apply_node("node-b1")
    kube.apply_slice("s1", "app", "greeter", endpoints=["10.0.0.1"], ports=[("grpc", 50051)])
    assert int(kube.resource_version) == before + 2
