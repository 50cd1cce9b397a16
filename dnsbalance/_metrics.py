"""Optional Prometheus metrics (``pip install 'dnsbalance[prometheus]'``).

When ``prometheus_client`` is importable, every balanced channel reports, per
target (label ``target``, e.g. ``kubernetes:///svc.ns:8000``):

- ``dnsbalance_endpoints``: endpoints the channel uses now (with ``subset_size``,
  every endpoint it may use: it dials ``dnsbalance_subset_endpoints`` of them);
- ``dnsbalance_subset_endpoints``: with ``subset_size``, the endpoints the channel
  dials (its subset; absent without subsetting);
- ``dnsbalance_rebuilds_total``: underlying channel rebuilds;
- ``dnsbalance_last_update_timestamp_seconds``: when the endpoint set last changed
  (answers "is my client balanced, and since when?");
- ``dnsbalance_resolution_errors_total``: failed DNS polls;
- ``dnsbalance_watch_restarts_total``: EndpointSlice watch streams reopened;
- ``dnsbalance_discrepancies``: DNS/API disagreements older than the DNS TTL + 1 s.
- ``dnsbalance_panic``: 1 while no endpoint is ready and panic mode calls listed ones.
- ``dnsbalance_topology_endpoints``: endpoints in use by where they are, labels ``zone``
  (the client's zone, ``""`` when unknown) and ``placement`` (``in_zone``/``out_of_zone``
  by each endpoint's own zone; topology-aware routing keeps ``out_of_zone`` at 0).

Channels that share a watch or a DNS poller (:mod:`dnsbalance._kube.share`,
:mod:`dnsbalance._poll.share`) each count its watch restarts and failed polls, as they
did with their own.

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
                "subset": prom.Gauge(
                    "dnsbalance_subset_endpoints",
                    "Endpoints the balanced channel dials (its subset, with subset_size)",
                    label,
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
                "topology": prom.Gauge(
                    "dnsbalance_topology_endpoints",
                    "Endpoints in use, in the client's zone or out of it",
                    ["target", "zone", "placement"],
                ),
            }
        return _families


class TargetMetrics:
    """One target's metrics; every method is a no-op when metrics are off."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._on = _enabled()
        self._zone: str | None = None  # the zone label last reported

    def _child(self, family: str) -> Any:
        return _metric_families()[family].labels(target=self._target)

    def endpoints(self, count: int, *, rebuilt: bool) -> None:
        if self._on:
            self._child("endpoints").set(count)
            self._child("updated").set(time.time())
            if rebuilt:
                self._child("rebuilds").inc()

    def subset(self, count: int) -> None:
        if self._on:
            self._child("subset").set(count)

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

    def topology(self, zone: str | None, in_zone: int, out_of_zone: int) -> None:
        if not self._on:
            return
        family = _metric_families()["topology"]
        label = zone or ""
        if self._zone is not None and self._zone != label:
            for placement in ("in_zone", "out_of_zone"):
                family.remove(self._target, self._zone, placement)
        self._zone = label
        family.labels(target=self._target, zone=label, placement="in_zone").set(in_zone)
        family.labels(target=self._target, zone=label, placement="out_of_zone").set(out_of_zone)


def metrics_for(target: str) -> TargetMetrics:
    return TargetMetrics(target)
