"""DNS against the API, row by row, and how the two views change over a watch.

- :func:`compare` (pure) lines up the DNS view and the API view of a target by
  (address, port), the key :mod:`dnsbalance._merge.agree` uses, and counts disagreements.
- :func:`watch_views` streams the changes of both views (DNS by polling, the API by the
  EndpointSlice watch) for ``dnsbalance resolve --watch``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dns.resolver

from dnsbalance._dns.sync import discover
from dnsbalance._endpoints import Change, Endpoint, diff, normalize
from dnsbalance._exceptions import KubernetesError, ResolutionError
from dnsbalance._kube.watch import SliceWatcher
from dnsbalance._target import Target

from .service_api import ServiceAPI
from .service_spec import is_headless, ports_of, selector_of, service_type

Source = Literal["dns", "api"]


# -- DNS vs API -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One endpoint and which views list it (None: that view was not asked)."""

    endpoint: Endpoint
    in_dns: bool | None
    in_api: bool | None

    @property
    def agrees(self) -> bool:
        return self.in_dns is None or self.in_api is None or self.in_dns == self.in_api


def compare(dns_view: Sequence[Endpoint] | None, api_view: Sequence[Endpoint] | None) -> list[Row]:
    """Every endpoint of either view, sorted, with where it appears. Endpoints are matched
    by address and port; the hostname and TTL come from whichever view has them."""
    by_key: dict[tuple[str, int], Endpoint] = {}
    for ep in [*(api_view or ()), *(dns_view or ())]:  # DNS last: its TTL wins
        known = by_key.get((ep.address, ep.port))
        hostname = ep.hostname or (known.hostname if known else None)
        by_key[(ep.address, ep.port)] = Endpoint(
            address=ep.address, port=ep.port, hostname=hostname, ttl=ep.ttl
        )
    dns_keys = {(ep.address, ep.port) for ep in dns_view or ()}
    api_keys = {(ep.address, ep.port) for ep in api_view or ()}
    return [
        Row(
            endpoint=ep,
            in_dns=None if dns_view is None else (ep.address, ep.port) in dns_keys,
            in_api=None if api_view is None else (ep.address, ep.port) in api_keys,
        )
        for ep in normalize(by_key.values())
    ]


def list_api_endpoints(api_client: Any, target: Target) -> tuple[Endpoint, ...]:
    """The ready endpoints the EndpointSlices give for ``target`` (raises KubernetesError)."""
    watcher = SliceWatcher(
        api_client, namespace=target.namespace, service=target.service, port=target.port
    )
    return watcher.list_once()


def empty_cause(api_client: Any, target: Target) -> str | None:
    """Why ``target`` has no ready endpoint, as the API tells it (None: the API cannot
    be read, or the Service looks right and simply has no ready pod right now)."""
    try:
        service = ServiceAPI(api_client, target.namespace).get(target.service)
    except KubernetesError as exc:
        if exc.status == 404:
            return f'Service "{target.service}" not found in namespace "{target.namespace}"'
        return None
    what = f"service/{target.service}"
    spec = service.get("spec") or {}
    kind = service_type(service)
    if kind == "ExternalName":
        return f"{what} is an ExternalName alias of {spec.get('externalName')}: it has no endpoints"
    ports = ports_of(service)
    names = sorted(str(p.get("name")) for p in ports if p.get("name"))
    if target.port_name is not None and target.port_name not in names:
        return (
            f"{what} has no port named {target.port_name!r} (named ports: "
            f"{', '.join(names) or 'none'})"
        )
    if not is_headless(service):
        return (
            f"{what} is a {kind} Service (clusterIP {spec.get('clusterIP')}), not headless: "
            "its DNS name gives one virtual IP, no pod addresses"
        )
    if not selector_of(service):
        return f"{what} has no selector: it has endpoints only if they are written by hand"
    return f"{what} exists and is headless, but no pod behind it is ready"


@dataclass(frozen=True)
class ViewChange:
    """One change of one view during a watch; ``change`` None with ``error`` set when the
    view could not be read (reported once per distinct error)."""

    source: Source
    elapsed: float
    change: Change | None
    error: str | None
    disagreements: int


def watch_views(
    target: Target,
    *,
    resolver: dns.resolver.Resolver | None,
    api_client: Any | None,
    dns_view: tuple[Endpoint, ...] | None,
    api_view: tuple[Endpoint, ...] | None,
    interval: float = 2.0,
    seconds: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[ViewChange]:
    """Changes of the DNS view (polled every ``interval`` s when ``resolver`` is given) and
    the API view (watched when ``api_client`` is given), starting from the views given.

    Ends after ``seconds`` (None: when ``stop`` is set, or never), stopping the watch
    thread; a KeyboardInterrupt in the caller's loop ends it too.
    """
    started = time.monotonic()
    deadline = None if seconds is None else started + seconds
    events: queue.Queue[tuple[tuple[Endpoint, ...] | None, KubernetesError | None]] = queue.Queue()
    watcher = None
    if api_client is not None:
        watcher = SliceWatcher(
            api_client,
            namespace=target.namespace,
            service=target.service,
            port=target.port,
            on_view=lambda endpoints, error: events.put((endpoints, error)),
            name=f"dnsbalance-cli-watch-{target.service}",
        )
        watcher.start()  # lists (the same view: no change to report), then watches
    views: dict[Source, tuple[Endpoint, ...] | None] = {"dns": dns_view, "api": api_view}
    errors: dict[Source, str | None] = {"dns": None, "api": None}
    next_poll = started + interval

    def disagreements() -> int:
        return sum(not row.agrees for row in compare(views["dns"], views["api"]))

    def update(
        source: Source, new: tuple[Endpoint, ...] | None, error: str | None
    ) -> ViewChange | None:
        if error is not None:
            if error == errors[source]:
                return None
            errors[source] = error
            return ViewChange(source, time.monotonic() - started, None, error, disagreements())
        errors[source] = None
        change = diff(views[source] or (), new or ())
        first = views[source] is None
        views[source] = new
        if change is None and not first:
            return None
        return ViewChange(source, time.monotonic() - started, change, None, disagreements())

    try:
        while stop is None or not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if resolver is not None and now >= next_poll:
                next_poll = now + interval
                try:
                    found = update("dns", discover(target, resolver=resolver), None)
                except ResolutionError as exc:
                    found = update("dns", None, str(exc))
                if found is not None:
                    yield found
                continue
            wait = 0.25 if stop is not None else 1.0
            if resolver is not None:
                wait = min(wait, max(0.0, next_poll - now))
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            try:
                endpoints, error = events.get(timeout=wait)
            except queue.Empty:
                continue
            found = update("api", endpoints, None if error is None else str(error))
            if found is not None:
                yield found
    finally:
        if watcher is not None:
            watcher.stop()
