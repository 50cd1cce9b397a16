"""convert-service against the real server where only the real controllers and admission
can show it (issue 22): the twin's slices get the zone hints the original's get, and a
server dry run that admission refuses leaves the Service as it was."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from dnsbalance.testing import ControlPlane
from tests.conftest import NODES
from tests.kits.backends import wait_until
from tests.kits.cli import convert

LABELS = {"app": "zonal"}


def _slices(cluster: ControlPlane, namespace: str, service: str) -> list[Any]:
    return list(
        client.DiscoveryV1Api(cluster.admin)
        .list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        .items
    )


def _hinted(cluster: ControlPlane, namespace: str, service: str) -> bool:
    endpoints = [e for s in _slices(cluster, namespace, service) for e in s.endpoints or ()]
    return bool(endpoints) and all(e.hints and e.hints.for_zones for e in endpoints)


def test_the_twins_slices_get_the_zone_hints_the_originals_get(
    cluster: ControlPlane, namespace: str
) -> None:
    cluster.create_service(
        namespace,
        "zonal",
        selector=LABELS,
        headless=False,
        trafficDistribution="PreferClose",
        internalTrafficPolicy="Cluster",
    )
    for i, node in enumerate(NODES):
        cluster.add_pod(namespace, f"zonal-{i}", node=node, labels=LABELS, serve=False)
    assert wait_until(lambda: _hinted(cluster, namespace, "zonal"), 20)
    code, out, err = convert(cluster.kubeconfig, "zonal", "-n", namespace)
    assert code == 0, out + err
    twin = client.CoreV1Api(cluster.admin).read_namespaced_service("zonal-headless", namespace)
    assert twin.spec.cluster_ip == "None"
    assert twin.spec.traffic_distribution == "PreferClose"
    assert wait_until(lambda: _hinted(cluster, namespace, "zonal-headless"), 20)


def _refuse_headless(cluster: ControlPlane, namespace: str) -> None:
    """A ValidatingAdmissionPolicy that refuses headless Services in ``namespace``."""
    api = client.AdmissionregistrationV1Api(cluster.admin)
    name = f"no-headless-{namespace}"
    api.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["services"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.clusterIP != 'None'",
                        "message": "headless Services are not allowed here",
                    }
                ],
            },
        }
    )
    api.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    core = client.CoreV1Api(cluster.admin)
    probe = {"metadata": {"name": "probe"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the policy takes effect within a second or two
        try:
            core.create_namespaced_service(namespace, probe, dry_run="All")  # type: ignore[arg-type]
        except client.ApiException as exc:
            if exc.status in (403, 422):
                return
            raise
        time.sleep(0.1)
    raise AssertionError("the admission policy never took effect")


def test_a_refused_server_dry_run_replace_leaves_the_service(
    cluster: ControlPlane, namespace: str
) -> None:
    cluster.create_service(namespace, "victim", selector={"app": "victim"}, headless=False)
    _refuse_headless(cluster, namespace)
    core = client.CoreV1Api(cluster.admin)
    before = core.read_namespaced_service("victim", namespace).metadata
    code, out, err = convert(
        cluster.kubeconfig,
        "victim",
        "-n",
        namespace,
        "--strategy",
        "replace",
        "--dry-run=server",
    )
    assert code == 2, out + err  # refused before anything is written
    assert "headless Services are not allowed here" in err
    assert "nothing changed" in err
    after = core.read_namespaced_service("victim", namespace).metadata
    assert (after.uid, after.resource_version) == (before.uid, before.resource_version)
