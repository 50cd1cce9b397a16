"""Issue 15, "the first hour of a new user": the installed ``dnsbalance`` console script in a
subprocess against FakeKubernetesAPI with good, denied (RBAC 403), unreachable and
bad-token kubeconfigs. Previews never write, check tells the truth, errors name the cause.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsbalance.testing import DNSResponder, FakeKubernetesAPI, Pod

NS = "app"
SCRIPT = Path(sys.executable).with_name("dnsbalance")  # the venv's console script


@pytest.fixture
def kube() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI(tokens={"good"}) as api:
        yield api


@pytest.fixture
def good(kube: FakeKubernetesAPI, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "good", token="good", namespace=NS)


@pytest.fixture
def bad_token(kube: FakeKubernetesAPI, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "bad-token", token="wrong", namespace=NS)


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "x", "user": {"token": "good"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x", "namespace": NS}}],
        "current-context": "x",
    }
    path = tmp_path / "unreachable"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*argv: str, cwd: Path | None = None, stdin: str | None = None) -> Any:
    assert SCRIPT.is_file(), f"the console script is not installed at {SCRIPT}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "GRPC_DNS"))}
    return subprocess.run(
        [str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        cwd=cwd,
        env=env,
    )


def add_service(kube: FakeKubernetesAPI, name: str = "greeter", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("ports", [("grpc", 8000, 50051)])
    kwargs.setdefault("selector", {"app": name})
    return kube.put(kube.service(name, NS, **kwargs))


def service_writes(kube: FakeKubernetesAPI) -> list[tuple[str, str]]:
    return [
        (r.method, r.query.get("dryRun", ""))
        for r in kube.requests
        if r.resource == "services" and r.method != "GET"
    ]


# -- 1. --diff is a preview ----------


def test_diff_previews_a_twin_and_writes_nothing(kube: FakeKubernetesAPI, good: Path) -> None:
    original = add_service(kube)
    kube.reset_log()
    done = cli("convert-service", "greeter", "--diff", "--kubeconfig", str(good))
    assert done.returncode == 0, done.stderr
    assert service_writes(kube) == []
    assert kube.get_object("Service", NS, "greeter-headless") is None
    assert kube.get_object("Service", NS, "greeter") == original
    assert "+  name: greeter-headless" in done.stdout
    assert "created" not in done.stdout + done.stderr.replace("would be created", "")


def test_diff_of_replace_neither_backs_up_nor_deletes(
    kube: FakeKubernetesAPI, good: Path, tmp_path: Path
) -> None:
    original = add_service(kube)
    kube.reset_log()
    backups = tmp_path / "b"
    backups.mkdir()
    done = cli(
        "convert-service",
        "greeter",
        "--strategy",
        "replace",
        "--diff",
        "--backup-dir",
        str(backups),
        "--kubeconfig",
        str(good),
    )
    assert done.returncode == 0, done.stderr
    assert service_writes(kube) == []
    assert kube.get_object("Service", NS, "greeter") == original
    assert list(backups.iterdir()) == []
    diff = done.stdout
    assert "-  clusterIP: 10.96." in diff
    assert "+  clusterIP: None" in diff
    for noise in ("uid:", "resourceVersion:", "creationTimestamp:", "managedFields", "status:"):
        assert noise not in diff, noise


def test_diff_with_server_dry_run_only_sends_dry_runs(
    kube: FakeKubernetesAPI, good: Path, tmp_path: Path
) -> None:
    original = add_service(kube)
    rv = kube.resource_version
    kube.reset_log()
    done = cli(
        "convert-service",
        "greeter",
        "--strategy",
        "replace",
        "--diff",
        "--dry-run=server",
        "--backup-dir",
        str(tmp_path),
        "--kubeconfig",
        str(good),
    )
    assert done.returncode == 0, done.stderr
    # create/update carry dryRun=All in the query; the DELETE in its DeleteOptions body,
    # where the server reads it (issue 22): nothing is stored either way
    assert {(m, d) for m, d in service_writes(kube)} == {("POST", "All"), ("DELETE", "")}
    assert kube.resource_version == rv
    assert kube.get_object("Service", NS, "greeter") == original
    assert "+  clusterIP: None" in done.stdout
    assert "uid:" not in done.stdout


def test_dry_run_without_a_value_means_client(kube: FakeKubernetesAPI, good: Path) -> None:
    add_service(kube)
    kube.reset_log()
    done = cli("convert-service", "greeter", "--dry-run", "--kubeconfig", str(good))
    assert done.returncode == 0, done.stderr
    assert "(dry run)" in done.stdout
    assert service_writes(kube) == []


# -- 2. a missing backup directory is refused ----------


def test_missing_backup_dir_is_refused(kube: FakeKubernetesAPI, good: Path, tmp_path: Path) -> None:
    original = add_service(kube)
    kube.reset_log()
    missing = tmp_path / "no" / "such" / "dir"
    done = cli(
        "convert-service",
        "greeter",
        "--strategy",
        "replace",
        "--backup-dir",
        str(missing),
        "--kubeconfig",
        str(good),
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"--backup-dir {missing} does not exist" in done.stderr
    assert not (tmp_path / "no").exists()
    assert service_writes(kube) == []
    assert kube.get_object("Service", NS, "greeter") == original


def test_default_backup_dir_is_the_current_folder(
    kube: FakeKubernetesAPI, good: Path, tmp_path: Path
) -> None:
    add_service(kube)
    done = cli(
        "convert-service",
        "greeter",
        "--strategy",
        "replace",
        "--kubeconfig",
        str(good),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("app.greeter.*.backup.yaml"))) == 1


# -- 3. check tells the truth about the API ----------


def check(dns: DNSResponder, target: str, *extra: str) -> Any:
    return cli("check", target, "--nameserver", dns.address, *extra)


def lines_of(out: str) -> dict[str, str]:
    """check's lines by check name: 'status detail'."""
    found = {}
    for line in out.splitlines()[1:-1]:
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1].endswith(":"):
            found[parts[1][:-1]] = f"{parts[0]} {parts[2]}"
    return found


@pytest.fixture
def published(kube: FakeKubernetesAPI, embedded_dns: DNSResponder, unique_service: str) -> str:
    add_service(kube, unique_service, cluster_ip="None")
    embedded_dns.set_service(
        unique_service, NS, [Pod(ip="10.15.0.1"), Pod(ip="10.15.0.2")], ports={"grpc": 50051}
    )
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=["10.15.0.1", "10.15.0.2"],
        ports=[("grpc", 50051, "TCP")],
    )
    return f"{unique_service}.{NS}:grpc"


def test_check_good_kubeconfig_is_all_ok(
    embedded_dns: DNSResponder, published: str, good: Path
) -> None:
    done = check(embedded_dns, published, "--kubeconfig", str(good))
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1] == "8 ok, 0 warn, 0 fail"


@pytest.mark.parametrize("mode", ["auto", "api"])
def test_check_fails_when_the_api_is_unreachable(
    embedded_dns: DNSResponder, published: str, unreachable: Path, mode: str
) -> None:
    done = check(embedded_dns, published, "--kubeconfig", str(unreachable), "--mode", mode)
    assert done.returncode == 1, done.stdout
    api = lines_of(done.stdout)["api"]
    assert api.startswith("fail cannot reach the Kubernetes API at http://127.0.0.1:"), api
    assert "fix: check the server address in the kubeconfig" in done.stdout
    assert "rbac.yaml" not in done.stdout


@pytest.mark.parametrize("mode", ["auto", "api"])
def test_check_fails_when_the_token_is_rejected(
    embedded_dns: DNSResponder, published: str, bad_token: Path, mode: str
) -> None:
    done = check(embedded_dns, published, "--kubeconfig", str(bad_token), "--mode", mode)
    assert done.returncode == 1, done.stdout
    api = lines_of(done.stdout)["api"]
    assert api.startswith("fail the Kubernetes API at http://127.0.0.1:"), api
    assert "rejected the credentials (HTTP 401" in api
    assert "fix: renew the credentials" in done.stdout
    assert "rbac.yaml" not in done.stdout


def test_check_fails_on_rbac_403_with_the_rbac_fix(
    kube: FakeKubernetesAPI, embedded_dns: DNSResponder, published: str, good: Path
) -> None:
    kube.deny("list", "endpointslices", namespace=NS)
    kube.deny("create", "selfsubjectaccessreviews")  # cannot even ask: the list itself tells
    done = check(embedded_dns, published, "--kubeconfig", str(good))
    assert done.returncode == 1, done.stdout
    found = lines_of(done.stdout)
    assert found["api"].startswith("ok "), found
    assert found["rbac"].startswith("fail this identity cannot list endpointslices"), found
    assert "fix: apply manifests/rbac.yaml" in done.stdout


def test_check_mode_dns_never_reads_the_api(
    kube: FakeKubernetesAPI, embedded_dns: DNSResponder, published: str, unreachable: Path
) -> None:
    kube.reset_log()
    done = check(embedded_dns, published, "--kubeconfig", str(unreachable), "--mode", "dns")
    assert done.returncode == 0, done.stdout
    assert lines_of(done.stdout)["api"].startswith("ok not used: mode dns")


# -- 4. mode dns cannot tell a ClusterIP from one pod ----------


def test_check_mode_dns_warns_on_a_single_address(
    embedded_dns: DNSResponder, unique_service: str
) -> None:
    embedded_dns.set_service(unique_service, NS, ["10.96.15.15"])
    done = check(embedded_dns, f"{unique_service}.{NS}:8000", "--mode", "dns")
    assert done.returncode == 0, done.stdout
    dns = lines_of(done.stdout)["dns"]
    assert dns.startswith("warn "), dns
    assert "one address" in dns
    assert "ClusterIP" in dns
    embedded_dns.set_service(unique_service, NS, ["10.15.1.1", "10.15.1.2"])
    done = check(embedded_dns, f"{unique_service}.{NS}:8000", "--mode", "dns")
    assert lines_of(done.stdout)["dns"].startswith("ok "), done.stdout


# -- 9 and 10. arguments checked at the door, naming the argument ----------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"target": None}, "target must be a string"),
        ({"credentials": "tls"}, "credentials must be grpc.ChannelCredentials"),
        ({"options": {"a": 1}}, "options must be a sequence of (key, value) pairs"),
        ({"poll_interval": "5"}, "poll_interval must be a number of seconds"),
        ({"dns_timeout": "2"}, "dns_timeout must be a number of seconds"),
        ({"on_change": 5}, "on_change must be a callable"),
        ({"namespace": 3}, "namespace must be a string"),
        ({"nameservers": []}, "nameservers=[] names no DNS server"),
        ({"nameservers": [53]}, "nameservers must be a string or a list of strings"),
        ({"nameservers": "localhost:53"}, "expected IP or IP:PORT"),
        ({"kubeconfig": "/nonexistent/kubeconfig"}, "kubeconfig='/nonexistent/kubeconfig'"),
    ],
)
def test_resolve_channel_checks_arguments_at_the_door(kwargs: dict[str, Any], named: str) -> None:
    from dnsbalance import ConfigError, resolve_channel
    from dnsbalance.aio import resolve_channel as aio_resolve_channel

    arguments: dict[str, Any] = {"target": "greeter.app:grpc", "mode": "dns", **kwargs}
    if "kubeconfig" in kwargs:
        arguments["mode"] = "auto"
    with pytest.raises(ConfigError) as info:
        resolve_channel(**arguments)
    assert named in str(info.value)
    with pytest.raises(ConfigError) as info:
        asyncio.run(aio_resolve_channel(**arguments))
    assert named in str(info.value)


def test_one_nameserver_string_is_one_server(
    embedded_dns: DNSResponder, unique_service: str
) -> None:
    from dnsbalance import resolve_channel

    embedded_dns.add_pod(unique_service, NS, "10.15.2.1")
    with resolve_channel(
        f"{unique_service}.{NS}:8000", mode="dns", nameservers=embedded_dns.address
    ) as channel:
        assert [ep.address for ep in channel.endpoints] == ["10.15.2.1"]


def test_cli_nameserver_help_and_error_agree() -> None:
    done = cli("resolve", "greeter.app:80", "--nameserver", "localhost:42513", "--mode", "dns")
    assert done.returncode == 2
    assert "expected IP or IP:PORT" in done.stderr
    assert "HOST:PORT" not in done.stderr
    assert "IP:PORT" in cli("resolve", "--help").stdout


def test_an_empty_start_logs_one_warning(
    embedded_dns: DNSResponder, caplog: pytest.LogCaptureFixture
) -> None:
    from dnsbalance import resolve_channel

    with (
        caplog.at_level("WARNING", logger="dnsbalance"),
        resolve_channel("greter.app:8000", mode="dns", nameservers=[embedded_dns.address]) as ch,
    ):
        assert ch.endpoints == ()
    empty = [r for r in caplog.records if "starts with 0 endpoints" in r.getMessage()]
    assert len(empty) == 1
    message = empty[0].getMessage()
    assert "greter.app.svc.cluster.local" in message
    assert embedded_dns.address in message


# -- 7. one namespace rule ----------------------------------------------------------------


def test_resolve_and_check_take_the_kubeconfig_contexts_namespace(
    kube: FakeKubernetesAPI, good: Path, embedded_dns: DNSResponder, unique_service: str
) -> None:
    embedded_dns.add_pod(unique_service, NS, "10.15.3.1")
    for command in ("resolve", "check"):
        done = cli(
            command,
            f"{unique_service}:8000",
            "--nameserver",
            embedded_dns.address,
            "--kubeconfig",
            str(good),
            "--mode",
            "dns",
        )
        assert f"{unique_service}.{NS}.svc.cluster.local" in done.stdout, done.stdout
    done = cli("resolve", f"{unique_service}:8000", "--nameserver", embedded_dns.address)
    assert f"{unique_service}.default.svc.cluster.local" in done.stdout  # no kubeconfig


def test_library_takes_the_same_namespace(
    good: Path, embedded_dns: DNSResponder, unique_service: str, tmp_path: Path
) -> None:
    from dnsbalance._kube.client import namespace_for
    from dnsbalance._settings import settings_for

    embedded_dns.add_pod(unique_service, NS, "10.15.4.1")
    settings = settings_for(f"{unique_service}:8000", mode="dns", kubeconfig=good)
    assert settings.target.namespace == NS
    assert settings_for(f"{unique_service}.other:8000", kubeconfig=good).target.namespace == (
        "other"
    )
    assert settings_for(
        f"{unique_service}:8000", namespace="x", kubeconfig=good
    ).target.namespace == ("x")
    account = tmp_path / "sa"
    account.mkdir()
    (account / "namespace").write_text("pod-ns\n")
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBECONFIG": str(good)}
    assert namespace_for(service_account_dir=account, environ=pod) == "pod-ns"
    assert namespace_for(environ={"KUBECONFIG": str(good)}) == NS
    assert namespace_for(environ={"KUBECONFIG": str(tmp_path / "none")}) == "default"


# -- 5. resolve names the cause -----------------------------------------------------------


def test_resolve_names_why_there_is_no_endpoint(
    kube: FakeKubernetesAPI, good: Path, embedded_dns: DNSResponder, unique_service: str
) -> None:
    add_service(kube, "clusterip")
    add_service(kube, "headless", cluster_ip="None")
    kube.put(kube.service("alias", NS, type="ExternalName", external_name="x.example.com"))

    def resolve(target: str) -> str:
        done = cli(
            "resolve", target, "--nameserver", embedded_dns.address, "--kubeconfig", str(good)
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f'Service "{unique_service}" not found in namespace "app"' in resolve(
        f"{unique_service}.{NS}:grpc"
    )
    assert "has no port named 'web' (named ports: grpc)" in resolve(f"headless.{NS}:web")
    assert "ExternalName alias of x.example.com" in resolve(f"alias.{NS}:80")
    assert "is a ClusterIP Service (clusterIP 10.96." in resolve(f"clusterip.{NS}:grpc")
    assert "exists and is headless, but no pod behind it is ready" in resolve(f"headless.{NS}:grpc")


# -- 6. the demo counts every failure ------------------------------------------------------


class _BrokenChannel:
    """Stands in for a channel of a grpcio that breaks every call (1.60-1.62 raised
    TypeError from the multicallable, not grpc.RpcError)."""

    def unary_unary(self, method: str, **kwargs: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise TypeError("unary_unary() got an unexpected keyword argument '_registered_method'")

        return call


def test_demo_counts_calls_that_fail_with_any_exception() -> None:
    import threading

    from dnsbalance.cli.demo import DemoState, _load, _result

    state = DemoState(backends=["127.0.77.1:1"])
    _load("dnsbalance", _BrokenChannel(), state, threading.Event(), rate=50, limit=0.2)  # type: ignore[arg-type]
    assert state.errors["dnsbalance"] >= 5
    result = _result(state, duration=1.0, scale_up_at=0.5, settle=0.6)
    ours = next(c for c in result.clients if c.name == "dnsbalance")
    assert ours.failure is not None
    assert ours.failure.startswith("TypeError: ")
    assert not ours.ok
    assert result.as_dict()["clients"]["dnsbalance"]["failure"] == ours.failure


def test_demo_wording_through_the_console_script() -> None:
    done = cli("demo", "--backends", "1", "--duration", "4", "--no-live")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "1 gRPC backend on" in done.stdout
    assert "calls per second" in done.stdout
    assert " calls/s pod-1:" in done.stdout
    assert "never uses new backends" in done.stdout


# -- 11. small CLI habits ------------------------------------------------------------------


def test_verbose_after_the_subcommand_and_watch_seconds_alone(
    embedded_dns: DNSResponder, good: Path
) -> None:
    done = cli(
        "resolve",
        "x.app:80",
        "--nameserver",
        embedded_dns.address,
        "--kubeconfig",
        str(good),
        "-vv",
    )
    assert done.returncode == 0, done.stderr
    assert " DEBUG dnsbalance: dnsbalance " in done.stderr  # its own line, whatever urllib3 logs
    done = cli("resolve", "x.app:80", "--mode", "dns", "--watch-seconds", "3")
    assert done.returncode == 2
    assert "--watch-seconds needs --watch" in done.stderr


def test_a_manifest_without_a_service_warns_like_an_empty_one() -> None:
    deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
    done = cli("convert-service", "-f", "-", stdin=deployment)
    assert done.returncode == 0, done.stderr
    assert "dnsbalance: warning: - holds no Service; nothing to convert" in done.stderr
    assert yaml.safe_load(done.stdout)["kind"] == "Deployment"


def test_target_messages_say_why(good: Path) -> None:
    """Item 11: a bad Service name names the DNS-1035 rule; an extra ':' after a
    kubernetes:/// target's port is about the port, not about schemes."""
    done = cli("resolve", "Greeter_Bad.app:80", "--mode", "dns", "--nameserver", "127.0.0.1:1")
    assert done.returncode == 2, done.stderr
    assert "bad service 'greeter_bad' (a Service name is a DNS-1035 label" in done.stderr
    done = cli("resolve", "kubernetes:///greeter.app:grpc:extra", "--mode", "dns")
    assert done.returncode == 2, done.stderr
    assert "one port or port name after the Service" in done.stderr
    assert "scheme" not in done.stderr


def test_check_names_the_cluster_ip_not_a_lag(
    kube: FakeKubernetesAPI, embedded_dns: DNSResponder, unique_service: str, good: Path
) -> None:
    """Item 11: DNS answering a ClusterIP Service's virtual IP is not DNS lagging the API."""
    add_service(kube, unique_service, cluster_ip="10.96.7.7")
    embedded_dns.set_service(unique_service, NS, [Pod(ip="10.96.7.7")], ports={"grpc": 50051})
    kube.apply_slice(
        f"{unique_service}-a",
        NS,
        unique_service,
        endpoints=["10.15.1.1", "10.15.1.2"],
        ports=[("grpc", 50051, "TCP")],
    )
    done = check(embedded_dns, f"{unique_service}.{NS}:grpc", "--kubeconfig", str(good))
    assert "DNS and the API disagree" in done.stdout, done.stdout
    assert "DNS answers the Service's cluster IP 10.96.7.7" in done.stdout
    assert "DNS lags the API" not in done.stdout
