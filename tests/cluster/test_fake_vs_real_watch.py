"""FakeKubernetesAPI against kube-apiserver v1.37, side by side: lists, selectors,
pagination, watches, bookmarks and expired history.

As in test_fake_vs_real.py, each row runs once against each server and the two
observations must be equal. Every watch is bounded by ``timeoutSeconds`` (the server
ends the stream) and a client read timeout. The rows about expired history run on a
second control plane started with ``--watch-cache=false``: there etcd serves watches and
lists, so compacting etcd (through its HTTP/JSON gateway) expires an old
resourceVersion at once, as the fake's ``compact()`` does. With the watch cache (the
session's control plane, as clusters run) an old resourceVersion stays servable until
the cache's window (75 s or more) has passed: not a bounded test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from dnsbalance.testing import ControlPlane, ControlPlaneError

from .kit import unavailable
from .sides import JSON, Row, Side, differences, event_view, names, run_both, view

BOOKMARK_END = {"k8s.io/initial-events-end": "true"}


@pytest.fixture(scope="module")
def uncached_plane() -> Iterator[ControlPlane]:
    """A control plane whose kube-apiserver runs without watch cache."""
    try:
        plane = ControlPlane(apiserver_flags=["--watch-cache=false"])
    except ControlPlaneError as exc:
        unavailable(str(exc))
        raise
    with plane:
        yield plane


def labelled_slice(name: str, labels: dict[str, str], address: str = "10.2.0.1") -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": labels},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
    }


def put(side: Side, name: str, address: str = "10.2.0.1", **labels: str) -> JSON:
    """Create (or replace) slice ``name`` with ``labels``; the stored object."""
    body = labelled_slice(name, {"kubernetes.io/service-name": "web", **labels}, address)
    status, made = side.call(side.disc.create_namespaced_endpoint_slice, side.ns, body)
    if status == 409:
        current = side.call(side.disc.read_namespaced_endpoint_slice, name, side.ns)[1]
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        status, made = side.call(side.disc.replace_namespaced_endpoint_slice, name, side.ns, body)
    assert status in (200, 201), made
    result: JSON = made
    return result


def rv_of(obj: JSON) -> int:
    return int(obj["metadata"]["resourceVersion"])


def list_rv(side: Side) -> str:
    listed = side.call(side.disc.list_namespaced_endpoint_slice, side.ns)[1]
    return str(listed["metadata"]["resourceVersion"])


# -- lists and selectors --------------------------------------------------------------


def _all_namespaces(side: Side) -> Any:
    side.call(
        side.core.create_namespaced_service,
        side.ns,
        {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
    )
    put(side, "web-1")
    mine = f"metadata.namespace={side.ns}"
    return [
        names(side.call(side.core.list_service_for_all_namespaces, field_selector=mine)[1]),
        names(side.call(side.disc.list_endpoint_slice_for_all_namespaces, field_selector=mine)[1]),
        event_view(
            side.watch(
                side.core.list_service_for_all_namespaces, field_selector=mine, timeout_seconds=1
            )[1]
        ),
        event_view(
            side.watch(
                side.disc.list_endpoint_slice_for_all_namespaces,
                field_selector=mine,
                timeout_seconds=1,
            )[1]
        ),
    ]


SELECTORS = [
    "app=a",
    "app==a",
    "app!=a",
    "app in (a, b)",
    "app notin (a)",
    "tier",
    "!tier",
    "app=a,tier=front",
    "app=a,tier=back",
    "",
]
BAD_SELECTORS = [
    "app=a,",
    "=a",
    "app in (a",
    "app a",
    "-app=a",
    "app=a$",
    "app in ()",
    "x/y/z=1",
    "app>a",
    "a=" + "v" * 64,
]


def _label_selectors(side: Side) -> Any:
    put(side, "s1", app="a", tier="front")
    put(side, "s2", app="b")
    put(side, "s3", tier="back")
    found = {}
    for selector in SELECTORS:
        found[selector] = names(
            side.call(side.disc.list_namespaced_endpoint_slice, side.ns, label_selector=selector)[1]
        )
    return found


def _label_selector_errors(side: Side) -> Any:
    d = side.disc
    return {
        s: view(side.call(d.list_namespaced_endpoint_slice, side.ns, label_selector=s))
        for s in BAD_SELECTORS
    }


def _field_selectors(side: Side) -> Any:
    c, d, ns = side.core, side.disc, side.ns
    put(side, "s1")
    put(side, "s2")
    c.create_namespaced_service(
        ns, {"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    )
    c.create_namespaced_service(
        ns, {"metadata": {"name": "hl"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}
    )
    return [
        names(
            side.call(d.list_namespaced_endpoint_slice, ns, field_selector="metadata.name=s1")[1]
        ),
        names(
            side.call(d.list_namespaced_endpoint_slice, ns, field_selector="metadata.name!=s1")[1]
        ),
        names(side.call(c.list_namespaced_service, ns, field_selector="spec.type=NodePort")[1]),
        names(side.call(c.list_namespaced_service, ns, field_selector="spec.clusterIP=None")[1]),
        side.call(d.list_namespaced_endpoint_slice, ns, field_selector="spec.x=1"),
        side.call(c.list_namespaced_service, ns, field_selector="spec.x=1"),
        side.call(c.list_node, field_selector="metadata.namespace=x"),
        side.call(d.list_namespaced_endpoint_slice, ns, field_selector="metadata.name"),
    ]


def _pagination(side: Side) -> Any:
    for i in range(5):
        put(side, f"s{i}")
    pages, token = [], None
    for _ in range(5):
        listed = side.call(
            side.disc.list_namespaced_endpoint_slice, side.ns, limit=2, _continue=token
        )[1]
        meta = listed["metadata"]
        pages.append((names(listed), meta.get("remainingItemCount"), bool(meta.get("continue"))))
        token = meta.get("continue")
        if not token:
            break
    return pages


def _exact_list(side: Side) -> Any:
    put(side, "a")
    put(side, "b")
    rv = list_rv(side)
    side.call(side.disc.delete_namespaced_endpoint_slice, "a", side.ns)
    then = side.call(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        resource_version=rv,
        resource_version_match="Exact",
    )[1]
    return [
        names(then),
        then["metadata"]["resourceVersion"] == rv,
        names(side.call(side.disc.list_namespaced_endpoint_slice, side.ns)[1]),
        side.call(
            side.disc.list_namespaced_endpoint_slice, side.ns, resource_version_match="Exact"
        ),
    ]


def _one_counter(side: Side) -> Any:
    made = side.call(
        side.core.create_namespaced_service,
        side.ns,
        {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
    )[1]
    sliced = put(side, "web-1")
    patched = side.call(
        side.core.patch_namespaced_service, "web", side.ns, {"metadata": {"labels": {"x": "y"}}}
    )[1]
    listed = int(list_rv(side))
    return [rv_of(made) < rv_of(sliced) < rv_of(patched), listed >= rv_of(patched)]


def _no_op_write(side: Side) -> Any:
    first = side.call(
        side.core.create_namespaced_service,
        side.ns,
        {"metadata": {"name": "web", "labels": {"x": "y"}}, "spec": {"ports": [{"port": 80}]}},
    )[1]
    again = side.call(
        side.core.patch_namespaced_service, "web", side.ns, {"metadata": {"labels": {"x": "y"}}}
    )[1]
    quiet = side.watch(
        side.core.list_namespaced_service,
        side.ns,
        resource_version=first["metadata"]["resourceVersion"],
        timeout_seconds=1,
    )
    return [rv_of(again) == rv_of(first), event_view(quiet[1])]


# -- watches --------------------------------------------------------------------------


def _initial_added(side: Side) -> Any:
    put(side, "b")
    put(side, "a")
    d = side.disc
    return [
        side.watch(d.list_namespaced_endpoint_slice, side.ns, timeout_seconds=1)[0],
        event_view(side.watch(d.list_namespaced_endpoint_slice, side.ns, timeout_seconds=1)[1]),
        event_view(
            side.watch(
                d.list_namespaced_endpoint_slice, side.ns, resource_version="0", timeout_seconds=1
            )[1]
        ),
        side.raw(
            "GET",
            f"/apis/discovery.k8s.io/v1/namespaces/{side.ns}/endpointslices?watch=1&timeoutSeconds=1",
        )[0],
    ]


def _replay_then_live(side: Side) -> Any:
    d = side.disc
    rv = list_rv(side)
    put(side, "a")
    put(side, "a", address="10.2.0.2")
    put(side, "b")
    side.call(d.delete_namespaced_endpoint_slice, "b", side.ns)
    response = side.open_watch(
        d.list_namespaced_endpoint_slice, side.ns, resource_version=rv, timeout_seconds=2
    )
    put(side, "c")  # live
    events = side.read_events(response)
    versions = [rv_of(e["object"]) for e in events]
    return [
        event_view(events),
        versions == sorted(versions) and versions[0] > int(rv),
        [(e["object"]["kind"], e["object"]["apiVersion"]) for e in events[:1]],
        view(events[1]["object"]["endpoints"]),
    ]


def _filtered_watch(side: Side) -> Any:
    rv = put(side, "s", stage="blue")["metadata"]["resourceVersion"]
    put(side, "s", stage="green")
    put(side, "s", stage="blue")
    events = side.watch(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        label_selector="stage=blue",
        resource_version=rv,
        timeout_seconds=1,
    )[1]
    return [event_view(events), view(events[0]["object"]["metadata"]["labels"])]


def _bookmarks_need_the_flag(side: Side) -> Any:
    put(side, "a")
    d = side.disc
    return [
        event_view(side.watch(d.list_namespaced_endpoint_slice, side.ns, timeout_seconds=1)[1]),
        event_view(
            side.watch(
                d.list_namespaced_endpoint_slice,
                side.ns,
                allow_watch_bookmarks=True,
                timeout_seconds=1,
            )[1]
        ),
    ]


def _send_initial_events(side: Side) -> Any:
    put(side, "a")
    d, ns = side.disc, side.ns
    return [
        event_view(
            side.watch(
                d.list_namespaced_endpoint_slice,
                ns,
                send_initial_events=True,
                resource_version_match="NotOlderThan",
                allow_watch_bookmarks=True,
                timeout_seconds=1,
            )[1]
        ),
        side.watch(
            d.list_namespaced_endpoint_slice,
            ns,
            send_initial_events=True,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        ),
        side.watch(
            d.list_namespaced_endpoint_slice,
            ns,
            resource_version_match="NotOlderThan",
            timeout_seconds=1,
        ),
    ]


def _bookmark_before_timeout(side: Side) -> Any:
    """A bookmark (2 s before the stream's timeout, the cacher's nextBookmarkTime) carries
    a resourceVersion the stream's filter hid: the client resumes past it."""
    rv = list_rv(side)
    response = side.open_watch(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        label_selector="watched=yes",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=4,
    )
    hidden = put(side, "other", watched="no")
    events = side.read_events(response)
    # how many (the real cacher may retry one) is not the claim: that one comes, and what
    return [
        sorted({(e["type"], tuple(sorted(e["object"]["metadata"]))) for e in events}),
        all(rv_of(e["object"]) >= rv_of(hidden) for e in events),
        [view(e["object"]) for e in events][:1],
    ]


def _finalizer_events(side: Side) -> Any:
    c = side.core
    body = {
        "metadata": {"name": "edge", "finalizers": ["example.com/hold"]},
        "spec": {"ports": [{"port": 80}]},
    }
    rv = side.call(c.create_namespaced_service, side.ns, body)[1]["metadata"]["resourceVersion"]
    side.call(c.delete_namespaced_service, "edge", side.ns)
    done = side.call(
        c.patch_namespaced_service,
        "edge",
        side.ns,
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    events = side.watch(c.list_namespaced_service, side.ns, resource_version=rv, timeout_seconds=1)[
        1
    ]
    return [
        view(done),
        [
            (
                e["type"],
                e["object"]["metadata"].get("finalizers"),
                "deletionTimestamp" in e["object"]["metadata"],
            )
            for e in events
        ],
    ]


def _timeout_ends_cleanly(side: Side) -> Any:
    put(side, "a")
    return side.watch(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        resource_version=list_rv(side),
        timeout_seconds=1,
    )


# -- expired history (uncached plane) -------------------------------------------------


def _expired_watch(side: Side) -> Any:
    rv = list_rv(side)
    put(side, "a")
    put(side, "b")  # etcd keeps the compaction's own revision: compact past rv + 1
    side.compact()
    return side.watch(
        side.disc.list_namespaced_endpoint_slice, side.ns, resource_version=rv, timeout_seconds=5
    )


def _expired_watch_through_the_client(side: Side) -> Any:
    rv = list_rv(side)
    put(side, "a")
    put(side, "b")  # etcd keeps the compaction's own revision: compact past rv + 1
    side.compact()
    try:
        seen = list(
            watch.Watch().stream(
                side.disc.list_namespaced_endpoint_slice,
                side.ns,
                resource_version=rv,
                _request_timeout=(5, 30),
            )
        )
    except client.ApiException as exc:
        return exc.status, exc.reason
    return "no error", event_view(seen)


def _expired_exact_list(side: Side) -> Any:
    rv = list_rv(side)
    put(side, "a")
    put(side, "b")  # etcd keeps the compaction's own revision: compact past rv + 1
    side.compact()
    return side.call(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        resource_version=rv,
        resource_version_match="Exact",
    )


def _expired_continue(side: Side) -> Any:
    for name in ("a", "b", "c"):
        put(side, name)
    first = side.call(side.disc.list_namespaced_endpoint_slice, side.ns, limit=1)[1]
    put(side, "d")
    side.compact()
    status, body = side.call(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        limit=1,
        _continue=first["metadata"]["continue"],
    )
    rest = side.call(
        side.disc.list_namespaced_endpoint_slice,
        side.ns,
        limit=10,
        _continue=body["metadata"].get("continue"),
    )
    return [names(first), (status, view(body)), (rest[0], names(rest[1]))]


# -- discovery ------------------------------------------------------------------------


def _discovery(side: Side) -> Any:
    def resources(path: str, wanted: tuple[str, ...]) -> Any:
        listed = side.raw("GET", path)[1]["resources"]
        return {
            r["name"]: (
                r["namespaced"],
                r["kind"],
                r.get("shortNames"),
                sorted(set(r["verbs"]) - {"deletecollection"}),
            )
            for r in listed
            if r["name"] in wanted
        }

    version = side.raw("GET", "/version")
    groups = side.raw("GET", "/apis")[1]["groups"]
    return [
        (version[0], sorted(k for k in ("major", "minor", "gitVersion") if k in version[1])),
        side.raw("GET", "/api")[1]["versions"],
        {
            g["name"]: g["preferredVersion"]
            for g in groups
            if g["name"] in ("discovery.k8s.io", "authorization.k8s.io")
        },
        resources("/api/v1", ("services", "endpoints", "nodes")),
        resources("/apis/discovery.k8s.io/v1", ("endpointslices",)),
        resources("/apis/authorization.k8s.io/v1", ("selfsubjectaccessreviews",)),
        side.raw("GET", "/healthz"),
    ]


ROWS = [
    Row("list-watch-all-namespaces", "``/api/v1/services`` (all namespaces", _all_namespaces),
    Row(
        "label-selectors", "``labelSelector`` with the full apimachinery grammar", _label_selectors
    ),
    Row("label-selector-errors", "and its error texts", _label_selector_errors),
    Row("field-selectors", "``fieldSelector`` on", _field_selectors),
    Row("pagination", "``limit``/``continue`` paginate lists", _pagination),
    Row(
        "list-exact",
        "``list`` with ``resourceVersionMatch=Exact`` answers the state at that RV",
        _exact_list,
    ),
    Row("one-counter", "from ONE counter shared by every kind", _one_counter),
    Row("no-op-write", "A write that changes nothing is not written", _no_op_write),
    Row(
        "watch-initial-added", "no RV (or ``0``) starts with synthetic ADDED events", _initial_added
    ),
    Row(
        "watch-replay-then-live",
        "replays every retained event newer than RV, then streams live events",
        _replay_then_live,
    ),
    Row(
        "watch-filtered",
        "A filtered watch sees an object that stops matching as DELETED",
        _filtered_watch,
    ),
    Row("watch-bookmarks-flag", "one ending the initial ADDED events", _bookmarks_need_the_flag),
    Row(
        "watch-send-initial-events",
        "``sendInitialEvents`` needs ``resourceVersionMatch=NotOlderThan``",
        _send_initial_events,
    ),
    Row("watch-bookmark-before-timeout", "2 s before ``timeoutSeconds``", _bookmark_before_timeout),
    Row("watch-timeout", "``timeoutSeconds=N`` ends the stream cleanly", _timeout_ends_cleanly),
    Row(
        "watch-finalizer-delete",
        "readable until an update removes the last finalizer",
        _finalizer_events,
    ),
    Row("watch-expired", "gets one ERROR event with Status", _expired_watch, plane="uncached"),
    Row(
        "watch-expired-client",
        "On an ERROR 410 event it retries once",
        _expired_watch_through_the_client,
        plane="uncached",
    ),
    Row(
        "list-exact-expired",
        "The resourceVersion for the provided list is too old.",
        _expired_exact_list,
        plane="uncached",
    ),
    Row(
        "continue-expired",
        "a continue token that old is 410 too",
        _expired_continue,
        plane="uncached",
    ),
    Row(
        "discovery", "the group and group-version discovery documents and ``/healthz``", _discovery
    ),
]


@pytest.mark.parametrize("row", [r.param() for r in ROWS])
def test_fake_lists_and_watches_as_kube_apiserver(
    row: Row, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    plane_fixture = "uncached_plane" if row.plane == "uncached" else "control_plane"
    plane: ControlPlane = request.getfixturevalue(plane_fixture)
    real, fake = run_both(row, plane, tmp_path)
    assert not differences(real, fake), "\n".join(differences(real, fake))
