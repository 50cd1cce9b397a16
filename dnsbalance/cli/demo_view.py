"""How ``dnsbalance demo`` shows itself: a live rich view, plain text, or JSON."""

from __future__ import annotations

import json
from collections import Counter
from typing import TextIO

from .demo import CLIENTS, DESCRIPTIONS, DemoResult, DemoState, run_demo

__all__ = ["show_demo"]

RECENT = 2  # seconds of calls the live bars show


def show_demo(
    out: TextIO,
    *,
    backends: int,
    duration: float,
    live: bool,
    output: str,
    poll_interval: float = 1.0,
) -> DemoResult:
    """Run the demo and show it on ``out``; returns the result."""
    if output == "json":
        result = run_demo(backends=backends, duration=duration, poll_interval=poll_interval)
        json.dump(result.as_dict(), out, indent=2)
        out.write("\n")
        return result
    if live:
        return _live(out, backends=backends, duration=duration, poll_interval=poll_interval)
    printer = _PlainTicker(out)
    out.write(_intro(backends, duration))
    result = run_demo(
        backends=backends, duration=duration, poll_interval=poll_interval, on_tick=printer
    )
    out.write(_summary_text(result))
    return result


def _intro(backends: int, duration: float) -> str:
    lines = [
        f"dnsbalance demo: {backends} gRPC backend{'s' if backends != 1 else ''} on 127.0.77.x "
        f"behind a headless Service (embedded DNS); 2 more appear at {duration * 0.4:.0f} s; "
        f"{duration:.0f} s in all.",
        "  each line: calls per second each backend answered, per client",
        *(f"  {name:<11} {DESCRIPTIONS[name]}" for name in CLIENTS),
        "",
    ]
    return "\n".join(lines) + "\n"


class _PlainTicker:
    """One line per second and client: the calls each backend got in that second."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._printed = 0
        self._scale_said = False

    def __call__(self, state: DemoState) -> None:
        with state.lock:
            if state.scaled_at is not None and not self._scale_said:
                self._scale_said = True
                at = state.scaled_at - state.started
                added = ", ".join(state.new_backends)
                self._out.write(f"--- scale-up at {at:.1f} s: {added} added ---\n")
            done = min(len(state.timeline[c]) for c in CLIENTS) - 1  # whole seconds
            for second in range(self._printed, max(done, self._printed)):
                for name in CLIENTS:
                    bucket = state.timeline[name][second]
                    counts = " ".join(f"{b}:{bucket[b]}" for b in state.backends)
                    failed = state.errors[name]
                    self._out.write(
                        f"t={second + 1:>3}s {name:<11} calls/s {counts}"
                        + (f" (failed so far: {failed})" if failed else "")
                        + "\n"
                    )
            self._printed = max(done, self._printed)
        self._out.flush()


def _summary_rows(result: DemoResult) -> list[tuple[str, str, str, str]]:
    rows = []
    for client in result.clients:
        if client.spread is not None:
            spread = f"{client.spread:.2f}"
        elif client.first_balanced:
            spread = "balanced, never uses new backends"
        else:
            spread = "never balanced"
        seconds = client.seconds_to_use_new_backends
        new = "never" if seconds is None else f"{seconds:.1f} s"
        rows.append((client.name, spread, new, str(client.errors)))
    return rows


def _summary_text(result: DemoResult) -> str:
    header = ("client", "spread (max/min)", "new backends used after", "failed calls")
    rows = [header, *_summary_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["", "summary (spread over the settled end of the run, all backends):"]
    lines += [
        ("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _live(out: TextIO, *, backends: int, duration: float, poll_interval: float) -> DemoResult:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out)

    def view(state: DemoState) -> Group:
        with state.lock:
            elapsed = min(state.elapsed(), duration)
            names = list(state.backends)
            recent: dict[str, Counter[str]] = {}
            for client in CLIENTS:
                window = state.timeline[client][-RECENT:]
                recent[client] = sum(window, Counter())
            scaled = None if state.scaled_at is None else state.scaled_at - state.started
            added = list(state.new_backends)
        title = Text(f"dnsbalance demo  {elapsed:4.1f} / {duration:.0f} s", style="bold")
        if scaled is None:
            title.append(f"   (2 pods will appear at {duration * 0.4:.0f} s)", style="dim")
        else:
            title.append(f"   ▲ scale-up at {scaled:.1f} s: {', '.join(added)}", style="yellow")
        panels = []
        for client in CLIENTS:
            table = Table.grid(padding=(0, 1))
            total = sum(recent[client].values()) or 1
            for name in names:
                share = recent[client][name] / total
                bar = "█" * round(share * 40)
                style = "yellow" if name in added else "cyan"
                table.add_row(
                    Text(name + (" (new)" if name in added else ""), style=style),
                    Text(bar.ljust(40), style=style),
                    Text(f"{share:5.0%}"),
                )
            panels.append(Panel(table, title=client, subtitle=DESCRIPTIONS[client]))
        return Group(title, *panels)

    with Live(console=console, refresh_per_second=8, transient=False) as live:
        result = run_demo(
            backends=backends,
            duration=duration,
            poll_interval=poll_interval,
            on_tick=lambda state: live.update(view(state)),
        )
    summary = Table(title="summary (spread over the settled end of the run, all backends)")
    for column in ("client", "spread (max/min)", "new backends used after", "failed calls"):
        summary.add_column(column)
    for row in _summary_rows(result):
        summary.add_row(*row)
    console.print(summary)
    return result
