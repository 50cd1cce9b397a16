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
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dnsbalance._endpoints import Endpoint
from dnsbalance._exceptions import KubernetesError, api_error
from dnsbalance._metrics import TargetMetrics

from .client import _kubernetes
from .slices import SERVICE_NAME_LABEL, SliceSet, suggested_port
from .watch_policy import RetryPolicy, parse_retry_after, retry_delay, watch_was_healthy

log = logging.getLogger(__name__)

LIST_PAGE = 500
WATCH_SECONDS = (240, 360)  # server-side timeout of one watch, randomized like client-go
QUICK_END = 1.0  # a stream that ends sooner without an event counts as a failure
WATCH_FORBIDDEN_RETRY = 60.0  # seconds between watch attempts while watch is forbidden

ApiClient = Any  # kubernetes.client.ApiClient (imported lazily: mode="dns" never loads it)


class _Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


class _Failed(Exception):
    """A request the API refused or did not answer: the error, the verb that failed, and
    the server's ``Retry-After`` (seconds), if it sent one."""

    def __init__(self, error: KubernetesError, verb: str, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.verb = verb
        self.retry_after = retry_after


ViewCallback = Callable[[tuple[Endpoint, ...] | None, KubernetesError | None], None]


class SliceWatcher:
    """Lists a Service's EndpointSlices, then watches them, on a named daemon thread.

    ``on_view(endpoints, None)`` after the first list and every change of the usable
    endpoints; ``on_view(None, error)`` once when the API stops being readable
    (forbidden, unauthorized, unreachable, failing), and the endpoints again once it
    is. Retries follow :func:`dnsbalance._kube.watch_policy.retry_delay` over the whole
    list-and-watch cycle; a failed watch resumes from the last resourceVersion (a
    re-list only after 410 Expired). A watch that is forbidden while list works (a
    Role without ``watch``) logs one WARNING and re-lists every ``relist_interval``
    seconds instead, trying the watch again every ``WATCH_FORBIDDEN_RETRY`` seconds.
    ``list_once()`` lists on the caller's thread and raises.
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
        self._metrics = metrics
        client, _, _ = _kubernetes()
        self._api = client.DiscoveryV1Api(api_client)
        self.namespace = namespace
        self.service = service
        self.on_view = on_view
        self._name = name
        self._rng = rng or random.Random()
        self._retry = retry or RetryPolicy()
        self._relist_interval = relist_interval
        self._slices = SliceSet(port, include_terminating=include_terminating)
        self._selector = f"{SERVICE_NAME_LABEL}={service}"
        self._rv: str | None = None
        self._first_watch = True  # no watch has ended since the last list
        self._reported: KubernetesError | None = None  # the error last handed to on_view
        self._watch_warned = False
        self._port = port
        self._port_warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resp_lock = threading.Lock()
        self._resp: Any = None
        self.polling = False  # the watch is forbidden: re-listing every relist_interval

    # -- the caller's side ----------------------------------------------------------

    def list_once(self) -> tuple[Endpoint, ...]:
        """List the slices now (raises KubernetesError) and return the usable endpoints."""
        try:
            return self._list_now()
        except _Failed as failed:
            raise failed.error from failed.__cause__

    def _list_now(self) -> tuple[Endpoint, ...]:
        """``list_once`` for the thread: raises _Failed."""
        try:
            items, rv = self._list()
        except KubernetesError as exc:  # a list that does not end, a body that is no object
            raise _Failed(exc, "list", None) from exc
        self._slices.reset(items)
        self._rv = rv
        self._first_watch = True
        self._check_port()
        return self._slices.view()

    def _check_port(self) -> None:
        """One WARNING when a numeric target port is none of the pods' ports."""
        if self._port_warned:
            return
        served = self._slices.port_mismatch()
        if not served:
            return
        self._port_warned = True
        listed = ", ".join(f"{name}={number}" if name else str(number) for name, number in served)
        log.warning(
            "%s: port %s is none of the ports the pods of %s.%s serve (%s): every call "
            "will fail. A headless Service is dialed at the pods' (target) port, not the "
            "Service port; use the target %s.%s:%s",
            self._name,
            self._port,
            self.service,
            self.namespace,
            listed,
            self.service,
            self.namespace,
            suggested_port(served),
        )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop watching: closes the open stream and joins the thread. Idempotent."""
        self._stop.set()
        with self._resp_lock:
            resp, self._resp = self._resp, None
        if resp is not None:
            try:
                resp.shutdown() if hasattr(resp, "shutdown") else resp.close()
            except Exception:  # closing from another thread may race the reader
                log.debug("%s: closing the watch stream", self._name, exc_info=True)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

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
                    self._list_now()
                    self._emit()
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
            except _Expired:
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

    def _relist(self) -> None:
        """Polling without a watch: list, and hand on the view when it changed (or the API
        is readable again)."""
        before = self._slices.view()
        self._list_now()
        if self._reported is not None or not self._slices.view().same(before):
            self._emit()

    def _report(self, error: KubernetesError) -> None:
        """Hand ``error`` on once per outage (a new status counts as a new outage)."""
        last = self._reported
        if last is not None and (last.status, last.reason) == (error.status, error.reason):
            log.debug("%s: %s", self._name, error)
            return
        self._emit(error)

    def _emit(self, error: KubernetesError | None = None) -> None:
        self._reported = error
        if self.on_view is None:
            return
        try:
            self.on_view(None if error else self._slices.view(), error)
        except Exception:
            log.exception("%s: view callback failed", self._name)

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(10_000):  # pages; bounded
            body = self._call(limit=LIST_PAGE, _continue=token, _request_timeout=(5, 60))
            items.extend(i for i in body.get("items") or () if isinstance(i, dict))
            metadata = body.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                return items, str(metadata.get("resourceVersion") or "")
        raise KubernetesError("EndpointSlice list did not end after 10000 pages")

    def _call(self, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._api.list_namespaced_endpoint_slice(
                self.namespace,
                label_selector=self._selector,
                _preload_content=False,
                **kwargs,
            )
            try:
                body = json.loads(resp.data)
            finally:
                resp.release_conn()
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
                raise _Expired() from exc
            raise failed from exc
        with self._resp_lock:
            if self._stop.is_set():
                resp.close()
                return True
            self._resp = resp
        if self._reported is not None:  # the watch is open again: the view is current
            self._emit()
        events = 0
        try:
            for event in _events(resp):
                events += 1
                self._apply(event)
                if self._stop.is_set():
                    return True
        except _Expired:
            raise
        except KubernetesError as exc:  # an ERROR event other than 410
            raise _Failed(exc, "watch", None) from exc
        except Exception as exc:  # the stream broke (cut, reset): resume from the last rv
            if self._stop.is_set():
                return True
            log.debug("%s: watch stream ended: %r", self._name, exc)
        finally:
            with self._resp_lock:
                self._resp = None
            resp.close()
            resp.release_conn()
        self._first_watch = False
        if self._metrics is not None:
            self._metrics.watch_restart()
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
            if obj.get("code") == 410:
                raise _Expired()
            raise KubernetesError(
                f"watch of endpointslices failed: {obj.get('reason')}: {obj.get('message')}",
                status=obj.get("code") if isinstance(obj.get("code"), int) else None,
                reason=str(obj.get("reason") or ""),
            )
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv = str(rv)
        if kind == "BOOKMARK":
            return
        before = self._slices.view()
        if kind in ("ADDED", "MODIFIED"):
            self._slices.upsert(obj)
            self._check_port()
        elif kind == "DELETED":
            self._slices.delete(obj)
        else:
            return
        if not self._slices.view().same(before):
            self._emit()


def _events(resp: Any) -> Iterator[dict[str, Any]]:
    """The JSON events of a watch response, one per line."""
    _, _, watch = _kubernetes()
    for line in watch.iter_resp_lines(resp):
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("skipping a watch line that is not JSON: %.100r", line)
            continue
        if isinstance(event, dict):
            yield event
