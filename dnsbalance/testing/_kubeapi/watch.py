"""Watch events and watchers: what one open watch stream has still to send.

The store queues each committed event to every matching watcher under its lock; the
HTTP side takes them out. A watcher's filter follows the watch cache: an object that
stops matching is seen as DELETED (its previous state at the event's resourceVersion),
one that starts matching as ADDED.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .kinds import Resource
from .selectors import FieldSelector, LabelSelector, field_value

__all__ = ["MAX_QUEUED_EVENTS", "BookmarkSchedule", "Event", "Watcher", "bookmark"]

JSON = dict[str, Any]
MAX_QUEUED_EVENTS = 10_000  # a watcher this far behind is ended, as the cacher does
PRE_TIMEOUT = 2.0  # the cacher bookmarks a watch this long before its timeoutSeconds

# What a BOOKMARK's object holds besides kind, apiVersion and metadata: the kind's empty
# Go struct as JSON (its fields without omitempty), as kube-apiserver writes it.
_NODE_INFO = (
    "machineID systemUUID bootID kernelVersion osImage containerRuntimeVersion "
    "kubeletVersion kubeProxyVersion operatingSystem architecture"
)
_EMPTY_BODIES: dict[str, JSON] = {
    "services": {"spec": {}, "status": {"loadBalancer": {}}},
    "endpointslices": {"addressType": "", "endpoints": None, "ports": None},
    "nodes": {
        "spec": {},
        "status": {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": dict.fromkeys(_NODE_INFO.split(), ""),
        },
    },
}


def bookmark(res: Resource, rv: str, *, initial_events_end: bool = False) -> JSON:
    """A BOOKMARK event's object: the kind's empty object carrying ``rv`` (and the
    ``k8s.io/initial-events-end`` annotation that ends the initial events)."""
    metadata: JSON = {"resourceVersion": rv}
    if initial_events_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "kind": res.kind,
        "apiVersion": res.api_version,
        "metadata": metadata,
        **copy.deepcopy(_EMPTY_BODIES.get(res.resource, {})),
    }


@dataclass
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    obj: JSON  # never mutated once committed
    prev: JSON | None


@dataclass(eq=False)
class Watcher:
    """One open watch: events queued for it by the store, taken by the HTTP side."""

    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: deque[tuple[str, JSON]] = field(default_factory=deque)
    ended: str | None = None  # "clean", "cut", "overflow", "closed"
    done: threading.Event = field(default_factory=threading.Event)

    def matches(self, obj: JSON) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if not self.labels.matches(meta.get("labels")):
            return False
        return self.fields.matches(lambda f: field_value(obj, f))

    def convert(self, event: Event) -> tuple[str, JSON] | None:
        """The event as this watcher sees it through its filter (the cacher's rules)."""
        now = event.type != "DELETED" and self.matches(event.obj)
        before = event.prev is not None and self.matches(event.prev)
        if event.type == "DELETED":
            return ("DELETED", event.obj) if self.matches(event.obj) else None
        if now and before:
            return ("MODIFIED", event.obj)
        if now:
            return ("ADDED", event.obj)
        if before and event.prev is not None:
            gone = copy.deepcopy(event.prev)
            gone["metadata"]["resourceVersion"] = str(event.rv)
            return ("DELETED", gone)
        return None


class BookmarkSchedule:
    """When one watch stream sends BOOKMARKs (all times ``time.monotonic()``).

    Only with ``allowWatchBookmarks``: one ending the initial events (``initial``); one
    every ``interval``; and one ``PRE_TIMEOUT`` s before ``end_at`` when the
    resourceVersion moved past what the stream sent (the cacher's nextBookmarkTime).
    ``sent`` is the highest resourceVersion the stream has carried (``since`` at first).
    """

    def __init__(
        self,
        *,
        enabled: bool,
        initial: bool,
        interval: float,
        start: float,
        end_at: float,
        since: int,
    ) -> None:
        self.enabled = enabled
        self.initial = initial and enabled
        self.interval = max(0.01, interval)
        self.next_at = start + self.interval if enabled else math.inf
        pre = end_at - PRE_TIMEOUT
        self.pre_timeout = pre if enabled and pre > start else math.inf
        self.sent = since

    def wait(self, now: float) -> float:
        """How long the stream may wait for events before a bookmark is due."""
        return 0.0 if self.initial else max(0.0, min(self.next_at, self.pre_timeout) - now)

    def due(self, now: float) -> bool:
        """Whether to ask for the resourceVersion a bookmark would carry."""
        return self.initial or now >= self.next_at or now >= self.pre_timeout

    def wants(self, now: float, rv: int) -> bool:
        """Whether a bookmark at ``rv`` goes out now (the pre-timeout one is asked once)."""
        wanted = self.initial or now >= self.next_at
        if now >= self.pre_timeout:
            self.pre_timeout = math.inf
            wanted = wanted or rv > self.sent
        return wanted

    def carried(self, rv: int) -> None:
        """An event (or bookmark) at ``rv`` went out."""
        self.sent = max(self.sent, rv)

    def bookmarked(self, rv: int, now: float) -> None:
        self.carried(rv)
        self.initial = False
        self.next_at = now + self.interval
