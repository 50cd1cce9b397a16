"""Converting Services to headless, offline: the pure decisions, the manifest reader, golden
files for ``convert-service -f`` (byte for byte) and a property test that every output
validates against the Kubernetes schema (kubernetes-validate, strict).

Regenerate the golden files after an intended change with
``DNSBALANCE_REGOLDEN=1 pytest tests/cli/test_convert.py`` and review the diff.
"""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsbalance import ConversionError
from dnsbalance.cli.convert import convert_documents, plan_replace, plan_twin
from dnsbalance.cli.main import main
from dnsbalance.cli.manifests import dump_yaml, read_documents
from dnsbalance.cli.service_edits import (
    MIRRORS_ANNOTATION,
    check_twin_owner,
    clean_for_recreate,
    restore_copy,
    twin_differences,
    updated_twin,
)

GOLDEN = Path(__file__).parent / "golden" / "convert"
REGOLDEN = os.environ.get("DNSBALANCE_REGOLDEN") == "1"
K8S_VERSION = "1.29"  # the oldest schema the dev pin (kubernetes-validate>=1.29) ships


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def service(**spec: Any) -> dict[str, Any]:
    spec.setdefault("selector", {"app": "greeter"})
    spec.setdefault("ports", [{"name": "grpc", "port": 8000, "targetPort": 50051}])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "greeter", "namespace": "app", "labels": {"app": "greeter"}},
        "spec": spec,
    }


# -- the decisions ----------------------------------------------------------------------


def test_twin_mirrors_selector_ports_labels_and_is_headless() -> None:
    original = service(
        type="NodePort",
        publishNotReadyAddresses=True,
        ports=[{"name": "grpc", "port": 8000, "targetPort": 50051, "nodePort": 30001}],
    )
    plan = plan_twin(original)
    assert plan.result == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "greeter-headless",
            "namespace": "app",
            "labels": {"app": "greeter"},
            "annotations": {MIRRORS_ANNOTATION: "greeter"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "selector": {"app": "greeter"},
            "ports": [{"name": "grpc", "port": 8000, "targetPort": 50051}],
            "publishNotReadyAddresses": True,
        },
    }
    assert plan.warnings == ()
    assert plan.original == original  # a copy; the input is not touched
    validate(plan.result)


def test_clean_for_recreate_drops_exactly_the_listed_fields() -> None:
    fetched = service(
        type="LoadBalancer",
        clusterIP="10.96.0.20",
        clusterIPs=["10.96.0.20"],
        healthCheckNodePort=32000,
        externalTrafficPolicy="Local",
        loadBalancerIP="198.51.100.1",
        loadBalancerSourceRanges=["10.0.0.0/8"],
        loadBalancerClass="example.com/lb",
        allocateLoadBalancerNodePorts=True,
        sessionAffinity="None",
        ports=[{"name": "grpc", "port": 8000, "nodePort": 30001, "protocol": "TCP"}],
    )
    fetched["metadata"].update(
        resourceVersion="7",
        uid="u-1",
        creationTimestamp="2024-01-01T00:00:00Z",
        generation=3,
        managedFields=[{"manager": "kubectl"}],
        selfLink="/api/v1/x",
        deletionTimestamp="2024-01-02T00:00:00Z",
        deletionGracePeriodSeconds=0,
        finalizers=["service.kubernetes.io/load-balancer-cleanup"],
        annotations={
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "keep": "me",
        },
    )
    fetched["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}
    cleaned = clean_for_recreate(fetched)
    assert cleaned["metadata"] == {  # no finalizer: each belongs to the old object
        "name": "greeter",
        "namespace": "app",
        "labels": {"app": "greeter"},
        "annotations": {"keep": "me"},
    }
    assert cleaned["spec"] == {
        "selector": {"app": "greeter"},
        "ports": [{"name": "grpc", "port": 8000, "protocol": "TCP"}],
        "type": "LoadBalancer",
        "sessionAffinity": "None",
    }
    assert "status" not in cleaned
    assert fetched["spec"]["clusterIP"] == "10.96.0.20"  # the input is not touched
    restored = restore_copy(fetched)
    assert restored["spec"]["clusterIP"] == "10.96.0.20"
    assert restored["spec"]["ports"][0]["nodePort"] == 30001
    assert "resourceVersion" not in restored["metadata"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in restored["metadata"]["annotations"]
    fresh = restore_copy(fetched, keep_allocations=False)
    assert "clusterIP" not in fresh["spec"]
    assert "nodePort" not in fresh["spec"]["ports"][0]


def test_replace_refuses_exposure_unless_forced_and_names_what_is_lost() -> None:
    node = service(type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    with pytest.raises(ConversionError, match=r"NodePort.*node ports 30080 \(http\).*--force"):
        plan_replace(node)
    forced = plan_replace(node, force=True)
    assert forced.result is not None
    assert forced.result["spec"]["type"] == "ClusterIP"
    assert forced.result["spec"]["clusterIP"] == "None"
    assert forced.lost == ("node ports 30080 (http)",)
    balancer = service(type="LoadBalancer", loadBalancerIP="192.0.2.9")
    balancer["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
    with pytest.raises(ConversionError, match=r"load balancer 198\.51\.100\.7, 192\.0\.2\.9"):
        plan_replace(balancer)
    with pytest.raises(ConversionError, match=r"external IPs 203\.0\.113\.1"):
        plan_replace(service(externalIPs=["203.0.113.1"]))
    # the twin keeps the original, so nothing is lost
    assert plan_twin(node).result is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spec": {"type": "ExternalName", "externalName": "x.example"}}, "ExternalName"),
        ({"spec": {"type": "Nope", "ports": [{"port": 1}]}}, "spec.type"),
        ({"spec": {"ports": [{"port": 0}]}}, r"spec.ports\[0\].port"),
        ({"spec": {"ports": [{"port": "80"}]}}, r"spec.ports\[0\].port"),
        ({"spec": {"ports": [{"port": 1}, {"port": 2, "name": "b"}]}}, "more than one port"),
        (
            {"spec": {"ports": [{"port": 1, "name": "Bad_Name"}]}},
            r"spec.ports\[0\].name 'Bad_Name' is not a valid Service port name \(a DNS-1123 label",
        ),
        (
            {"spec": {"ports": [{"port": 1, "name": "x" * 64}]}},
            r"is not a valid Service port name \(a DNS-1123 label",
        ),
        (
            {"spec": {"ports": [{"port": 1, "targetPort": "a-very-long-name"}]}},
            r"spec.ports\[0\].targetPort 'a-very-long-name' is not a valid container port name "
            r"\(IANA_SVC_NAME",
        ),
        (
            {"spec": {"ports": [{"port": 1, "targetPort": "8000-50051"}]}},
            r"targetPort '8000-50051' is not a valid container port name \(IANA_SVC_NAME",
        ),
        ({"spec": {"ports": []}}, "spec.ports is required"),
        ({"spec": {"selector": {"app": 1}, "ports": [{"port": 1}]}}, "spec.selector"),
        ({"spec": "nope"}, "spec must be an object"),
        ({"metadata": {"name": "Bad"}}, "DNS-1035"),
        ({"metadata": {"generateName": "x-"}}, "metadata.name is required"),
        ({"metadata": {"name": "ok", "labels": {"v": 1}}}, "metadata.labels"),
        ({"apiVersion": "v2"}, "apiVersion must be v1"),
    ],
)
def test_garbage_is_a_conversion_error(change: dict[str, Any], message: str) -> None:
    obj = service()
    obj.update(change)
    for plan in (plan_twin, plan_replace):
        with pytest.raises(ConversionError, match=message):
            plan(obj)


def test_port_names_follow_the_api_rule_of_each_field() -> None:
    """Issue 22 item 5: ports[].name is a DNS-1123 label (what `kubectl create service
    clusterip kc --tcp=8000:50051` writes: 8000-50051); a string targetPort is a
    container port name (IANA_SVC_NAME)."""
    kc = service(ports=[{"name": "8000-50051", "port": 8000, "targetPort": 50051}])
    twin = plan_twin(kc).result
    assert twin is not None
    assert twin["spec"]["ports"][0]["name"] == "8000-50051"
    long_name = service(ports=[{"name": "a-rather-long-service-port-name", "port": 80}])
    assert plan_replace(long_name).result is not None


def test_already_headless_is_a_no_op_and_warnings_name_the_problem() -> None:
    plan = plan_twin(service(clusterIP="None"))
    assert plan.result is None
    assert "already headless" in plan.message
    loose = service(ports=[{"port": 8080}])
    del loose["spec"]["selector"]
    warnings = plan_twin(loose).warnings
    assert any("no selector" in w and "managed by hand" in w for w in warnings)
    assert any("port 8080 has no name" in w and "SRV" in w for w in warnings)
    with pytest.raises(ConversionError, match="--twin-name"):
        plan_twin(service() | {"metadata": {"name": "a" * 60}})


def test_existing_twin_ownership_and_updates() -> None:
    desired = plan_twin(service()).result
    assert desired is not None
    existing = copy.deepcopy(desired)
    existing["metadata"]["resourceVersion"] = "9"
    existing["spec"]["ports"][0]["protocol"] = "TCP"  # server defaulting is no difference
    check_twin_owner(existing, "greeter")
    assert twin_differences(existing, desired) == []
    changed = plan_twin(service(selector={"app": "v2"})).result
    assert changed is not None
    assert twin_differences(existing, changed) == ["spec.selector"]
    body = updated_twin(existing, changed)
    assert body["spec"]["selector"] == {"app": "v2"}
    assert body["metadata"]["resourceVersion"] == "9"  # the update is conflict-checked
    foreign = copy.deepcopy(existing)
    del foreign["metadata"]["annotations"]
    with pytest.raises(ConversionError, match="not the twin of service/greeter"):
        check_twin_owner(foreign, "greeter")
    other = copy.deepcopy(existing)
    other["metadata"]["annotations"][MIRRORS_ANNOTATION] = "someone-else"
    with pytest.raises(ConversionError, match="'someone-else'"):
        check_twin_owner(other, "greeter")


# -- manifests ----------------------------------------------------------------------------


def test_invalid_yaml_and_json_name_the_line() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   bad: indent\n"
    with pytest.raises(ConversionError, match=r"^svc\.yaml:5:\d+: invalid YAML"):
        read_documents(text, source="svc.yaml")
    with pytest.raises(ConversionError, match=r"^s\.json:3:\d+: invalid JSON"):
        read_documents('{"a": 1,\n "b": 2,\n }', source="s.json")
    docs = read_documents("---\n# empty\n---\na: 1\n---\nb: 2\n")
    assert [(d.value, d.line) for d in docs] == [({"a": 1}, 4), ({"b": 2}, 6)]
    with pytest.raises(ConversionError, match=r"document 1 \(line 1\): expected a Kubernetes"):
        convert_documents(read_documents("- a\n- b\n"), strategy="twin")


def test_twin_of_a_converted_manifest_changes_nothing() -> None:
    docs = read_documents(dump_yaml([service(), {"apiVersion": "v1", "kind": "ConfigMap"}]))
    once = dump_yaml(convert_documents(docs, strategy="twin").documents)
    twice = dump_yaml(convert_documents(read_documents(once), strategy="twin").documents)
    assert once == twice
    # an outdated twin in the manifest is brought up to date in place, not duplicated
    head, _, tail = once.rpartition("targetPort: 50051")  # the twin's, not the original's
    stale = head + "targetPort: 50052" + tail
    assert dump_yaml(convert_documents(read_documents(stale), strategy="twin").documents) == once
    taken = {"name": "greeter-headless", "namespace": "app"}
    foreign = dump_yaml([service(), service() | {"metadata": taken}])
    with pytest.raises(ConversionError, match=r"document 2 \(line \d+\).*not the twin"):
        convert_documents(read_documents(foreign), strategy="twin")


# -- golden files for `convert-service -f` ----------------------------------------------------

GOLDEN_CASES = [
    ("clusterip", "twin", []),
    ("clusterip", "replace", ["--strategy", "replace"]),
    ("nodeport", "twin", []),
    ("nodeport", "replace", ["--strategy", "replace"]),
    ("nodeport", "replace-force", ["--strategy", "replace", "--force"]),
    ("loadbalancer", "twin", []),
    ("loadbalancer", "replace", ["--strategy", "replace"]),
    ("loadbalancer", "replace-force", ["--strategy", "replace", "--force"]),
    ("multiport", "twin", []),
    ("multiport", "replace", ["--strategy", "replace"]),
    ("unnamed-port", "twin", []),
    ("no-selector", "twin", []),
    ("no-selector", "replace", ["--strategy", "replace"]),
    ("externalname", "twin", []),
    ("externalname", "replace", ["--strategy", "replace"]),
    ("list", "twin", []),
    ("list", "twin-json", ["-o", "json"]),
    ("list", "replace", ["--strategy", "replace"]),
    ("mixed", "twin", []),
    ("mixed", "replace-diff", ["--strategy", "replace", "--diff"]),
    ("json-input", "twin", []),
]


def _objects(text: str, json_output: bool) -> list[Any]:
    docs = [d.value for d in read_documents(text)]
    if json_output:
        assert len(docs) == 1
        assert docs[0]["kind"] == "List"
        return list(docs[0]["items"])
    flat: list[Any] = []
    for doc in docs:
        flat.extend(doc["items"] if doc.get("kind") == "List" else [doc])
    return flat


@pytest.mark.parametrize(("case", "variant", "args"), GOLDEN_CASES)
def test_golden(
    case: str, variant: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    source = GOLDEN / f"{case}.json"
    if not source.exists():
        source = GOLDEN / f"{case}.yaml"
    out = io.StringIO()
    code = main(["convert-service", "-f", str(source.relative_to(Path.cwd())), *args], out=out)
    err = capsys.readouterr().err
    got_out, got_err = out.getvalue(), f"exit: {code}\n{err}"
    expected_out = GOLDEN / f"{case}.{variant}.out"
    expected_err = GOLDEN / f"{case}.{variant}.err"
    if REGOLDEN:
        expected_out.write_text(got_out)
        expected_err.write_text(got_err)
    assert got_out == expected_out.read_text(), f"{expected_out} differs"
    assert got_err == expected_err.read_text(), f"{expected_err} differs"
    if code == 0 and "--diff" not in args:
        objects = _objects(got_out, "-o" in args)
        assert objects
        for obj in objects:
            if obj["apiVersion"] in ("v1", "apps/v1"):
                validate(obj)


@pytest.fixture(autouse=True)
def _run_from_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """Golden files hold relative paths in messages: run from the project folder."""
    monkeypatch.chdir(Path(__file__).parents[2])


# -- every output is a valid object -----------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
_port_names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_SPEC_KEYS = [
    "type",
    "selector",
    "ports",
    "clusterIP",
    "clusterIPs",
    "publishNotReadyAddresses",
    "ipFamilies",
    "externalIPs",
    "sessionAffinityConfig",
    "externalName",
]
_METADATA_KEYS = ["name", "namespace", "labels", "annotations", "ownerReferences", "finalizers"]
_PORT_KEYS = ["port", "name", "targetPort", "protocol", "nodePort", "appProtocol"]
_garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@st.composite
def services(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([None, "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]))
    count = draw(st.integers(0, 3))
    ports = []
    for i in range(count):
        port: dict[str, Any] = {"port": draw(st.integers(1, 65535)) if i else 8000 + i}
        if count > 1 or draw(st.booleans()):
            port["name"] = f"{draw(_port_names)}{i}"
        if draw(st.booleans()):
            port["protocol"] = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
        if draw(st.booleans()):
            port["targetPort"] = draw(st.one_of(st.integers(1, 65535), _port_names))
        if kind in ("NodePort", "LoadBalancer") and draw(st.booleans()):
            port["nodePort"] = draw(st.integers(30000, 32767))
        if draw(st.booleans()):
            port["appProtocol"] = "grpc"
        ports.append(port)
    if len({(p["port"], p.get("protocol", "TCP")) for p in ports}) < len(ports):
        ports = ports[:1]
    spec: dict[str, Any] = {}
    if kind is not None:
        spec["type"] = kind
    if ports:
        spec["ports"] = ports
    if draw(st.booleans()):
        spec["selector"] = draw(st.dictionaries(_names, _names, min_size=1, max_size=2))
    spec["clusterIP"] = draw(st.sampled_from([None, "", "None", "10.96.0.20"]))
    if spec["clusterIP"] is None:
        del spec["clusterIP"]
    if draw(st.booleans()):
        spec["publishNotReadyAddresses"] = draw(st.booleans())
    if kind == "ExternalName":
        spec["externalName"] = "x.example.com"
    if kind == "LoadBalancer" and draw(st.booleans()):
        spec["loadBalancerSourceRanges"] = ["10.0.0.0/8"]
        spec["externalTrafficPolicy"] = "Local"
    if draw(st.booleans()):
        spec["ipFamilies"], spec["ipFamilyPolicy"] = ["IPv4"], "SingleStack"
    metadata: dict[str, Any] = {"name": draw(_names)}
    if draw(st.booleans()):
        metadata["namespace"] = draw(_names)
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(_names, _names, max_size=2))
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": metadata}
    obj["spec"] = spec
    if kind == "LoadBalancer" and draw(st.booleans()):
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
    for _ in range(draw(st.integers(0, 2))):  # break a field or two, now and then
        where = draw(st.sampled_from(["spec", "metadata", "port", "top"]))
        value = draw(_garbage)
        if where == "spec":
            spec[draw(st.sampled_from(_SPEC_KEYS))] = value
        elif where == "metadata":
            metadata[draw(st.sampled_from(_METADATA_KEYS))] = value
        elif where == "port" and ports:
            ports[0][draw(st.sampled_from(_PORT_KEYS))] = value
        else:
            obj[draw(st.sampled_from(["spec", "metadata", "kind", "apiVersion", "status"]))] = value
    return obj


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=services(), strategy=st.sampled_from(["twin", "replace"]), force=st.booleans())
def test_output_is_valid_or_refused(obj: dict[str, Any], strategy: Any, force: bool) -> None:
    text = yaml.safe_dump(obj, sort_keys=False)
    try:
        result = convert_documents(read_documents(text), strategy=strategy, force=force)
    except ConversionError:
        return
    output = dump_yaml(result.documents)
    for doc in read_documents(output):
        if doc.value.get("kind") == "Service" and doc.value.get("apiVersion") == "v1":
            validate(doc.value)
    again = convert_documents(read_documents(output), strategy=strategy, force=force)
    assert dump_yaml(again.documents) == output  # converting twice changes nothing
