"""The twin carries what zone routing needs (issue 22, item 6): the EndpointSlice
controller writes topology hints on a Service's slices only when the Service asks for
them (``spec.trafficDistribution``, or the ``service.kubernetes.io/topology-mode``
annotation, or its deprecated ``topology-aware-hints``), and dnsbalance keeps to the
node with ``internalTrafficPolicy: Local``: a twin without them routes across zones."""

from __future__ import annotations

from typing import Any

from dnsbalance.testing import FakeKubernetesAPI
from tests.kits import NS
from tests.kits.cli import convert
from tests.kits.cluster import Cluster

JSON = dict[str, Any]
TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
OLD_HINTS = "service.kubernetes.io/topology-aware-hints"


def zoned(name: str) -> JSON:
    body = FakeKubernetesAPI.service(
        name,
        NS,
        ports=[("grpc", 8000, 50051)],
        selector={"app": name},
        annotations={TOPOLOGY_MODE: "Auto", "team": "a"},
    )
    body["spec"]["trafficDistribution"] = "PreferClose"
    body["spec"]["internalTrafficPolicy"] = "Local"
    return body


def test_the_twin_copies_and_syncs_what_zone_routing_needs(cluster: Cluster) -> None:
    cluster.create_service(zoned("web"))
    code, out, err = convert(cluster.kubeconfig, "web")
    assert code == 0, err
    twin = cluster.service("web-headless")
    assert twin is not None
    assert twin["spec"]["trafficDistribution"] == "PreferClose"
    assert twin["spec"]["internalTrafficPolicy"] == "Local"
    assert twin["metadata"]["annotations"] == {
        "dnsbalance.io/mirrors": "web",
        TOPOLOGY_MODE: "Auto",
    }  # other annotations stay with the original
    assert convert(cluster.kubeconfig, "web")[1].startswith("service/web-headless is up to date")

    web = cluster.service("web")
    assert web is not None
    del web["metadata"]["annotations"][TOPOLOGY_MODE]
    web["metadata"]["annotations"][OLD_HINTS] = "auto"
    del web["spec"]["trafficDistribution"]
    web["spec"]["internalTrafficPolicy"] = "Cluster"
    cluster.replace_service(web)
    code, out, err = convert(cluster.kubeconfig, "web")
    assert code == 0, err
    assert (
        "service/web-headless updated (spec.trafficDistribution, spec.internalTrafficPolicy, "
        f"metadata.annotations[{TOPOLOGY_MODE}], metadata.annotations[{OLD_HINTS}] changed "
        "on service/web)" in out
    )
    after = cluster.service("web-headless")
    assert after is not None
    assert "trafficDistribution" not in after["spec"]
    assert after["spec"]["internalTrafficPolicy"] == "Cluster"
    assert after["metadata"]["annotations"] == {"dnsbalance.io/mirrors": "web", OLD_HINTS: "auto"}
    assert after["metadata"]["uid"] == twin["metadata"]["uid"]


def test_the_manifest_twin_copies_them_too(tmp_path: Any) -> None:
    import yaml

    from tests.kits.cli import run

    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(zoned("web")))
    code, out, err = run("convert-service", "-f", str(path))
    assert code == 0, err
    _, twin = yaml.safe_load_all(out)
    assert twin["spec"]["trafficDistribution"] == "PreferClose"
    assert twin["spec"]["internalTrafficPolicy"] == "Local"
    assert twin["metadata"]["annotations"][TOPOLOGY_MODE] == "Auto"
