"""The Kubernetes side (I/O): API configuration and the EndpointSlice list-and-watch loop.

Configuration, in order: an explicit ``api_client``; an explicit ``kubeconfig``
and/or ``context``; the pod's service account (in-cluster); ``KUBECONFIG``;
``~/.kube/config``. None found: the API is "unconfigured".

In-cluster, the bound service-account token rotates (kubelet rewrites the file).
The official client re-reads it once a minute; dnsbalance reads it before each
request, so a rotated token is used on the next request and never rejected for
a minute.

The watch uses the official client for HTTP, auth and TLS, but reads the event
stream itself instead of ``kubernetes.watch.Watch``: events stay JSON dicts (no
model deserialization of thousands of endpoints), an ``ERROR`` 410 means re-list
(``Watch`` retries once and then raises), and a stream that ends resumes from the
last resourceVersion seen, bookmarks included.

One watcher serves every channel of the process that follows the Service with the same
API identity (:mod:`dnsbalance._kube.share` decides who shares). It keeps the slices as
the API sends them; each channel reads them through its own :class:`SliceReader` (its
port, whether terminating endpoints count, where its views go, its metrics), so what a
channel decides never leaks into another's view.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import KubernetesError, api_error
from dnsbalance._metrics import TargetMetrics

from .client import _kubernetes
from .pod_watch import PodWatcher
from .readers import Readers, SliceReader, ViewCallback
from .slices import SERVICE_NAME_LABEL
from .stream import Expired, StreamThread, json_body, list_pages, watch_error, watch_events
from .watch_policy import RetryPolicy, parse_retry_after, retry_delay, watch_was_healthy

log = logging.getLogger(__name__)

LIST_PAGE = 500
WATCH_SECONDS = (240, 360)  # server-side timeout of one watch, randomized like client-go
QUICK_END = 1.0  # a stream that ends sooner without an event counts as a failure
WATCH_FORBIDDEN_RETRY = 60.0  # seconds between watch attempts while watch is forbidden

ApiClient = Any  # kubernetes.client.ApiClient (imported lazily: mode="dns" never loads it)


class _Failed(Exception):
    """A request the API refused or did not answer: the error, the verb that failed, and
    the server's ``Retry-After`` (seconds), if it sent one."""

    def __init__(self, error: KubernetesError, verb: str, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.verb = verb
        self.retry_after = retry_after


class SliceWatcher:
    """Lists a Service's EndpointSlices, then watches them, on a named daemon thread.

    Each :class:`SliceReader` (the one made with the watcher, :attr:`reader`, and those
    that :meth:`join` later) gets ``on_view(endpoints, None)`` after each list and every
    change of its usable endpoints, ``on_view(None, error)`` once when the API stops
    being readable (forbidden, unauthorized, unreachable, failing), and its endpoints
    again once it is. A reader that joins a watcher that has listed gets the current
    view (or the current error) at once. Retries follow
    :func:`dnsbalance._kube.watch_policy.retry_delay` over the whole list-and-watch
    cycle; a failed watch resumes from the last resourceVersion (a re-list only after
    410 Expired). A watch that is forbidden while list works (a Role without ``watch``)
    logs one WARNING and re-lists every ``relist_interval`` seconds (the shortest its
    readers ask for) instead, trying the watch again every ``WATCH_FORBIDDEN_RETRY``
    seconds. ``list_once()`` lists on the caller's thread and raises; ``first_view()``
    is a joining reader's first view.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        namespace: str,
        service: str,
        port: int | str | None,
        include_terminating: bool = False,
        on_view: ViewCallback | None = None,
        name: str = "dnsbalance-watch",
        rng: random.Random | None = None,
        metrics: TargetMetrics | None = None,
        relist_interval: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        client, _, _ = _kubernetes()
        self._api = client.DiscoveryV1Api(api_client)
        self.namespace = namespace
        self.service = service
        self._name = name
        self._rng = rng or random.Random()
        self._retry = retry or RetryPolicy()
        self.reader = SliceReader(
            port,
            include_terminating=include_terminating,
            on_view=on_view,
            metrics=metrics,
            relist_interval=relist_interval,
        )
        self._readers = Readers(self.reader, name=name, namespace=namespace, service=service)
        self._default_relist = relist_interval
        self._list_lock = threading.Lock()  # held for a whole list: one at a time
        self._selector = f"{SERVICE_NAME_LABEL}={service}"
        self._rv: str | None = None
        self._first_watch = True  # no watch has ended since the last list
        self._watch_warned = False
        self._stream = StreamThread(name, self._run)
        self._stop = self._stream.stopping
        self.polling = False  # the watch is forbidden: re-listing every relist_interval
        self.pods = PodWatcher(
            api_client,
            namespace=namespace,
            service=service,
            on_change=self._readers.pods_changed,
            name=f"{name}-pods",
            rng=self._rng,
            retry=self._retry,
        )

    @property
    def on_view(self) -> ViewCallback | None:
        return self.reader.on_view

    @property
    def _relist_interval(self) -> float:
        return self._readers.relist_interval(self._default_relist)

    # -- readers ----------------------------------------------------------------------

    def join(
        self,
        port: int | str | None,
        *,
        include_terminating: bool = False,
        on_view: ViewCallback | None = None,
        metrics: TargetMetrics | None = None,
        relist_interval: float = 5.0,
    ) -> SliceReader:
        """A new reader of this watch. When the watch has listed, it gets the current
        view (or the current error) now, on this thread; else with the first list."""
        reader = SliceReader(
            port,
            include_terminating=include_terminating,
            on_view=on_view,
            metrics=metrics,
            relist_interval=relist_interval,
        )
        self._readers.join(reader)
        return reader

    def leave(self, reader: SliceReader) -> int:
        """``reader`` reads no more (idempotent); returns how many readers are left."""
        return self._readers.leave(reader)

    # -- the caller's side ----------------------------------------------------------

    def list_once(self) -> tuple[Endpoint, ...]:
        """List the slices now (raises KubernetesError) and return :attr:`reader`'s
        usable endpoints. Other readers get the new view."""
        with self._list_lock:
            self._list_here(self.reader)
        return self._readers.view(self.reader)

    def first_view(self, reader: SliceReader) -> tuple[Endpoint, ...]:
        """Mode "api"'s first view for ``reader``: the watch's current view when it has
        listed, its current error (raised) while the API is not readable, else (a new
        watch) a list now on this thread, after one in progress on the watcher's thread.
        Raises KubernetesError."""
        with self._list_lock:
            view = self._readers.current(reader)
            if view is None:
                self._list_here(reader)
                view = self._readers.view(reader)
        return view

    def _list_here(self, reader: SliceReader) -> None:
        try:
            self._list_now(skip=reader)
        except _Failed as failed:
            raise failed.error from failed.__cause__

    def _list_now(self, skip: SliceReader | None = None, *, only_changes: bool = False) -> None:
        """List, and hand the readers the result (see :meth:`Readers.listed_now`). Hold
        _list_lock. Raises _Failed."""
        try:
            items, rv = self._list()
        except KubernetesError as exc:  # a list that does not end, a body that is no object
            raise _Failed(exc, "list", None) from exc
        self._rv = rv
        self._first_watch = True
        self._readers.listed_now(items, skip=skip, only_changes=only_changes)

    def start(self) -> None:
        """Start the threads, the pods' too (idempotent; never again after :meth:`stop`)."""
        self._stream.start()
        self.pods.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop watching: closes the open streams and joins the threads. Idempotent."""
        self._stop.set()
        self.pods.stop(timeout)
        self._stream.stop(timeout)

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        outage_started = 0.0
        forbidden_since: float | None = None  # the watch is forbidden: polling since then
        while not self._stop.is_set():
            retry_after: float | None = None
            try:
                if forbidden_since is not None:
                    self._relist()
                    failures = 0
                    if time.monotonic() - forbidden_since < WATCH_FORBIDDEN_RETRY:
                        self._stop.wait(self._relist_interval)
                        continue
                elif self._rv is None:
                    self._first_list()
                healthy = self._watch()
                if forbidden_since is not None:
                    log.info("%s: watching endpointslices is allowed again", self._name)
                    forbidden_since = None
                    self.polling = False
                if healthy is None:
                    continue  # open a while, then ended or cut: resume at once
                if healthy:
                    failures = 0
                    continue
                # The stream ended at once without an event (a proxy or an API that ends
                # watches at once): resume from the same rv, on the backoff schedule.
            except Expired:
                if not self._first_watch:  # resumed from an old rv: list again at once
                    log.debug("%s: resourceVersion expired; listing again", self._name)
                    self._rv = None
                    continue
                self._rv = None  # 410 on the first watch after a list: not normal; back off
            except _Failed as failed:
                if self._stop.is_set():
                    return
                if failed.verb == "watch" and failed.error.status == 403:
                    forbidden_since = time.monotonic()
                    if not self.polling:
                        self.polling = True
                        self._warn_watch_forbidden(failed.error)
                    self._stop.wait(self._relist_interval)
                    continue
                retry_after = failed.retry_after
                self._report(failed.error)
            except Exception as exc:  # a bug or a broken stream: never die
                if self._stop.is_set():
                    return
                log.debug("%s: watch failed: %r", self._name, exc, exc_info=True)
            if self._stop.is_set():
                return
            now = time.monotonic()
            if failures == 0:
                outage_started = now
            failures += 1
            self._stop.wait(
                retry_delay(
                    failures, now - outage_started, self._retry, self._rng, retry_after=retry_after
                )
            )

    def _warn_watch_forbidden(self, error: KubernetesError) -> None:
        if self._watch_warned:
            return
        self._watch_warned = True
        log.warning(
            '%s: can list but not watch endpointslices.discovery.k8s.io in namespace "%s" '
            '(HTTP %s %s): re-listing every %g s instead; add "watch" to the Role\'s verbs '
            "(manifests/rbac.yaml) to follow changes within a second",
            self._name,
            self.namespace,
            error.status,
            error.reason,
            self._relist_interval,
        )

    def _first_list(self) -> None:
        """List (the first time, or after 410) and hand every reader its view, unless a
        caller's :meth:`first_view` listed meanwhile (and handed it on)."""
        with self._list_lock:
            if self._rv is None:
                self._list_now()

    def _relist(self) -> None:
        """Polling without a watch: list, and hand on the views that changed (every view
        when the API is readable again)."""
        with self._list_lock:
            self._list_now(only_changes=True)

    def _report(self, error: KubernetesError) -> None:
        """Hand ``error`` on once per outage (a new status counts as a new outage)."""
        last = self._readers.reported
        if last is not None and (last.status, last.reason) == (error.status, error.reason):
            log.debug("%s: %s", self._name, error)
            return
        self._readers.emit(error)

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        return list_pages(
            lambda token: self._call(limit=LIST_PAGE, _continue=token, _request_timeout=(5, 60)),
            "EndpointSlice",
        )

    def _call(self, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._api.list_namespaced_endpoint_slice(
                self.namespace,
                label_selector=self._selector,
                _preload_content=False,
                **kwargs,
            )
            body = json_body(resp)
        except Exception as exc:
            raise self._failed(exc, "list") from exc
        if not isinstance(body, dict):
            raise KubernetesError("EndpointSlice list: the API answered no JSON object")
        return body

    def _failed(self, exc: BaseException, verb: str) -> _Failed:
        error = api_error(
            exc, verb=verb, resource="endpointslices.discovery.k8s.io", namespace=self.namespace
        )
        headers = getattr(exc, "headers", None)
        retry_after = None
        if headers is not None and hasattr(headers, "get"):
            retry_after = parse_retry_after(headers.get("Retry-After"))
        return _Failed(error, verb, retry_after)

    def _watch(self) -> bool | None:
        """One watch stream, to its end. True: healthy (see watch_was_healthy), the
        schedule resets; False: ended at once without an event, a failure; None: open
        a while without events, neither."""
        seconds = self._rng.randint(*WATCH_SECONDS)
        started = time.monotonic()
        try:
            resp = self._api.list_namespaced_endpoint_slice(
                self.namespace,
                label_selector=self._selector,
                watch=True,
                resource_version=self._rv,
                allow_watch_bookmarks=True,
                timeout_seconds=seconds,
                _preload_content=False,
                _request_timeout=(5, seconds + 30),
            )
        except Exception as exc:
            failed = self._failed(exc, "watch")
            if failed.error.status == 410:  # "too old resourceVersion" as an HTTP status
                raise Expired() from exc
            raise failed from exc
        if not self._stream.hold(resp):
            return True
        if self._readers.reported is not None:  # open again: the view is current
            self._readers.emit(None)
        events = 0
        try:
            for event in watch_events(resp):
                events += 1
                self._apply(event)
                if self._stop.is_set():
                    return True
        except Expired:
            raise
        except KubernetesError as exc:  # an ERROR event other than 410
            raise _Failed(exc, "watch", None) from exc
        except Exception as exc:  # the stream broke (cut, reset): resume from the last rv
            if self._stop.is_set():
                return True
            log.debug("%s: watch stream ended: %r", self._name, exc)
        finally:
            self._stream.release(resp)
        self._first_watch = False
        self._readers.watch_restarted()
        up_for = time.monotonic() - started
        if watch_was_healthy(up_for, events, self._retry):
            return True
        return None if up_for >= QUICK_END else False

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            raise watch_error(obj, "endpointslices")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv = str(rv)
        if kind in ("ADDED", "MODIFIED", "DELETED"):  # not BOOKMARK, nor unknown types
            self._readers.event(kind, obj)
