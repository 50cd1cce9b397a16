"""Every contender on the real control plane: same pods, same changes, one run.

A :class:`~dnsbalance.testing.ControlPlane` (etcd, kube-apiserver v1.37.2, the
EndpointSlice and Endpoints controllers, CoreDNS) with its pod network: pods are API
objects whose status the harness patches, each with a real gRPC backend at its pod IP.
Every contender has its own headless Service and pods (so calls and connections are
counted per client), and every change is made to every contender's pods in one loop
(the order turns from trial to trial):

- ClusterIP: the benchmarks' kube-proxy stand-in (:class:`~benchmarks._common.TcpProxy`,
  a plain channel to one address whose new connections go to a random current pod);
- gRPC ``dns:`` + round_robin: ``dns://<CoreDNS>/svc.bench.svc.cluster.local:PORT``;
- kuberesolver v6.0.1 (benchmarks/kuberesolver6/) and v3.1.1 (benchmarks/kuberesolver/,
  when it builds): https with the admin token; v6 watches EndpointSlices, v3 core/v1
  Endpoints (the Endpoints controller writes them);
- dnsbalance ``api``, ``auto`` and ``dns`` (CoreDNS, poll 1 s), with the admin token
  (so ``api`` and ``auto`` read the pods' readiness too, as ``manifests/rbac-pods.yaml``
  allows); and ``api`` once more with a ServiceAccount bound to ``manifests/rbac.yaml``
  alone: the slices alone decide, the EndpointSlice controller's latency included
  (full runs only: it is no target, and ``--quick`` runs in CI's time).
  Each dnsbalance lane runs in a process of its own (:mod:`benchmarks._pyclient`), as
  each kuberesolver client does, so no lane's latency includes another lane's callers.

Figures: spread over 5 pods; from the Ready status patch to the new pod's first call
(p50/p95), with the stage in between where it can be timestamped (the slice's watch
event, seen by a watcher of the harness; the event as v6 read it; dnsbalance's
rebuild); new TCP connections per added pod (``ss``, by pod IP); failed calls in a
rolling replacement of 5 pods under 8 callers; failed calls while every pod is not
ready; and how many endpoints of a large Service each client uses once settled (HTTP/2
listeners at the pods' IPs in the pod network, :mod:`benchmarks._podlisten`, count the
IPs holding an open connection; the controller writes one slice per 100 endpoints).

Needs root and the control plane's binaries (``bash scripts/build-controlplane``):
without them the suite says so and measures nothing, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from dnsbalance.testing import ControlPlane, ControlPlaneError

from ._cluster import (
    API,
    AUTO,
    CIP,
    COLUMN,
    DNS,
    KR3,
    KR6,
    MODE,
    NATIVE_DNS,
    NS,
    PORT,
    SERVER,
    SHORT,
    SLICES,
    WATCHERS,
    SliceWatcher,
    connections,
    measure_large,
    mode_prefix,
)
from ._common import ROUND_ROBIN, Callers, Recorder, Suite, TcpProxy, percentile, wait_until
from ._kuberesolver import GoClient
from ._kuberesolver import build as build_v3
from ._kuberesolver6 import api_flags, token_file
from ._kuberesolver6 import build as build_v6

PODS = 5
CALLERS = 8
RATE = 12.5  # calls/s per caller: 100 calls/s per contender


class Lane:
    """One contender: its Service, pods, client and the calls it made."""

    def __init__(self, name: str, cluster: ControlPlane) -> None:
        self.name = name
        self.service = f"w-{SHORT[name]}"
        self.cluster = cluster
        self.labels = {"bench-lane": SHORT[name]}
        self.pods: list[Any] = []  # PodRefs, oldest first
        self.recorder = Recorder()
        self.client: Any = None
        self.channel: grpc.Channel | None = None
        self.proxy: TcpProxy | None = None
        self._next = 1

    def add(self, *, ready: bool) -> Any:
        pod = self.cluster.add_pod(
            NS,
            f"{self.service}-{self._next}",
            node="node-a",
            labels=self.labels,
            ready=ready,
            port=PORT,
        )
        self._next += 1
        self.pods.append(pod)
        return pod

    def ips(self) -> set[str]:
        return {p.ip for p in self.pods}

    def used_since(self, since: float) -> set[str]:
        return {c.backend for c in self.recorder.window(since, time.monotonic() + 1) if c.backend}

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
            self.client = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None


def run(quick: bool) -> Suite:
    suite = Suite("cluster_watch")
    trials = 3 if quick else 40
    wide = 150 if quick else 1100
    if os.geteuid() != 0:
        return _unavailable(suite, "the pod network needs root")
    started = time.monotonic()
    try:
        plane = ControlPlane()
    except ControlPlaneError as exc:
        return _unavailable(suite, str(exc))
    with tempfile.TemporaryDirectory(prefix="bench-cw-") as tmp, plane:
        up = time.monotonic() - started
        binaries: dict[str, Path] = {}
        for name in (KR6, KR3):
            begin = time.monotonic()
            binary, why = build_v6() if name == KR6 else build_v3()
            if binary is None:
                suite.note(f"{name} column skipped: {why}")
            else:
                binaries[name] = binary
                suite.note(f"{name} client ready in {time.monotonic() - begin:.1f} s")
        plane.add_node("node-a", zone="zone-a")
        plane.create_namespace(NS)
        flags = api_flags(ca_file=plane.ca_file, token_file=token_file(plane.kubeconfig, tmp))
        names = [CIP, NATIVE_DNS, *[n for n in (KR6, KR3) if n in binaries], API, AUTO, DNS]
        if not quick:  # informative, not a target: full runs only (CI's time)
            names.append(SLICES)
        # the ServiceAccount of rbac.yaml alone: made only for the lane that uses it
        slices_only = _rbac_yaml_alone(plane, Path(tmp)) if SLICES in names else None
        suite.note(
            f"{SERVER} with the EndpointSlice and Endpoints controllers and CoreDNS 1.15 "
            f"(control plane up in {up:.1f} s); lanes: "
            f"{', '.join(names)}; each its own Service of {PODS} pods with real gRPC "
            f"backends on the pod network; {CALLERS} callers x {RATE:g} calls/s per lane; "
            f"{trials} trials per figure; patch order turns each trial"
        )
        lanes = [Lane(n, plane) for n in names]
        watcher = SliceWatcher(plane)
        try:
            _prepare(plane, lanes)
            for lane in lanes:
                _start(lane, plane, binaries, flags, slices_only)
            _measure(suite, plane, lanes, watcher, trials)
        finally:
            for lane in lanes:
                lane.stop()
            watcher.close()
        measure_large(suite, plane, binaries, flags, wide)
    return suite


def _unavailable(suite: Suite, why: str) -> Suite:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"cluster_watch must run under CI: {why}")
    suite.note(f"skipped: {why} (bash scripts/build-controlplane; run as root)")
    return suite


def _prepare(plane: ControlPlane, lanes: list[Lane]) -> None:
    for lane in lanes:
        plane.create_service(
            NS, lane.service, selector=lane.labels, ports=(("grpc", 8000, "grpc"),)
        )
        for _ in range(PODS):
            lane.add(ready=True)
    for lane in lanes:
        plane.wait_for_ready(NS, lane.service, lane.ips(), timeout=60)


def _rbac_yaml_alone(plane: ControlPlane, folder: Path) -> Path:
    """A kubeconfig of ServiceAccount ``dnsbalance`` bound to manifests/rbac.yaml's Role
    alone, applied as shipped: what a client without rbac-pods.yaml runs with."""
    from kubernetes import utils

    shipped = Path(__file__).resolve().parents[1] / "manifests" / "rbac.yaml"
    utils.create_from_yaml(plane.admin, str(shipped), namespace=NS)  # type: ignore[no-untyped-call]
    return plane.kubeconfig_for(NS, "dnsbalance", path=folder / "rbac-yaml-alone")


def _start(
    lane: Lane,
    plane: ControlPlane,
    binaries: dict[str, Path],
    flags: list[str],
    slices_only: Path | None,
) -> None:
    fqdn = f"{lane.service}.{NS}.svc.cluster.local"
    if lane.name in (KR6, KR3):
        lane.client = GoClient(
            binaries[lane.name],
            plane.api_url,
            f"kubernetes:///{lane.service}.{NS}:{PORT}",
            lane.recorder,
            callers=CALLERS,
            interval_ms=int(1000 / RATE),
            limit=1800,
            flags=[*flags, "-events"] if lane.name == KR6 else flags,
        ).start()
        return
    if lane.name == CIP:
        lane.proxy = TcpProxy("127.0.0.1", [p.address for p in lane.pods]).start()
        lane.channel = grpc.insecure_channel(lane.proxy.address)
    elif lane.name == NATIVE_DNS:
        lane.channel = grpc.insecure_channel(
            f"dns://{plane.dns_address}/{fqdn}:{PORT}", options=ROUND_ROBIN
        )
    else:  # its own process, as each kuberesolver client has
        mode = MODE[lane.name]
        kubeconfig = slices_only if lane.name == SLICES else plane.kubeconfig
        lane.client = GoClient(
            Path(sys.executable),
            plane.api_url,
            f"{lane.service}.{NS}:{PORT}",
            lane.recorder,
            callers=CALLERS,
            interval_ms=int(1000 / RATE),
            limit=1800,
            prefix=["-m", "benchmarks._pyclient"],
            flags=[
                f"-mode={mode}",
                f"-nameserver={plane.dns_address}",
                "-poll=1.0",
                *([f"-kubeconfig={kubeconfig}"] if mode != "dns" else []),
            ],
        ).start(timeout=60)
        return
    lane.client = Callers(
        lane.channel, lane.recorder, threads=CALLERS, rate=RATE, limit=1800, name=lane.name
    ).start()


def _report(
    suite: Suite, label: str, name: str, values: list[float | None], bound: float, **extra: Any
) -> None:
    got = [v for v in values if v is not None]
    if got:
        text = f"p50 {percentile(got, 50):.3f} / p95 {percentile(got, 95):.3f} s"
        if len(got) < len(values):
            text += f" ({len(values) - len(got)} of {len(values)} not within {bound:.0f} s)"
    else:
        text = f"never within {bound:.0f} s ({len(values)} trials)"
    suite.add(
        f"{name}: {label}",
        percentile(got, 95) if got else None,
        "s",
        shown=text,
        cell=mode_prefix(name) + text,
        column=COLUMN[name],
        summary=f"{label} ({SERVER})",
        trials=[None if v is None else round(v, 4) for v in values],
        p50=percentile(got, 50) if got else None,
        **extra,
    )


def _measure(
    suite: Suite, plane: ControlPlane, lanes: list[Lane], watcher: SliceWatcher, trials: int
) -> None:
    def settled() -> bool:
        now = time.monotonic()
        for lane in lanes:
            used = lane.used_since(now - 1)
            if lane.name == CIP and not used:
                return False
            if lane.name != CIP and used != {p.backend for p in lane.pods}:
                return False
        return True

    if not wait_until(settled, 30, step=0.2):
        suite.note("not every lane used all its pods within 30 s of starting")
    # spread over the 5 pods, 3 s of calls
    start = time.monotonic()
    time.sleep(3.0)
    for lane in lanes:
        counts = {p.backend: 0 for p in lane.pods}
        for c in lane.recorder.window(start, start + 3.0):
            if c.backend in counts:
                counts[c.backend] += 1
        per = list(counts.values())
        ratio = max(per) / min(per) if min(per) else None
        suite.add(
            f"{lane.name}: spread max/min over {PODS} pods ({CALLERS} callers, 3 s)",
            ratio,
            "x",
            shown=None if ratio else f"{sum(1 for n in per if n)} of {PODS} used",
            cell=mode_prefix(lane.name) + (f"{ratio:.3f} x" if ratio else "unbounded"),
            column=COLUMN[lane.name],
            summary=f"spread: max/min calls per pod ({PODS} pods, {CALLERS} callers; {SERVER})",
        )

    _new_pods(suite, plane, lanes, watcher, trials)
    _rolling(suite, plane, lanes)
    _not_ready(suite, plane, lanes)


def _new_pods(
    suite: Suite, plane: ControlPlane, lanes: list[Lane], watcher: SliceWatcher, trials: int
) -> None:
    """Per trial: a not-ready pod in every lane, then its Ready patch, lane after lane;
    seconds to its first call, and the TCP connections it cost."""
    bound = 10.0
    total: dict[str, list[float | None]] = {lane.name: [] for lane in lanes}
    client_part: dict[str, list[float | None]] = {lane.name: [] for lane in lanes}
    slice_part: list[float] = []
    stage: dict[str, list[float]] = {lane.name: [] for lane in lanes}
    acted: dict[str, list[float | None]] = {lane.name: [] for lane in lanes}
    conns: dict[str, list[int]] = {lane.name: [] for lane in lanes}
    for trial in range(trials):
        # ClusterIP and gRPC dns: never follow a new pod; two trials say so
        active = [ln for ln in lanes if ln.name in WATCHERS or trial < 2]
        active = active[trial % len(active) :] + active[: trial % len(active)]
        new = {lane.name: lane.add(ready=False) for lane in active}
        for lane in active:
            plane.wait_for_ready(NS, lane.service, lane.ips() - {new[lane.name].ip}, timeout=30)
        before = {lane.name: connections(lane.ips()) for lane in active}
        patched: dict[str, float] = {}
        for lane in active:
            pod = new[lane.name]
            patched[lane.name] = time.monotonic()
            plane.set_ready(NS, pod.name, True)
            if lane.proxy is not None:
                lane.proxy.add(pod.address)  # kube-proxy's rules follow the slice
        for lane in active:
            pod = new[lane.name]
            left = max(0.1, patched[lane.name] + bound - time.monotonic())
            first = lane.recorder.wait_first(pod.backend, left)
            total[lane.name].append(None if first is None else first - patched[lane.name])
            seen = watcher.first_ready(lane.service, pod.ip)
            if seen is not None:
                slice_part.append(seen - patched[lane.name])
                client_part[lane.name].append(None if first is None else first - seen)
            mark = _stage(lane, patched[lane.name], pod.ip, len(lane.pods))
            if mark is not None and first is not None:
                stage[lane.name].append(first - mark)
            if lane.name == KR6 or lane.name in MODE:
                acted[lane.name].append(None if mark is None else mark - patched[lane.name])
        time.sleep(0.5)
        for lane in active:
            conns[lane.name].append(len(connections(lane.ips()) - before[lane.name]))
        _retire_newest(plane, active)
    for lane in lanes:
        _report(
            suite,
            "new pod: Ready status patch to its first call",
            lane.name,
            total[lane.name],
            bound,
        )
        _report(
            suite,
            "new pod: its slice's watch event to its first call",
            lane.name,
            client_part[lane.name],
            bound,
        )
        values = conns[lane.name]
        suite.trials(
            f"{lane.name}: new TCP connections per added pod",
            values,
            "connections",
            column=COLUMN[lane.name],
            summary=f"new connections per added pod ({SERVER})",
            cell=mode_prefix(lane.name) + f"{sorted(values)[len(values) // 2]} (max {max(values)})",
        )
    for lane in lanes:
        if acted[lane.name]:
            _report(
                suite,
                "new pod: Ready status patch to the client acting on it (v6: reads the "
                "slice's event; dnsbalance: its channel rebuilt onto the pod)",
                lane.name,
                acted[lane.name],
                bound,
            )
    for name in (API, AUTO, SLICES):  # the same trial's change, side by side: robust to noise
        if KR6 not in total or name not in total:
            continue
        both = zip(total[name], total[KR6], strict=False)
        pairs = [(a, b) for a, b in both if a is not None and b is not None]
        if pairs:
            below = sum(1 for a, b in pairs if a <= b)
            suite.note(
                f"{name}: at or below kuberesolver v6 in {below} of {len(pairs)} paired "
                "trials (Ready patch to first call, the same trial's change)"
            )
    if slice_part:
        suite.trials(
            "Ready status patch to the slice's watch event (harness watcher)",
            [round(v, 4) for v in slice_part],
            "s",
        )
    for name, marks in stage.items():
        if marks:
            what = "v6 read the slice event" if name == KR6 else "dnsbalance rebuilt its channel"
            suite.note(
                f"{name}: {what} -> first call: p50 {percentile(marks, 50):.3f} / "
                f"p95 {percentile(marks, 95):.3f} s over {len(marks)} trials"
            )


def _stage(lane: Lane, patched: float, ip: str, count: int) -> float | None:
    """When the client itself acted on the change: v6 read a watch event with every
    pod ready; dnsbalance rebuilt onto a set with the new IP."""
    if lane.name == KR6 and lane.client is not None:
        return next(
            (t for t, _, ready in list(lane.client.events) if t >= patched and ready >= count), None
        )
    changes = getattr(lane.client, "changes", [])
    return next((t for t, ips in list(changes) if t >= patched and ip in ips), None)


def _retire_newest(plane: ControlPlane, lanes: list[Lane]) -> None:
    """Back to PODS pods: the newest turn not ready, then go."""
    extra = {lane.name: lane.pods[PODS:] for lane in lanes}
    for lane in lanes:
        for pod in extra[lane.name]:
            plane.set_ready(NS, pod.name, False)
            if lane.proxy is not None:
                lane.proxy.remove(pod.address)
    time.sleep(1.0)
    for lane in lanes:
        for pod in extra[lane.name]:
            plane.remove_pod(NS, pod.name, grace=0.5)
        lane.pods = lane.pods[:PODS]


def _rolling(suite: Suite, plane: ControlPlane, lanes: list[Lane]) -> None:
    """Replace every pod, one at a time: a new pod, the old one deleted (terminating,
    still serving), 1.5 s, then gone (its server stops with 1 s of grace)."""
    start = time.monotonic()
    for _ in range(PODS):
        old = {lane.name: lane.pods[0] for lane in lanes}
        for lane in lanes:
            pod = lane.add(ready=True)
            plane.delete_pod(NS, old[lane.name].name)
            if lane.proxy is not None:
                lane.proxy.add(pod.address)
                lane.proxy.remove(old[lane.name].address)
        time.sleep(1.5)
        for lane in lanes:
            plane.remove_pod(NS, old[lane.name].name, grace=1.0)
            lane.pods.remove(old[lane.name])
        time.sleep(0.5)
    end = time.monotonic()
    for lane in lanes:
        window = lane.recorder.window(start, end)
        failed = sum(1 for c in window if c.error)
        suite.add(
            f"{lane.name}: failed calls in a rolling replacement of {PODS} ({CALLERS} callers)",
            failed,
            "calls",
            cell=mode_prefix(lane.name) + f"{failed} of {len(window)}",
            column=COLUMN[lane.name],
            summary=f"rolling replacement of {PODS} pods, {CALLERS} callers: failed calls "
            f"({SERVER})",
        )


def _not_ready(suite: Suite, plane: ControlPlane, lanes: list[Lane]) -> None:
    """Every pod not ready, servers up, for 3 s."""
    start = time.monotonic()
    for lane in lanes:
        for pod in lane.pods:
            plane.set_ready(NS, pod.name, False)
    time.sleep(3.0)
    end = time.monotonic()
    for lane in lanes:
        for pod in lane.pods:
            plane.set_ready(NS, pod.name, True)
    for lane in lanes:
        window = lane.recorder.window(start + 0.5, end)
        failed = sum(1 for c in window if c.error)
        suite.add(
            f"{lane.name}: failed calls while every pod is not ready (3 s)",
            failed,
            "calls",
            cell=mode_prefix(lane.name) + f"{failed} of {len(window)}",
            column=COLUMN[lane.name],
            summary=f"every pod not ready, servers up: failed calls (3 s; {SERVER})",
        )
