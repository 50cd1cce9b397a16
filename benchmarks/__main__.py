"""Run the benchmark suites and write results/latest.json and results/latest.md.

    python -m benchmarks [--quick] [SUITE ...]

Suites: discovery (discover() latency), channel (overhead and connection churn of
BalancedChannel), spread (calls per backend), discovery_time (how soon a new
backend gets calls), rolling (a rolling replacement under load), scale (1000
endpoints, 100 idle channels, 1000 rebuilds), lifecycle (open + close of a channel
over 1,000 cycles, and what an idle channel's local DNS wakes up for), kube_watch
(kuberesolver v6 and v3 against dnsbalance's modes on the fake API: new pods, rolling,
watch faults, 1,100 endpoints), cluster_watch (every contender on a real control plane:
kube-apiserver, the EndpointSlice and Endpoints controllers, CoreDNS, pods on a pod
network; needs root and scripts/build-controlplane, else skipped, and an error under
CI=true), topology (calls that cross zones, and the spill-over when the
client's zone empties), subset (a fleet of clients with subset_size: connections per
pod, churn per change, a rolling replacement), outlier (a Ready pod that fails or is
slow, with and without outlier_detection), fleet (per-client API, DNS, memory and
connection costs, measured, multiplied out to 1,000 pods x 4 processes x 5 Services in
results/fleet.md), stages (where the time goes from a pod's Ready patch to its first call,
on a real control plane, and what a rebuild costs), chart (scale-up.png).

The v6 Go client is built from the module proxy (cached in ~/.cache/dnsbalance); the v3
one when go and Debian's sources are there; a column that cannot be built is skipped.
``--quick`` uses fewer repetitions and shorter bounds (CI runs it; about 6 minutes on
2 quiet cores with the Go clients cached by scripts/check) and writes results/quick.*;
it fails only on errors, never because a machine is slow.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # grpc's INFO lines (GOAWAYs seen) are noise

from ._common import COLUMNS, Suite, describe, display, machine

SUITES = (
    "discovery",
    "channel",
    "spread",
    "discovery_time",
    "rolling",
    "scale",
    "lifecycle",
    "kube_watch",
    "cluster_watch",
    "topology",
    "subset",
    "outlier",
    "fleet",
    "stages",
    "chart",
)
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI)")
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], metavar="SUITE")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    results: list[tuple[Suite, float]] = []
    started = time.monotonic()
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        kwargs: dict[str, Any] = {}
        if "out" in inspect.signature(module.run).parameters:
            kwargs["out"] = args.out
        suite_start = time.monotonic()
        suite = module.run(args.quick, **kwargs)
        results.append((suite, round(time.monotonic() - suite_start, 1)))
        print(f"   ({results[-1][1]} s)", flush=True)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": info,
        "suites": [
            {"name": s.name, "seconds": seconds, "notes": s.notes, "figures": s.figures}
            for s, seconds in results
        ],
    }
    stem = "quick" if args.quick else "latest"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(f"wrote {args.out / stem}.json and .md in {report['seconds']} s")
    return 0


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# dnsbalance benchmarks" + (" (quick mode)" if report["quick"] else ""),
        "",
        f"Measured {report['date']} in {report['seconds']} s on {describe(m)}.",
        "All servers on this machine (loopback; cluster_watch's pods on a pod network); one run;"
        " medians, with (min-max) over repeated trials.",
        "",
    ]
    lines += summary(report["suites"])
    for suite in report["suites"]:
        lines += [f"## {suite['name']}", ""]
        lines += [f"- {note}" for note in suite["notes"]]
        lines += ["", "| figure | value | target |", "| --- | ---: | --- |"]
        for f in suite["figures"]:
            lines.append(f"| {f['figure']} | {display(f)} | {f['target']} |")
        lines.append("")
    return "\n".join(lines)


def summary(suites: list[dict[str, Any]]) -> list[str]:
    """The side-by-side table: one row per ``summary`` label, one column per contender."""
    rows: dict[str, dict[str, list[str]]] = {}
    targets: dict[str, str] = {}
    for suite in suites:
        for f in suite["figures"]:
            label, column = f.get("summary"), f.get("column")
            if not label or column not in COLUMNS:
                continue
            cell = f.get("cell") or display(f)
            if f.get("note"):
                cell += f" ({f['note']})"
            rows.setdefault(label, {}).setdefault(column, []).append(cell)
            if f.get("summary_target"):
                targets[label] = f["summary_target"]
            elif f["target"] and column == COLUMNS[-1]:
                targets.setdefault(label, f["target"])
    if not rows:
        return []
    lines = [
        "## Side by side",
        "",
        "| figure | " + " | ".join(COLUMNS) + " | target (dnsbalance) |",
        "| --- |" + " --- |" * (len(COLUMNS) + 1),
    ]
    for label, cells in sorted(rows.items(), key=lambda item: _rank(item[0])):
        shown = ["<br>".join(cells.get(c, ["-"])) for c in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(shown) + f" | {targets.get(label, '')} |")
    return [*lines, ""]


# The summary's rows in the order of the figures; others after them.
ORDER = (
    "spread",
    "new backend",
    "rolling",
    "pods serving",
    "new pod",
    "new connections",
    "recovery",
    "every pod",
    "a Service of",
    "overhead",
    "discover + rebuild",
    "open + close",
    "CPU",
    "OS threads",
    "RSS",
    "cross-zone",
    "spill-over",
)


def _rank(label: str) -> int:
    return next((i for i, prefix in enumerate(ORDER) if label.startswith(prefix)), len(ORDER))


if __name__ == "__main__":
    sys.exit(main())
