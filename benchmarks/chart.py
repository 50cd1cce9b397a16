"""Chart: calls per backend per second across a scale-up, for the three contenders.

Runs ``dnsbalance.cli.demo.run_demo`` (3 pods on 127.0.77.x, 2 more appear at 40% of
the run; the embedded DNS responder; 100 calls/s per client; dnsbalance polls every
1 s) and draws its per-second timeline to ``results/scale-up.png``
(``results/quick.scale-up.png`` in quick mode). Needs matplotlib (a benchmark-only
dependency); without it the run is still measured and the chart is skipped, said in
the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnsbalance.cli.demo import ClientResult, DemoResult, run_demo

from ._common import CLUSTER_IP, DNSBALANCE, NATIVE, Suite

TITLES = {"clusterip": CLUSTER_IP, "grpc-dns": NATIVE, "dnsbalance": DNSBALANCE}
RESULTS = Path(__file__).resolve().parent / "results"


def run(quick: bool, out: Path = RESULTS) -> Suite:
    suite = Suite("chart")
    duration = 6.0 if quick else 20.0
    result = run_demo(backends=3, added=2, duration=duration, rate=100.0, poll_interval=1.0)
    suite.note(
        f"dnsbalance.cli.demo.run_demo: 3 pods, 2 more at {result.scale_up_at:.1f} s of "
        f"{duration:.0f} s, 100 calls/s per client, embedded DNS responder, dnsbalance poll 1 s"
    )
    for client in result.clients:
        name = TITLES[client.name]
        seconds = client.seconds_to_use_new_backends
        suite.add(
            f"{name}: seconds until both new pods served calls",
            seconds,
            "s",
            shown=None if seconds is not None else f"never within the {duration:.0f} s run",
        )
        suite.add(
            f"{name}: failed calls",
            client.errors,
            "calls",
            target="0" if name == DNSBALANCE else "",
        )
    path = out / ("quick.scale-up.png" if quick else "scale-up.png")
    try:
        draw(result, path)
    except ImportError:
        suite.note("matplotlib is not installed: chart skipped (pip install matplotlib)")
    else:
        suite.note(f"chart: {path.name}")
        print(f"  wrote {path}", flush=True)
    return suite


def draw(result: DemoResult, path: Path) -> None:
    """Stacked bars of calls per backend per second, one panel per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.pyplot as plt

    backends = result.backends
    palette = plt.get_cmap("tab10")
    colors = {b: palette(i) for i, b in enumerate(backends)}
    fig, axes = plt.subplots(
        len(result.clients), 1, figsize=(9, 7.5), sharex=True, sharey=True, layout="constrained"
    )
    seconds = int(result.duration)
    for ax, client in zip(axes, result.clients, strict=True):
        _panel(ax, client, backends, colors, seconds, result)
    axes[-1].set_xlabel("seconds since start")
    handles = [
        matplotlib.patches.Patch(
            color=colors[b], label=b + (" (new)" if b in result.new_backends else "")
        )
        for b in backends
    ]
    handles.append(
        matplotlib.lines.Line2D([], [], color="black", linestyle="--", label="pods added")
    )
    fig.legend(handles=handles, loc="outside right center", title="backend")
    fig.suptitle(
        f"Calls per backend per second: {len(backends) - len(result.new_backends)} pods, "
        f"{len(result.new_backends)} more at {result.scale_up_at:.0f} s"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panel(
    ax: Any,
    client: ClientResult,
    backends: list[str],
    colors: dict[str, Any],
    seconds: int,
    result: DemoResult,
) -> None:
    timeline = client.timeline[:seconds]
    xs = list(range(len(timeline)))
    bottom = [0] * len(timeline)
    for b in backends:
        heights = [bucket.get(b, 0) for bucket in timeline]
        ax.bar(xs, heights, bottom=bottom, color=colors[b], width=0.85, align="edge")
        bottom = [x + h for x, h in zip(bottom, heights, strict=True)]
    ax.axvline(result.scale_up_at, color="black", linestyle="--", linewidth=1)
    used = client.seconds_to_use_new_backends
    verdict = (
        f"new pods used after {used:.1f} s" if used is not None else "new pods never used"
    ) + (f", {client.errors} failed calls" if client.errors else "")
    ax.set_title(f"{TITLES[client.name]}: {verdict}", loc="left", fontsize=10)
    ax.set_ylabel("calls/s")
    ax.set_xlim(0, seconds)
