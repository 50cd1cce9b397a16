"""The client's zone: zone=, DNSBALANCE_ZONE, or its Node's label read from the fake API
with the official client (allowed, forbidden, node missing, label missing, errors)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import partial

import pytest
from kubernetes.client import ApiClient

from dnsbalance import ConfigError
from dnsbalance._kube.nodes import (
    Answer,
    ReadOnce,
    read_node_zone,
    read_traffic_policy,
    zone_source,
)
from dnsbalance._kube.watch_policy import RetryPolicy
from dnsbalance.testing import FakeKubernetesAPI

FAST = RetryPolicy(fast_first=0.01, fast_cap=0.02, fast_window=5.0, base=0.05, cap=0.1)


@pytest.fixture
def kube() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI() as api:
        api.apply_node("node-b1", zone="zone-b")
        api.apply_node("node-x")  # no zone label
        yield api


# -- where the zone comes from -------------------------------------------------------


def test_the_argument_wins_over_the_environment() -> None:
    env = {"DNSBALANCE_ZONE": "zone-c", "NODE_NAME": "node-b1"}
    found = zone_source("zone-a", env)
    assert (found.zone, found.node, found.origin) == ("zone-a", "node-b1", "argument")


def test_the_environment_variable_wins_over_the_node() -> None:
    found = zone_source(None, {"DNSBALANCE_ZONE": "zone-c", "NODE_NAME": "node-b1"})
    assert (found.zone, found.node, found.origin) == ("zone-c", "node-b1", "DNSBALANCE_ZONE")


def test_the_node_is_asked_when_only_node_name_is_set() -> None:
    found = zone_source(None, {"NODE_NAME": "node-b1"})
    assert (found.zone, found.node, found.origin) == (None, "node-b1", "node")


def test_nothing_set_says_how_to_set_it() -> None:
    found = zone_source(None, {})
    assert (found.zone, found.node, found.origin) == (None, None, "none")
    assert "DNSBALANCE_ZONE" in found.why
    assert "NODE_NAME" in found.why
    assert "rbac-topology.yaml" in found.why


@pytest.mark.parametrize("zone", ["zone b", "-a", "z" * 64, 3, ""])
def test_a_bad_zone_argument_is_refused_at_the_door(zone: object) -> None:
    with pytest.raises(ConfigError, match="zone must be a zone name"):
        zone_source(zone, {})  # type: ignore[arg-type]


def test_a_bad_zone_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="DNSBALANCE_ZONE='zone b' is not a zone name"):
        zone_source(None, {"DNSBALANCE_ZONE": "zone b"})


def test_a_bad_node_name_is_not_used_and_says_why() -> None:
    found = zone_source(None, {"NODE_NAME": "Node B"})
    assert (found.zone, found.node, found.origin) == (None, None, "none")
    assert "NODE_NAME='Node B' is not a node name" in found.why
    assert zone_source("zone-a", {"NODE_NAME": "Node B"}).node is None


def test_the_real_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNSBALANCE_ZONE", "zone-e")
    assert zone_source(None).zone == "zone-e"


# -- reading the Node --------------------------------------------------------------------


def test_allowed_reads_the_zone_label(kube: FakeKubernetesAPI) -> None:
    with kube.api_client() as client:
        answer = read_node_zone(client, "node-b1")
    assert answer == Answer("zone-b", True)
    assert [(r.verb, r.resource, r.path) for r in kube.requests] == [
        ("get", "nodes", "/api/v1/nodes/node-b1")
    ]


def test_forbidden_is_final_and_names_the_manifest(kube: FakeKubernetesAPI) -> None:
    kube.deny("get", "nodes")
    with kube.api_client() as client:
        answer = read_node_zone(client, "node-b1")
    assert (answer.value, answer.final) == (None, True)
    assert answer.error is not None
    assert answer.error.status == 403
    assert "rbac-topology.yaml" in answer.why
    assert "at the cluster scope" in answer.why


def test_node_missing_is_final(kube: FakeKubernetesAPI) -> None:
    with kube.api_client() as client:
        answer = read_node_zone(client, "node-gone")
    assert (answer.value, answer.final) == (None, True)
    assert "there is no Node 'node-gone'" in answer.why


def test_label_missing_is_final(kube: FakeKubernetesAPI) -> None:
    with kube.api_client() as client:
        answer = read_node_zone(client, "node-x")
    assert (answer.value, answer.final) == (None, True)
    assert "has no topology.kubernetes.io/zone label" in answer.why


def test_a_server_error_is_retried(kube: FakeKubernetesAPI) -> None:
    kube.fail_next(1, code=500, verb="get", resource="nodes")
    with kube.api_client() as client:
        answer = read_node_zone(client, "node-b1")
    assert (answer.value, answer.final) == (None, False)


def test_the_lookup_retries_errors_then_reports_the_zone_once(kube: FakeKubernetesAPI) -> None:
    kube.fail_next(2, code=500, verb="get", resource="nodes")
    kube.fail_next(1, code=429, verb="get", resource="nodes", retry_after=0)
    answers: list[Answer] = []
    configuration = kube.configuration()
    configuration.retries = False  # as dnsbalance configures its clients: one retry layer
    with ApiClient(configuration) as client:
        lookup = ReadOnce(
            partial(read_node_zone, client, "node-b1"), on_answer=answers.append, retry=FAST
        )
        lookup.start()
        assert lookup.wait(10) == Answer("zone-b", True)
        lookup.stop()
    assert answers == [Answer("zone-b", True)]
    assert lookup.attempts == 4
    assert "dnsbalance-node-zone" not in [t.name for t in threading.enumerate()]


def test_the_lookup_while_unreachable_keeps_trying_until_stopped() -> None:
    with FakeKubernetesAPI() as api:
        client = api.api_client()
    answers: list[Answer] = []
    with client:
        lookup = ReadOnce(
            partial(read_node_zone, client, "node-b1"), on_answer=answers.append, retry=FAST
        )
        lookup.start()
        assert lookup.wait(0.5) is None
        lookup.stop()
    assert answers == []
    assert lookup.attempts >= 2
    assert "dnsbalance-node-zone" not in [t.name for t in threading.enumerate()]


def test_no_zone_is_one_info_line(
    kube: FakeKubernetesAPI, caplog: pytest.LogCaptureFixture
) -> None:
    kube.deny("get", "nodes")
    caplog.set_level(logging.DEBUG, logger="dnsbalance")
    with kube.api_client() as client:
        lookup = ReadOnce(
            partial(read_node_zone, client, "node-b1"), on_answer=lambda _: None, retry=FAST
        )
        lookup.start()
        assert lookup.wait(10) is not None
    infos = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(infos) == 1
    assert infos[0].levelno == logging.INFO
    assert "calls use every zone" in infos[0].getMessage()
    assert "rbac-topology.yaml" in infos[0].getMessage()


# -- the Service's internalTrafficPolicy -------------------------------------------------


def test_traffic_policy_read_from_the_service(kube: FakeKubernetesAPI) -> None:
    kube.put(kube.service("greeter", "app", ports=[("grpc", 50051)], cluster_ip="None"))
    with kube.api_client() as client:
        assert read_traffic_policy(client, "app", "greeter") == Answer("Cluster", True)
        body = kube.get_object("Service", "app", "greeter")
        assert body is not None
        body["spec"]["internalTrafficPolicy"] = "Local"
        kube.put(body)
        assert read_traffic_policy(client, "app", "greeter") == Answer("Local", True)


def test_traffic_policy_forbidden_is_unknown_and_final(kube: FakeKubernetesAPI) -> None:
    kube.put(kube.service("greeter", "app", ports=[("grpc", 50051)], cluster_ip="None"))
    kube.deny("get", "services")
    with kube.api_client() as client:
        answer = read_traffic_policy(client, "app", "greeter")
    assert (answer.value, answer.final) == (None, True)
    assert "a Local policy is not honoured" in answer.why
    assert "HTTP 403" in answer.why
