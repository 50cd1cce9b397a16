"""Outlier detection: a pod that stays Ready (and in DNS) but fails, or is slow.

Five real grpc backends (127.0.110.1-5, one port) behind one Service in cluster DNS, one
dnsbalance channel (``mode="dns"``) per trial, 4 threads calling back to back. One
backend misbehaves from the trial's first call on (``Backend.fail_every``,
``Backend.delay``). Figures, without and with ``outlier_detection=True`` (its defaults:
1 s sweeps, failure percentage > 40 % of >= 10 calls):

- one backend answers UNAVAILABLE to every call, then to every other call: failed calls
  per 10,000 (2,000 in quick mode) and the seconds from the first call to the last
  failed one (when ejection took hold: it then lasts 30 s, longer than a trial);
- the cost of a rebuild: ejection state lives in the grpc channel, and each rebuild is a
  new one; with the failing backend ejected, ``channel.rebuild()`` is forced 5 times
  (2 s apart) under load: failed calls after each, and seconds until it is ejected again;
- one backend 50 ms slow, never failing: its share of calls and the p50/p99 latency
  (ejection does not see slowness: grpc Python has no latency-aware picking), and then
  with a 25 ms deadline per call, which turns the slowness into DEADLINE_EXCEEDED
  failures that ejection does see.
"""

from __future__ import annotations

import time
from typing import Any

from dnsbalance import BalancedChannel, resolve_channel
from dnsbalance.testing import Backend

from ._common import Callers, Recorder, Suite, cluster_dns, median, percentile, wait_until

BLOCK = "127.0.110"
PODS = 5
THREADS = 4
NS = "bench"
SERVICE = "outlier"


def run(quick: bool) -> Suite:
    suite = Suite("outlier")
    calls, trials = (2_000, 1) if quick else (10_000, 3)
    rebuilds = 2 if quick else 5
    backends: list[Backend] = []
    with cluster_dns() as (dns, label):
        suite.note(
            f"DNS server: {label}; {PODS} backends on {BLOCK}.x, {THREADS} threads calling "
            f"back to back, {calls} calls per trial, {trials} trials per figure; a fresh "
            "dnsbalance channel (mode=dns) per trial; the misbehaving backend stays up and in "
            "DNS throughout"
        )
        try:
            port = 0
            for i in range(PODS):
                backend = Backend(f"{BLOCK}.{i + 1}", port).start()
                port = backend.port
                backends.append(backend)
                dns.add_pod(SERVICE, NS, backend.host)
            bad = backends[0]

            def channel(ejection: bool) -> BalancedChannel:
                return resolve_channel(
                    f"{SERVICE}.{NS}:{port}",
                    nameservers=[dns.address],
                    mode="dns",
                    outlier_detection=ejection,
                )

            for every, what in ((1, "every call"), (2, "every other call")):
                _failing(suite, channel, bad, every, what, calls, trials)
            _rebuilds(suite, channel, bad, rebuilds)
            _slow(suite, channel, bad, calls)
        finally:
            for backend in backends:
                backend.stop(0)
    return suite


def _run_calls(
    channel: BalancedChannel, count: int, timeout: float = 5.0
) -> tuple[list[Any], float]:
    """``count`` calls from THREADS threads back to back: the calls, and when they began."""
    recorder = Recorder()
    started = time.monotonic()
    with Callers(channel, recorder, threads=THREADS, limit=120, timeout=timeout, name="outlier"):
        wait_until(lambda: len(recorder.calls) >= count, 120.0, 0.01)
    made = sorted(recorder.calls, key=lambda c: c.start)[:count]
    return made, started


def _failing(
    suite: Suite, channel: Any, bad: Backend, every: int, what: str, calls: int, trials: int
) -> None:
    results: dict[bool, list[tuple[int, float, float]]] = {False: [], True: []}
    for _ in range(trials):
        for ejection in (False, True):
            with channel(ejection) as ch:
                wait_until(lambda ch=ch: len(ch.endpoints) == PODS, 5.0)
                bad.fail_every = every
                try:
                    made, started = _run_calls(ch, calls)
                finally:
                    bad.fail_every = 0
            failed = [c for c in made if c.error]
            last = max((c.start + c.seconds - started for c in failed), default=0.0)
            rate = len(made) / max(1e-9, made[-1].start + made[-1].seconds - started)
            results[ejection].append((len(failed), last, rate))
    scale = 10_000 / calls
    for ejection, label in ((False, "without ejection"), (True, "outlier_detection=True")):
        rows = results[ejection]
        per = [round(n * scale) for n, _, _ in rows]
        rate = median([r for _, _, r in rows])
        suite.trials(
            f"one backend of {PODS} fails {what}, {label}: failed calls per 10,000",
            per,
            "calls",
            calls_per_second=[round(r) for _, _, r in rows],
            summary=f"a Ready pod failing {what}: failed calls per 10,000",
            column="dnsbalance",
            cell=f"{label}: {median(per):g}" + (f" (at ~{rate:.0f} calls/s)" if ejection else ""),
        )
        if ejection:
            suite.trials(
                f"one backend of {PODS} fails {what}, {label}: seconds to ejection "
                "(first call to last failure)",
                [last for _, last, _ in rows],
                "s",
                target="<= 2 (1 s sweeps)",
            )


def _rebuilds(suite: Suite, channel: Any, bad: Backend, rebuilds: int) -> None:
    """Failed calls after each forced rebuild, with the failing backend ejected before."""
    failed_after: list[int] = []
    again_after: list[float] = []
    with channel(True) as ch:
        wait_until(lambda: len(ch.endpoints) == PODS, 5.0)
        bad.fail_every = 1
        recorder = Recorder()
        try:
            with Callers(ch, recorder, threads=THREADS, limit=120, name="outlier-rebuild"):
                wait_until(lambda: _quiet_since(recorder, 0.5), 10.0, 0.05)  # ejected
                for _ in range(rebuilds):
                    rebuilt = time.monotonic()
                    ch.rebuild()
                    wait_until(lambda r=rebuilt: _quiet_since(recorder, 1.5, r), 10.0, 0.05)
                    after = [c for c in recorder.window(rebuilt, time.monotonic()) if c.error]
                    failed_after.append(len(after))
                    last = max((c.start + c.seconds for c in after), default=rebuilt)
                    again_after.append(last - rebuilt)
                    time.sleep(0.5)
            rate = len(recorder.calls) / max(1e-9, time.monotonic() - recorder.calls[0].start)
        finally:
            bad.fail_every = 0
    suite.trials(
        "outlier_detection=True, failing backend ejected: failed calls after a rebuild",
        failed_after,
        "calls",
        calls_per_second=round(rate),
        summary="a rebuild while a Ready pod fails (ejection starts afresh): failed calls",
        column="dnsbalance",
        cell=f"{median(failed_after):g} per rebuild at ~{rate:.0f} calls/s, ejected again "
        f"after {median(again_after):.2f} s",
    )
    suite.trials(
        "outlier_detection=True: seconds from a rebuild to the failing backend's last failure",
        again_after,
        "s",
    )


def _quiet_since(recorder: Recorder, seconds: float, after: float = 0.0) -> bool:
    """No failed call in the last ``seconds`` (and that long has passed since ``after``)."""
    now = time.monotonic()
    if now - after < seconds:
        return False
    recent = recorder.window(now - seconds, now)
    return bool(recent) and not any(c.error for c in recent)


def _slow(suite: Suite, channel: Any, bad: Backend, calls: int) -> None:
    bad.delay = 0.05
    try:
        for ejection in (False, True):
            label = "outlier_detection=True" if ejection else "without ejection"
            with channel(ejection) as ch:
                wait_until(lambda ch=ch: len(ch.endpoints) == PODS, 5.0)
                made, _ = _run_calls(ch, calls // 2)
            ok = [c for c in made if not c.error]
            share = sum(1 for c in ok if c.backend == bad.name) / max(1, len(ok))
            suite.add(
                f"one backend 50 ms slow, never failing, {label}: its share of calls",
                share,
                "",
                p50_ms=round(percentile([c.seconds for c in ok], 50) * 1000, 2),
                p99_ms=round(percentile([c.seconds for c in ok], 99) * 1000, 2),
                failed=len(made) - len(ok),
            )
            suite.add(
                f"one backend 50 ms slow, {label}: p50 / p99 latency",
                percentile([c.seconds for c in ok], 99) * 1000,
                "ms",
                shown=f"{percentile([c.seconds for c in ok], 50) * 1000:.1f} / "
                f"{percentile([c.seconds for c in ok], 99) * 1000:.1f} ms",
            )
        for ejection in (False, True):
            label = "outlier_detection=True" if ejection else "without ejection"
            with channel(ejection) as ch:
                wait_until(lambda ch=ch: len(ch.endpoints) == PODS, 5.0)
                made, _ = _run_calls(ch, calls // 2, timeout=0.025)
            failed = sum(1 for c in made if c.error)
            suite.add(
                f"one backend 50 ms slow, 25 ms deadline per call, {label}: failed calls per "
                "10,000",
                round(failed * 10_000 / len(made)),
                "calls",
                errors=sorted({c.error for c in made if c.error}),
                summary="a Ready pod 50 ms slow, calls with a 25 ms deadline: failed per 10,000",
                column="dnsbalance",
                cell=f"{label}: {round(failed * 10_000 / len(made))}",
            )
    finally:
        bad.delay = 0.0
