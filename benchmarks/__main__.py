"""Run the benchmark suites and write results/latest.json and results/latest.md.

    python -m benchmarks [--quick] [SUITE ...]

``--quick`` uses fewer repetitions (CI runs it); it fails only on errors, never
because a machine is slow.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
import time
from pathlib import Path

from ._common import Suite, machine

SUITES = ("discovery", "channel")
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI)")
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], metavar="SUITE")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    results: list[Suite] = []
    started = time.monotonic()
    for name in chosen:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        results.append(module.run(args.quick))
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine(),
        "suites": [{"name": s.name, "notes": s.notes, "figures": s.figures} for s in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(f"wrote {args.out / stem}.json and .md in {report['seconds']} s")
    return 0


def markdown(report: dict[str, object]) -> str:
    m = report["machine"]
    assert isinstance(m, dict)
    lines = [
        f"Measured {report['date']} on {m['system']}, {m['cpus']} CPUs, Python {m['python']}"
        + (" (quick mode)" if report["quick"] else ""),
        "",
    ]
    suites = report["suites"]
    assert isinstance(suites, list)
    for suite in suites:
        lines += [f"### {suite['name']}", ""]
        lines += [f"- {note}" for note in suite["notes"]]
        lines += ["", "| figure | value | unit | target |", "| --- | ---: | --- | --- |"]
        for f in suite["figures"]:
            value = f["value"]
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {f['figure']} | {shown} | {f['unit']} | {f['target']} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
