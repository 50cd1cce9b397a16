"""FakeKubernetesAPI against kube-apiserver v1.37, side by side: objects and writes.

Each row sends the same requests through the official client to the real server (a
namespace of its own on the session's control plane) and to a new fake (a namespace of
the same name), and the two observations must be equal: status codes, kinds, reasons
and messages, and every field dnsbalance reads (Service spec, EndpointSlice endpoints
with their conditions, hints, zone, nodeName and ports, Node labels, metadata uid,
resourceVersion, generation, finalizers and deletionTimestamp, Status details and
causes). Values only a server chooses are compared by shape (``sides.view``).

Slices here belong to selector-less Services (or none), so the real EndpointSlice
controller leaves them alone, and their addresses are data from 10.0.0.0/8 (the real
server refuses loopback ones; nothing dials them). Each row names the claim of the
``_kubeapi`` package documentation it holds (tests/cluster/test_fake_claims.py maps
them). The watch, list and history rows are in test_fake_vs_real_watch.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dnsbalance.testing import ControlPlane

from .sides import JSON, Row, Side, differences, names, run_both, view

LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
HOLD = "example.com/hold"


def svc(name: str, **spec: Any) -> JSON:
    body: JSON = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "grpc", "port": 8000}], **spec},
    }
    return body


def endpoint_slice(name: str, service: str = "web", **fields: Any) -> JSON:
    body: JSON = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.1.0.1"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "hostname": "pod-a",
                "nodeName": "node-a",
                "zone": "zone-a",
                "hints": {"forZones": [{"name": "zone-a"}]},
            },
            {
                "addresses": ["10.1.0.2"],
                "conditions": {"ready": False, "serving": True, "terminating": True},
                "zone": "zone-b",
            },
            {"addresses": ["10.1.0.3"]},  # no conditions at all: ready
        ],
        "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}, {"port": 8080}],
    }
    body.update(fields)
    return body


def seen(side: Side, method: Any, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """One call's (status, body) with server-chosen values as shapes."""
    status, body = side.call(method, *args, **kwargs)
    return status, view(body)


# -- Services -------------------------------------------------------------------------


def _service_defaults(side: Side) -> Any:
    c = side.core
    ports = [{"name": "grpc", "port": 8000, "targetPort": "grpc"}, {"name": "web", "port": 80}]
    return [
        seen(
            side,
            c.create_namespaced_service,
            side.ns,
            svc("clusterip", selector={"app": "x"}, ports=ports),
        ),
        seen(
            side,
            c.create_namespaced_service,
            side.ns,
            svc("headless", clusterIP="None", selector={"app": "x"}),
        ),
        seen(side, c.create_namespaced_service, side.ns, svc("nodeport", type="NodePort")),
        seen(side, c.create_namespaced_service, side.ns, svc("lb", type="LoadBalancer")),
        seen(
            side,
            c.create_namespaced_service,
            side.ns,
            {
                "metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "example.com"},
            },
        ),
        seen(side, c.read_namespaced_service, "clusterip", side.ns),
    ]


def _headless_without_selector(side: Side) -> Any:
    c = side.core
    return [
        seen(side, c.create_namespaced_service, side.ns, svc("bare", clusterIP="None")),
        seen(
            side,
            c.create_namespaced_service,
            side.ns,
            svc("single", clusterIP="None", ipFamilyPolicy="SingleStack"),
        ),
        seen(
            side,
            c.create_namespaced_service,
            side.ns,
            svc("prefer", clusterIP="None", ipFamilyPolicy="PreferDualStack"),
        ),
    ]


def _requested_cluster_ip(side: Side) -> Any:
    c = side.core
    taken = seen(side, c.create_namespaced_service, side.ns, svc("first", clusterIP="10.96.7.7"))
    return [
        taken[0],
        taken[1]["spec"]["clusterIP"] if taken[0] == 201 else taken,
        seen(side, c.create_namespaced_service, side.ns, svc("again", clusterIP="10.96.7.7")),
        seen(
            side, c.create_namespaced_service, side.ns, svc("kubernetes-ip", clusterIP="10.96.0.1")
        ),
        seen(side, c.create_namespaced_service, side.ns, svc("outside", clusterIP="10.200.0.1")),
    ]


def _headless_node_port(side: Side) -> Any:
    c = side.core
    return [
        seen(
            side, c.create_namespaced_service, side.ns, svc("np", type="NodePort", clusterIP="None")
        ),
        seen(
            side,
            c.create_namespaced_service,
            side.ns,
            svc("lb", type="LoadBalancer", clusterIP="None"),
        ),
    ]


def _cluster_ip_immutable(side: Side) -> Any:
    c = side.core
    status, created = side.call(c.create_namespaced_service, side.ns, svc("web"))
    assert status == 201, created
    put = dict(created, spec=dict(created["spec"], clusterIP="None", clusterIPs=None))
    kept = dict(
        created, spec={k: v for k, v in created["spec"].items() if not k.startswith("clusterIP")}
    )
    status, kept_answer = side.call(c.replace_namespaced_service, "web", side.ns, kept)
    return [
        seen(side, c.patch_namespaced_service, "web", side.ns, {"spec": {"clusterIP": "None"}}),
        seen(side, c.replace_namespaced_service, "web", side.ns, put),
        (status, kept_answer["spec"]["clusterIPs"] == created["spec"]["clusterIPs"]),
    ]


def _type_changes(side: Side) -> Any:
    c = side.core
    seen(side, c.create_namespaced_service, side.ns, svc("web"))
    merge = "application/merge-patch+json"
    return [
        seen(side, c.patch_namespaced_service, "web", side.ns, {"spec": {"type": "NodePort"}}),
        seen(side, c.patch_namespaced_service, "web", side.ns, {"spec": {"type": "ClusterIP"}}),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {
                "spec": {
                    "type": "ExternalName",
                    "externalName": "example.com",
                    "clusterIP": None,
                    "clusterIPs": None,
                }
            },
            _content_type=merge,
        ),
    ]


def _service_crud(side: Side) -> Any:
    c = side.core
    body = svc("", selector={"app": "web"})
    body["metadata"] = {"generateName": "web-"}
    status, made = side.call(c.create_namespaced_service, side.ns, body)
    name = made["metadata"]["name"]
    listed = side.call(c.list_namespaced_service, side.ns)[1]
    observed = [
        status,
        (name.startswith("web-"), len(name)),
        view(listed["items"]),
        sorted(listed["metadata"]),
        [k in listed["items"][0] for k in ("kind", "apiVersion")],
        [k in made for k in ("kind", "apiVersion")],
        seen(side, c.delete_namespaced_service, name, side.ns),
        side.call(c.read_namespaced_service, name, side.ns),
    ]
    # the generated suffix is the server's choice
    return json.loads(json.dumps(observed).replace(name, "web-<generated>"))


# -- EndpointSlices -------------------------------------------------------------------


def _slice_crud(side: Side) -> Any:
    d = side.disc
    selector = "kubernetes.io/service-name=web"
    return [
        seen(side, d.create_namespaced_endpoint_slice, side.ns, endpoint_slice("web-1")),
        seen(side, d.read_namespaced_endpoint_slice, "web-1", side.ns),
        view(
            side.call(d.list_namespaced_endpoint_slice, side.ns, label_selector=selector)[1][
                "items"
            ]
        ),
        seen(side, d.delete_namespaced_endpoint_slice, "web-1", side.ns),
        seen(side, d.read_namespaced_endpoint_slice, "web-1", side.ns),
    ]


def _slice_validation(side: Side) -> Any:
    d, ns = side.disc, side.ns
    one = [{"addresses": ["10.1.0.1"]}]
    return [
        seen(
            side,
            d.create_namespaced_endpoint_slice,
            ns,
            endpoint_slice("a", endpoints=[{"addresses": ["10.0.0.300"]}]),
        ),
        seen(
            side,
            d.create_namespaced_endpoint_slice,
            ns,
            endpoint_slice("b", endpoints=[{"addresses": ["fd00::1"]}]),
        ),
        seen(
            side,
            d.create_namespaced_endpoint_slice,
            ns,
            endpoint_slice("c", endpoints=[{"addresses": []}]),
        ),
        seen(
            side,
            d.create_namespaced_endpoint_slice,
            ns,
            endpoint_slice("d", endpoints=one, ports=[{"name": "Bad_Name", "port": 80}]),
        ),
        seen(
            side,
            d.create_namespaced_endpoint_slice,
            ns,
            endpoint_slice("e", endpoints=one, addressType="IPv5"),
        ),
        seen(
            side, d.create_namespaced_endpoint_slice, ns, endpoint_slice("Bad_Name", endpoints=one)
        ),
        seen(
            side,
            d.create_namespaced_endpoint_slice,
            ns,
            endpoint_slice("f", addressType="FQDN", endpoints=[{"addresses": ["a.example.com"]}]),
        ),
    ]


def _slice_address_type_immutable(side: Side) -> Any:
    d = side.disc
    seen(side, d.create_namespaced_endpoint_slice, side.ns, endpoint_slice("web-1"))
    return seen(side, d.patch_namespaced_endpoint_slice, "web-1", side.ns, {"addressType": "IPv6"})


# -- Nodes ----------------------------------------------------------------------------


def _node_crud(side: Side) -> Any:
    c = side.core
    name = side.node_name("n1")
    labels = {"topology.kubernetes.io/zone": "zone-x", "diff": side.ns}
    status, made = side.call(c.create_node, {"metadata": {"name": name, "labels": labels}})
    got = side.call(c.read_node, name)[1]
    return [
        status,
        [view(o["metadata"]) for o in (made, got)],
        names(side.call(c.list_node, label_selector=f"diff={side.ns}")[1]),
        side.raw("GET", f"/api/v1/namespaces/{side.ns}/nodes"),
        seen(
            side,
            c.create_node,
            {"metadata": {"name": side.node_name("n2"), "labels": {"bad key!": "x"}}},
        ),
        seen(side, c.delete_node, name),
        seen(side, c.read_node, name),
    ]


# -- patches --------------------------------------------------------------------------

MERGE = "application/merge-patch+json"


def _merge_patch(side: Side) -> Any:
    c = side.core
    seen(side, c.create_namespaced_service, side.ns, svc("web", selector={"app": "web"}))
    return [
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"selector": {"app": "new"}}},
            _content_type=MERGE,
        ),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"metadata": {"labels": {"a": None}}},
            _content_type=MERGE,
        ),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"metadata": {"labels": {"b": None}}},
            _content_type=MERGE,
        ),
    ]


def _json_patch(side: Side) -> Any:
    d = side.disc
    seen(side, d.create_namespaced_endpoint_slice, side.ns, endpoint_slice("web-1"))
    return [
        seen(
            side,
            d.patch_namespaced_endpoint_slice,
            "web-1",
            side.ns,
            [{"op": "replace", "path": "/endpoints/0/conditions/ready", "value": False}],
        ),
        seen(
            side,
            d.patch_namespaced_endpoint_slice,
            "web-1",
            side.ns,
            [{"op": "test", "path": "/addressType", "value": "IPv6"}],
        ),
        seen(
            side,
            d.patch_namespaced_endpoint_slice,
            "web-1",
            side.ns,
            [{"op": "remove", "path": "/nothing/here"}],
        ),
    ]


def _strategic_service_ports(side: Side) -> Any:
    c = side.core
    ports = [{"name": "grpc", "port": 8000}, {"name": "http", "port": 80}]
    seen(side, c.create_namespaced_service, side.ns, svc("web", ports=ports))
    return [
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"spec": {"ports": [{"port": 80, "name": "web"}]}},
        ),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"spec": {"ports": [{"port": 80, "$patch": "delete"}]}},
        ),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"spec": {"ports": [{"$patch": "replace"}, {"port": 9000, "name": "x"}]}},
        ),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"spec": {"ports": [{"name": "no-port-key"}]}},
        ),
    ]


def _strategic_slice_lists(side: Side) -> Any:
    d = side.disc
    seen(side, d.create_namespaced_endpoint_slice, side.ns, endpoint_slice("web-1"))
    patch = {"endpoints": [{"addresses": ["10.1.0.9"]}], "ports": [{"name": "x", "port": 1}]}
    return seen(side, d.patch_namespaced_endpoint_slice, "web-1", side.ns, patch)


def _patch_media_type(side: Side) -> Any:
    seen(side, side.core.create_namespaced_service, side.ns, svc("web"))
    status, body = side.raw(
        "PATCH", f"/api/v1/namespaces/{side.ns}/services/web", '{"metadata":{}}', "application/json"
    )
    return status, body.get("reason")


# -- errors ---------------------------------------------------------------------------


def _already_exists_and_not_found(side: Side) -> Any:
    c, d = side.core, side.disc
    seen(side, c.create_namespaced_service, side.ns, svc("web"))
    return [
        seen(side, c.create_namespaced_service, side.ns, svc("web")),
        seen(side, c.read_namespaced_service, "missing", side.ns),
        seen(side, c.delete_namespaced_service, "missing", side.ns),
        seen(side, d.read_namespaced_endpoint_slice, "missing", side.ns),
        seen(side, c.read_node, f"{side.ns}-missing"),
    ]


def _conflicts(side: Side) -> Any:
    c = side.core
    stale = side.call(c.create_namespaced_service, side.ns, svc("web"))[1]
    side.call(c.patch_namespaced_service, "web", side.ns, {"metadata": {"labels": {"v": "2"}}})
    unconditional = dict(stale, metadata=dict(stale["metadata"], resourceVersion=""))
    rv = stale["metadata"]["resourceVersion"]
    return [
        seen(side, c.replace_namespaced_service, "web", side.ns, stale),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"metadata": {"resourceVersion": rv, "labels": {}}},
        ),
        side.call(c.replace_namespaced_service, "web", side.ns, unconditional)[0],
    ]


def _delete_preconditions(side: Side) -> Any:
    d = side.disc
    made = side.call(d.create_namespaced_endpoint_slice, side.ns, endpoint_slice("web-1"))[1]
    uid, rv = made["metadata"]["uid"], made["metadata"]["resourceVersion"]
    wrong_uid = "00000000-0000-0000-0000-000000000000"
    answers = [
        side.call(
            d.delete_namespaced_endpoint_slice,
            "web-1",
            side.ns,
            body={"preconditions": {"uid": wrong_uid}},
        ),
        side.call(
            d.delete_namespaced_endpoint_slice,
            "web-1",
            side.ns,
            body={"preconditions": {"resourceVersion": "1"}},
        ),
    ]
    messages = [
        (s, b["reason"], b["message"].replace(uid, "<uid>").replace(rv, "<rv>")) for s, b in answers
    ]
    ok = side.call(
        d.delete_namespaced_endpoint_slice,
        "web-1",
        side.ns,
        body={"preconditions": {"uid": uid, "resourceVersion": rv}},
    )
    return [messages, ok[0]]


def _bad_requests(side: Side) -> Any:
    c, ns = side.core, side.ns
    seen(side, c.create_namespaced_service, ns, svc("web"))
    elsewhere = svc("other")
    elsewhere["metadata"]["namespace"] = "elsewhere"
    bad_json = side.raw(
        "POST", f"/api/v1/namespaces/{ns}/services", "{not json", "application/json"
    )
    return [
        seen(side, c.replace_namespaced_service, "web", ns, svc("other")),
        seen(side, c.create_namespaced_service, ns, elsewhere),
        (bad_json[0], bad_json[1]["reason"]),
    ]


def _create_with_resource_version(side: Side) -> Any:
    body = svc("web")
    body["metadata"]["resourceVersion"] = "5"
    return seen(side, side.core.create_namespaced_service, side.ns, body)


def _method_and_media_type(side: Side) -> Any:
    path = f"/api/v1/namespaces/{side.ns}/services"
    status, body = side.raw("POST", path, "name: web", "text/plain")
    # what follows "accepted media types include:" differs by design: the fake decodes JSON
    message = body["message"].partition(" - accepted media types include: ")
    return [
        side.raw("PUT", path, "{}", "application/json"),
        side.raw("DELETE", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
        (status, body["reason"], message[0], bool(message[2])),
        names(side.call(side.core.list_namespaced_service, side.ns)[1]),
    ]


def _unauthorized(side: Side) -> Any:
    with side.unauthenticated() as api:
        return [
            Side.call(_core(api).list_namespaced_service, side.ns),
            Side.call(_core(api).read_node, "node-a"),
        ]


def _forbidden(side: Side) -> Any:
    from kubernetes import client

    with side.denied() as api:
        core, disc = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        ns = side.ns
        return [
            Side.call(disc.list_namespaced_endpoint_slice, ns),
            Side.call(disc.read_namespaced_endpoint_slice, "web-1", ns),
            Side.call(disc.list_namespaced_endpoint_slice, ns, watch=True, timeout_seconds=1),
            Side.call(core.create_namespaced_service, ns, svc("web")),
            Side.call(core.delete_namespaced_service, "web", ns),
            Side.call(core.list_service_for_all_namespaces),
            Side.call(core.read_node, "node-a"),
        ]


def _access_reviews(side: Side) -> Any:
    from kubernetes import client

    attributes = {
        "namespace": side.ns,
        "verb": "watch",
        "group": "discovery.k8s.io",
        "resource": "endpointslices",
    }
    review = {"spec": {"resourceAttributes": attributes}}
    answers = [side.call(side.auth.create_self_subject_access_review, review)]
    with side.denied() as api:
        answers.append(
            Side.call(client.AuthorizationV1Api(api).create_self_subject_access_review, review)
        )
    return [(s, b["kind"], b["apiVersion"], b["spec"], b["status"]["allowed"]) for s, b in answers]


def _core(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


# -- dry run --------------------------------------------------------------------------


def _dry_run_writes(side: Side) -> Any:
    c = side.core
    seen(side, c.create_namespaced_service, side.ns, svc("web"))
    current = side.call(c.read_namespaced_service, "web", side.ns)[1]
    changed = dict(current, spec=dict(current["spec"], sessionAffinity="ClientIP"))
    answers = [
        seen(side, c.create_namespaced_service, side.ns, svc("dry"), dry_run="All"),
        seen(side, c.replace_namespaced_service, "web", side.ns, changed, dry_run="All"),
        seen(
            side,
            c.patch_namespaced_service,
            "web",
            side.ns,
            {"metadata": {"labels": {"a": "b"}}},
            dry_run="All",
        ),
    ]
    after = side.call(c.read_namespaced_service, "web", side.ns)[1]
    return [
        answers,
        after["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"],
        names(side.call(c.list_namespaced_service, side.ns)[1]),
    ]


def _dry_run_delete(side: Side) -> Any:
    c = side.core
    seen(side, c.create_namespaced_service, side.ns, svc("web"))
    return [
        seen(side, c.delete_namespaced_service, "web", side.ns, dry_run="All"),
        seen(side, c.delete_namespaced_service, "web", side.ns, body={"dryRun": ["All"]}),
        names(side.call(c.list_namespaced_service, side.ns)[1]),
    ]


def _dry_run_delete_body_wins(side: Side) -> Any:
    """A DELETE with a body reads its options from the body alone: ``?dryRun=All``
    beside a body without dryRun deletes for real (handlers/delete.go)."""
    c = side.core
    seen(side, c.create_namespaced_service, side.ns, svc("web"))
    return [
        side.call(c.delete_namespaced_service, "web", side.ns, dry_run="All", body={})[0],
        names(side.call(c.list_namespaced_service, side.ns)[1]),
    ]


# -- finalizers -----------------------------------------------------------------------


def _finalizer_holds_delete(side: Side) -> Any:
    c = side.core
    body = svc("edge", type="LoadBalancer")
    body["metadata"]["finalizers"] = [LB_FINALIZER]
    created = side.call(c.create_namespaced_service, side.ns, body)[1]
    first = side.call(c.delete_namespaced_service, "edge", side.ns)
    held = side.call(c.read_namespaced_service, "edge", side.ns)
    again = side.call(c.delete_namespaced_service, "edge", side.ns)
    more = {"metadata": {"finalizers": [LB_FINALIZER, HOLD]}}
    return [
        view(first),
        first[1]["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"],
        view(held),
        again[1]["metadata"] == held[1]["metadata"],
        seen(side, c.patch_namespaced_service, "edge", side.ns, more, _content_type=MERGE),
        seen(
            side,
            c.patch_namespaced_service,
            "edge",
            side.ns,
            {"metadata": {"finalizers": None}},
            _content_type=MERGE,
        ),
        side.call(c.read_namespaced_service, "edge", side.ns)[0],
    ]


# -- the rows -------------------------------------------------------------------------

ROWS = [
    Row("service-defaults", "Services: defaults as the v1 defaulters", _service_defaults),
    Row(
        "service-headless-selectorless",
        "unless headless (``None``) or ExternalName",
        _headless_without_selector,
    ),
    Row("service-requested-ip", "a requested IP must be free and in range", _requested_cluster_ip),
    Row(
        "service-headless-nodeport-422",
        "headless NodePort/LoadBalancer is 422",
        _headless_node_port,
    ),
    Row(
        "service-clusterip-immutable",
        "changing the cluster IP on update is 422",
        _cluster_ip_immutable,
    ),
    Row(
        "service-type-changes",
        "Type changes release or allocate as the real server.",
        _type_changes,
    ),
    Row("service-crud", "``generateName`` works", _service_crud),
    Row(
        "slice-crud",
        "DELETE answers the deleted object for Services and a Status ``Success`` (with "
        "``details``) for EndpointSlices",
        _slice_crud,
    ),
    Row("slice-validation", "Validation covers names, types, ports, addresses", _slice_validation),
    Row(
        "slice-addresstype-immutable",
        "422 Invalid with ``details.causes``",
        _slice_address_type_immutable,
    ),
    Row("node-crud", "cluster-scoped Nodes with labels", _node_crud),
    Row("patch-merge", "``application/merge-patch+json`` (RFC 7386)", _merge_patch),
    Row(
        "patch-json", "``application/json-patch+json`` (RFC 6902; a failing op is 422", _json_patch
    ),
    Row(
        "patch-strategic-ports",
        "merges Service ``spec.ports`` by ``port``",
        _strategic_service_ports,
    ),
    Row("patch-strategic-slice-lists", "other lists are replaced", _strategic_slice_lists),
    Row("patch-media-type", "PATCH: ``application/merge-patch+json``", _patch_media_type),
    Row("exists-and-not-found", "404 NotFound, 409 AlreadyExists", _already_exists_and_not_found),
    Row("conflict-stale-rv", "an empty one updates unconditionally", _conflicts),
    Row("delete-preconditions", "also DELETE preconditions", _delete_preconditions),
    Row("bad-requests", "body/URL name or namespace mismatch, bad JSON", _bad_requests),
    Row(
        "create-with-rv-500",
        "Creating an object that carries a resourceVersion answers the server's 500",
        _create_with_resource_version,
    ),
    Row(
        "405-and-415",
        "any media type but JSON are answered 415 UnsupportedMediaType",
        _method_and_media_type,
    ),
    Row("401", "else 401 with the real Status", _unauthorized),
    Row("403", "a 403 on a watch is an HTTP 403, not an event", _forbidden),
    Row(
        "access-reviews",
        "SelfSubjectAccessReviews answer ``status.allowed`` by the same rules",
        _access_reviews,
    ),
    Row("dry-run-writes", "``dryRun=All``", _dry_run_writes),
    Row("dry-run-delete", "storing nothing", _dry_run_delete),
    Row("dry-run-delete-body-wins", "storing nothing", _dry_run_delete_body_wins),
    Row(
        "finalizer-holds-delete",
        "Finalizers: DELETE of an object with ``metadata.finalizers`` only sets",
        _finalizer_holds_delete,
    ),
]


@pytest.mark.parametrize("row", [r.param() for r in ROWS])
def test_fake_answers_as_kube_apiserver(
    row: Row, control_plane: ControlPlane, tmp_path: Path
) -> None:
    real, fake = run_both(row, control_plane, tmp_path)
    assert not differences(real, fake), "\n".join(differences(real, fake))
