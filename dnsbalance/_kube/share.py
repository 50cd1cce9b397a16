"""One list and one watch per Service per process: who shares, and for how long.

Channels of one process that follow the same Service share one
:class:`~dnsbalance._kube.watch.SliceWatcher` (one list, one watch, one thread) when
their :class:`WatchKey` is equal: the same API identity
(:class:`~dnsbalance._kube.client.ApiSource`: the same ``api_client`` object; or the same
kubeconfig files, context and file contents; or the pod's service account), the same
namespace and the same Service. Two kubeconfigs, two contexts, a rewritten kubeconfig or
two ``ApiClient`` objects configured alike never share. Sync and asyncio channels share
alike (the asyncio driver's API side runs on threads too).

What is shared is the slices as the API sends them and the I/O around them (retries,
410 re-lists, the forbidden-watch fallback, logged once under the watch's name). What
each channel asked for stays its own: its port and ``include_terminating`` (a
:class:`~dnsbalance._kube.readers.SliceReader` reads the shared slices its way), and
everything decided downstream from its view (panic mode, zone and topology, the DNS
cross-check, its ``on_change``, its log lines and metrics).

Lifecycle (:class:`~dnsbalance._shares.Shares`): the first channel makes the share and
loads the client; the others join and get the current view at once (or wait for the
first list); the last channel's ``close()`` stops the watch and closes a client the share
made (never one the user passed). A channel opening while the last one closes either
joins first (the watch goes on) or finds the share gone and starts a fresh one (a new
client, list and watch); it never joins a stopped watch.

First views: mode "auto" waits at most 5 s as before. Mode "api" takes the watch's
current view, raises its current error while the API is not readable (as its own first
list would have), and lists on its own thread only when the watch has never listed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dnsbalance._endpoints import Endpoint
from dnsbalance._metrics import TargetMetrics
from dnsbalance._shares import Shares

from .client import ApiSource, load_source
from .readers import SliceReader, ViewCallback
from .watch import SliceWatcher

if TYPE_CHECKING:
    from dnsbalance._target import Target


@dataclass(frozen=True)
class WatchKey:
    """Channels with equal keys share one list and watch."""

    source: ApiSource
    namespace: str
    service: str


class WatchShare:
    """One Service's watcher and the client it reads with, made by the first join."""

    def __init__(self, key: WatchKey) -> None:
        self.key = key
        self._lock = threading.Lock()
        self.client: Any = None
        self.watcher: SliceWatcher | None = None

    def join(
        self,
        *,
        port: int | str | None,
        include_terminating: bool,
        on_view: ViewCallback,
        name: str,
        metrics: TargetMetrics | None,
        relist_interval: float,
    ) -> tuple[SliceWatcher, SliceReader]:
        """A reader of the watch, made with the watch when this is the first join (which
        loads the client: raises KubernetesError, and the next join tries again)."""
        with self._lock:
            if self.watcher is None:
                self.client = load_source(self.key.source)
                self.watcher = SliceWatcher(
                    self.client,
                    namespace=self.key.namespace,
                    service=self.key.service,
                    port=port,
                    include_terminating=include_terminating,
                    on_view=on_view,
                    name=name,
                    metrics=metrics,
                    relist_interval=relist_interval,
                )
                return self.watcher, self.watcher.reader
            reader = self.watcher.join(
                port,
                include_terminating=include_terminating,
                on_view=on_view,
                metrics=metrics,
                relist_interval=relist_interval,
            )
            return self.watcher, reader

    def close(self) -> None:
        """Stop the watch and close a client the share made (blocking)."""
        with self._lock:
            watcher, client = self.watcher, self.client
            self.watcher = self.client = None
        if watcher is not None:
            watcher.stop()
        if client is not None and self.key.source.given is None:
            client.close()


WATCHES: Shares[WatchKey, WatchShare] = Shares()


class WatchHandle:
    """One channel's part in a shared watch: what :class:`~dnsbalance._kube.feed.ApiFeed`
    calls its watcher (``list_once``, ``start``, ``stop``)."""

    def __init__(
        self, share: WatchShare, watcher: SliceWatcher, reader: SliceReader, client: Any
    ) -> None:
        self._share = share
        self._watcher = watcher
        self._reader = reader
        self.client = client
        self._lock = threading.Lock()
        self._left = False

    def list_once(self) -> tuple[Endpoint, ...]:
        """Mode "api"'s first view (see :meth:`SliceWatcher.first_view`)."""
        return self._watcher.first_view(self._reader)

    def start(self) -> None:
        """Make sure the watch runs (idempotent)."""
        self._watcher.start()

    def stop(self) -> None:
        """Leave the watch; the last channel to leave stops it. Idempotent."""
        with self._lock:
            if self._left:
                return
            self._left = True
        self._watcher.leave(self._reader)
        if WATCHES.release(self._share.key, self._share):
            self._share.close()


def open_watch(
    source: ApiSource,
    target: Target,
    *,
    include_terminating: bool,
    on_view: ViewCallback,
    name: str,
    metrics: TargetMetrics | None,
    relist_interval: float,
) -> WatchHandle:
    """Join (or start) the watch of ``target``'s Service for ``source``'s identity.
    Raises KubernetesError when the client cannot be loaded."""
    key = WatchKey(source, target.namespace, target.service)
    share = WATCHES.acquire(key, lambda: WatchShare(key))
    try:
        watcher, reader = share.join(
            port=target.port,
            include_terminating=include_terminating,
            on_view=on_view,
            name=name,
            metrics=metrics,
            relist_interval=relist_interval,
        )
    except BaseException:
        if WATCHES.release(key, share):
            share.close()
        raise
    return WatchHandle(share, watcher, reader, share.client)
