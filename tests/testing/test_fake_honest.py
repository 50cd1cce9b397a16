"""FakeKubernetesAPI behaves as kube-apiserver where dnsbalance depends on it (issue 14):
finalizers and deletionTimestamp, 429 with Retry-After, a watch forbidden while list is
allowed, bookmarks about once a minute, protobuf bodies refused. The official client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, DiscoveryV1Api, V1DeleteOptions
from kubernetes.client.exceptions import ApiException

from dnsbalance.testing import FakeKubernetesAPI

NS = "app"
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


@pytest.fixture
def api() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI() as fake:
        yield fake


def lb_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "finalizers": [LB_FINALIZER]},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}]},
    }


def test_finalizers_hold_a_delete_until_the_controller_is_done(api: FakeKubernetesAPI) -> None:
    api.put(lb_service("web"))
    with api.api_client() as client:
        core = CoreV1Api(client)
        answer = core.delete_namespaced_service("web", NS)
        assert answer.metadata.deletion_timestamp is not None  # the object, not a Status
        held = core.read_namespaced_service("web", NS)  # still readable
        assert held.metadata.finalizers == [LB_FINALIZER]
        assert held.metadata.deletion_timestamp == answer.metadata.deletion_timestamp
        again = core.delete_namespaced_service("web", NS)  # a second DELETE changes nothing
        assert again.metadata.resource_version == held.metadata.resource_version
        body = client.sanitize_for_serialization(held)
        body["metadata"]["finalizers"] = [LB_FINALIZER, "example.com/other"]
        with pytest.raises(ApiException) as info:
            core.replace_namespaced_service("web", NS, body)
        assert info.value.status == 422
        assert "no new finalizers can be added if the object is being deleted" in str(
            info.value.body
        )
        api.remove_finalizers("Service", NS, "web")  # the cloud controller is done
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_service("web", NS)
        assert gone.value.status == 404


def test_429_carries_retry_after(api: FakeKubernetesAPI) -> None:
    api.fail_next(2, code=429, verb="list")
    configuration = api.configuration()
    configuration.retries = False  # urllib3 by default waits out a 429's Retry-After itself
    with ApiClient(configuration) as client, pytest.raises(ApiException) as info:
        DiscoveryV1Api(client).list_namespaced_endpoint_slice(NS)
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "1"
    assert json.loads(info.value.body)["details"] == {"retryAfterSeconds": 1}


def test_watch_forbidden_while_list_is_allowed(api: FakeKubernetesAPI) -> None:
    api.deny("watch", "endpointslices", namespace=NS)
    with api.api_client() as client:
        discovery = DiscoveryV1Api(client)
        discovery.list_namespaced_endpoint_slice(NS)
        with pytest.raises(ApiException) as info:
            discovery.list_namespaced_endpoint_slice(NS, watch=True, _preload_content=False)
    assert info.value.status == 403
    message = json.loads(info.value.body)["message"]
    assert 'cannot watch resource "endpointslices"' in message


def test_bookmarks_come_about_once_a_minute_by_default(api: FakeKubernetesAPI) -> None:
    assert api.bookmark_interval == 60.0


def test_protobuf_bodies_are_refused(api: FakeKubernetesAPI) -> None:
    """client-go sends protobuf for built-in kinds; the fake decodes JSON only and says
    so with a 415, never by misreading the body (plain HTTP: the Python client cannot
    send protobuf)."""
    request = urllib.request.Request(
        f"{api.url}/api/v1/namespaces/{NS}/services",
        data=b"k8s\x00\x0a\x0fbinary",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 415
    assert json.loads(info.value.read())["reason"] == "UnsupportedMediaType"
    info.value.close()
    assert api.objects("Service", NS) == []


def _delete(api: FakeKubernetesAPI, name: str, *, query: str = "", body: bytes | None) -> int:
    request = urllib.request.Request(
        f"{api.url}/api/v1/namespaces/{NS}/services/{name}{query}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="DELETE",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_delete_options_come_from_the_body_when_there_is_one(api: FakeKubernetesAPI) -> None:
    """Issue 22 item 1: kube-apiserver's DeleteResource (handlers/delete.go) decodes
    DeleteOptions from the body when the body is not empty (``len(body) > 0``), and
    only from the query parameters when it is: a DELETE with a body and ``?dryRun=All``
    really deletes."""
    for name in ("query-only", "body-dry", "body-wins", "empty-options"):
        api.put(api.service(name, NS, ports=[80]))
    assert _delete(api, "query-only", query="?dryRun=All", body=None) == 200
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "dryRun": ["All"]}
    assert _delete(api, "body-dry", body=json.dumps(options).encode()) == 200
    plain = {"apiVersion": "v1", "kind": "DeleteOptions"}
    assert _delete(api, "body-wins", query="?dryRun=All", body=json.dumps(plain).encode()) == 200
    assert _delete(api, "empty-options", query="?dryRun=All", body=b"{}") == 200
    assert sorted(s["metadata"]["name"] for s in api.objects("Service", NS)) == [
        "body-dry",
        "query-only",
    ]
    # The same through the official client: a body and dry_run= is a real delete.
    api.put(api.service("client-body", NS, ports=[80]))
    with api.api_client() as client:
        CoreV1Api(client).delete_namespaced_service(
            "client-body", NS, body=V1DeleteOptions(), dry_run="All"
        )
        CoreV1Api(client).delete_namespaced_service("query-only", NS, dry_run="All")
        CoreV1Api(client).delete_namespaced_service(
            "body-dry", NS, body=V1DeleteOptions(dry_run=["All"])
        )
    assert sorted(s["metadata"]["name"] for s in api.objects("Service", NS)) == [
        "body-dry",
        "query-only",
    ]


def test_a_dry_run_delete_of_a_held_object_answers_what_would_happen(
    api: FakeKubernetesAPI,
) -> None:
    """A dry-run DELETE of an object with finalizers answers it with deletionTimestamp
    set, as the registry's graceful-deletion update would, and stores nothing."""
    before = api.put(lb_service("edge"))
    with api.api_client() as client:
        answer = CoreV1Api(client).delete_namespaced_service(
            "edge", NS, body=V1DeleteOptions(dry_run=["All"])
        )
    assert answer.metadata.deletion_timestamp is not None
    assert api.get_object("Service", NS, "edge") == before


def test_service_port_names_are_dns_labels_and_target_port_names_iana(
    api: FakeKubernetesAPI,
) -> None:
    """validateServicePort: ports[].name is ValidateDNS1123Label, a string targetPort is
    IsValidPortName (IANA_SVC_NAME: at most 15 characters, a letter, no '--')."""
    kc = api.put(api.service("kc", NS, ports=[("8000-50051", 8000, 50051)], selector={"a": "b"}))
    assert kc["spec"]["ports"][0]["name"] == "8000-50051"
    api.put(api.service("long", NS, ports=[("a-rather-long-service-port-name", 80)]))
    with pytest.raises(FakeKubernetesAPI.StatusError) as info:
        api.put(api.service("bad", NS, ports=[("x" * 64, 80)]))
    assert info.value.status["details"]["causes"][0] == {
        "reason": "FieldValueInvalid",
        "message": f'Invalid value: "{"x" * 64}": must be no more than 63 characters',
        "field": "spec.ports[0].name",
    }
    with pytest.raises(FakeKubernetesAPI.StatusError) as info:
        api.put(api.service("bad", NS, ports=[("grpc", 80, "a-very-long-name")]))
    assert info.value.status["details"]["causes"][0] == {
        "reason": "FieldValueInvalid",
        "message": 'Invalid value: "a-very-long-name": must be no more than 15 characters',
        "field": "spec.ports[0].targetPort",
    }
    with pytest.raises(FakeKubernetesAPI.StatusError) as info:
        api.put(api.service("bad", NS, ports=[("grpc", 80, "8000-50051")]))
    assert info.value.status["details"]["causes"][0]["message"] == (
        'Invalid value: "8000-50051": must contain at least one letter (a-z)'
    )


MIRRORED = {"endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}


def test_a_selector_less_service_has_endpoints_only_when_written(api: FakeKubernetesAPI) -> None:
    """No controller makes Endpoints for a Service without a selector: they are written
    by hand, and the mirroring controller copies them into slices it labels as its own.
    The fake serves them from those mirrored slices; deleting the Service deletes them
    (the endpoints controller deletes Endpoints/<name>, the mirroring controller its
    slices), and leaves other slices alone (the fake then serves an Endpoints view of
    the slices left, its documented simplification, until they go too)."""
    api.put(api.service("db", NS, ports=[("pg", 5432)]))
    with api.api_client() as client:
        core = CoreV1Api(client)

        def endpoints() -> list[str] | None:
            try:
                found = core.read_namespaced_endpoints("db", NS)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return [a.ip for s in found.subsets or () for a in s.addresses or ()]

        assert endpoints() is None
        api.apply_slice("db-hand", NS, "db", endpoints=["10.9.0.9"], ports=[("pg", 5432, "TCP")])
        assert endpoints() is None  # a hand-made slice makes no Endpoints
        api.apply_slice(
            "db-mirrored",
            NS,
            "db",
            endpoints=["10.9.0.1"],
            ports=[("pg", 5432, "TCP")],
            labels=MIRRORED,
        )
        assert endpoints() == ["10.9.0.1"]
        core.delete_namespaced_service("db", NS)
        assert [s["metadata"]["name"] for s in api.objects("EndpointSlice", NS)] == ["db-hand"]
        api.delete("EndpointSlice", NS, "db-hand")
        assert endpoints() is None


def test_each_write_records_the_field_manager_the_server_would(api: FakeKubernetesAPI) -> None:
    """managerOrUserAgent (handlers/create.go): ?fieldManager=, else the User-Agent up to
    its first '/' (the Python client's is OpenAPI-Generator/<version>/python)."""
    with api.api_client() as client:
        core = CoreV1Api(client)
        core.create_namespaced_service(NS, api.service("a", NS, ports=[80]))
        core.create_namespaced_service(
            NS, api.service("b", NS, ports=[80]), field_manager="dnsbalance"
        )
        core.read_namespaced_service("a", NS)
    assert [(r.method, r.field_manager) for r in api.requests] == [
        ("POST", "OpenAPI-Generator"),
        ("POST", "dnsbalance"),
        ("GET", None),
    ]
