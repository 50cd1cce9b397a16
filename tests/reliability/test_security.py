"""Security: the library works with manifests/rbac.yaml and nothing more, never logs or
raises a credential, and TLS name checks hold through a balanced channel."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from dnsbalance import KubernetesError, resolve_channel
from dnsbalance._kube.client import load_api_client
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits.backends import Fleet, demo_pb2_grpc, wait_until
from tests.kits.reliability import NS, CallLog, Certificates, measured, publish_slice

REPO = Path(__file__).resolve().parents[2]
RBAC = REPO / "manifests" / "rbac.yaml"

# Everything the fake serves, as RBAC names it: (resource, API group), and every verb.
RESOURCES = [
    ("services", ""),
    ("endpointslices", "discovery.k8s.io"),
    ("selfsubjectaccessreviews", "authorization.k8s.io"),
]
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def role_rules(path: Path) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") in ("Role", "ClusterRole"):
            rules.extend(doc.get("rules") or [])
    return rules


def role_allows(rules: list[dict[str, Any]], verb: str, resource: str, group: str) -> bool:
    return any(
        (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
        and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        for rule in rules
    )


def test_works_with_the_rbac_manifest_alone(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deny every (verb, resource) of the fake that manifests/rbac.yaml does not grant;
    modes api and auto still work, and every request they make is one the Role allows,
    in its namespace, but the optional pod readiness's one get of the Service."""
    rules = role_rules(RBAC)
    assert rules, f"no Role in {RBAC}"
    granted = []
    for (resource, group), verb in product(RESOURCES, VERBS):
        if role_allows(rules, verb, resource, group):
            granted.append((verb, resource))
        else:
            kube.deny(verb, resource, group=group)
    assert granted, "the Role grants nothing the library could use"
    with kube.api_client() as client, pytest.raises(ApiException) as denied:
        CoreV1Api(client).list_namespaced_service(NS)  # the deny rules are in force
    assert denied.value.status == 403
    kube.reset_log()

    hosts = [fleet.add().host for _ in range(3)]
    publish_slice(kube, unique_service, hosts[:2], fleet.port)
    cluster_dns.set_service(unique_service, NS, hosts[:2], ports={"grpc": fleet.port})
    log = CallLog()
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        resolve_channel(f"{unique_service}.{NS}:grpc", kubeconfig=kubeconfig, mode="api") as api,
        resolve_channel(
            f"{unique_service}.{NS}:grpc",
            kubeconfig=kubeconfig,
            nameservers=[cluster_dns.address],
            poll_interval=0.2,
        ) as auto,
    ):
        for channel in (api, auto):
            stub = demo_pb2_grpc.DemoServiceStub(channel)
            assert {log.call(stub) for _ in range(20)} == set(hosts[:2])
        assert wait_until(lambda: kube.watch_count == 1, 5.0)  # api and auto share it
        publish_slice(kube, unique_service, hosts, fleet.port)
        cluster_dns.set_service(unique_service, NS, hosts, ports={"grpc": fleet.port})
        for channel in (api, auto):
            assert wait_until(
                lambda ch=channel: [ep.address for ep in ch.endpoints] == hosts,  # type: ignore[misc]
                5.0,
            )
    assert log.failed == 0, log.error_kinds()
    assert [r.getMessage() for r in caplog.records] == []  # no fallback, no refusal
    # The one request beyond the Role: the optional pod readiness (rbac-pods.yaml) reads
    # the Service's selector once per shared watch, is refused, and is not asked again.
    optional = [r for r in kube.requests if (r.verb, r.resource) == ("get", "services")]
    assert [(r.status, r.path.rsplit("/", 1)[-1]) for r in optional] == [(403, unique_service)]
    requests = [r for r in kube.requests if r not in optional]
    used = {(r.verb, r.resource) for r in requests}
    assert used <= set(granted), used - set(granted)
    assert {r.status for r in requests} <= {200}, [r for r in requests if r.status != 200]
    assert all(f"/namespaces/{NS}/" in r.path for r in kube.requests)  # a Role: one namespace
    verbs = sorted({v for v, _ in used})
    measured(
        "only manifests/rbac.yaml granted",
        f"api and auto worked; requests used {verbs} on endpointslices in namespace "
        f"{NS!r}, none refused but the optional pod readiness's one get of the Service",
        log.failed,
    )


# -- credentials never shown ---------------------------------------------------------------

TOKEN = "sekret-bearer-3f9c2a7e51d04b8c9e1a"
WRONG = "sekret-wrong-8b1e44c09a7f2d6e5c3b"


def exception_texts(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        each = todo.pop()
        if each is None or id(each) in seen:
            continue
        seen.add(id(each))
        yield str(each)
        yield repr(each)
        yield "".join(traceback.format_exception(each))
        todo += [each.__cause__, each.__context__]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (TOKEN, WRONG):
            assert secret not in text, f"credential leaked: ...{text[:2000]}..."


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything at DEBUG: dnsbalance, the kubernetes client, urllib3 (the root logger)."""
    caplog.set_level(logging.DEBUG)
    for name in ("dnsbalance", "kubernetes", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            parts.extend(exception_texts(record.exc_info[1]))
    return "\n".join(parts)


def test_no_credential_in_logs_or_errors(
    debug_logs: pytest.LogCaptureFixture,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    tmp_path: Path,
) -> None:
    """A bearer token through every API path at DEBUG: success (list, watch, a change),
    401, 403 and unreachable, in modes api and auto, from a kubeconfig and from a pod's
    service-account token file (rotated)."""
    hosts = [fleet.add().host for _ in range(2)]
    cluster_dns.set_service(unique_service, NS, hosts, ports={"grpc": fleet.port})
    target = f"{unique_service}.{NS}:grpc"
    raised: list[BaseException] = []
    paths = 0
    with FakeKubernetesAPI(tokens={TOKEN}, bookmark_interval=0.2) as kube:
        publish_slice(kube, unique_service, hosts[:1], fleet.port)
        good = kube.write_kubeconfig(tmp_path / "good", token=TOKEN, namespace=NS)
        wrong = kube.write_kubeconfig(tmp_path / "wrong", token=WRONG, namespace=NS)
        dead = kube.write_kubeconfig(tmp_path / "dead", token=TOKEN, namespace=NS)
        dead.write_text(dead.read_text().replace(kube.url, "http://127.0.0.1:9"))

        # Success: list, watch, a change followed, in both modes.
        with (
            resolve_channel(target, kubeconfig=good, mode="api") as api,
            resolve_channel(target, kubeconfig=good, nameservers=[cluster_dns.address]) as auto,
        ):
            publish_slice(kube, unique_service, hosts, fleet.port)
            assert wait_until(lambda: len(api.endpoints) == 2, 5.0)
            assert wait_until(lambda: len(auto.endpoints) == 2, 5.0)
            paths += 1
        # 401 (a wrong token), 403 (no Role), unreachable: api raises, auto falls back.
        kube.deny("*", "endpointslices")
        for kubeconfig, status in ((wrong, 401), (good, 403), (dead, None)):
            with pytest.raises(KubernetesError) as info:
                resolve_channel(target, kubeconfig=kubeconfig, mode="api")
            assert info.value.status == status
            raised.append(info.value)
            with resolve_channel(
                target, kubeconfig=kubeconfig, nameservers=[cluster_dns.address]
            ) as auto:
                assert [ep.address for ep in auto.endpoints] == hosts
            paths += 2
    # In a pod (over https, as in-cluster configuration always is): the token file,
    # rotated while watching; then every token refused.
    with FakeKubernetesAPI(tokens={TOKEN}, tls=True, bookmark_interval=0.2) as kube:
        publish_slice(kube, unique_service, hosts, fleet.port)
        account = kube.write_service_account(tmp_path / "sa", TOKEN, NS)
        client = load_api_client(service_account_dir=account, environ=kube.incluster_environ())
        try:
            with resolve_channel(target, api_client=client, mode="api") as api:
                assert wait_until(lambda: kube.watch_count >= 1, 5.0)
                (account / "token").write_text(WRONG)
                kube.rotate_token(TOKEN, WRONG)
                kube.cut_watches()
                publish_slice(kube, unique_service, hosts[:1], fleet.port)
                assert wait_until(lambda: len(api.endpoints) == 1, 5.0)
                kube.set_tokens({"something-else"})  # now every request is refused: 401
                kube.cut_watches()
                assert wait_until(lambda: any(r.status == 401 for r in kube.requests), 5.0)
            paths += 1
        finally:
            client.close()
    text = all_log_text(debug_logs)
    loggers = {r.name.split(".")[0] for r in debug_logs.records}
    assert {"dnsbalance", "urllib3"} <= loggers, loggers  # DEBUG reached the libraries
    assert "Unauthorized" in text or "401" in text  # the refusals were logged...
    assert_no_secret(text)  # ...without the token
    for exc in raised:
        assert_no_secret(*exception_texts(exc))
    measured(
        "bearer token at DEBUG (success, 401, 403, unreachable, rotation)",
        f"{paths} API paths, {len(debug_logs.records)} log records, {len(raised)} exceptions "
        "(with causes and tracebacks): the token appears in none",
        "n/a",
    )


# -- TLS ----------------------------------------------------------------------------------


def test_tls_server_name_is_checked_through_the_channel(
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
) -> None:
    """The channel's authority is the Service name: a pod presenting a certificate for
    that name works, one presenting another name's certificate is refused (alone: the
    calls fail; beside a good pod: it never gets a call), in modes dns and api."""
    certs = Certificates()
    service_name = f"{unique_service}.{NS}.svc.cluster.local"
    right = grpc.ssl_server_credentials([certs.server(service_name)])
    wrong = grpc.ssl_server_credentials([certs.server(f"other.{NS}.svc.cluster.local")])
    good = fleet.add(server_credentials=right)
    bad = fleet.add(server_credentials=wrong)
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca)

    def calls(channel: grpc.Channel, n: int = 20) -> CallLog:
        log = CallLog()
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        for _ in range(n):
            log.call(stub, timeout=5.0)
        return log

    dns_target = f"{unique_service}.{NS}:{fleet.port}"
    cluster_dns.set_service(unique_service, NS, [bad.host])
    with resolve_channel(
        dns_target, credentials=credentials, nameservers=[cluster_dns.address], mode="dns"
    ) as channel:
        refused = calls(channel, 5)
    assert refused.ok == 0
    assert set(refused.error_kinds()) == {"RpcError UNAVAILABLE"}
    assert bad.calls == 0

    cluster_dns.set_service(unique_service, NS, [good.host, bad.host])
    with resolve_channel(
        dns_target, credentials=credentials, nameservers=[cluster_dns.address], mode="dns"
    ) as channel:
        assert len(channel.endpoints) == 2
        mixed = calls(channel)
    assert mixed.failed == 0, mixed.error_kinds()
    assert set(mixed.values) == {good.host}

    publish_slice(kube, unique_service, [good.host, bad.host], fleet.port)
    with resolve_channel(
        f"{unique_service}.{NS}:grpc", credentials=credentials, kubeconfig=kubeconfig, mode="api"
    ) as channel:
        assert channel.target.endswith(".dnsbalance.invalid:" + str(fleet.port))
        api_mode = calls(channel)
    assert api_mode.failed == 0, api_mode.error_kinds()
    assert set(api_mode.values) == {good.host}
    assert bad.calls == 0
    measured(
        "TLS: certificate for the wrong name",
        f"refused (alone: {refused.failed}/5 calls UNAVAILABLE; beside a good pod: 0 of "
        f"{mixed.ok + api_mode.ok} calls reached it, modes dns and api)",
        f"{refused.failed} (no pod with a valid certificate)",
    )
