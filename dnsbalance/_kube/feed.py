"""The Kubernetes side of modes "auto" and "api" for one channel: its part in the
Service's EndpointSlice watch (shared with the process's other channels of the same
Service and API identity, :mod:`dnsbalance._kube.share`), the rule for the first list
(mode "auto" waits 5 s at most), and where the client runs (its Node's zone, its
Service's traffic policy) for topology."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import KubernetesError
from dnsbalance._metrics import metrics_for

from .client import api_source
from .nodes import Answer, ReadOnce, read_node_zone, read_traffic_policy
from .readers import ViewCallback
from .share import WatchHandle, open_watch
from .topology import Placement

if TYPE_CHECKING:
    from dnsbalance._settings import ChannelSettings


AUTO_FIRST_LIST_TIMEOUT = 5.0  # seconds mode "auto" waits for the first list at most
PLACEMENT_WAIT = 2.0  # seconds open() waits for the Node's zone (then it comes later)


class ApiFeed:
    """The Kubernetes side of modes "auto" and "api", after the first list.

    Mode "api" lists on the caller's thread and has nothing else to go on, so it waits
    for the list however long it takes. Mode "auto" has DNS: its first list runs on the
    watcher's thread, and after ``AUTO_FIRST_LIST_TIMEOUT`` without an answer the
    channel starts on DNS alone (one warning); the answer, when it comes, is handed on
    like any later view, so a slow or hung API never holds the caller up for long.
    """

    def __init__(self, client: Any, owns_client: bool, watcher: WatchHandle | None) -> None:
        self.client = client
        self.owns_client = owns_client
        self.watcher = watcher
        self.endpoints: tuple[Endpoint, ...] | None = None
        self.error: KubernetesError | None = None
        self._lock = threading.Lock()
        self._viewed = threading.Event()
        self._late: tuple[tuple[Endpoint, ...] | None, KubernetesError | None] | None = None
        self._sink: ViewCallback | None = None
        self.placement = Placement()
        self._placement_sink: Callable[[Placement], None] | None = None
        self._readers: list[ReadOnce] = []

    @classmethod
    def open(cls, settings: ChannelSettings) -> ApiFeed:
        """Configure and list once (blocking), sharing the Service's watch with the other
        channels of the process that have the same API identity
        (:mod:`dnsbalance._kube.share`). Mode "api" raises KubernetesError where mode
        "auto" records the error and goes on with DNS only."""
        target, strict = settings.target, settings.api_only
        error: KubernetesError | None = None
        feed = cls(None, False, None)
        handle = None
        try:
            source = api_source(
                api_client=settings.api_client,
                kubeconfig=settings.kubeconfig,
                context=settings.context,
            )
            if source is not None:
                handle = open_watch(
                    source,
                    target,
                    include_terminating=settings.include_terminating,
                    on_view=feed._view,
                    name=f"dnsbalance-watch-{settings.thread_suffix}",
                    metrics=metrics_for(settings.name),
                    relist_interval=settings.poll_interval,
                )
        except KubernetesError as exc:
            if strict:
                raise
            error = exc
        if handle is None:
            if strict:
                raise KubernetesError(
                    f'mode="{settings.mode}" with {target} needs Kubernetes API access: run in'
                    " a pod with a service account, set KUBECONFIG, or pass"
                    " api_client=/kubeconfig="
                )
            feed.error = error
            feed.placement = _placement(settings)
            return feed
        feed.client, feed.watcher = handle.client, handle  # the share owns the client
        feed.first_list(strict=strict, timeout=AUTO_FIRST_LIST_TIMEOUT)
        feed.find_placement(settings)
        return feed

    def first_list(self, *, strict: bool, timeout: float) -> None:
        """The first list. ``strict`` (mode "api"): on this thread, however long it
        takes; its KubernetesError is raised (the watcher stopped). Otherwise (mode
        "auto") the watcher lists on its own thread and this waits ``timeout`` at
        most: without an answer by then, :attr:`error` says so and the answer, when
        it comes, goes to :meth:`follow`'s sink like any later view."""
        watcher = self.watcher
        assert watcher is not None
        if strict:
            try:
                self.endpoints = watcher.list_once()
            except KubernetesError:
                self.close()
                raise
            return
        watcher.start()  # lists first, on its thread
        try:
            answered = self._viewed.wait(timeout)
        except BaseException:  # e.g. KeyboardInterrupt: no watcher left behind
            self.close()
            raise
        if not answered:
            self.error = KubernetesError(
                f"no answer to the EndpointSlice list within {timeout:g} s",
                reason="Timeout",
            )
        with self._lock:
            if self._late is not None:
                self.endpoints, self.error = self._late
                self._late = None

    def find_placement(self, settings: ChannelSettings, wait: float = PLACEMENT_WAIT) -> None:
        """Where the client runs: the zone known from settings, else its Node's label;
        and, when the node is known, the Service's internalTrafficPolicy. Each is read
        once on its own thread (retried while errors may pass); this waits ``wait``
        seconds at most for both, and later answers go to :meth:`follow_placement`."""
        self.placement = _placement(settings)
        source = settings.placement
        if not settings.topology or self.client is None or source.node is None:
            return
        suffix = settings.thread_suffix
        if source.zone is None:
            self.placement = replace(self.placement, pending=True)
            self._read(
                partial(read_node_zone, self.client, source.node),
                self._zone_answer,
                f"dnsbalance-node-{suffix}",
            )
        target = settings.target
        self._read(
            partial(read_traffic_policy, self.client, target.namespace, target.service),
            self._policy_answer,
            f"dnsbalance-policy-{suffix}",
        )
        deadline = time.monotonic() + wait  # ``wait`` for both reads together, not each
        for reader in self._readers:
            reader.wait(max(0.0, deadline - time.monotonic()))

    def _read(self, read: Callable[[], Answer], on: Callable[[Answer], None], name: str) -> None:
        reader = ReadOnce(read, on_answer=on, name=name)
        self._readers.append(reader)
        reader.start()

    def _zone_answer(self, answer: Answer) -> None:
        self._place(zone=answer.value, pending=False, why="" if answer.value else answer.why)

    def _policy_answer(self, answer: Answer) -> None:
        self._place(internal_traffic_policy=answer.value)

    def _place(self, **changes: Any) -> None:
        with self._lock:
            self.placement = replace(self.placement, **changes)
            if self._placement_sink is not None:
                self._placement_sink(self.placement)

    def follow_placement(self, sink: Callable[[Placement], None]) -> None:
        """Hand every later change of :attr:`placement` to ``sink`` (and the current one,
        which may have changed since it was read)."""
        with self._lock:
            self._placement_sink = sink
            sink(self.placement)

    def _view(self, endpoints: tuple[Endpoint, ...] | None, error: KubernetesError | None) -> None:
        """The watcher's views: the latest is held until :meth:`follow` names where they
        go. Handed on under the lock, so they arrive in order."""
        with self._lock:
            self._viewed.set()
            if self._sink is None:
                self._late = (endpoints, error)
            else:
                self._sink(endpoints, error)

    def follow(self, sink: ViewCallback) -> None:
        """Hand every view from now on (and the latest that came after :meth:`open`) to
        ``sink``, and make sure the watcher runs."""
        with self._lock:
            self._sink = sink
            late, self._late = self._late, None
            if late is not None:
                sink(*late)
        if self.watcher is not None:
            self.watcher.start()

    def close(self) -> None:
        """Stop watching and reading, and close a client we made. Idempotent."""
        for reader in self._readers:
            reader.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.owns_client and self.client is not None:
            self.client.close()
            self.client = None


def _placement(settings: ChannelSettings) -> Placement:
    source = settings.placement
    return Placement(zone=source.zone, node=source.node, enabled=settings.topology, why=source.why)
