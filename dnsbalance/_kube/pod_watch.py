"""The Kubernetes side (I/O): a Service's pods, listed and watched for their readiness.

:class:`PodWatcher` runs beside a :class:`~dnsbalance._kube.watch.SliceWatcher` (which
starts and stops it, so it is shared as the slices are) and hands the Service's Ready
pods (:mod:`dnsbalance._kube.pods`) to the slices' readers, so that a pod made Ready is
used as soon as the API says so, not after the EndpointSlice controller has written it.
It is an accelerator, never a source: whatever goes wrong, the slices alone decide.

- It reads the Service once for its selector (``get services``), then lists and watches
  the pods the selector matches (``list`` and ``watch`` on pods). Without access (403),
  without the Service (404), or for a Service without a selector, it logs once (INFO)
  and stops for the life of the process (asking again would cost every client of a
  fleet without the Role a refused request each time): the slices decide, as they did
  before. Anything else (401 while a token rotates, 5xx, a cut) is retried on the
  watch's schedule.
- While its watch is down (an error, a cut stream, a back-off) it hands on no Ready
  pods, and it comes back with a list: a readiness it may have missed never counts.
- A stream the server ends (its timeout) resumes from the last resourceVersion; 410
  lists again.

Costs: a second watch per Service and API identity per process (pods' status changes:
rare when the pods are steady), one list of the selected pods per start or 410, and a
pod UID and IP per Ready pod in memory.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from dnsbalance._exceptions import KubernetesError, api_error

from .client import _kubernetes
from .pods import ReadyPairs, ReadyPods, selector_of
from .stream import Expired, StreamThread, json_body, list_pages, watch_error, watch_events
from .watch_policy import RetryPolicy, retry_delay, watch_was_healthy

log = logging.getLogger(__name__)

LIST_PAGE = 500
WATCH_SECONDS = (240, 360)  # as the slices' watch: randomized like client-go
NO_ACCESS = (403, 404)  # not followed (for this process): the slices alone decide
ACCESS = (("get", "services"), ("list", "pods"), ("watch", "pods"))
"""(verb, resource) of every request the watcher makes, in its namespace (core group):
what manifests/rbac-pods.yaml grants and ``dnsbalance check`` asks the authorizer for."""

ApiClient = Any


class PodWatcher:
    """Follows the Ready pods of ``namespace/service`` on a daemon thread and hands each
    change to ``on_change`` (an empty set while they are not followed)."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        namespace: str,
        service: str,
        on_change: Callable[[ReadyPairs], None],
        name: str = "dnsbalance-pods",
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        client, _, _ = _kubernetes()
        self._api = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.service = service
        self._on_change = on_change
        self._name = name
        self._rng = rng or random.Random()
        self._retry = retry or RetryPolicy()
        self._pods = ReadyPods()
        self._handed: ReadyPairs = frozenset()
        self._rv: str | None = None
        self._stream = StreamThread(name, self._run)
        self._stop = self._stream.stopping
        self.following = False  # the thread lists and watches (False once it gave up)

    def start(self) -> None:
        """Start the thread (idempotent; never again after :meth:`stop`)."""
        self._stream.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop: closes the open stream and joins the thread. Idempotent."""
        self._stream.stop(timeout)

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        outage_started = 0.0
        selector: str | None = None
        self.following = True
        while not self._stop.is_set():
            try:
                if selector is None:
                    selector = self._selector()
                    if selector is None:
                        break
                if self._rv is None:
                    self._list(selector)
                if self._watch(selector):
                    failures = 0
                    continue
            except Expired:
                self._rv = None
                if failures == 0:
                    failures = 1  # at most one re-list at once, then the schedule
                    outage_started = time.monotonic()
                    continue
            except KubernetesError as exc:
                if exc.status in NO_ACCESS:
                    self._give_up(exc)
                    break
                log.debug("%s: %s", self._name, exc)
            except Exception as exc:  # a bug or a broken stream: never die
                log.debug("%s: pod watch failed: %r", self._name, exc, exc_info=True)
            if self._stop.is_set():
                break
            self._hand_on(frozenset())  # down: nothing it may have missed stays
            self._rv = None  # and back up from a list, never from what it last knew
            now = time.monotonic()
            if failures == 0:
                outage_started = now
            failures += 1
            self._stop.wait(retry_delay(failures, now - outage_started, self._retry, self._rng))
        self.following = False
        self._hand_on(frozenset())

    def _give_up(self, error: KubernetesError) -> None:
        log.info(
            "%s: not following the pods of %s.%s (%s): a pod's readiness is followed "
            "once the EndpointSlice controller writes it (its slices decide, as "
            "without pods); grant get on services and list, watch on pods "
            "(manifests/rbac-pods.yaml) to follow it as soon as the pod's status changes",
            self._name,
            self.service,
            self.namespace,
            error,
        )

    def _selector(self) -> str | None:
        """The Service's selector, or ``None`` (logged) when it has none."""
        try:
            resp = self._api.read_namespaced_service(
                self.service, self.namespace, _preload_content=False, _request_timeout=(5, 30)
            )
            body = json_body(resp)
        except Exception as exc:
            raise api_error(exc, verb="get", resource="services", namespace=self.namespace) from exc
        selector = selector_of(body)
        if selector is None:
            log.debug("%s: %s.%s selects no pods", self._name, self.service, self.namespace)
        return selector

    def _list(self, selector: str) -> None:
        items, rv = list_pages(
            lambda token: self._call(
                selector, limit=LIST_PAGE, _continue=token, _request_timeout=(5, 60)
            ),
            "pod",
        )
        self._rv = rv or None
        self._pods.reset(items)
        self._hand_on(self._pods.pairs)

    def _call(self, selector: str, **kwargs: Any) -> Mapping[str, Any]:
        try:
            resp = self._api.list_namespaced_pod(
                self.namespace, label_selector=selector, _preload_content=False, **kwargs
            )
            body = json_body(resp)
        except Exception as exc:
            raise api_error(exc, verb="list", resource="pods", namespace=self.namespace) from exc
        if not isinstance(body, dict):
            raise KubernetesError("pod list: the API answered no JSON object")
        return body

    def _watch(self, selector: str) -> bool:
        """One watch stream, to its end; whether it was healthy (the schedule resets)."""
        seconds = self._rng.randint(*WATCH_SECONDS)
        started = time.monotonic()
        try:
            resp = self._api.list_namespaced_pod(
                self.namespace,
                label_selector=selector,
                watch=True,
                resource_version=self._rv,
                allow_watch_bookmarks=True,
                timeout_seconds=seconds,
                _preload_content=False,
                _request_timeout=(5, seconds + 30),
            )
        except Exception as exc:
            error = api_error(exc, verb="watch", resource="pods", namespace=self.namespace)
            if error.status == 410:
                raise Expired() from exc
            raise error from exc
        if not self._stream.hold(resp):
            return True
        events = 0
        try:
            for event in watch_events(resp):
                events += 1
                self._apply(event)
                if self._stop.is_set():
                    return True
        finally:
            self._stream.release(resp)
        return watch_was_healthy(time.monotonic() - started, events, self._retry)

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            raise watch_error(obj, "pods")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv = str(rv)
        if kind in ("ADDED", "MODIFIED", "DELETED") and self._pods.apply(kind, obj):
            self._hand_on(self._pods.pairs)

    def _hand_on(self, pairs: ReadyPairs) -> None:
        if pairs == self._handed:
            return
        self._handed = pairs
        try:
            self._on_change(pairs)
        except Exception:
            log.exception("%s: pod readiness callback failed", self._name)
