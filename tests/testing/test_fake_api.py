"""FakeKubernetesAPI against the unmodified official client: CRUD, selectors, watch, faults.

These tests pin what the real ``kubernetes`` client does with the fake's answers (how
``Watch.stream`` resumes, retries a 410 once, surfaces a cut connection), so that code
tested against the fake meets the same behaviour against a real cluster.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client import ApiClient, ApiException
from urllib3.exceptions import ProtocolError

from dnsbalance.testing._kubeapi.server import FakeKubernetesAPI

NS = "app"
USER = "system:serviceaccount:app:dnsbalance"


@pytest.fixture
def api() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI(bookmark_interval=0.1) as server:
        yield server


@pytest.fixture
def api_client(api: FakeKubernetesAPI) -> Iterator[ApiClient]:
    with api.api_client() as c:
        yield c


@pytest.fixture
def core(api_client: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def disc(api_client: ApiClient) -> client.DiscoveryV1Api:
    return client.DiscoveryV1Api(api_client)


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body = exc.value.body
    assert isinstance(body, str)
    result: dict[str, Any] = json.loads(body)
    return result


def take(stream: Iterable[dict[str, Any]], n: int, *, bookmarks: bool = False) -> list[Any]:
    """The first ``n`` events (BOOKMARKs skipped unless asked), then close the stream."""
    events: list[Any] = []
    with contextlib.closing(iter(stream)) as it:
        for event in it:
            if event["type"] == "BOOKMARK" and not bookmarks:
                continue
            events.append(event)
            if len(events) == n:
                break
    return events


def summary(events: Iterable[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["type"], e["raw_object"]["metadata"].get("name")) for e in events]


def wait_until(predicate: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# -- CRUD -----------------------------------------------------------------------------


def test_service_crud(api: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    body = api.service("greeter", NS, ports=[("grpc", 50051)], selector={"app": "greeter"})
    created = core.create_namespaced_service(NS, body)
    assert created.spec.cluster_ip.startswith("10.9")
    assert created.spec.cluster_ips == [created.spec.cluster_ip]
    assert created.spec.ports[0].target_port == 50051
    assert created.spec.ports[0].protocol == "TCP"
    assert created.spec.session_affinity == "None"
    assert created.metadata.uid
    assert created.metadata.creation_timestamp
    assert created.metadata.generation is None  # Services have none (EndpointSlices do)

    got = core.read_namespaced_service("greeter", NS)
    assert got.metadata.resource_version == created.metadata.resource_version
    listed = core.list_namespaced_service(NS)
    assert [s.metadata.name for s in listed.items] == ["greeter"]
    assert listed.metadata.resource_version == api.resource_version
    assert core.list_namespaced_service("other").items == []

    got.spec.selector = {"app": "greeter", "track": "stable"}
    replaced = core.replace_namespaced_service("greeter", NS, got)
    assert replaced.spec.selector == {"app": "greeter", "track": "stable"}
    assert replaced.spec.cluster_ip == created.spec.cluster_ip
    patched = core.patch_namespaced_service("greeter", NS, {"metadata": {"labels": {"a": "b"}}})
    assert patched.metadata.labels == {"a": "b"}
    assert patched.metadata.generation is None

    deleted = core.delete_namespaced_service("greeter", NS)
    assert isinstance(deleted, client.V1Service)  # Services answer the deleted object
    assert int(deleted.metadata.resource_version) > int(patched.metadata.resource_version)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service("greeter", NS)
    assert exc.value.status == 404
    assert status_of(exc) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'services "greeter" not found',
        "reason": "NotFound",
        "details": {"name": "greeter", "kind": "services"},
        "code": 404,
    }


def test_endpoint_slice_crud(api: FakeKubernetesAPI, disc: client.DiscoveryV1Api) -> None:
    body = api.endpoint_slice(
        "greeter-abc",
        NS,
        "greeter",
        endpoints=[("10.0.0.1", True, True, False, "pod-a"), ("10.0.0.2", None)],
        ports=[("grpc", 50051, "TCP")],
    )
    created = disc.create_namespaced_endpoint_slice(NS, body)
    assert created.metadata.labels == {"kubernetes.io/service-name": "greeter"}
    assert created.endpoints[0].hostname == "pod-a"
    assert created.endpoints[1].conditions.ready is None  # unset means ready
    assert created.ports[0].name == "grpc"

    ops = [{"op": "replace", "path": "/endpoints/0/conditions/ready", "value": False}]
    patched = disc.patch_namespaced_endpoint_slice("greeter-abc", NS, ops)
    assert patched.endpoints[0].conditions.ready is False
    assert patched.metadata.generation == 2

    answer = disc.delete_namespaced_endpoint_slice("greeter-abc", NS)
    assert answer["kind"] == "Status"
    assert answer["status"] == "Success"
    assert answer["details"]["name"] == "greeter-abc"
    assert answer["details"]["group"] == "discovery.k8s.io"
    with pytest.raises(ApiException) as exc:
        disc.read_namespaced_endpoint_slice("greeter-abc", NS)
    assert status_of(exc)["message"] == 'endpointslices.discovery.k8s.io "greeter-abc" not found'
    assert status_of(exc)["details"] == {
        "name": "greeter-abc",
        "group": "discovery.k8s.io",
        "kind": "endpointslices",
    }


def test_one_resource_version_counter_across_kinds(
    api: FakeKubernetesAPI, core: client.CoreV1Api, disc: client.DiscoveryV1Api
) -> None:
    start = int(api.resource_version)
    seen = [
        core.create_namespaced_service(NS, api.service("a", NS, ports=[80])),
        disc.create_namespaced_endpoint_slice(NS, api.endpoint_slice("a-1", NS, "a")),
        core.patch_namespaced_service("a", NS, {"metadata": {"labels": {"x": "y"}}}),
        disc.create_namespaced_endpoint_slice(NS, api.endpoint_slice("a-2", NS, "a")),
    ]
    versions = [int(o.metadata.resource_version) for o in seen]
    assert versions == list(range(start + 1, start + 5))
    assert disc.list_namespaced_endpoint_slice(NS).metadata.resource_version == str(start + 4)
    # a write that changes nothing is not written: same resourceVersion
    again = core.patch_namespaced_service("a", NS, {"metadata": {"labels": {"x": "y"}}})
    assert int(again.metadata.resource_version) == start + 3
    assert api.resource_version == str(start + 4)


def test_generate_name_and_list_exact_resource_version(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    body = api.endpoint_slice("", NS, "greeter")
    body["metadata"] = {"generateName": "greeter-", "labels": {"x": "1"}}
    first = disc.create_namespaced_endpoint_slice(NS, body)
    assert first.metadata.name.startswith("greeter-")
    assert len(first.metadata.name) == len("greeter-") + 5
    rv = first.metadata.resource_version
    api.delete("EndpointSlice", NS, first.metadata.name)
    then = disc.list_namespaced_endpoint_slice(
        NS, resource_version=rv, resource_version_match="Exact"
    )
    assert [s.metadata.name for s in then.items] == [first.metadata.name]
    assert then.metadata.resource_version == rv
    assert disc.list_namespaced_endpoint_slice(NS).items == []


# -- selectors ------------------------------------------------------------------------


@pytest.fixture
def labelled(api: FakeKubernetesAPI) -> None:
    api.apply_slice("s1", NS, "svc", labels={"app": "a", "tier": "front"})
    api.apply_slice("s2", NS, "svc", labels={"app": "b"})
    api.apply_slice("s3", NS, "svc", labels={"tier": "back"})
    api.apply_slice("s4", "other", "svc", labels={"app": "a"})


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("app=a", ["s1"]),
        ("app==a", ["s1"]),
        ("app!=a", ["s2", "s3"]),
        ("app in (a, b)", ["s1", "s2"]),
        ("app notin (a)", ["s2", "s3"]),
        ("tier", ["s1", "s3"]),
        ("!tier", ["s2"]),
        ("app=a,tier=front", ["s1"]),
        ("app=a,tier=back", []),
        ("", ["s1", "s2", "s3"]),
    ],
)
@pytest.mark.usefixtures("labelled")
def test_label_selectors(disc: client.DiscoveryV1Api, selector: str, names: list[str]) -> None:
    found = disc.list_namespaced_endpoint_slice(NS, label_selector=selector)
    assert [s.metadata.name for s in found.items] == names


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app=a,", "found '', expected: identifier after ','"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("app in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("app a", "unable to parse requirement: found 'a', expected: in, notin, =, ==, !=, gt, lt"),
        ("-app=a", None),
        ("app=a$", None),
    ],
)
def test_malformed_label_selector_is_400(
    disc: client.DiscoveryV1Api, selector: str, message: str | None
) -> None:
    with pytest.raises(ApiException) as exc:
        disc.list_namespaced_endpoint_slice(NS, label_selector=selector)
    assert exc.value.status == 400
    status = status_of(exc)
    assert status["reason"] == "BadRequest"
    if message is not None:
        assert status["message"] == message


@pytest.mark.usefixtures("labelled")
def test_field_selectors(disc: client.DiscoveryV1Api) -> None:
    one = disc.list_endpoint_slice_for_all_namespaces(field_selector="metadata.name=s1")
    assert [s.metadata.name for s in one.items] == ["s1"]
    other = disc.list_endpoint_slice_for_all_namespaces(field_selector="metadata.namespace!=app")
    assert [s.metadata.name for s in other.items] == ["s4"]
    with pytest.raises(ApiException) as exc:
        disc.list_namespaced_endpoint_slice(NS, field_selector="spec.x=1")
    assert status_of(exc)["message"] == (
        '"spec.x" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


# -- watch ----------------------------------------------------------------------------


def test_list_then_watch_sees_every_change_in_order_and_bookmarks(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    api.apply_slice("greeter-1", NS, "greeter", ["10.0.0.1"])
    listed = disc.list_namespaced_endpoint_slice(
        NS, label_selector="kubernetes.io/service-name=greeter"
    )
    rv = listed.metadata.resource_version
    # written between the list and the watch: replayed from history
    api.apply_slice("greeter-2", NS, "greeter", ["10.0.0.2"])
    api.apply_slice("greeter-1", NS, "greeter", [("10.0.0.1", False)])
    api.apply_slice("other-1", NS, "other", ["10.0.0.9"])  # filtered out
    api.delete("EndpointSlice", NS, "greeter-2")
    events = []
    for event in watch.Watch().stream(
        disc.list_namespaced_endpoint_slice,
        NS,
        label_selector="kubernetes.io/service-name=greeter",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    ):
        events.append(event)
        if event["type"] == "DELETED":  # the replay is over: now a live change
            api.apply_slice("greeter-3", NS, "greeter", ["10.0.0.3"])
    changes = [e for e in events if e["type"] != "BOOKMARK"]
    assert summary(changes) == [
        ("ADDED", "greeter-2"),
        ("MODIFIED", "greeter-1"),
        ("DELETED", "greeter-2"),
        ("ADDED", "greeter-3"),  # live
    ]
    versions = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in changes]
    assert versions == sorted(versions)
    assert int(rv) < versions[0]
    assert changes[1]["object"].endpoints[0].conditions.ready is False
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 3
    assert bookmarks[-1]["raw_object"] == {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"resourceVersion": api.resource_version},
        "addressType": "",  # the empty EndpointSlice kube-apiserver writes
        "endpoints": None,
        "ports": None,
    }


def test_no_bookmarks_without_the_flag(api: FakeKubernetesAPI, disc: client.DiscoveryV1Api) -> None:
    api.apply_slice("greeter-1", NS, "greeter", ["10.0.0.1"])
    events = list(watch.Watch().stream(disc.list_namespaced_endpoint_slice, NS, timeout_seconds=1))
    assert summary(events) == [("ADDED", "greeter-1")]  # no RV: the current state as ADDED


def test_filtered_watch_sees_objects_leave_and_enter(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    rv = api.apply_slice("s", NS, "greeter", labels={"stage": "blue"})["metadata"][
        "resourceVersion"
    ]
    api.apply_slice("s", NS, "greeter", labels={"stage": "green"})
    api.apply_slice("s", NS, "greeter", labels={"stage": "blue"})
    w = watch.Watch()
    events = take(
        w.stream(
            disc.list_namespaced_endpoint_slice,
            NS,
            label_selector="stage=blue",
            resource_version=rv,
            timeout_seconds=5,
        ),
        2,
    )
    assert summary(events) == [("DELETED", "s"), ("ADDED", "s")]


def test_watch_from_compacted_rv_retries_once_then_raises_410(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    rv = disc.list_namespaced_endpoint_slice(NS).metadata.resource_version
    api.apply_slice("s", NS, "greeter")
    api.compact()
    api.reset_log()
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(disc.list_namespaced_endpoint_slice, NS, resource_version=rv))
    assert exc.value.status == 410
    assert exc.value.reason == "Expired: The resourceVersion for the provided watch is too old."
    watches = [r for r in api.requests if r.verb == "watch"]
    assert [(r.query["resourceVersion"], r.status) for r in watches] == [(rv, 200), (rv, 200)]

    # with timeout_seconds the client does not retry at all
    api.reset_log()
    with pytest.raises(ApiException) as exc:
        list(
            watch.Watch().stream(
                disc.list_namespaced_endpoint_slice, NS, resource_version=rv, timeout_seconds=5
            )
        )
    assert exc.value.status == 410
    assert len([r for r in api.requests if r.verb == "watch"]) == 1


def test_watch_from_compacted_rv_as_http_410(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    api.expired_as_http_410 = True
    rv = disc.list_namespaced_endpoint_slice(NS).metadata.resource_version
    api.apply_slice("s", NS, "greeter")
    api.compact()
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(disc.list_namespaced_endpoint_slice, NS, resource_version=rv))
    assert exc.value.status == 410
    assert status_of(exc) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "The resourceVersion for the provided watch is too old.",
        "reason": "Expired",
        "code": 410,
    }
    assert [r.status for r in api.requests if r.verb == "watch"] == [410]  # no retry


def test_bounded_history() -> None:
    with FakeKubernetesAPI(history=2) as api, api.api_client() as c:
        disc = client.DiscoveryV1Api(c)
        versions = [
            api.apply_slice(f"s{i}", NS, "x")["metadata"]["resourceVersion"] for i in "0123"
        ]
        with pytest.raises(ApiException) as exc:
            list(
                watch.Watch().stream(
                    disc.list_namespaced_endpoint_slice,
                    NS,
                    resource_version=versions[0],
                    timeout_seconds=5,
                )
            )
        too_old = f"too old resource version: {versions[0]} ({versions[1]})"
        assert exc.value.reason == f"Expired: {too_old}"
        with pytest.raises(ApiException) as exc:
            disc.list_namespaced_endpoint_slice(
                NS, resource_version=versions[0], resource_version_match="Exact"
            )
        gone = "The resourceVersion for the provided list is too old."
        assert (exc.value.status, status_of(exc)["message"]) == (410, gone)
        events = take(
            watch.Watch().stream(
                disc.list_namespaced_endpoint_slice,
                NS,
                resource_version=versions[1],
                timeout_seconds=5,
            ),
            2,
        )
        assert summary(events) == [("ADDED", "s2"), ("ADDED", "s3")]


def test_timeout_seconds_ends_the_stream_cleanly(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    started = time.monotonic()
    events = list(
        watch.Watch().stream(
            disc.list_namespaced_endpoint_slice, NS, resource_version="1", timeout_seconds=1
        )
    )
    assert events == []
    assert 0.9 <= time.monotonic() - started < 3
    assert wait_until(lambda: api.watch_count == 0)


def test_cut_watch_raises_and_a_new_watch_from_the_last_rv_misses_nothing(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    rv = disc.list_namespaced_endpoint_slice(NS).metadata.resource_version
    api.apply_slice("a", NS, "greeter")
    w = watch.Watch()
    seen = []

    def consume() -> None:
        for event in w.stream(
            disc.list_namespaced_endpoint_slice, NS, resource_version=rv, timeout_seconds=5
        ):
            seen.append(event)
            assert api.watch_count == 1
            assert api.cut_watches() == 1
            api.apply_slice("b", NS, "greeter")  # while nobody watches
            api.delete("EndpointSlice", NS, "a")

    with pytest.raises(ProtocolError):  # the connection closes mid-body
        consume()
    assert summary(seen) == [("ADDED", "a")]
    assert api.watch_count == 0
    assert w.resource_version == seen[0]["raw_object"]["metadata"]["resourceVersion"]
    events = take(
        w.stream(
            disc.list_namespaced_endpoint_slice,
            NS,
            resource_version=w.resource_version,
            timeout_seconds=5,
        ),
        2,
    )
    assert summary(events) == [("ADDED", "b"), ("DELETED", "a")]


def test_clean_end_of_stream_makes_the_client_rewatch_from_its_last_rv(
    api: FakeKubernetesAPI, disc: client.DiscoveryV1Api
) -> None:
    rv = disc.list_namespaced_endpoint_slice(NS).metadata.resource_version
    api.apply_slice("a", NS, "greeter")
    api.reset_log()
    seen = []
    stream = watch.Watch().stream(
        disc.list_namespaced_endpoint_slice,
        NS,
        resource_version=rv,
        _request_timeout=5,  # no timeout_seconds: the client resumes by itself
    )
    with contextlib.closing(stream):
        for event in stream:
            seen.append(event)
            if len(seen) == 1:
                api.cut_watches(clean=True)
                api.apply_slice("b", NS, "greeter")
            else:
                break
    assert summary(seen) == [("ADDED", "a"), ("ADDED", "b")]
    resumed = [r.query["resourceVersion"] for r in api.requests if r.verb == "watch"]
    assert resumed == [rv, seen[0]["raw_object"]["metadata"]["resourceVersion"]]
    assert wait_until(lambda: api.watch_count == 0)


# -- auth, RBAC, faults ---------------------------------------------------------------


def test_bearer_tokens_and_rotation() -> None:
    with FakeKubernetesAPI(tokens={"t1"}) as api:
        with api.api_client() as anonymous, pytest.raises(ApiException) as exc:
            client.CoreV1Api(anonymous).list_namespaced_service(NS)
        assert exc.value.status == 401
        assert status_of(exc) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
        with api.api_client(token="t1") as old, api.api_client(token="t2") as new:
            client.CoreV1Api(old).list_namespaced_service(NS)
            api.rotate_token("t1", "t2")
            with pytest.raises(ApiException) as exc:
                client.CoreV1Api(old).list_namespaced_service(NS)
            assert exc.value.status == 401
            client.CoreV1Api(new).list_namespaced_service(NS)


def _forbidden_message(verb: str, name: str | None) -> str:
    target = 'endpointslices.discovery.k8s.io "s1"' if name else "endpointslices.discovery.k8s.io"
    return (
        f'{target} is forbidden: User "{USER}" cannot {verb} resource "endpointslices" in API '
        f'group "discovery.k8s.io" in the namespace "{NS}"'
    )


@pytest.mark.parametrize("verb", ["get", "list", "watch", "create", "update", "patch", "delete"])
def test_forbidden_per_verb(api: FakeKubernetesAPI, disc: client.DiscoveryV1Api, verb: str) -> None:
    existing = disc.create_namespaced_endpoint_slice(NS, api.endpoint_slice("s1", NS, "greeter"))
    api.deny(verb, "endpointslices", namespace=NS, group="discovery.k8s.io")
    calls = {
        "get": lambda: disc.read_namespaced_endpoint_slice("s1", NS),
        "list": lambda: disc.list_namespaced_endpoint_slice(NS),
        "watch": lambda: list(
            watch.Watch().stream(disc.list_namespaced_endpoint_slice, NS, timeout_seconds=1)
        ),
        "create": lambda: disc.create_namespaced_endpoint_slice(
            NS, api.endpoint_slice("s2", NS, "greeter")
        ),
        "update": lambda: disc.replace_namespaced_endpoint_slice("s1", NS, existing),
        "patch": lambda: disc.patch_namespaced_endpoint_slice("s1", NS, {"metadata": {}}),
        "delete": lambda: disc.delete_namespaced_endpoint_slice("s1", NS),
    }
    with pytest.raises(ApiException) as exc:
        calls[verb]()
    assert exc.value.status == 403  # a watch too: HTTP 403, not an event
    status = status_of(exc)
    named = verb in ("get", "update", "patch", "delete")
    assert status["message"] == _forbidden_message(verb, "s1" if named else None)
    assert status["reason"] == "Forbidden"
    # other verbs and other namespaces are untouched
    if verb != "list":
        disc.list_namespaced_endpoint_slice(NS)
    disc.list_namespaced_endpoint_slice("elsewhere")


def test_forbidden_at_cluster_scope_and_access_review(
    api: FakeKubernetesAPI, api_client: ApiClient
) -> None:
    auth = client.AuthorizationV1Api(api_client)
    review = {
        "spec": {
            "resourceAttributes": {
                "namespace": NS,
                "verb": "watch",
                "group": "discovery.k8s.io",
                "resource": "endpointslices",
            }
        }
    }
    assert auth.create_self_subject_access_review(review).status.allowed is True
    api.deny("watch", "endpointslices", namespace=NS)
    assert auth.create_self_subject_access_review(review).status.allowed is False
    api.allow_all()
    assert auth.create_self_subject_access_review(review).status.allowed is True

    api.username = "system:serviceaccount:app:other"
    api.deny("list", "services")
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api_client).list_service_for_all_namespaces()
    assert status_of(exc)["message"] == (
        'services is forbidden: User "system:serviceaccount:app:other" cannot list resource '
        '"services" in API group "" at the cluster scope'
    )


def test_fail_next_and_delay(api: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    api.fail_next(2, verb="list", resource="services")
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            core.list_namespaced_service(NS)
        assert exc.value.status == 500
        assert status_of(exc)["reason"] == "InternalError"
    core.list_namespaced_service(NS)
    api.fail_next(1, code=503)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service("missing", NS)
    assert (exc.value.status, status_of(exc)["reason"]) == (503, "ServiceUnavailable")

    # 1 s: an undelayed request must stay under it on a busy machine too
    api.delay(1.0, verb="get")
    started = time.monotonic()
    with pytest.raises(ApiException):
        core.read_namespaced_service("missing", NS)
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    core.list_namespaced_service(NS)
    assert time.monotonic() - started < 1.0
    api.delay(0, verb="get")
    started = time.monotonic()
    with pytest.raises(ApiException):
        core.read_namespaced_service("missing", NS)
    assert time.monotonic() - started < 1.0
    assert [r.status for r in api.requests][-3:] == [404, 200, 404]


# -- Service rules --------------------------------------------------------------------


def _invalid(name: str, field: str, value: str, detail: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'Service "{name}" is invalid: {field}: Invalid value: {value}: {detail}',
        "reason": "Invalid",
        "details": {
            "name": name,
            "kind": "Service",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {value}: {detail}",
                    "field": field,
                }
            ],
        },
        "code": 422,
    }


def test_cluster_ip_is_immutable(api: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_service(NS, api.service("greeter", NS, ports=[80]))
    expected = _invalid("greeter", "spec.clusterIPs[0]", '["None"]', "may not change once set")
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_service("greeter", NS, {"spec": {"clusterIP": "None"}})
    assert exc.value.status == 422
    assert status_of(exc) == expected

    current = core.read_namespaced_service("greeter", NS)
    current.spec.cluster_ip = "None"
    current.spec.cluster_ips = None
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_service("greeter", NS, current)
    assert status_of(exc) == expected

    # a PUT without clusterIP keeps the allocated one (patchAllocatedValues)
    current.spec.cluster_ip = None
    kept = core.replace_namespaced_service("greeter", NS, current)
    assert kept.spec.cluster_ips == created.spec.cluster_ips


def test_headless_node_port_is_refused_and_ports_are_allocated(
    api: FakeKubernetesAPI, core: client.CoreV1Api
) -> None:
    body = api.service("np", NS, ports=[("http", 80)], type="NodePort", cluster_ip="None")
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service(NS, body)
    assert status_of(exc) == _invalid(
        "np", "spec.clusterIPs[0]", '"None"', "may not be set to 'None' for NodePort services"
    )
    node_port = core.create_namespaced_service(
        NS, api.service("np", NS, ports=[("http", 80)], type="NodePort")
    )
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767
    assert node_port.spec.external_traffic_policy == "Cluster"
    headless = core.create_namespaced_service(
        NS, api.service("hl", NS, ports=[("grpc", 50051)], cluster_ip="None")
    )
    assert (headless.spec.cluster_ip, headless.spec.cluster_ips) == ("None", ["None"])
    external = core.create_namespaced_service(
        NS, api.service("ext", NS, type="ExternalName", external_name="example.com")
    )
    assert external.spec.cluster_ip is None


def test_strategic_merge_patch_merges_service_ports(
    api: FakeKubernetesAPI, core: client.CoreV1Api
) -> None:
    core.create_namespaced_service(NS, api.service("s", NS, ports=[("grpc", 50051), ("http", 80)]))
    patched = core.patch_namespaced_service(
        "s", NS, {"spec": {"ports": [{"port": 80, "name": "web"}]}}
    )
    assert [(p.name, p.port) for p in patched.spec.ports] == [("grpc", 50051), ("web", 80)]
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_service(
            "s", NS, [{"op": "test", "path": "/spec/type", "value": "NodePort"}]
        )
    assert exc.value.status == 422


def test_conflicts(api: FakeKubernetesAPI, core: client.CoreV1Api) -> None:
    core.create_namespaced_service(NS, api.service("s", NS, ports=[80]))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service(NS, api.service("s", NS, ports=[80]))
    assert exc.value.status == 409
    assert status_of(exc)["message"] == 'services "s" already exists'
    assert status_of(exc)["reason"] == "AlreadyExists"

    stale = core.read_namespaced_service("s", NS)
    core.patch_namespaced_service("s", NS, {"metadata": {"labels": {"v": "2"}}})
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_service("s", NS, stale)
    assert exc.value.status == 409
    assert status_of(exc)["reason"] == "Conflict"
    assert status_of(exc)["message"] == (
        'Operation cannot be fulfilled on services "s": the object has been modified; please '
        "apply your changes to the latest version and try again"
    )
    rv = stale.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_service("s", NS, {"metadata": {"resourceVersion": rv, "labels": {}}})
    assert exc.value.status == 409


def test_dry_run_stores_nothing(
    api: FakeKubernetesAPI, core: client.CoreV1Api, disc: client.DiscoveryV1Api
) -> None:
    core.create_namespaced_service(NS, api.service("s", NS, ports=[80]))
    before = api.resource_version
    made = core.create_namespaced_service(NS, api.service("t", NS, ports=[80]), dry_run="All")
    assert made.metadata.uid
    assert made.spec.cluster_ip
    assert made.metadata.resource_version is None
    patched = core.patch_namespaced_service(
        "s", NS, {"metadata": {"labels": {"a": "b"}}}, dry_run="All"
    )
    assert patched.metadata.labels == {"a": "b"}
    core.delete_namespaced_service("s", NS, dry_run="All")
    disc.create_namespaced_endpoint_slice(NS, api.endpoint_slice("x", NS, "s"), dry_run="All")
    assert api.resource_version == before
    assert [s.metadata.name for s in core.list_namespaced_service(NS).items] == ["s"]
    assert core.read_namespaced_service("s", NS).metadata.labels is None
    assert disc.list_namespaced_endpoint_slice(NS).items == []
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service(NS, api.service("u", NS, ports=[80]), dry_run="Some")
    assert exc.value.status == 400


# -- configuration and lifecycle ------------------------------------------------------


def test_kubeconfig_and_discovery(api: FakeKubernetesAPI, tmp_path: Path) -> None:
    api.set_tokens({"t1"})
    api.apply_slice("s", NS, "greeter")
    path = api.write_kubeconfig(tmp_path / "kubeconfig", token="t1", namespace=NS)
    with config.new_client_from_config(config_file=str(path)) as c:
        found = client.DiscoveryV1Api(c).list_namespaced_endpoint_slice(NS)
        assert [s.metadata.name for s in found.items] == ["s"]
        assert client.VersionApi(c).get_code().major == "1"
        resources = client.CoreV1Api(c).get_api_resources()
        assert "services" in [r.name for r in resources.resources]
    _, active = config.list_kube_config_contexts(config_file=str(path))
    assert active["context"]["namespace"] == NS


def test_in_cluster_config_rereads_the_token_file(api: FakeKubernetesAPI, tmp_path: Path) -> None:
    api.set_tokens({"t1"})
    account = api.write_service_account(tmp_path / "sa", "t1", NS)
    assert (account / "namespace").read_text() == NS
    configuration, loader = api.incluster_config(account)
    with client.ApiClient(configuration) as c:
        core = client.CoreV1Api(c)
        core.list_namespaced_service(NS)
        api.rotate_token("t1", "t2")
        (account / "token").write_text("t2")
        with pytest.raises(ApiException) as exc:  # the loader re-reads once a minute
            core.list_namespaced_service(NS)
        assert exc.value.status == 401
        loader.token_expires_at = datetime.datetime.now()
        core.list_namespaced_service(NS)
        assert configuration.host == api.url  # the refresh hook keeps the http host


def test_close_ends_watches_and_joins_threads() -> None:
    api = FakeKubernetesAPI().start()
    with api.api_client() as c:
        disc = client.DiscoveryV1Api(c)
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                w = watch.Watch()
                list(w.stream(disc.list_namespaced_endpoint_slice, NS, timeout_seconds=30))
            except BaseException as exc:  # reported below
                errors.append(exc)

        consumer = threading.Thread(target=consume, name="test-watch-consumer")
        consumer.start()
        assert wait_until(lambda: api.watch_count == 1)
        started = time.monotonic()
        api.close()
        api.close()  # idempotent
        consumer.join(5)
        assert not consumer.is_alive()
        assert time.monotonic() - started < 3
    assert errors == []  # the stream ended cleanly
    assert not [t for t in threading.enumerate() if t.name.startswith("fake-kube-api")]
    with pytest.raises(RuntimeError):
        api.start()


def test_deprecated_slice_watch_path_as_kuberesolver6_calls_it(kube: FakeKubernetesAPI) -> None:
    """kuberesolver v6 watches ``/apis/discovery.k8s.io/v1/watch/namespaces/{ns}/
    endpointslices?labelSelector=...`` (the deprecated watch path a real server still
    serves), with no resourceVersion: every slice ADDED, then the changes."""
    kube.apply_slice(
        "k-a", "app", "k", endpoints=[("10.0.0.1", True, True, False)], ports=[("g", 80, "TCP")]
    )
    kube.apply_slice(
        "o-a", "app", "o", endpoints=[("10.0.0.9", True, True, False)], ports=[("g", 80, "TCP")]
    )
    url = (
        f"{kube.url}/apis/discovery.k8s.io/v1/watch/namespaces/app/endpointslices"
        "?labelSelector=kubernetes.io/service-name=k"
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        first = json.loads(response.readline())
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "k-a")
        kube.apply_slice(
            "k-a", "app", "k", endpoints=[("10.0.0.7", True, True, False)], ports=[("g", 80, "TCP")]
        )
        second = json.loads(response.readline())
        assert second["type"] == "MODIFIED"
        assert second["object"]["endpoints"][0]["addresses"] == ["10.0.0.7"]
        assert kube.cut_watches() >= 1
