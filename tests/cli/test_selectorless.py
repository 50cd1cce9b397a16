"""Replacing a selector-less Service loses its hand-written Endpoints (issue 22, item 7).

When a Service is deleted, the endpoints controller deletes ``Endpoints/<name>``
(endpoints_controller.go syncService: "Delete the corresponding endpoint, as the service
has been deleted"), whoever wrote it, and the EndpointSlice mirroring controller deletes
the slices it mirrored from it. A selector-less Service's Endpoints are written by hand
or by another controller, so ``--strategy replace`` refuses such a Service unless
``--force``; with it, the Endpoints are saved next to the backup with the command that
creates them again.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dnsbalance.testing import FakeKubernetesAPI
from tests.kits import NS
from tests.kits.cli import convert
from tests.kits.cluster import Cluster


def db(cluster: Cluster, *, endpoints: bool = True) -> None:
    cluster.create_service(FakeKubernetesAPI.service("db", NS, ports=[("pg", 5432)]))
    if endpoints:
        cluster.write_endpoints("db", ["10.9.0.1", "10.9.0.2"], ("pg", 5432))


def backups(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir(exist_ok=True)
    return folder


def test_replace_refuses_to_lose_hand_written_endpoints(cluster: Cluster, tmp_path: Path) -> None:
    db(cluster)
    before = cluster.services()
    code, out, err = convert(
        cluster.kubeconfig, "db", "--strategy", "replace", "--backup-dir", str(backups(tmp_path))
    )
    assert code == 2, (out, err)
    assert (
        "service/db (namespace app) has no selector, and Endpoints/db holds 2 addresses "
        "(10.9.0.1, 10.9.0.2) that the cluster did not make from pods" in err
    )
    assert "deleting the Service makes the endpoints controller delete Endpoints/db" in err
    assert "--force" in err
    assert cluster.services() == before
    assert cluster.endpoints("db") is not None
    assert list(backups(tmp_path).iterdir()) == []


def test_a_preview_warns_instead(cluster: Cluster, tmp_path: Path) -> None:
    db(cluster)
    code, _, err = convert(
        cluster.kubeconfig, "db", "--strategy", "replace", "--diff", "--backup-dir", str(tmp_path)
    )
    assert code == 0, err
    assert "Endpoints/db holds 2 addresses" in err
    assert "the real run refuses this without --force" in err


def test_forced_replace_saves_the_endpoints_and_says_how_to_restore_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    db(cluster)
    folder = backups(tmp_path)
    code, out, err = convert(
        cluster.kubeconfig, "db", "--strategy", "replace", "--force", "--backup-dir", str(folder)
    )
    assert code == 0, (out, err)
    [saved] = folder.glob("app.db.*.endpoints.yaml")
    assert len(list(folder.glob("app.db.*.backup.yaml"))) == 1
    endpoints = next(d for d in yaml.safe_load_all(saved.read_text()) if d)
    assert endpoints["kind"] == "Endpoints"
    assert endpoints["metadata"] == {"name": "db", "namespace": NS}
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == ["10.9.0.1", "10.9.0.2"]
    assert f"Endpoints/db saved to {saved}" in err
    assert f"kubectl create -f {saved}" in out
    new = cluster.service("db")
    assert new is not None
    assert new["spec"]["clusterIP"] == "None"
    if cluster.fake is not None:  # the controllers acted at once
        assert cluster.endpoints("db") is None


def test_without_endpoints_nothing_is_lost(cluster: Cluster, tmp_path: Path) -> None:
    db(cluster, endpoints=False)
    code, out, err = convert(
        cluster.kubeconfig, "db", "--strategy", "replace", "--backup-dir", str(backups(tmp_path))
    )
    assert code == 0, err
    assert "Endpoints/db" not in err + out
