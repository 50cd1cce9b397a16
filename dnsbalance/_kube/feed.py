"""The Kubernetes side of modes "auto" and "api" for one channel: the client, the
EndpointSlice watcher, and the rule for the first list (mode "auto" waits 5 s at most)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import KubernetesError
from dnsbalance._metrics import metrics_for

from .client import load_api_client
from .watch import SliceWatcher, ViewCallback

if TYPE_CHECKING:
    from dnsbalance._settings import ChannelSettings


AUTO_FIRST_LIST_TIMEOUT = 5.0  # seconds mode "auto" waits for the first list at most


class ApiFeed:
    """The Kubernetes side of modes "auto" and "api", after the first list.

    Mode "api" lists on the caller's thread and has nothing else to go on, so it waits
    for the list however long it takes. Mode "auto" has DNS: its first list runs on the
    watcher's thread, and after ``AUTO_FIRST_LIST_TIMEOUT`` without an answer the
    channel starts on DNS alone (one warning); the answer, when it comes, is handed on
    like any later view, so a slow or hung API never holds the caller up for long.
    """

    def __init__(self, client: Any, owns_client: bool, watcher: SliceWatcher | None) -> None:
        self.client = client
        self.owns_client = owns_client
        self.watcher = watcher
        self.endpoints: tuple[Endpoint, ...] | None = None
        self.error: KubernetesError | None = None
        self._lock = threading.Lock()
        self._viewed = threading.Event()
        self._late: tuple[tuple[Endpoint, ...] | None, KubernetesError | None] | None = None
        self._sink: ViewCallback | None = None

    @classmethod
    def open(cls, settings: ChannelSettings) -> ApiFeed:
        """Configure and list once (blocking). Mode "api" raises KubernetesError where
        mode "auto" records the error and goes on with DNS only."""
        target, strict = settings.target, settings.api_only
        error: KubernetesError | None = None
        client = None
        try:
            client = load_api_client(
                api_client=settings.api_client,
                kubeconfig=settings.kubeconfig,
                context=settings.context,
            )
        except KubernetesError as exc:
            if strict:
                raise
            error = exc
        if client is None:
            if strict:
                raise KubernetesError(
                    f'mode="{settings.mode}" with {target} needs Kubernetes API access: run in'
                    " a pod with a service account, set KUBECONFIG, or pass"
                    " api_client=/kubeconfig="
                )
            feed = cls(None, False, None)
            feed.error = error
            return feed
        feed = cls(client, settings.api_client is None, None)
        feed.watcher = SliceWatcher(
            client,
            namespace=target.namespace,
            service=target.service,
            port=target.port,
            include_terminating=settings.include_terminating,
            on_view=feed._view,
            name=f"dnsbalance-watch-{settings.thread_suffix}",
            metrics=metrics_for(settings.name),
            relist_interval=settings.poll_interval,
        )
        feed.first_list(strict=strict, timeout=AUTO_FIRST_LIST_TIMEOUT)
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
        """Stop watching and close a client we made. Idempotent."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.owns_client and self.client is not None:
            self.client.close()
            self.client = None
