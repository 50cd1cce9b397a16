"""What the cluster_watch suite's parts share: the contenders' names and columns, a
watcher of the harness on the slices, TCP connections by peer (``ss``), and the large
Service (:func:`measure_large`: how many of its endpoints each client holds)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from dnsbalance import resolve_channel
from dnsbalance.testing import ControlPlane

from ._common import (
    CLUSTER_IP,
    DNSBALANCE,
    KUBERESOLVER,
    KUBERESOLVER6,
    NATIVE,
    ROUND_ROBIN,
    Callers,
    Recorder,
    Suite,
    wait_until,
)
from ._kuberesolver import GoClient
from ._podlisten import PodListeners, slices_note

NS = "bench"
PORT = 50051
SERVER = "real kube-apiserver v1.37.2"
CIP, NATIVE_DNS, KR6, KR3 = "ClusterIP", "gRPC dns:", "kuberesolver v6", "kuberesolver v3"
API, AUTO, DNS = "dnsbalance api", "dnsbalance auto", "dnsbalance dns"
# mode "api" with manifests/rbac.yaml alone: the slices alone (no pod readiness)
SLICES = "dnsbalance api, rbac.yaml alone"
MODE = {API: "api", AUTO: "auto", DNS: "dns", SLICES: "api"}
SHORT = {
    CIP: "cip",
    NATIVE_DNS: "native",
    KR6: "kr6",
    KR3: "kr3",
    API: "api",
    AUTO: "auto",
    DNS: "dns",
    SLICES: "slices",
}
COLUMN = {
    CIP: CLUSTER_IP,
    NATIVE_DNS: NATIVE,
    KR6: KUBERESOLVER6,
    KR3: KUBERESOLVER,
    API: DNSBALANCE,
    AUTO: DNSBALANCE,
    DNS: DNSBALANCE,
    SLICES: DNSBALANCE,
}
WATCHERS = (KR6, KR3, API, AUTO, DNS, SLICES)  # those that follow the cluster


def mode_prefix(name: str) -> str:
    return f"{name.removeprefix('dnsbalance ')}: " if name in MODE else ""


class SliceWatcher:
    """A watcher of the harness on every EndpointSlice of the namespace: when each
    (Service, IP) was first seen ready (time.monotonic())."""

    def __init__(self, cluster: ControlPlane) -> None:
        from kubernetes import client, watch

        self._api = cluster.api_client()
        self._discovery = client.DiscoveryV1Api(self._api)
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self.ready: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-slices", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 3600
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # a cut stream: watch again
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self._discovery.list_namespaced_endpoint_slice, NS, timeout_seconds=300
                ):
                    now = time.monotonic()
                    obj = event["object"]
                    service = (obj.metadata.labels or {}).get("kubernetes.io/service-name", "")
                    with self._lock:
                        for endpoint in obj.endpoints or ():
                            conditions = endpoint.conditions
                            if conditions is None or conditions.ready is not False:
                                for ip in endpoint.addresses:
                                    self.ready.setdefault((service, ip), now)
                            else:
                                for ip in endpoint.addresses:
                                    self.ready.pop((service, ip), None)
                    if self._stop.is_set():
                        return

    def first_ready(self, service: str, ip: str) -> float | None:
        with self._lock:
            return self.ready.get((service, ip))

    def close(self) -> None:
        self._stop.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(5)
        self._api.close()  # type: ignore[no-untyped-call]


def connections(ips: set[str]) -> set[tuple[str, str]]:
    """Established TCP connections (local address, peer address) to ``ips``, from ss."""
    done = subprocess.run(
        ["ss", "-Htn", "state", "established"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    out = set()
    for line in done.stdout.splitlines():
        words = line.split()
        if len(words) >= 4:
            peer = words[-1].rsplit(":", 1)[0].removeprefix("[::ffff:").rstrip("]")
            if peer in ips:  # grpcio's sockets are IPv6 ones, with v4-mapped peers
                out.add((words[-2], words[-1]))
    return out


@contextlib.contextmanager
def _wide_service(plane: ControlPlane, count: int) -> Iterator[tuple[PodListeners, list[set[str]]]]:
    """A Service of ``count`` ready pods with no gRPC server: HTTP/2 listeners at their
    IPs. Yields the listeners and each slice's addresses."""
    from kubernetes import client

    listeners = PodListeners(plane.pod_network.namespace)
    labels = {"bench-lane": "wide"}
    plane.create_service(NS, "wide", selector=labels)
    ips = plane.pod_network.allocate(count)
    pods = []
    try:
        listeners.listen(ips, PORT)
        for i, ip in enumerate(ips):
            pods.append(
                plane.add_pod(
                    NS, f"wide-{i}", node="node-a", labels=labels, port=PORT, serve=False, ip=ip
                )
            )
        plane.wait_for_ready(NS, "wide", ips, timeout=300)
        slices = client.DiscoveryV1Api(plane.admin).list_namespaced_endpoint_slice(
            NS, label_selector="kubernetes.io/service-name=wide"
        )
        yield listeners, [{a for e in x.endpoints or () for a in e.addresses} for x in slices.items]
    finally:
        listeners.close()


def measure_large(
    suite: Suite, plane: ControlPlane, binaries: dict[str, Path], flags: list[str], count: int
) -> None:
    begin = time.monotonic()
    with _wide_service(plane, count) as (listeners, sets):
        slices = len(sets)
        suite.note(
            f"a Service of {count} ready pods: the controller wrote {slices} EndpointSlices "
            f"of {', '.join(str(len(x)) for x in sets)} endpoints (made and ready in "
            f"{time.monotonic() - begin:.0f} s)"
        )
        names = [NATIVE_DNS, *[n for n in (KR6, KR3) if n in binaries], API, AUTO, DNS]
        for name in names:
            listeners.reset()
            recorder = Recorder()
            channel: grpc.Channel | None = None
            if name in binaries:
                client: Any = GoClient(
                    binaries[name],
                    plane.api_url,
                    f"kubernetes:///wide.{NS}:{PORT}",
                    recorder,
                    interval_ms=50,
                    limit=120,
                    timeout=0.5,
                    flags=flags,
                ).start()
            else:
                if name == NATIVE_DNS:
                    channel = grpc.insecure_channel(
                        f"dns://{plane.dns_address}/wide.{NS}.svc.cluster.local:{PORT}",
                        options=ROUND_ROBIN,
                    )
                else:
                    mode = MODE[name]
                    channel = resolve_channel(
                        f"wide.{NS}:{PORT}",
                        mode=mode,  # type: ignore[arg-type]
                        kubeconfig=plane.kubeconfig if mode != "dns" else None,
                        nameservers=[plane.dns_address],
                        cluster_domain="cluster.local",
                        poll_interval=1.0,
                    )
                client = Callers(
                    channel, recorder, rate=20.0, timeout=0.5, limit=120, name="wide"
                ).start()
            held = listeners.held_when_steady()
            used, ever = len(held), len(listeners.seen())
            if used < count:
                suite.note(slices_note(name, held, ever, sets))
            client.stop()
            if channel is not None:
                channel.close()
            wait_until(lambda: not listeners.open(), 15, step=0.2)  # the next starts clean
            suite.add(
                f"{name}: endpoints with an open connection, of a Service's {count} "
                f"({slices} slices)",
                used,
                "endpoints",
                ever_connected=ever,
                cell=mode_prefix(name) + f"{used} of {count}",
                column=COLUMN[name],
                summary=f"a Service of {count} pods: endpoints each client connects to ({SERVER})",
            )
