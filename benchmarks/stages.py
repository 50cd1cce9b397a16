"""Stages: where the time goes from a pod's Ready patch to its first call, and what a
rebuild costs.

The library's functions are wrapped (here only, never in the library or its tests) so
each stage is timestamped as it starts and ends; grpc's own steps are seen from outside:
the local DNS's queries as they arrive and are answered, and the new pod's connection
in grpc's channelz trace (1 ms resolution, wall clock).

- **The real chain** (``ControlPlane``: kube-apiserver, the EndpointSlice controller,
  CoreDNS, pods with real gRPC backends on the pod network; needs root and the
  binaries of ``scripts/build-controlplane``, else skipped with the reason): a Service
  of 2 ready pods, 4 callers at 100 calls/s each; per trial a new pod is created not
  ready, then its Ready condition is patched, and the clock runs from the patch. The
  stages: the watch event's line arrives (``iter_resp_lines``), the slice is applied
  (decoded), the merge runs, the set is published on the local DNS, the new channel is
  made, the local DNS answers its A query, the new channel is READY, the swap, the new
  pod's connection is READY (channelz), its first call returns. Mode ``"api"`` (12
  trials; 5 in quick mode), ``"auto"`` and ``"dns"`` (poll 1 s; full mode only).
- **Rebuild costs on loopback**: a BalancedChannel on the local DNS over 3 backends and
  over 1000 (one server on 1000 loopback addresses, as the scale suite), connected to
  all; each trial publishes N-1 or N endpoints and calls ``update()``. Stages as above,
  the CPU time of ``update()``, the DNS questions grpc asked (type, UDP/TCP, EDNS), and
  the Python threads still alive when ``update()`` returned that were not before.
- **The questions**: does a live channel ever call an address added to its DNS name
  (grpc's ``grpc.dns_min_time_between_resolutions_ms`` 0)? Does an ``ipv4:`` list that
  grows by one share the connections of the channel before it (identical options,
  ``grpc.default_authority`` included)?
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.message
import grpc

from dnsbalance._channel import local_dns
from dnsbalance._channel.sync import BalancedChannel
from dnsbalance._endpoints import Endpoint
from dnsbalance._settings import settings_for
from dnsbalance.testing import Backend

from ._common import (
    DNSBALANCE,
    METHOD,
    ROUND_ROBIN,
    Callers,
    Recorder,
    Suite,
    median,
    percentile,
)

NS = "bench"
SMALL_BLOCK = "127.0.58"
BIG = 1000
QUESTION_BLOCK = "127.0.59"


# -- timestamps ------------------------------------------------------------------------


class Marks:
    """When each wrapped function first started and ended since :meth:`clear`
    (time.monotonic()), and the local DNS's questions (arrival, answer, kind)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, float] = {}
        self.queries: list[tuple[float, float, str]] = []
        self.armed = False

    def clear(self) -> None:
        with self.lock:
            self.times.clear()
            self.queries.clear()
            self.armed = True

    def mark(self, label: str, when: float | None = None) -> None:
        with self.lock:
            if self.armed:
                self.times.setdefault(label, time.monotonic() if when is None else when)

    def relative(self, zero: float) -> dict[str, float]:
        """Each mark in ms after ``zero``."""
        with self.lock:
            return {label: (t - zero) * 1000 for label, t in self.times.items()}


@contextlib.contextmanager
def wrapped(marks: Marks, package: str = "dnsbalance") -> Iterator[None]:
    """Timestamp the stages while inside (the originals come back on exit). ``package``:
    the library's package name (another copy of it, to compare two trees in one run)."""
    saved: list[tuple[Any, str, Any]] = []

    def module(name: str) -> Any:
        return importlib.import_module(f"{package}.{name}")

    zone_server = module("_channel.zone_server")
    channel_sync = module("_channel.sync")

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        saved.append((owner, name, original))

        def timed(*args: Any, **kwargs: Any) -> Any:
            marks.mark(f"{label}:start")
            try:
                return original(*args, **kwargs)
            finally:
                marks.mark(f"{label}:end")

        setattr(owner, name, timed)

    handle = zone_server.ZoneResponder._handle

    def handle_timed(self: Any, wire: bytes, *, tcp: bool) -> bytes | None:
        arrived = time.monotonic()
        reply = handle(self, wire, tcp=tcp)
        answered = time.monotonic()
        try:
            query = dns.message.from_wire(wire)
            kind = f"{'TCP' if tcp else 'UDP'} {query.question[0].rdtype.name}"
            kind += " EDNS" if query.edns >= 0 else ""
        except Exception:  # a benchmark must not fail on a query it cannot read
            kind = "unreadable"
        with marks.lock:
            if marks.armed:
                marks.queries.append((arrived, answered, kind))
        if kind.endswith(" A") and reply and not reply[2] & 0x02:  # an A answer, not TC
            marks.mark("dns answered")
        return reply

    saved.append((zone_server.ZoneResponder, "_handle", handle))
    zone_server.ZoneResponder._handle = handle_timed
    wrap(module("_channel.local_dns").LocalName, "publish", "publish")
    wrap(module("_channel.base").BalancedBase, "_next_slot", "new channel")
    wrap(channel_sync.BalancedChannel, "_wait_ready", "ready wait")
    wrap(channel_sync._Slots, "swap", "swap")
    with contextlib.suppress(ImportError):
        from kubernetes.watch import watch as kube_watch

        slice_watch = module("_kube.watch")
        merge_thread = module("_merge.thread")
        lines = kube_watch.iter_resp_lines
        saved.append((kube_watch, "iter_resp_lines", lines))

        def lines_timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for line in lines(*args, **kwargs):
                if line:
                    marks.mark("watch line")
                yield line

        kube_watch.iter_resp_lines = lines_timed
        wrap(slice_watch.SliceWatcher, "_apply", "slice applied")
        wrap(merge_thread.MergeThread, "evaluate", "merge")
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def connected_at(address: str) -> float | None:
    """When grpc's subchannel to ``address`` (``ipv4:ip:port``) last became READY, as
    time.monotonic() (channelz trace: wall clock, 1 ms resolution); None if unknown."""
    from grpc._cython import cygrpc  # channelz, as grpcio-channelz reads it

    offset = time.time() - time.monotonic()
    found: float | None = None
    tops = json.loads(cygrpc.channelz_get_top_channels(0)).get("channel", [])
    for channel in tops:
        for ref in channel.get("subchannelRef", []):
            sub = json.loads(cygrpc.channelz_get_subchannel(int(ref["subchannelId"])))
            data = sub.get("subchannel", {}).get("data", {})
            if data.get("target") != address:
                continue
            for event in data.get("trace", {}).get("events", []):
                if event["description"].endswith("changed to READY"):
                    when = _wall(event["timestamp"]) - offset
                    found = when if found is None else max(found, when)
    return found


def _wall(stamp: str) -> float:
    """A channelz timestamp (RFC 3339, nanoseconds, UTC) as time.time()."""
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.UTC)
    return whole.timestamp() + float(f"0.{fraction or '0'}")


# -- the table -------------------------------------------------------------------------

# (label, from mark, to mark): each stage's duration; the patch is mark "patch".
STAGES = (
    ("apiserver + EndpointSlice controller: patch -> watch line", "patch", "watch line"),
    ("decode + apply the event", "watch line", "slice applied:start"),
    ("hand-off to the merge thread", "slice applied:start", "merge:start"),
    ("merge", "merge:start", "publish:start"),
    ("publish on the local DNS", "publish:start", "publish:end"),
    ("make the new channel", "publish:end", "new channel:end"),
    ("grpc resolves it (local DNS answered A)", "new channel:end", "dns answered"),
    ("new channel READY (our wait returns)", "new channel:end", "ready wait:end"),
    ("swap", "ready wait:end", "swap:end"),
    ("new pod's connection READY (channelz), after the new channel", "new channel:end", "pod"),
    ("first call on the new pod, after the swap", "swap:end", "first call"),
)
POINTS = (
    "watch line",
    "slice applied:start",
    "merge:start",
    "publish:start",
    "publish:end",
    "new channel:end",
    "dns answered",
    "ready wait:end",
    "swap:end",
    "pod",
    "first call",
)


def stage_table(suite: Suite, name: str, rows: list[dict[str, float]], *, target: str = "") -> None:
    """The stages of ``rows`` (each a trial's marks in ms after the patch) into
    ``suite``: each point's median and p95 after the patch, each stage's median."""
    for point in POINTS:
        values = [r[point] for r in rows if point in r]
        if values:
            suite.trials(
                f"{name}: {point}, ms after the patch (p95 {percentile(values, 95):.1f})",
                values,
                "ms",
                p95=percentile(values, 95),
            )
    for label, start, end in STAGES:
        values = [
            r[end] - r.get(start, 0.0)
            for r in rows
            if end in r and (start in r or start == "patch")
        ]
        if values:
            suite.trials(f"{name}: stage {label}", values, "ms", p95=percentile(values, 95))
    firsts = [r["first call"] for r in rows if "first call" in r]
    if firsts:
        suite.trials(
            f"{name}: Ready patch -> first call on the new pod",
            firsts,
            "ms",
            target=target,
            p95=percentile(firsts, 95),
            cell=f"{median(firsts):.0f} / {percentile(firsts, 95):.0f} ms",
            column=DNSBALANCE,
            summary=f"new pod, real control plane, Ready patch to first call, p50 / p95 ({name})",
        )


# -- the real chain --------------------------------------------------------------------


def control_plane_trials(
    cluster: Any,
    namespace: str,
    mode: str,
    trials: int,
    marks: Marks,
    *,
    node: str = "node-a",
    resolve: Callable[..., grpc.Channel] | None = None,
    service: str = "",
) -> list[dict[str, float]]:
    """``trials`` new pods in a Service of 2 through ``mode``'s channel (made by
    ``resolve``, default ``dnsbalance.resolve_channel``): each trial's marks in ms after
    the Ready patch (``patch`` itself: the patch call's return)."""
    import dnsbalance

    resolve = resolve or dnsbalance.resolve_channel
    service = service or f"stages-{mode}"
    labels = {"app": service}
    cluster.create_service(namespace, service, selector=labels)
    pods = [cluster.add_pod(namespace, f"{service}-{i}", node=node, labels=labels) for i in (0, 1)]
    cluster.wait_for_ready(namespace, service, [p.ip for p in pods])
    kwargs: dict[str, Any] = {"kubeconfig": cluster.kubeconfig} if mode != "dns" else {}
    rows: list[dict[str, float]] = []
    channel = resolve(
        f"{service}.{namespace}:grpc",
        mode=mode,  # type: ignore[arg-type]
        nameservers=[cluster.dns_address],
        cluster_domain="cluster.local",
        poll_interval=1.0,
        **kwargs,
    )
    recorder = Recorder()
    try:
        with Callers(channel, recorder, threads=4, rate=100.0, limit=600.0, name=mode):
            for trial in range(trials):
                pod = cluster.add_pod(
                    namespace, f"{service}-new-{trial}", node=node, labels=labels, ready=False
                )
                time.sleep(0.5)  # the not-ready pod's slice change has been followed
                marks.clear()
                zero = time.monotonic()
                cluster.set_ready(namespace, pod.name, True)
                marks.mark("patch")
                first = recorder.wait_first(pod.backend, 10.0)
                time.sleep(0.05)  # channelz has the connection
                row = marks.relative(zero)
                row.pop("patch", None)
                if first is not None:
                    row["first call"] = (first - zero) * 1000
                pod_ready = connected_at(f"ipv4:{pod.ip}:{pod.port}")
                if pod_ready is not None and pod_ready >= zero:
                    row["pod"] = (pod_ready - zero) * 1000
                rows.append(row)
                marks.armed = False
                time.sleep(0.3)
    finally:
        channel.close()
    return rows


def _control_plane(suite: Suite, quick: bool, marks: Marks) -> None:
    try:
        from dnsbalance.testing import ControlPlane, ControlPlaneError
    except ImportError as exc:  # an older tree
        suite.note(f"real control plane: skipped ({exc})")
        return
    if os.geteuid() != 0:
        suite.note("real control plane: skipped (the pod network needs root)")
        return
    try:
        plane = ControlPlane()
    except ControlPlaneError as exc:
        suite.note(f"real control plane: skipped ({exc})")
        return
    modes = {"api": 5} if quick else {"api": 12, "auto": 12, "dns": 8}
    targets = {"api": "<= kuberesolver v6's", "auto": "<= mode api's", "dns": "p95 <= 1.2 s"}
    with plane:
        plane.add_node("node-a", zone="zone-a")
        namespace = plane.create_namespace()
        plane.pod_network  # noqa: B018  (made now: its errors surface here)
        suite.note(
            "real control plane: kube-apiserver, kube-controller-manager (EndpointSlice "
            "controller), CoreDNS; 4 callers at 100 calls/s; "
            + ", ".join(f"mode {m}: {n} trials" for m, n in modes.items())
        )
        for mode, trials in modes.items():
            rows = control_plane_trials(plane, namespace, mode, trials, marks)
            stage_table(suite, f"mode {mode}", rows, target=targets[mode])


# -- rebuild costs on loopback ---------------------------------------------------------


def _rebuilds(suite: Suite, quick: bool, marks: Marks) -> None:
    from .scale import BIG_HOSTS, _ManyAddresses

    small = [Backend(f"{SMALL_BLOCK}.1", 0)]
    small += [Backend(f"{SMALL_BLOCK}.{i}", small[0].port) for i in (2, 3)]
    for backend in small:
        backend.start()
    try:
        hosts = [b.host for b in small]
        _rebuild_trials(suite, marks, hosts, small[0].port, 10 if quick else 40)
    finally:
        for backend in small:
            backend.stop(0)
    with _ManyAddresses(BIG_HOSTS) as server:
        _rebuild_trials(suite, marks, BIG_HOSTS, server.port, 6 if quick else 20)


def _rebuild_trials(suite: Suite, marks: Marks, hosts: list[str], port: int, trials: int) -> None:
    n = len(hosts)
    endpoints = tuple(Endpoint(address=h, port=port) for h in hosts)
    settings = settings_for(f"stages-{n}.{NS}:{port}", nameservers=["127.0.0.1:53"], mode="dns")
    local = local_dns.local_name()  # as resolve_channel wires every mode
    local.publish(endpoints)
    channel = BalancedChannel(
        name=settings.name,
        plan=settings.local_plan(local),
        factory=settings.channel_factory(grpc.insecure_channel, grpc.secure_channel),
        endpoints=endpoints,
    )
    rows: list[dict[str, float]] = []
    cpu: list[float] = []
    kinds: dict[str, list[int]] = {}
    left: list[int] = []
    try:
        demo = channel.unary_unary(METHOD)
        for _ in range(2 * n):  # round_robin connects to every endpoint
            demo(b"", timeout=10)
        for trial in range(trials):
            new = endpoints[:-1] if trial % 2 == 0 else endpoints
            threads = {t.ident for t in threading.enumerate()}
            marks.clear()
            zero, cpu0 = time.monotonic(), time.process_time()
            local.publish(new)
            channel.update(new)
            cpu.append((time.process_time() - cpu0) * 1000)
            row = marks.relative(zero)
            row["total"] = (time.monotonic() - zero) * 1000
            left.append(len({t.ident for t in threading.enumerate()} - threads))
            with marks.lock:
                marks.armed = False
                counted: dict[str, int] = {}
                for _, _, kind in marks.queries:
                    counted[kind] = counted.get(kind, 0) + 1
            for kind, count in counted.items():
                kinds.setdefault(kind, []).append(count)
            rows.append(row)
            for _ in range(20):  # calls on the new channel between trials
                demo(b"", timeout=10)
    finally:
        channel.close()
        local.close()
    name = f"rebuild, {n} endpoints"
    for label in ("publish:end", "new channel:end", "dns answered", "ready wait:end", "swap:end"):
        values = [r[label] for r in rows if label in r]
        if values:
            suite.trials(f"{name}: {label}, ms after update began", values, "ms")
    totals = [r["total"] for r in rows]
    suite.trials(
        f"{name}: publish + update() (new channel READY, swap), wall",
        totals,
        "ms",
        p95=percentile(totals, 95),
    )
    suite.trials(f"{name}: CPU of publish + update()", cpu, "ms")
    for kind, counts in sorted(kinds.items()):
        suite.trials(f"{name}: local DNS questions per rebuild: {kind}", counts, "questions")
    suite.trials(
        f"{name}: Python threads alive when update() returned that were not before",
        left,
        "threads",
        target="0",
    )


# -- the questions ---------------------------------------------------------------------


def _questions(suite: Suite, quick: bool) -> None:
    backends = [Backend(f"{QUESTION_BLOCK}.1", 0)]
    backends += [Backend(f"{QUESTION_BLOCK}.{i}", backends[0].port) for i in (2, 3, 4)]
    for backend in backends:
        backend.start()
    port = backends[0].port
    try:
        _live_channel(suite, backends, port, 2.0 if quick else 10.0)
        _address_lists(suite, backends, port)
    finally:
        for backend in backends:
            backend.stop(0)


def _live_channel(suite: Suite, backends: list[Backend], port: int, seconds: float) -> None:
    local = local_dns.local_name()
    endpoints = [Endpoint(address=b.host, port=port) for b in backends]
    local.publish(endpoints[:3])
    options = (*ROUND_ROBIN, ("grpc.dns_min_time_between_resolutions_ms", 0))
    channel = grpc.insecure_channel(f"dns://{local.authority}/{local.name}:{port}", options=options)
    try:
        demo = channel.unary_unary(METHOD)
        for _ in range(30):
            demo(b"", timeout=5)
        local.publish(endpoints)  # the 4th address appears
        before = backends[3].calls
        deadline = time.monotonic() + seconds
        calls = 0
        while time.monotonic() < deadline:
            demo(b"", timeout=5)
            calls += 1
            time.sleep(0.005)
        new_calls = backends[3].calls - before
    finally:
        channel.close()
        local.close()
    suite.add(
        f"a live channel (dns_min_time_between_resolutions_ms 0): calls to an address added "
        f"to its DNS name, of {calls} in {seconds:.0f} s",
        new_calls,
        "calls",
        target="0: only a new channel sees it",
    )


def _address_lists(suite: Suite, backends: list[Backend], port: int) -> None:
    authority = ("grpc.default_authority", f"stages.{NS}.svc.cluster.local:{port}")
    options = (*ROUND_ROBIN, authority)

    def connections() -> int:
        return sum(len(b.peers) for b in backends)

    def listed(n: int) -> str:
        return "ipv4:" + ",".join(f"{b.host}:{port}" for b in backends[:n])

    old = grpc.insecure_channel(listed(3), options=options)
    try:
        demo = old.unary_unary(METHOD)
        for _ in range(12):
            demo(b"", timeout=5)
        before = connections()
        new = grpc.insecure_channel(listed(4), options=options)
        try:
            demo = new.unary_unary(METHOD)
            for _ in range(16):
                demo(b"", timeout=5)
            opened = connections() - before
        finally:
            new.close()
    finally:
        old.close()
    suite.add(
        "ipv4: list 3 -> 4 addresses, identical options (default_authority too): new connections",
        opened,
        "connections",
        target="1 if lists could replace the local DNS (4: they cannot)",
    )


# -- the suite -------------------------------------------------------------------------


def run(quick: bool) -> Suite:
    suite = Suite("stages")
    marks = Marks()
    with wrapped(marks):
        _rebuilds(suite, quick, marks)
        _questions(suite, quick)
        _control_plane(suite, quick, marks)
    return suite
