"""Shared pieces of the benchmark suites: statistics, DNS servers, result records."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dnsbalance.testing import BindServer, DNSResponder
from dnsbalance.testing._bind import find_named


@dataclass
class Suite:
    """The results of one suite: named figures, each with its unit and target."""

    name: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, value: float, unit: str, *, target: str = "", **extra: Any) -> None:
        self.figures.append(
            {"figure": figure, "value": value, "unit": unit, "target": target, **extra}
        )
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(
            f"  {figure}: {shown} {unit}" + (f"  (target {target})" if target else ""), flush=True
        )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation beyond the data)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": median(values), "min": min(values), "max": max(values)}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], float]:
    """Wall seconds of each call, and process CPU seconds per call."""
    walls = []
    cpu_start = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return walls, (time.process_time() - cpu_start) / repeat


@contextlib.contextmanager
def cluster_dns() -> Iterator[tuple[BindServer | DNSResponder, str]]:
    """BIND9 when ``named`` is installed, else the embedded responder (said in the output)."""
    named = find_named()
    if named is not None:
        with BindServer(named=named) as server:
            yield server, "BIND9 named"
    else:
        print("  named (BIND9) not found: using the embedded DNS responder", flush=True)
        with DNSResponder() as responder:
            yield responder, "embedded responder"


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.platform(terse=True),
    }
