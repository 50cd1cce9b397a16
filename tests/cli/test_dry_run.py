"""convert-service previews change nothing (issue 22, item 1 and 8c).

Every path of ``convert-service`` (twin and replace, each Service type, a twin to
create, up to date or to update, with ``--diff`` and without) under ``--dry-run=server``
and ``--dry-run=client``: the Services of the namespace are exactly as before, uid and
resourceVersion included, and no backup is written. Written against
:class:`tests.kits.cluster.Cluster` so that it runs against a real API server too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsbalance import parse_target
from dnsbalance.cli.service_api import ServiceAPI
from dnsbalance.testing import FakeKubernetesAPI
from tests.kits import NS
from tests.kits.cli import convert, run
from tests.kits.cluster import Cluster

JSON = dict[str, Any]
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


def service_body(name: str, **kwargs: Any) -> JSON:
    kwargs.setdefault("ports", [("grpc", 8000, 50051)])
    kwargs.setdefault("selector", {"app": name})
    kwargs.setdefault("labels", {"app": name})
    return FakeKubernetesAPI.service(name, NS, **kwargs)


def _clusterip(cluster: Cluster) -> None:
    cluster.create_service(service_body("web"))


def _nodeport(cluster: Cluster) -> None:
    cluster.create_service(service_body("web", type="NodePort"))


def _loadbalancer(cluster: Cluster) -> None:
    body = service_body("web", type="LoadBalancer")
    body["metadata"]["finalizers"] = [LB_FINALIZER]
    cluster.create_service(body)


def _headless(cluster: Cluster) -> None:
    cluster.create_service(service_body("web", cluster_ip="None"))


def _externalname(cluster: Cluster) -> None:
    cluster.create_service(
        service_body("web", type="ExternalName", external_name="x.example.com", ports=[])
    )


def _twin_up_to_date(cluster: Cluster) -> None:
    cluster.create_service(service_body("web"))
    assert convert(cluster.kubeconfig, "web")[0] == 0


def _twin_outdated(cluster: Cluster) -> None:
    _twin_up_to_date(cluster)
    web = cluster.service("web")
    assert web is not None
    web["spec"]["selector"] = {"app": "web-v2"}
    cluster.replace_service(web)


SETUPS: dict[str, tuple[Callable[[Cluster], None], int]] = {
    "clusterip": (_clusterip, 0),
    "nodeport": (_nodeport, 0),
    "loadbalancer": (_loadbalancer, 0),
    "headless": (_headless, 0),
    "externalname": (_externalname, 2),
    "twin-up-to-date": (_twin_up_to_date, 0),
    "twin-outdated": (_twin_outdated, 0),
}


@pytest.mark.parametrize("preview", [["--diff"], []], ids=["diff", "steps"])
@pytest.mark.parametrize("force", [[], ["--force"]], ids=["", "force"])
@pytest.mark.parametrize("strategy", ["twin", "replace"])
@pytest.mark.parametrize("dry_run", ["server", "client"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_a_dry_run_changes_nothing(
    cluster: Cluster,
    tmp_path: Path,
    setup: str,
    dry_run: str,
    strategy: str,
    force: list[str],
    preview: list[str],
) -> None:
    prepare, expected = SETUPS[setup]
    prepare(cluster)
    before = cluster.services()
    fake_rv = cluster.fake.resource_version if cluster.fake is not None else None
    backups = tmp_path / "backups"
    backups.mkdir()
    code, out, err = convert(
        cluster.kubeconfig,
        "web",
        "--strategy",
        strategy,
        f"--dry-run={dry_run}",
        "--backup-dir",
        str(backups),
        *force,
        *preview,
    )
    assert code == expected, (out, err)
    assert cluster.services() == before  # uid, resourceVersion and everything else
    if cluster.fake is not None:
        assert cluster.fake.resource_version == fake_rv  # not one write stored
    assert list(backups.iterdir()) == []
    if preview and code == 0 and setup not in ("headless", "twin-up-to-date"):
        assert out.startswith("--- a/web\n+++ b/web\n"), out


def test_server_dry_run_of_replace_tells_each_step_as_the_api_answered(
    cluster: Cluster, tmp_path: Path
) -> None:
    _clusterip(cluster)
    code, out, err = convert(
        cluster.kubeconfig,
        "web",
        "--strategy",
        "replace",
        "--dry-run=server",
        "--backup-dir",
        str(tmp_path),
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        "service/web would be created headless (server dry run: the API validated it and "
        "answered AlreadyExists, as it must while the original exists)"
    )
    assert lines[1].startswith(f"would write a backup of service/web to {tmp_path}/app.web.")
    assert lines[2] == "service/web would be deleted (server dry run: the API accepted the delete)"
    assert cluster.service("web") is not None


def test_server_dry_run_of_a_held_delete_says_it_would_wait(
    cluster: Cluster, tmp_path: Path
) -> None:
    _loadbalancer(cluster)
    code, out, err = convert(
        cluster.kubeconfig,
        "web",
        "--strategy",
        "replace",
        "--force",
        "--dry-run=server",
        "--backup-dir",
        str(tmp_path),
    )
    assert code == 0, err
    assert (
        "service/web would be deleted once its finalizers are removed "
        f"({LB_FINALIZER}); the real run waits up to 60 s (--delete-timeout)" in out
    )


def test_a_refused_create_stops_before_the_delete(cluster: Cluster, tmp_path: Path) -> None:
    """An admission policy that refuses the headless Service: the server dry run says so
    and exits 2, and the real run refuses before anything is deleted or backed up."""
    fake = cluster.need_fake()
    _clusterip(cluster)
    before = cluster.services()
    backups = tmp_path / "backups"
    backups.mkdir()
    for dry_run in ("server", "none"):
        fake.fail_next(1, code=422, verb="create", resource="services")
        code, out, err = convert(
            cluster.kubeconfig,
            "web",
            "--strategy",
            "replace",
            f"--dry-run={dry_run}",
            "--backup-dir",
            str(backups),
        )
        assert code == 2, (out, err)
        assert "the API would not accept the headless replacement" in err
        assert "HTTP 422" in err
        assert "nothing changed" in err
        assert cluster.services() == before
        assert list(backups.iterdir()) == []


def test_a_server_that_ignores_the_dry_run_gets_the_service_back(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: if a server (or a proxy) deletes for real what was sent as a dry
    run, as dnsbalance's own request did before issue 22, the Service is put back at once
    with its cluster IP and the run fails saying so."""
    _clusterip(cluster)
    original = cluster.service("web")
    assert original is not None
    real_delete = ServiceAPI.delete

    def ignores_dry_run(self: ServiceAPI, obj: JSON, *, dry_run: bool | None = None) -> JSON:
        return real_delete(self, obj, dry_run=False)

    monkeypatch.setattr(ServiceAPI, "delete", ignores_dry_run)
    code, out, err = convert(
        cluster.kubeconfig,
        "web",
        "--strategy",
        "replace",
        "--dry-run=server",
        "--backup-dir",
        str(tmp_path),
    )
    assert code == 1, (out, err)
    assert "THE API SERVER DID NOT HONOUR THE DRY RUN: service/web was deleted" in err
    assert (
        "rolled back: service/web was created again from the copy read before the dry run "
        f"with its cluster IP {original['spec']['clusterIP']}" in err
    )
    back = cluster.service("web")
    assert back is not None
    assert back["spec"] == original["spec"]


def test_a_port_named_by_kubectl_create_service_converts(cluster: Cluster) -> None:
    """Issue 22 item 5: `kubectl create service clusterip kc --tcp=8000:50051` names its
    port 8000-50051, a valid Service port name (DNS-1123 label); convert-service takes it
    and prints a target that parses."""
    cluster.create_service(
        FakeKubernetesAPI.service(
            "kc", NS, ports=[("8000-50051", 8000, 50051)], selector={"app": "kc"}
        )
    )
    code, out, err = convert(cluster.kubeconfig, "kc")
    assert code == 0, err
    assert "target for dnsbalance: kc-headless.app:8000-50051" in out
    assert parse_target("kc-headless.app:8000-50051").port == "8000-50051"
    twin = cluster.service("kc-headless")
    assert twin is not None
    assert twin["spec"]["ports"][0]["name"] == "8000-50051"


def test_every_write_names_its_field_manager(cluster: Cluster, tmp_path: Path) -> None:
    """Issue 22 item 8b: the objects dnsbalance writes are managed by "dnsbalance", not by
    the Python client's default ("OpenAPI-Generator", from its User-Agent)."""
    _clusterip(cluster)
    cluster.create_service(service_body("api"))
    managers: set[str | None] = set()

    def run_convert(*argv: str) -> None:
        if cluster.fake is not None:
            cluster.fake.reset_log()
        code, _, err = convert(cluster.kubeconfig, *argv)
        assert code == 0, err
        if cluster.fake is not None:
            managers.update(
                r.field_manager
                for r in cluster.fake.requests
                if r.verb in ("create", "update", "patch")
            )

    run_convert("web")  # twin created
    run_convert("api")
    api = cluster.service("api")
    assert api is not None
    api["spec"]["selector"] = {"app": "api-v2"}
    cluster.replace_service(api)
    run_convert("api")  # twin updated
    run_convert("web", "--strategy", "replace", "--backup-dir", str(tmp_path))
    if cluster.fake is not None:
        assert managers == {"dnsbalance"}  # access reviews, dry runs and writes alike
        return
    for name in ("web", "web-headless", "api-headless"):
        obj = cluster.service(name)
        assert obj is not None
        assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["dnsbalance"]


def test_a_read_only_identity_can_preview(cluster: Cluster, tmp_path: Path) -> None:
    """Issue 22 item 8c: --diff is a client-side diff: it needs get on services and
    nothing else (not even the access reviews), sends no write, dry run or not, and a
    NodePort replace without --force shows the diff and the warning."""
    fake = cluster.need_fake()
    cluster.create_service(service_body("web", type="NodePort"))
    for verb in ("create", "update", "patch", "delete"):
        fake.deny(verb, "services", namespace=NS)
    fake.deny("create", "selfsubjectaccessreviews")
    fake.reset_log()
    for strategy in ("twin", "replace"):
        code, out, err = convert(
            cluster.kubeconfig,
            "web",
            "--strategy",
            strategy,
            "--diff",
            "--backup-dir",
            str(tmp_path),
        )
        assert code == 0, (strategy, out, err)
        assert "+  clusterIP: None" in out
    assert "the replacement would lose node ports" in err
    assert "the real run refuses this without --force" in err
    assert [r.method for r in fake.requests if r.resource == "services"] == ["GET"] * 3
    # with the reviews answered, the missing verbs are named, not refused
    fake.allow_all()
    fake.deny("create", "services", namespace=NS)
    code, out, err = convert(cluster.kubeconfig, "web", "--strategy", "replace", "--diff")
    assert code == 0, err
    assert 'the real run would be refused: not allowed to create services in namespace "app"' in err


def test_a_manifest_diff_shows_a_forced_replace_with_its_warning(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(service_body("web", type="NodePort")))
    code, out, err = run("convert-service", "-f", str(path), "--strategy", "replace", "--diff")
    assert code == 0, err
    assert "+  clusterIP: None" in out
    assert "the real run refuses this without --force" in err
    code, _, err = run("convert-service", "-f", str(path), "--strategy", "replace")
    assert code == 2
    assert "--force" in err
