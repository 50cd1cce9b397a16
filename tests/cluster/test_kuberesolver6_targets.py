"""Every target form kuberesolver v6 documents or tests, through the real chain: the v6
client (Go, benchmarks/kuberesolver6/, grpc-go v1.71.0) and dnsbalance (mode "api")
each dial the form against the real control plane and must reach the same pods.

Two Services share a name, one in the test's namespace and one in ``default`` (the
namespace both clients fall back to here: no service-account file, the admin
kubeconfig's context says ``default``), so every form's namespace is checked too.
Needs the Go client (built from the module proxy on first use) and the cluster tier;
skips without them, fails under CI=true.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

import dnsbalance
from benchmarks._common import Recorder
from benchmarks._kuberesolver import GoClient
from benchmarks._kuberesolver6 import api_flags, build, token_file
from dnsbalance.testing import ControlPlane
from tests.kits.backends import demo_pb2_grpc, wait_until

from .kit import call, require_pod_network, unavailable, until_seen

SERVICE = "kr6"  # one name in two namespaces
PORT = 50051  # the pods' (target) port: both clients dial a number as given
ELSEWHERE = "default"

# (form, the namespace it means: "ns" for the test's own, "default" otherwise, and
# where it comes from). Every form of v6's README (service-name, namespace and
# cluster_name filled in), then the shapes of its builder_test.go rows.
FORMS = [
    ("kubernetes:///{svc}:{port}", "default", "README"),
    ("kubernetes:///{svc}:grpc", "default", "README"),
    ("kubernetes:///{svc}.{ns}:{port}", "ns", "README"),
    ("kubernetes:///{svc}.{ns}.svc.cluster.local", "ns", "README"),
    ("kubernetes:///{svc}.{ns}.svc.cluster.local:{port}", "ns", "README"),
    ("kubernetes://{ns}/{svc}:{port}", "ns", "README"),
    ("kubernetes://{svc}:{port}/", "default", "README"),
    ("kubernetes://{svc}.{ns}:{port}/", "ns", "README"),
    ("kubernetes://{svc}.{ns}.svc.cluster.local", "ns", "README"),
    ("kubernetes://{svc}.{ns}.svc.cluster.local:{port}", "ns", "README"),
    ("kubernetes://{svc}:{port}", "default", "TestParseTargets kubernetes://a:30"),
    ("kubernetes://{svc}/", "default", "TestParseTargets kubernetes://a/"),
    ("kubernetes:///{svc}", "default", "TestParseTargets kubernetes:///a"),
    ("kubernetes://{ns}/{svc}", "ns", "TestParseTargets kubernetes://a/b"),
    ("kubernetes://{svc}.{ns}/", "ns", "TestParseTargets kubernetes://a.b/"),
    ("kubernetes:///{svc}.{ns}:grpc", "ns", "TestParseTargets kubernetes:///a.b:port"),
    ("kubernetes://{ns}/{svc}:grpc", "ns", "TestParseTargets kubernetes://x/a:port"),
    ("kubernetes:///{svc}.{ns}.svc.cluster.local:grpc", "ns", "TestParseTargets"),
    ("kubernetes://{svc}.{ns}:{port}", "ns", "TestBuilder kube-dns.kube-system:53"),
    ("kubernetes:{svc}", "default", "TestParseResolverTarget a"),
    ("kubernetes:/{svc}", "default", "TestParseResolverTarget /a"),
    ("kubernetes:{svc}.{ns}", "ns", "TestParseResolverTarget a.b"),
    ("kubernetes:/{svc}.{ns}:{port}", "ns", "TestParseResolverTarget /a.b:80"),
    ("kubernetes:/{svc}.{ns}:grpc", "ns", "TestParseResolverTarget /a.b:port"),
    ("kubernetes:{svc}.{ns}.svc.cluster.local", "ns", "TestParseResolverTarget"),
    ("kubernetes:/{svc}.{ns}.svc.cluster.local:{port}", "ns", "TestParseResolverTarget"),
]


@pytest.fixture(scope="module")
def binary() -> Path:
    path, why = build()
    if path is None:
        unavailable(f"the kuberesolver v6 client was not built: {why}")
    return path


@pytest.fixture(scope="module")
def two_services(control_plane: ControlPlane) -> Iterator[dict[str, object]]:
    """``kr6`` in a namespace of its own and in ``default``, two pods each: the
    namespace, and the pods' backends by namespace key."""
    require_pod_network(control_plane)
    namespace = control_plane.create_namespace()
    backends: dict[str, set[str]] = {}
    made = []
    for key, ns in (("ns", namespace), ("default", ELSEWHERE)):
        labels = {"app": f"kr6-{key}"}
        control_plane.create_service(ns, SERVICE, selector=labels)
        pods = [
            control_plane.add_pod(ns, f"kr6-{key}-{i}", node="node-a", labels=labels, port=PORT)
            for i in range(2)
        ]
        control_plane.wait_for_ready(ns, SERVICE, [p.ip for p in pods])
        backends[key] = {p.backend for p in pods}
        made += pods
    yield {"namespace": namespace, "backends": backends}
    for pod in made:
        control_plane.remove_pod(pod.namespace, pod.name, grace=0)
    client.CoreV1Api(control_plane.admin).delete_namespaced_service(SERVICE, ELSEWHERE)


@pytest.fixture(scope="module")
def v6_flags(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("kr6")
    return api_flags(
        ca_file=control_plane.ca_file, token_file=token_file(control_plane.kubeconfig, folder)
    )


def _v6_reaches(
    binary: Path, cluster: ControlPlane, flags: list[str], target: str, want: set[str]
) -> tuple[set[str], int]:
    """The pods the v6 client reached once it had reached every pod of ``want`` (or 20
    s passed), over 40 more calls; and how many calls failed before that."""
    recorder = Recorder()
    with GoClient(
        binary, cluster.api_url, target, recorder, callers=2, interval_ms=10, limit=60,
        timeout=1.0, flags=flags,
    ):  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not want <= {c.backend for c in recorder.calls}:
            time.sleep(0.05)
        mark = len(recorder.calls)
        while time.monotonic() < deadline + 10 and len(recorder.calls) < mark + 40:
            time.sleep(0.05)
        answered = {c.backend for c in recorder.calls[mark:] if c.backend}
        return answered, sum(1 for c in recorder.calls[:mark] if c.error)


@pytest.mark.parametrize(("form", "means", "source"), FORMS)
def test_v6_and_dnsbalance_reach_the_same_pods(
    cluster: ControlPlane,
    two_services: dict[str, object],
    binary: Path,
    v6_flags: list[str],
    form: str,
    means: str,
    source: str,
) -> None:
    namespace = str(two_services["namespace"])
    want = two_services["backends"][means]  # type: ignore[index]
    target = form.format(svc=SERVICE, ns=namespace, port=PORT)

    v6, _ = _v6_reaches(binary, cluster, v6_flags, target, want)
    assert v6 == want, f"v6 reached {v6} for {target} ({source})"

    channel = dnsbalance.resolve_channel(
        target,
        mode="api",
        kubeconfig=cluster.kubeconfig,
        nameservers=[cluster.dns_address],
        cluster_domain="cluster.local",
    )
    with channel:
        stub = demo_pb2_grpc.DemoServiceStub(channel)
        assert until_seen(stub, want, timeout=20) == want
        assert {call(stub) for _ in range(40)} == want


def test_a_port_name_the_service_lacks_reaches_no_pod(
    cluster: ControlPlane,
    two_services: dict[str, object],
    binary: Path,
    v6_flags: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deliberate difference with the same outcome: v6 dials ``IP:nosuch`` (its port
    stays the name when no slice port has it), which fails; dnsbalance serves no
    endpoint (README: a missing port name gives no endpoints)."""
    target = f"kubernetes:///{SERVICE}.{two_services['namespace']}:nosuch"
    recorder = Recorder()
    with GoClient(
        binary, cluster.api_url, target, recorder, interval_ms=50, limit=30, timeout=0.5,
        flags=v6_flags,
    ):  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(recorder.calls) < 10:
            time.sleep(0.05)
    assert len(recorder.calls) >= 10
    assert all(c.error for c in recorder.calls)
    caplog.set_level(logging.DEBUG, logger="dnsbalance._kube.slices")
    with dnsbalance.resolve_channel(
        target, mode="api", kubeconfig=cluster.kubeconfig, nameservers=[cluster.dns_address]
    ) as channel:
        # The API's slices were read: each was found without the port.
        assert wait_until(lambda: "no TCP port named 'nosuch'" in caplog.text, 20)
        assert channel.endpoints == ()
