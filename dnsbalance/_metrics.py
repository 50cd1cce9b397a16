"""Optional Prometheus metrics (``pip install 'dnsbalance[prometheus]'``).

When ``prometheus_client`` is importable, every balanced channel reports, per
target (label ``target``, e.g. ``kubernetes:///svc.ns:8000``):

- ``dnsbalance_endpoints``: endpoints the channel uses now;
- ``dnsbalance_rebuilds_total``: underlying channel rebuilds;
- ``dnsbalance_last_update_timestamp_seconds``: when the endpoint set last changed
  (answers "is my client balanced, and since when?");
- ``dnsbalance_resolution_errors_total``: failed DNS polls;
- ``dnsbalance_watch_restarts_total``: EndpointSlice watch streams reopened;
- ``dnsbalance_discrepancies``: DNS/API disagreements older than the DNS TTL + 1 s.
- ``dnsbalance_panic``: 1 while no endpoint is ready and panic mode calls listed ones.

Without ``prometheus_client`` nothing is imported and every call is a no-op.
``DNSBALANCE_METRICS=0`` turns them off even when it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from typing import Any

_lock = threading.Lock()
_families: dict[str, Any] | None = None


def _enabled() -> bool:
    if os.environ.get("DNSBALANCE_METRICS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return importlib.util.find_spec("prometheus_client") is not None


def _metric_families() -> dict[str, Any]:
    """Create the metric families once per process, in the default registry."""
    global _families
    with _lock:
        if _families is None:
            import prometheus_client as prom

            label = ["target"]
            _families = {
                "endpoints": prom.Gauge(
                    "dnsbalance_endpoints", "Endpoints the balanced channel uses now", label
                ),
                "rebuilds": prom.Counter(
                    "dnsbalance_rebuilds", "Rebuilds of the underlying grpc channel", label
                ),
                "updated": prom.Gauge(
                    "dnsbalance_last_update_timestamp_seconds",
                    "Unix time of the last change of the endpoint set",
                    label,
                ),
                "resolution_errors": prom.Counter(
                    "dnsbalance_resolution_errors", "Failed DNS polls", label
                ),
                "watch_restarts": prom.Counter(
                    "dnsbalance_watch_restarts", "EndpointSlice watch streams reopened", label
                ),
                "discrepancies": prom.Gauge(
                    "dnsbalance_discrepancies",
                    "DNS/API disagreements older than the DNS TTL + 1 s",
                    label,
                ),
                "panic": prom.Gauge(
                    "dnsbalance_panic",
                    "1 while no endpoint is ready and listed ones are used anyway",
                    label,
                ),
            }
        return _families


class TargetMetrics:
    """One target's metrics; every method is a no-op when metrics are off."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._on = _enabled()

    def _child(self, family: str) -> Any:
        return _metric_families()[family].labels(target=self._target)

    def endpoints(self, count: int, *, rebuilt: bool) -> None:
        if self._on:
            self._child("endpoints").set(count)
            self._child("updated").set(time.time())
            if rebuilt:
                self._child("rebuilds").inc()

    def resolution_error(self) -> None:
        if self._on:
            self._child("resolution_errors").inc()

    def watch_restart(self) -> None:
        if self._on:
            self._child("watch_restarts").inc()

    def discrepancies(self, count: int) -> None:
        if self._on:
            self._child("discrepancies").set(count)

    def panic(self, on: bool) -> None:
        if self._on:
            self._child("panic").set(1 if on else 0)


def metrics_for(target: str) -> TargetMetrics:
    return TargetMetrics(target)
