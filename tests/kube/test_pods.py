"""A pod's readiness read before its EndpointSlice says it (pure: dnsbalance._kube.pods,
and what SliceSet makes of it). The real chain is tests/cluster/test_pod_readiness.py."""

from __future__ import annotations

from typing import Any

import pytest

from dnsbalance._kube.pods import ReadyPods, ready_pod, selector_of
from dnsbalance._kube.slices import SliceSet

CONTROLLER = {
    "kubernetes.io/service-name": "svc",
    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
}


def pod(
    uid: str = "u1",
    ip: str | None = "10.0.0.1",
    *,
    ready: str = "True",
    deleting: bool = False,
    phase: str = "Running",
    ips: list[str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"pod-{uid}", "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-07T12:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": ready},
        ],
    }
    if ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": a} for a in (ips or [ip])]
    return {"metadata": metadata, "status": status}


def slice_(endpoints: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "svc-abc", "labels": CONTROLLER if labels is None else labels},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "grpc", "port": 9000, "protocol": "TCP"}],
    }


def ep_(ip: str, uid: str, **conditions: bool) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "namespace": "app", "name": f"pod-{uid}", "uid": uid},
    }


NOT_READY = {"ready": False, "serving": False, "terminating": False}


def test_a_ready_running_pod_with_an_ip_is_ready() -> None:
    assert ready_pod(pod()) == ("u1", frozenset({"10.0.0.1"}))
    dual = pod(ips=["10.0.0.1", "fd00::1"])
    assert ready_pod(dual) == ("u1", frozenset({"10.0.0.1", "fd00::1"}))


@pytest.mark.parametrize(
    "obj",
    [
        pod(ready="False"),
        pod(ready="Unknown"),
        pod(deleting=True),  # terminating: the controller writes ready=false
        pod(phase="Succeeded"),
        pod(phase="Failed"),
        pod(ip=None),  # no IP: not in any slice
        {"metadata": {"uid": "u1"}, "status": {"podIP": "10.0.0.1", "conditions": "Ready"}},
        {"metadata": {"uid": 7}, "status": pod()["status"]},
        {"metadata": {}, "status": pod()["status"]},
        {"status": None},
        [],
    ],
)
def test_anything_else_is_not(obj: Any) -> None:
    assert ready_pod(obj)[1] == frozenset()


def test_ready_pods_tell_what_changed() -> None:
    pods = ReadyPods()
    assert pods.apply("ADDED", pod("u1", ready="False")) is False
    assert pods.pairs == frozenset()
    assert pods.apply("MODIFIED", pod("u1")) is True
    assert pods.pairs == frozenset({("u1", "10.0.0.1")})
    assert pods.apply("MODIFIED", pod("u1")) is False  # a status heartbeat: no change
    assert pods.apply("DELETED", pod("u1")) is True
    assert pods.pairs == frozenset()
    assert pods.reset([pod("u1"), pod("u2", "10.0.0.2", ready="False")]) is True
    assert pods.pairs == frozenset({("u1", "10.0.0.1")})


def test_a_service_selector_becomes_a_label_selector() -> None:
    assert selector_of({"spec": {"selector": {"app": "greeter", "tier": "b"}}}) == (
        "app=greeter,tier=b"
    )
    assert selector_of({"spec": {"selector": {}}}) is None  # slices made by hand
    assert selector_of({"spec": {}}) is None
    assert selector_of({"spec": {"selector": {"app": 3}}}) is None
    assert selector_of({"spec": {"selector": {"a,b": "c"}}}) is None  # not a label key


def read(objs: list[dict[str, Any]], ready: frozenset[tuple[str, str]]) -> list[str]:
    slices = SliceSet(9000)
    slices.set_ready_pods(ready)
    slices.reset(objs)
    return [e.address for e in slices.usable()]


def test_an_endpoint_its_pod_says_is_ready_is_used_before_the_slice_says_so() -> None:
    obj = slice_([ep_("10.0.0.1", "u1", **NOT_READY), ep_("10.0.0.2", "u2", ready=True)])
    assert read([obj], frozenset()) == ["10.0.0.2"]
    assert read([obj], frozenset({("u1", "10.0.0.1")})) == ["10.0.0.1", "10.0.0.2"]
    slices = SliceSet(9000)
    slices.reset([obj])
    slices.set_ready_pods(frozenset({("u1", "10.0.0.1")}))  # the pod's change comes later
    assert [e.address for e in slices.usable()] == ["10.0.0.1", "10.0.0.2"]
    assert all(e.ready for e in slices.view().listed)
    slices.set_ready_pods(frozenset())  # not ready again: the slice's word again
    assert [e.address for e in slices.usable()] == ["10.0.0.2"]


@pytest.mark.parametrize(
    ("endpoint", "labels"),
    [
        (ep_("10.0.0.1", "u1", ready=False, serving=True, terminating=True), None),
        (ep_("10.0.0.1", "u1", ready=False, serving=False, terminating=True), None),
        (ep_("10.0.0.9", "u1", **NOT_READY), None),  # another IP: another pod's endpoint
        (ep_("10.0.0.1", "u9", **NOT_READY), None),  # a pod of that name made anew
        ({"addresses": ["10.0.0.1"], "conditions": NOT_READY}, None),  # no targetRef
        (ep_("10.0.0.1", "u1", **NOT_READY), {"kubernetes.io/service-name": "svc"}),
        (
            ep_("10.0.0.1", "u1", **NOT_READY),
            {**CONTROLLER, "endpointslice.kubernetes.io/managed-by": "my-controller"},
        ),
    ],
)
def test_the_pod_never_overrides_a_slice_it_cannot_speak_for(
    endpoint: dict[str, Any], labels: dict[str, str] | None
) -> None:
    assert read([slice_([endpoint], labels)], frozenset({("u1", "10.0.0.1")})) == []
