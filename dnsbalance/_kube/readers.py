"""The channels reading one watched Service, and the slices they read (no I/O).

One :class:`~dnsbalance._kube.watch.SliceWatcher` lists and watches a Service's
EndpointSlices for every channel of the process that follows it with the same API
identity (:mod:`dnsbalance._kube.share`). :class:`Readers` keeps the slices as the API
last sent them, and one :class:`SliceReader` per channel: the channel's port, whether
terminating endpoints count, where its views go and its metrics. Each reader reads the
same slices its own way (:class:`~dnsbalance._kube.slices.SliceSet`), so what one
channel asked for never changes another's view; what the channels then decide (panic
mode, topology, the DNS cross-check) is theirs, downstream.

Views reach each reader in order: every change and every hand-on happens under one lock,
which a reader joining late also takes, getting the current view (or the current error)
before any later one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import KubernetesError
from dnsbalance._metrics import TargetMetrics

from .pods import ReadyPairs
from .slices import ApiEndpoints, SliceSet, suggested_port

log = logging.getLogger(__name__)

ViewCallback = Callable[[tuple[Endpoint, ...] | None, KubernetesError | None], None]


class SliceReader:
    """One channel's reading of a watched Service's slices: its port, whether terminating
    endpoints count, where its views go (``on_view``), its metrics, and how often it
    wants a re-list while the watch is forbidden. Changed only under its
    :class:`Readers`' lock."""

    def __init__(
        self,
        port: int | str | None,
        *,
        include_terminating: bool = False,
        on_view: ViewCallback | None = None,
        metrics: TargetMetrics | None = None,
        relist_interval: float = 5.0,
    ) -> None:
        self.port = port
        self.slices = SliceSet(port, include_terminating=include_terminating)
        self.on_view = on_view
        self.metrics = metrics
        self.relist_interval = relist_interval
        self.port_warned = False


class Readers:
    """The readers of one watch and the slices they read.

    ``listed``: a list has answered (the slices are a view, maybe an old one while the
    watch recovers); ``reported``: the error handed on last, ``None`` while the API is
    readable. ``name`` (the watch's) starts its log lines.
    """

    def __init__(self, first: SliceReader, *, name: str, namespace: str, service: str) -> None:
        self._lock = threading.Lock()
        self._readers = [first]
        self._objs: dict[str, Mapping[str, Any]] = {}
        self._name = name
        self._namespace = namespace
        self._service = service
        self.listed = False
        self.reported: KubernetesError | None = None
        self._ready_pods: ReadyPairs = frozenset()

    def join(self, reader: SliceReader) -> None:
        """Add ``reader``; when a list has answered it gets the current view (or the
        current error) now, else with the first list."""
        with self._lock:
            self._readers.append(reader)
            reader.slices.set_ready_pods(self._ready_pods)
            if self.listed:
                reader.slices.reset(self._objs.values())
                self._check_port(reader)
            if self.listed or self.reported is not None:
                self._hand_on(reader, self.reported)

    def leave(self, reader: SliceReader) -> int:
        """``reader`` reads no more (idempotent); how many readers are left."""
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)
            return len(self._readers)

    def relist_interval(self, default: float) -> float:
        """The shortest re-list interval a reader asks for while the watch is forbidden."""
        with self._lock:
            return min((r.relist_interval for r in self._readers), default=default)

    def current(self, reader: SliceReader) -> tuple[Endpoint, ...] | None:
        """``reader``'s view when a list has answered and the API is readable, ``None``
        before any list; raises the current error while the API is not readable."""
        with self._lock:
            if self.reported is not None:
                raise KubernetesError(
                    str(self.reported), status=self.reported.status, reason=self.reported.reason
                ) from self.reported
            return reader.slices.view() if self.listed else None

    def view(self, reader: SliceReader) -> ApiEndpoints:
        with self._lock:
            return reader.slices.view()

    # -- what the watch brings ----------------------------------------------------------

    def listed_now(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        skip: SliceReader | None = None,
        only_changes: bool = False,
    ) -> None:
        """A list answered with ``items``: every reader reads them afresh, and each but
        ``skip`` (whose caller returns its view) gets its view: every reader, or with
        ``only_changes`` those whose view changed (all when an error was handed on last)."""
        with self._lock:
            recovered = self.reported is not None
            self._objs = {_name(item): item for item in items}
            self.listed = True
            self.reported = None
            for reader in self._readers:
                before = reader.slices.view()
                reader.slices.reset(self._objs.values())
                self._check_port(reader)
                changed = recovered or not only_changes or not reader.slices.view().same(before)
                if reader is not skip and changed:
                    self._hand_on(reader, None)

    def event(self, kind: str, obj: Mapping[str, Any]) -> None:
        """An ADDED, MODIFIED or DELETED slice: the readers whose view changed get it."""
        with self._lock:
            if kind == "DELETED":
                self._objs.pop(_name(obj), None)
            else:
                self._objs[_name(obj)] = obj
            for reader in self._readers:
                before = reader.slices.view()
                if kind == "DELETED":
                    reader.slices.delete(obj)
                else:
                    reader.slices.upsert(obj)
                    self._check_port(reader)
                if not reader.slices.view().same(before):
                    self._hand_on(reader, None)

    def pods_changed(self, pairs: ReadyPairs) -> None:
        """The Service's Ready pods (:mod:`dnsbalance._kube.pods`) are now ``pairs``
        (none while the pods are not followed): the readers whose view changed get it."""
        with self._lock:
            self._ready_pods = pairs
            for reader in self._readers:
                before = reader.slices.view()
                reader.slices.set_ready_pods(pairs)
                if self.listed and self.reported is None and not reader.slices.view().same(before):
                    self._hand_on(reader, None)

    def emit(self, error: KubernetesError | None) -> None:
        """Every reader gets its view, or ``error`` (which becomes :attr:`reported`)."""
        with self._lock:
            self.reported = error
            for reader in self._readers:
                self._hand_on(reader, error)

    def watch_restarted(self) -> None:
        """A watch stream ended: each reader's metrics count it."""
        with self._lock:
            for reader in self._readers:
                if reader.metrics is not None:
                    reader.metrics.watch_restart()

    # -- under the lock -----------------------------------------------------------------

    def _hand_on(self, reader: SliceReader, error: KubernetesError | None) -> None:
        if reader.on_view is None:
            return
        try:
            reader.on_view(None if error else reader.slices.view(), error)
        except Exception:
            log.exception("%s: view callback failed", self._name)

    def _check_port(self, reader: SliceReader) -> None:
        """One WARNING per reader when its numeric target port is none of the pods' ports."""
        if reader.port_warned:
            return
        served = reader.slices.port_mismatch()
        if not served:
            return
        reader.port_warned = True
        listed = ", ".join(f"{name}={number}" if name else str(number) for name, number in served)
        service, namespace = self._service, self._namespace
        log.warning(
            "%s: port %s is none of the ports the pods of %s.%s serve (%s): every call "
            "will fail. A headless Service is dialed at the pods' (target) port, not the "
            "Service port; use the target %s.%s:%s",
            self._name,
            reader.port,
            service,
            namespace,
            listed,
            service,
            namespace,
            suggested_port(served),
        )


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))
