"""The CLI against a cluster: the official client talking HTTP to FakeKubernetesAPI (and the
embedded DNS server), in-process for detail and as a subprocess the way users run it.

convert-service (twin and replace, rollback, refusals, dry runs), resolve with the API
view and --watch, check.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsbalance.cli.main import main
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI, Pod
from tests.kits.cli import convert, run

NS = "app"


def add_service(kube: FakeKubernetesAPI, name: str = "greeter", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("ports", [("grpc", 8000, 50051)])
    kwargs.setdefault("selector", {"app": name})
    kwargs.setdefault("labels", {"app": name})
    return kube.put(kube.service(name, NS, **kwargs))


def writes(kube: FakeKubernetesAPI) -> list[tuple[str, str, str]]:
    """(method, path, dryRun) of every request that may change Services."""
    return [
        (r.method, r.path, r.query.get("dryRun", ""))
        for r in kube.requests
        if r.resource == "services" and r.method not in ("GET",)
    ]


def backup_dir(tmp_path: Path) -> Path:
    """An existing backup folder (convert-service refuses a missing one)."""
    folder = tmp_path / "b"
    folder.mkdir(exist_ok=True)
    return folder


def service(kube: FakeKubernetesAPI, name: str) -> dict[str, Any] | None:
    return kube.get_object("Service", NS, name)


# -- convert-service --strategy twin ----------------------------------------------------------


def test_twin_created_then_no_op_then_updated(kube: FakeKubernetesAPI, kubeconfig: Path) -> None:
    original = add_service(kube, publish_not_ready_addresses=True)
    code, out, err = convert(kubeconfig, "greeter")  # namespace from the kubeconfig context
    assert (code, err) == (0, "")
    assert "service/greeter-headless created" in out
    assert "target for dnsbalance: greeter-headless.app:grpc" in out
    twin = service(kube, "greeter-headless")
    assert twin is not None
    assert twin["spec"]["clusterIP"] == "None"
    assert twin["spec"]["selector"] == {"app": "greeter"}
    assert twin["spec"]["ports"] == [
        {"name": "grpc", "port": 8000, "protocol": "TCP", "targetPort": 50051}
    ]
    assert twin["spec"]["publishNotReadyAddresses"] is True
    assert twin["metadata"]["labels"] == {"app": "greeter"}
    assert twin["metadata"]["annotations"] == {"dnsbalance.io/mirrors": "greeter"}
    assert service(kube, "greeter") == original  # untouched

    kube.reset_log()
    code, out, _ = convert(kubeconfig, "greeter")
    assert code == 0
    assert "up to date" in out
    assert writes(kube) == []

    changed = dict(original, spec=dict(original["spec"], selector={"app": "greeter-v2"}))
    kube.put(changed)
    code, out, _ = convert(kubeconfig, "greeter", "-n", NS)
    assert code == 0
    assert "service/greeter-headless updated (spec.selector changed" in out
    twin_after = service(kube, "greeter-headless")
    assert twin_after is not None
    assert twin_after["spec"]["selector"] == {"app": "greeter-v2"}
    assert twin_after["metadata"]["uid"] == twin["metadata"]["uid"]  # updated, not re-created


def test_twin_refuses_a_foreign_service_with_that_name(
    kube: FakeKubernetesAPI, kubeconfig: Path
) -> None:
    add_service(kube)
    add_service(kube, "greeter-headless", cluster_ip="None")
    kube.reset_log()
    code, out, err = convert(kubeconfig, "greeter")
    assert (code, out) == (2, "")
    assert "service/greeter-headless" in err
    assert "dnsbalance.io/mirrors is missing" in err
    assert writes(kube) == []
    assert convert(kubeconfig, "greeter", "--twin-name", "greeter-lb")[0] == 0
    assert service(kube, "greeter-lb") is not None


def test_twin_of_a_nodeport_is_a_plain_headless_service(
    kube: FakeKubernetesAPI, kubeconfig: Path
) -> None:
    add_service(kube, "web", type="NodePort")
    code, out, _ = convert(kubeconfig, "web", "-o", "yaml")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["metadata"]["name"] == "web-headless"
    assert printed["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in printed["spec"]["ports"][0]
    web = service(kube, "web")
    assert web is not None
    assert web["spec"]["type"] == "NodePort"


# -- convert-service --strategy replace -------------------------------------------------------


def test_replace_backs_up_then_recreates_headless(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    original = add_service(kube, annotations={"owner": "team-a"})
    kube.reset_log()
    code, out, err = convert(
        kubeconfig, "greeter", "--strategy", "replace", "--backup-dir", str(backup_dir(tmp_path))
    )
    assert code == 0, err
    backups = list((tmp_path / "b").glob("app.greeter.*.backup.yaml"))
    assert len(backups) == 1
    assert f"backup of service/greeter written to {backups[0]}" in err
    assert "does not resolve between the delete and the create" in err
    assert "cached DNS TTL" in err
    assert yaml.safe_load(backups[0].read_text()) == original
    now = service(kube, "greeter")
    assert now is not None
    assert now["spec"]["clusterIP"] == "None"
    assert now["metadata"]["uid"] != original["metadata"]["uid"]
    for kept in ("selector", "ports", "sessionAffinity"):
        assert now["spec"][kept] == original["spec"][kept]
    assert now["metadata"]["labels"] == original["metadata"]["labels"]
    assert now["metadata"]["annotations"] == {"owner": "team-a"}
    assert "service/greeter replaced by a headless Service" in out
    # the replacement is checked by a dry-run create first (issue 22)
    assert [(m, d) for m, _, d in writes(kube)] == [("POST", "All"), ("DELETE", ""), ("POST", "")]

    code, out, _ = convert(kubeconfig, "greeter", "--strategy", "replace")
    assert code == 0
    assert "already headless" in out


def test_replace_rolls_back_when_the_create_fails(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    original = add_service(kube)
    kube.fail_next(1, code=500, verb="create", resource="services", dry_run=False)
    code, _, err = convert(
        kubeconfig, "greeter", "--strategy", "replace", "--backup-dir", str(backup_dir(tmp_path))
    )
    assert code == 1
    assert "creating the headless service/greeter failed" in err
    assert "HTTP 500" in err
    assert f"with its cluster IP {original['spec']['clusterIP']}" in err
    back = service(kube, "greeter")
    assert back is not None
    assert back["spec"]["clusterIP"] == original["spec"]["clusterIP"]
    for kept in ("selector", "ports", "type"):
        assert back["spec"][kept] == original["spec"][kept]
    assert back["metadata"]["labels"] == original["metadata"]["labels"]
    (backup,) = (tmp_path / "b").glob("app.greeter.*.backup.yaml")
    assert yaml.safe_load(backup.read_text()) == original


def test_rollback_says_when_the_cluster_ip_could_not_be_kept(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    original = add_service(kube, "web", type="NodePort")
    # the create fails, and so does the first try to restore with the old allocations
    kube.fail_next(2, code=422, verb="create", resource="services", dry_run=False)
    code, _, err = convert(
        kubeconfig,
        "web",
        "--strategy",
        "replace",
        "--force",
        "--backup-dir",
        str(backup_dir(tmp_path)),
    )
    assert code == 1
    assert f"cluster IP {original['spec']['clusterIP']} could not be kept" in err
    back = service(kube, "web")
    assert back is not None
    assert back["spec"]["type"] == "NodePort"
    assert back["spec"]["clusterIP"] not in ("None", original["spec"]["clusterIP"])
    assert f"the API allocated {back['spec']['clusterIP']}" in err


def test_replace_refusals_change_nothing(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    add_service(kube, "web", type="NodePort")
    add_service(kube, "edge", type="LoadBalancer")
    kube.put(kube.service("alias", NS, type="ExternalName", external_name="x.example.com"))
    add_service(kube, "loose", selector=None, ports=[8080])
    kube.reset_log()
    backups = str(backup_dir(tmp_path))
    code, _, err = convert(kubeconfig, "web", "--strategy", "replace", "--backup-dir", backups)
    assert code == 2
    web = service(kube, "web")
    assert web is not None
    node_port = web["spec"]["ports"][0]["nodePort"]
    assert "NodePort Service" in err
    assert f"node ports {node_port} (grpc)" in err
    assert "--force" in err
    code, _, err = convert(kubeconfig, "edge", "--strategy", "replace", "--backup-dir", backups)
    assert code == 2
    assert "LoadBalancer Service" in err
    assert "load balancer (no address assigned yet)" in err
    code, _, err = convert(kubeconfig, "alias", "--strategy", "replace", "--force")
    assert code == 2
    assert "ExternalName" in err
    assert convert(kubeconfig, "alias")[0] == 2
    code, _, err = convert(kubeconfig, "missing", "-n", "other")
    assert code == 1
    assert 'Service "missing" not found in namespace "other"' in err
    assert writes(kube) == []
    assert not any((tmp_path / "b").iterdir())
    # no selector and unnamed ports: warned, still converted
    code, _, err = convert(kubeconfig, "loose")
    assert code == 0
    assert "has no selector: its endpoints must be managed by hand" in err
    assert "port 8080 has no name: named ports are needed" in err


def test_missing_rbac_is_refused_before_anything_changes(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    add_service(kube)
    kube.deny("create", "services", namespace=NS)
    kube.reset_log()
    code, _, err = convert(
        kubeconfig, "greeter", "--strategy", "replace", "--backup-dir", str(backup_dir(tmp_path))
    )
    assert code == 2
    assert 'not allowed to create services in namespace "app"' in err
    assert 'needs get, create, delete on services in namespace "app"' in err
    assert "manifests/rbac-convert.yaml" in err
    assert writes(kube) == []
    assert not any((tmp_path / "b").iterdir())
    assert any(r.resource == "selfsubjectaccessreviews" for r in kube.requests)


def test_replace_without_access_reviews_checks_with_a_dry_run_create(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    add_service(kube)
    kube.deny("create", "selfsubjectaccessreviews")
    kube.deny("create", "services", namespace=NS)
    kube.reset_log()
    code, _, err = convert(
        kubeconfig, "greeter", "--strategy", "replace", "--backup-dir", str(backup_dir(tmp_path))
    )
    assert code == 2
    assert "HTTP 403" in err
    assert "manifests/rbac-convert.yaml" in err
    assert [(m, d) for m, _, d in writes(kube)] == [("POST", "All")]
    assert not any((tmp_path / "b").iterdir())


def test_no_backup_no_delete(kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path) -> None:
    original = add_service(kube)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup folder should be")
    kube.reset_log()
    code, out, _ = convert(
        kubeconfig, "greeter", "--strategy", "replace", "--backup-dir", str(blocker)
    )
    assert code == 1
    assert "cannot write the backup" in out
    assert "nothing was changed" in out
    assert writes(kube) == [("POST", "/api/v1/namespaces/app/services", "All")]
    assert service(kube, "greeter") == original


# -- dry runs, -o and --diff --------------------------------------------------------------------


def test_dry_run_client_reads_only(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    original = add_service(kube)
    kube.reset_log()
    code, out, _ = convert(
        kubeconfig,
        "greeter",
        "--strategy",
        "replace",
        "--dry-run",
        "client",
        "--backup-dir",
        str(backup_dir(tmp_path)),
    )
    assert code == 0
    assert "would write a backup" in out
    assert "would be deleted and created again headless (dry run)" in out
    code, out, _ = convert(kubeconfig, "greeter", "--dry-run", "client", "-o", "json")
    assert code == 0
    assert '"name": "greeter-headless"' in out
    assert writes(kube) == []
    assert service(kube, "greeter") == original
    assert service(kube, "greeter-headless") is None
    assert not any((tmp_path / "b").iterdir())


def test_dry_run_server_sends_dry_run_all_and_changes_nothing(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    original = add_service(kube)
    rv = kube.resource_version
    kube.reset_log()
    code, out, err = convert(
        kubeconfig,
        "greeter",
        "--strategy",
        "replace",
        "--dry-run",
        "server",
        "--diff",
        "--backup-dir",
        str(backup_dir(tmp_path)),
    )
    assert code == 0, err
    assert "-  clusterIP: 10.96." in out
    assert "+  clusterIP: None" in out
    assert "server dry run: the API validated it and answered AlreadyExists" in err
    assert "would be deleted (server dry run: the API accepted the delete)" in err
    code, out, _ = convert(kubeconfig, "greeter", "--dry-run", "server", "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["spec"]["clusterIPs"] == ["None"]  # defaulted by the server
    # the DELETE carries its dry run in its DeleteOptions body, where the server reads it
    assert [(m, d) for m, _, d in writes(kube)] == [
        ("POST", "All"),
        ("DELETE", ""),
        ("POST", "All"),
    ]
    assert kube.resource_version == rv  # nothing was stored
    assert service(kube, "greeter") == original
    assert service(kube, "greeter-headless") is None
    assert not any((tmp_path / "b").iterdir())


# -- resolve: DNS and the API side by side ----------------------------------------------------


def publish(
    kube: FakeKubernetesAPI, dns_server: DNSResponder, name: str, dns: list[str], api: list[str]
) -> None:
    dns_server.set_service(name, NS, [Pod(ip=ip) for ip in dns], ports={"grpc": 50051})
    kube.apply_slice(f"{name}-a", NS, name, endpoints=api, ports=[("grpc", 50051, "TCP")])


def test_resolve_marks_disagreements(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: DNSResponder,
    unique_service: str,
) -> None:
    publish(kube, embedded_dns, unique_service, ["10.7.0.1", "10.7.0.2"], ["10.7.0.2", "10.7.0.3"])
    target = f"{unique_service}.{NS}:grpc"
    args = [
        "resolve",
        target,
        "--nameserver",
        embedded_dns.address,
        "--kubeconfig",
        str(kubeconfig),
    ]
    code, out, err = run(*args)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[1] == (
        f"kubernetes:///{target} -> EndpointSlices of service/{unique_service} in namespace "
        f"{NS} (API {kube.url})"
    )
    assert lines[2].split() == ["ADDRESS", "PORT", "HOSTNAME", "TTL", "DNS", "API"]
    assert [line.split() for line in lines[3:6]] == [
        ["10.7.0.1", "50051", "-", "5", "yes", "no"],
        ["10.7.0.2", "50051", "-", "5", "yes", "yes"],
        ["10.7.0.3", "50051", "-", "-", "no", "yes"],
    ]
    assert lines[6] == "disagreements: 2"
    code, out, _ = run(*args, "-o", "json")
    report = json.loads(out)
    assert report["disagreements"] == 2
    assert [e["address"] for e in report["api"]["endpoints"]] == ["10.7.0.2", "10.7.0.3"]
    assert [(r["address"], r["dns"], r["api"]) for r in report["rows"]] == [
        ("10.7.0.1", True, False),
        ("10.7.0.2", True, True),
        ("10.7.0.3", False, True),
    ]
    # the API side alone, and a clean fallback when the API refuses
    code, out, _ = run(*args, "--mode", "api")
    assert code == 0
    assert "A/AAAA" not in out
    assert "SRV" not in out
    assert out.splitlines()[1].split() == ["ADDRESS", "PORT", "HOSTNAME"]
    kube.deny("list", "endpointslices", namespace=NS)
    code, out, err = run(*args)
    assert code == 0
    assert "showing DNS only" in err
    assert "HTTP 403" in err
    assert out.splitlines()[1].split() == ["ADDRESS", "PORT", "HOSTNAME", "TTL"]
    assert run(*args, "--mode", "api")[0] == 1


def test_resolve_watch_prints_one_line_per_change(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: DNSResponder,
    unique_service: str,
) -> None:
    publish(kube, embedded_dns, unique_service, ["10.7.1.1"], ["10.7.1.1"])
    out = io.StringIO()
    argv = [
        "resolve",
        f"{unique_service}.{NS}:grpc",
        "--nameserver",
        embedded_dns.address,
        "--kubeconfig",
        str(kubeconfig),
        "--watch",
        "--watch-seconds",
        "2.5",
        "--interval",
        "0.2",
    ]
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(argv, out=out)))
    worker.start()
    time.sleep(0.5)
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=["10.7.1.1", "10.7.1.2"],
        ports=[("grpc", 50051, "TCP")],
    )
    time.sleep(0.6)
    embedded_dns.add_pod(unique_service, NS, "10.7.1.2")
    worker.join(10)
    assert codes == [0]
    changes = [line for line in out.getvalue().splitlines() if line.endswith(tuple("0123456789"))]
    changes = [line.split(maxsplit=1)[1] for line in changes if "disagreements:" in line]
    assert changes[-2:] == [
        "API 1 -> 2 endpoints (+1 -0) +10.7.1.2:50051; disagreements: 1",
        "DNS 1 -> 2 endpoints (+1 -0) +10.7.1.2:50051; disagreements: 0",
    ]


# -- check ----------------------------------------------------------------------------------------


def test_check_all_ok_then_failures_with_fixes(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    embedded_dns: DNSResponder,
    unique_service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GRPC_DNS_RESOLVER", raising=False)
    add_service(kube, unique_service, cluster_ip="None")
    publish(kube, embedded_dns, unique_service, ["10.7.2.1"], ["10.7.2.1"])
    args = [
        "check",
        f"{unique_service}.{NS}:grpc",
        "--nameserver",
        embedded_dns.address,
        "--kubeconfig",
        str(kubeconfig),
    ]
    code, out, _ = run(*args)
    assert code == 0, out
    statuses = [line.split()[:2] for line in out.splitlines()[1:-1]]
    assert statuses == [
        ["ok", "dns:"],
        ["ok", "api:"],
        ["ok", "service:"],
        ["ok", "ports:"],
        ["ok", "rbac:"],
        ["ok", "pods:"],
        ["ok", "endpoints:"],
        ["ok", "grpc-resolver:"],
    ]
    assert out.splitlines()[-1] == "8 ok, 0 warn, 0 fail"

    kube.deny("list", "endpointslices", namespace=NS)
    monkeypatch.setenv("GRPC_DNS_RESOLVER", "native")
    code, out, _ = run(*args)
    assert code == 1
    assert "fail  rbac: this identity cannot list endpointslices.discovery.k8s.io" in out
    assert "      fix: apply manifests/rbac.yaml" in out
    assert "warn  grpc-resolver: native" in out
    assert "fix: unset GRPC_DNS_RESOLVER" in out
    code, out, _ = run(*args, "-o", "json")
    report = json.loads(out)
    assert report["ok"] is False
    rbac = next(c for c in report["checks"] if c["name"] == "rbac")
    assert rbac["status"] == "fail"
    assert "manifests/rbac.yaml" in rbac["fix"]


def test_check_finds_a_clusterip_service_and_unnamed_ports(
    kube: FakeKubernetesAPI, kubeconfig: Path, embedded_dns: DNSResponder, unique_service: str
) -> None:
    added = add_service(kube, unique_service, ports=[(None, 8000, 50051)])
    embedded_dns.set_service(unique_service, NS, [added["spec"]["clusterIP"]])
    code, out, _ = run(
        "check",
        f"{unique_service}.{NS}:8000",
        "--nameserver",
        embedded_dns.address,
        "--kubeconfig",
        str(kubeconfig),
    )
    assert code == 1
    assert f"fail  dns: {unique_service}.{NS}.svc.cluster.local answers the cluster IP" in out
    assert f"fail  service: service/{unique_service}" in out
    assert "is not headless" in out
    assert f"fix: dnsbalance convert-service {unique_service} -n {NS}" in out
    assert (
        "warn  ports: 8000 is the Service's port, not the pods' (targetPort 50051, the "
        "pods'): it works through the cluster IP, but once the Service is headless" in out
    )
    code, out, _ = run("check", "nothing.app:grpc", "--nameserver", embedded_dns.address)
    assert code == 1
    assert "warn  api: no Kubernetes API configuration" in out
    assert "fail  dns: _grpc._tcp.nothing.app.svc.cluster.local has no SRV records" in out


# -- as users run it ----------------------------------------------------------------------------


def cli(*argv: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "dnsbalance", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


def test_subprocess_convert_with_kubeconfig_env_and_stdin(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    add_service(kube)
    done = cli(
        "convert-service",
        "greeter",
        "--strategy",
        "replace",
        "--backup-dir",
        str(backup_dir(tmp_path)),
        env={"KUBECONFIG": str(kubeconfig)},
    )
    assert done.returncode == 0, done.stderr
    assert "replaced by a headless Service" in done.stdout
    assert "backup of service/greeter written to" in done.stderr
    now = service(kube, "greeter")
    assert now is not None
    assert now["spec"]["clusterIP"] == "None"
    manifest = yaml.safe_dump(kube.service("web", NS, ports=[("http", 80)], selector={"a": "b"}))
    done = cli("convert-service", "-f", "-", stdin=manifest)
    assert done.returncode == 0, done.stderr
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(done.stdout)] == [
        "web",
        "web-headless",
    ]
    bad = cli("convert-service", "-f", "-", stdin="kind: Service\nmetadata:\n  name: [x\n")
    assert bad.returncode == 2
    assert bad.stderr.startswith("dnsbalance: error: -:")
    assert "invalid YAML" in bad.stderr


def test_subprocess_watch_ends_on_sigint_with_exit_0(embedded_dns: DNSResponder) -> None:
    embedded_dns.add_pod("sigint-watch", NS, "10.7.3.1")
    # As from a terminal: Ctrl-C's default action even when this test runs in a background
    # job, whose shell hands SIGINT down ignored (and Python keeps it so).
    default_sigint = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'dnsbalance'; runpy.run_module('dnsbalance', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            default_sigint,
            "resolve",
            f"sigint-watch.{NS}:8000",
            "--nameserver",
            embedded_dns.address,
            "--mode",
            "dns",
            "--watch",
            "--interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A watch that outlives its Ctrl-C dumps every thread's stack on SIGABRT below.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        assert proc.stdout is not None
        shown = [proc.stdout.readline() for _ in range(3)]  # the table, then the watch runs
        assert shown[0].startswith("kubernetes:///sigint-watch.app:8000"), shown
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"still running 60 s after SIGINT; its threads:\n{err}")
        assert proc.returncode == 0, (shown, out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_replace_with_rollback_tells_its_steps_in_order_on_stderr(
    kube: FakeKubernetesAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """Issue 15 item 11: through a pipe, the progress of a replace that rolls back reads
    in the order it happened (backup, deleted, failed, rolled back), all on stderr."""
    add_service(kube)
    kube.fail_next(1, code=500, verb="create", resource="services", dry_run=False)
    done = cli(
        "convert-service",
        "greeter",
        "--strategy",
        "replace",
        "--backup-dir",
        str(backup_dir(tmp_path)),
        env={"KUBECONFIG": str(kubeconfig)},
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if needle in line)
        for needle in (
            "backup of service/greeter",
            "service/greeter deleted",
            "failed",
            "rolled back",
        )
    ]
    assert order == sorted(order), done.stderr
    assert "deleted" not in done.stdout
