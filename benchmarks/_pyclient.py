"""A dnsbalance client in its own process, speaking the Go clients' line protocol.

The kuberesolver clients (benchmarks/kuberesolver*/main.go) each run in a process of
their own; so does this one, so that a contender's latency is its own and not the
sum of every Python lane's callers sharing one interpreter lock. It opens
``resolve_channel(-target, mode=-mode, ...)``, calls the demo service from ``-callers``
threads every ``-interval``, and prints on stdout, as the Go clients do
(:class:`benchmarks._kuberesolver.GoClient` reads them)::

    ready
    call <caller> <end unix ns> <latency us> <OK|grpc code> <value>
    change <unix ns> <address,address,...>      (each rebuild: on_change's new set)

It stops after ``-duration`` or when its stdin closes.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from dnsbalance import Endpoint, resolve_channel

from ._common import Call, Callers


class _Lines:
    """Lines on stdout, whole, one at a time; monotonic times as unix nanoseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = time.time() - time.monotonic()

    def unix_ns(self, monotonic: float) -> int:
        return int((monotonic + self._offset) * 1e9)

    def emit(self, line: str) -> None:
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class _Printed:
    """A Recorder's ``add``, printed as a ``call`` line."""

    def __init__(self, out: _Lines) -> None:
        self._out = out

    def add(self, call: Call) -> None:
        end = self._out.unix_ns(call.start + call.seconds)
        status = call.error or "OK"
        value = call.backend or "-"
        self._out.emit(f"call 0 {end} {int(call.seconds * 1e6)} {status} {value}")


def _seconds(text: str) -> float:
    """``80ms``, ``5s``, ``1800s`` (Go's duration forms the harness passes)."""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.removesuffix("s"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pyclient")
    parser.add_argument("-api", help="ignored: the Go clients' flag (-kubeconfig says it)")
    parser.add_argument("-target", required=True)
    parser.add_argument("-mode", choices=["api", "auto", "dns"], required=True)
    parser.add_argument("-kubeconfig")
    parser.add_argument("-nameserver", required=True)
    parser.add_argument("-cluster-domain", default="cluster.local")
    parser.add_argument("-poll", type=float, default=1.0)
    parser.add_argument("-callers", type=int, default=1)
    parser.add_argument("-interval", default="10ms")
    parser.add_argument("-duration", default="30s")
    parser.add_argument("-timeout", default="5s")
    args = parser.parse_args(argv)
    out = _Lines()

    def changed(_old: Any, new: Sequence[Endpoint]) -> None:
        addresses = ",".join(e.address for e in new) or "-"
        out.emit(f"change {out.unix_ns(time.monotonic())} {addresses}")

    channel = resolve_channel(
        args.target,
        mode=args.mode,
        kubeconfig=args.kubeconfig,
        nameservers=[args.nameserver],
        cluster_domain=args.cluster_domain,
        poll_interval=args.poll,
        on_change=changed,
    )
    callers = Callers(
        channel,
        _Printed(out),
        threads=args.callers,
        rate=1.0 / _seconds(args.interval),
        limit=_seconds(args.duration),
        timeout=_seconds(args.timeout),
        name="pyclient",
    )
    out.emit("ready")
    callers.start()
    closed = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=until_stdin_closes, name="stdin", daemon=True).start()
    closed.wait(_seconds(args.duration))
    callers.stop()
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
