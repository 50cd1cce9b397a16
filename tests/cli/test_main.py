"""The dnsbalance command: in-process for detail, as a subprocess the way users run it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dnsbalance import __version__
from dnsbalance.cli.main import main
from dnsbalance.testing import DNSResponder, Pod


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_resolve_text(dns_server: Any, unique_service: str) -> None:
    dns_server.add_pod(unique_service, "ns", "10.9.0.2")
    dns_server.add_pod(unique_service, "ns", "10.9.0.1")
    code, out = run("resolve", f"{unique_service}.ns:8000", "--nameserver", dns_server.address)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        f"kubernetes:///{unique_service}.ns:8000 -> {unique_service}.ns.svc.cluster.local "
        f"(A/AAAA via {dns_server.address})"
    )
    assert lines[1].split() == ["ADDRESS", "PORT", "HOSTNAME", "TTL"]
    assert [line.split() for line in lines[2:]] == [
        ["10.9.0.1", "8000", "-", "5"],
        ["10.9.0.2", "8000", "-", "5"],
    ]


def test_resolve_json_named_port(embedded_dns: DNSResponder, unique_service: str) -> None:
    embedded_dns.set_service(
        unique_service, "ns", [Pod(ip="10.9.1.1", hostname="web-0")], ports={"grpc": 9000}
    )
    code, out = run(
        "resolve", f"{unique_service}.ns:grpc", "--nameserver", embedded_dns.address, "-o", "json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["target"]["port"] == "grpc"
    assert report["dns"]["name"] == f"_grpc._tcp.{unique_service}.ns.svc.cluster.local"
    assert report["dns"]["endpoints"] == [
        {"address": "10.9.1.1", "port": 9000, "hostname": "web-0", "ttl": 5}
    ]


def test_resolve_no_endpoints(embedded_dns: DNSResponder) -> None:
    code, out = run("resolve", "nothing-here.ns:80", "--nameserver", embedded_dns.address)
    assert code == 0
    assert "no ready endpoints" in out


def test_resolve_errors_have_exit_codes(
    silent_dns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("resolve", "svc.ns:8000", "--nameserver", silent_dns, "--timeout", "0.3")[0] == 1
    assert "timeout" in capsys.readouterr().err
    assert run("resolve", "http://svc.ns:8000")[0] == 2
    assert "unknown scheme 'http'" in capsys.readouterr().err
    assert run("resolve", "svc.ns:8000", "--nameserver", "not-an-ip")[0] == 2
    assert "bad nameserver" in capsys.readouterr().err
    assert run()[0] == 2


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["resolve"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["resolve", "svc:80", "-o", "xml"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_subprocess_version_and_module_entry(embedded_dns: DNSResponder) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "dnsbalance", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"dnsbalance {__version__}"
    embedded_dns.add_pod("cli-sub", "ns", "10.9.2.1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnsbalance",
            "resolve",
            "dns:///cli-sub.ns.svc.cluster.local:8000",
            "--nameserver",
            embedded_dns.address,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dns"]["endpoints"][0]["address"] == "10.9.2.1"
    bad = subprocess.run(
        [sys.executable, "-m", "dnsbalance", "resolve", "[::1]:80"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("dnsbalance: error: invalid target '[::1]:80'")


def test_convert_service_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: []}\n")
    assert run("convert-service")[0] == 2
    assert "needs NAME" in capsys.readouterr().err
    assert run("convert-service", "a", "-f", str(manifest))[0] == 2
    assert "not both" in capsys.readouterr().err
    assert run("convert-service", "-f", str(manifest), "--dry-run", "server")[0] == 2
    assert "needs a cluster" in capsys.readouterr().err
    assert run("convert-service", "-f", str(tmp_path / "missing.yaml"))[0] == 2
    assert "cannot read" in capsys.readouterr().err
    assert run("convert-service", "-f", str(manifest))[0] == 2
    assert "document 1 (line 1): service/a: spec.ports is required" in capsys.readouterr().err
    assert run("convert-service", "greeter")[0] == 2  # no kubeconfig anywhere
    assert "no Kubernetes API configuration" in capsys.readouterr().err
    for argv in (["--strategy", "other"], ["-o", "yaml", "--diff"], ["--dry-run", "all"]):
        with pytest.raises(SystemExit) as info:
            main(["convert-service", "a", *argv])
        assert info.value.code == 2


def test_check_in_dns_mode_needs_no_api(embedded_dns: DNSResponder, unique_service: str) -> None:
    pods = [Pod(ip="10.9.3.1"), Pod(ip="10.9.3.2")]
    embedded_dns.set_service(unique_service, "ns", pods, ports={"grpc": 9000})
    code, out = run(
        "check", f"{unique_service}.ns:grpc", "--nameserver", embedded_dns.address, "--mode", "dns"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"checks for kubernetes:///{unique_service}.ns:grpc"
    assert lines[1].startswith(f"ok    dns: _grpc._tcp.{unique_service}.ns.svc.cluster.local")
    assert lines[1].endswith("10.9.3.1:9000, 10.9.3.2:9000")
    assert "ok    api: not used: mode dns never reads the Kubernetes API" in out
    assert "ok    rbac: not needed" in out
    assert out.endswith(" 0 fail\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["convert-service", "web"],
        ["check", "web.app:grpc"],
        ["resolve", "web.app:grpc"],
        ["resolve", "web.app:grpc", "--mode", "dns"],
    ],
    ids=["convert-service", "check", "resolve", "resolve-dns"],
)
def test_a_missing_kubeconfig_is_named(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22 item 8d: an explicit --kubeconfig that does not exist is a usage error
    naming the file (not the client's "Invalid kube-config file. No configuration
    found.")."""
    missing = tmp_path / "nonexistent"
    if argv[0] != "convert-service":
        argv = [*argv, "--nameserver", "127.0.0.1:9", "--timeout", "0.2"]
    assert main([*argv, "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"dnsbalance: error: --kubeconfig {missing}: no such file" in err
    assert "Invalid kube-config" not in err


def test_the_targets_namespace_wins_over_n(embedded_dns: DNSResponder, unique_service: str) -> None:
    """Issue 22 item 8e: -n fills in a namespace the target does not name; it does not
    override the one it does (as namespace= in the library)."""
    embedded_dns.add_pod(unique_service, "app", "10.9.1.1")
    code, out = run(
        "resolve",
        f"{unique_service}.app:8000",
        "-n",
        "other",
        "--mode",
        "dns",
        "--nameserver",
        embedded_dns.address,
    )
    assert code == 0
    assert f"-> {unique_service}.app.svc.cluster.local" in out.splitlines()[0]
    code, out = run(
        "resolve",
        f"{unique_service}:8000",
        "-n",
        "app",
        "--mode",
        "dns",
        "--nameserver",
        embedded_dns.address,
    )
    assert code == 0
    assert f"-> {unique_service}.app.svc.cluster.local" in out.splitlines()[0]
