"""Watch events and watchers: what one open watch stream has still to send.

The store queues each committed event to every matching watcher under its lock; the
HTTP side takes them out. A watcher's filter follows the watch cache: an object that
stops matching is seen as DELETED (its previous state at the event's resourceVersion),
one that starts matching as ADDED.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .kinds import Resource
from .selectors import FieldSelector, LabelSelector, field_value

__all__ = ["MAX_QUEUED_EVENTS", "Event", "Watcher", "bookmark"]

JSON = dict[str, Any]
MAX_QUEUED_EVENTS = 10_000  # a watcher this far behind is ended, as the cacher does

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
