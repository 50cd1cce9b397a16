"""The thread driver of modes "auto" and "api": DNS poller + EndpointSlice watcher -> channel.

Decisions are :func:`dnsbalance._merge.agree.agree`'s. This module only runs one
merge thread that re-evaluates when DNS or the API changes, or a deadline
passes; re-polls DNS every 0.2 s while the API has endpoints DNS lacks; applies the
topology rules (:mod:`dnsbalance._kube.topology`, kube-proxy's) to the agreed set;
publishes the result on the local DNS server (with ``subset_size``, the client's subset
of it, drawn last: :mod:`dnsbalance._channel.subset`); and hands the whole result to the
channel (which dials the same subset of it).

Topology comes after agreement, decided over the API's whole ready set: DNS publishes
every zone, so the cross-check compares DNS with every ready endpoint and a zone's
subset never shows as a discrepancy. It is decided again on every evaluation (every
slice change, every DNS change); the channel is rebuilt only when the resulting set
changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, Protocol

from dnsbalance._channel.config import channel_port
from dnsbalance._channel.local_dns import LocalName
from dnsbalance._channel.subset import Subsetting, dialed
from dnsbalance._endpoints import Discrepancy, Endpoint
from dnsbalance._exceptions import KubernetesError
from dnsbalance._kube.slices import ApiEndpoints
from dnsbalance._kube.topology import Placement, TopologyChoice, applied, decide
from dnsbalance._metrics import metrics_for
from dnsbalance._poll.policy import PollState

from .agree import REPOLL_INTERVAL, MergeState, agree, dialable

if TYPE_CHECKING:
    from dnsbalance._target import Target


log = logging.getLogger(__name__)

DEFAULT_TTL = 5


class PollerView(Protocol):
    """What the merge needs of a DNS poller, thread or asyncio driver alike."""

    @property
    def endpoints(self) -> tuple[Endpoint, ...]: ...

    @property
    def state(self) -> PollState: ...

    def poll_now(self) -> None: ...


Sink = Callable[[tuple[Endpoint, ...]], None]


def fallback_warning(error: KubernetesError | None, namespace: str) -> str:
    """The one WARNING of a fallback to DNS only: what is missing and how to fix it."""
    if error is None:
        return (
            "no Kubernetes API configuration (not in a pod, no KUBECONFIG): using DNS only; "
            'pass mode="dns" to say so'
        )
    if error.status in (401, 403):
        verb = "watch" if str(error).startswith("cannot watch") else "list"
        return (
            f'cannot {verb} endpointslices.discovery.k8s.io in namespace "{namespace}" '
            f"(HTTP {error.status} {error.reason}): using DNS only; apply "
            'manifests/rbac.yaml or pass mode="dns"'
        )
    return f"the Kubernetes API cannot be read ({error}): using DNS only until it recovers"


class MergeThread:
    """Feeds ``sink`` the endpoints DNS and the API agree on (:mod:`dnsbalance._merge.agree`)."""

    def __init__(
        self,
        *,
        name: str,
        mode: Literal["auto", "api"],
        namespace: str,
        poller: PollerView | None,
        local: LocalName,
        api_endpoints: tuple[Endpoint, ...] | None,
        api_error: KubernetesError | None = None,
        panic_mode: bool = True,
        target: Target | None = None,
        placement: Placement | None = None,
        subsetting: Subsetting | None = None,
    ) -> None:
        self._name = name
        self._subsetting = subsetting
        self._placement = placement or Placement(enabled=False)
        self.topology: TopologyChoice | None = None
        self._rule_logged: str | None = None
        self._target = target
        self._left_out_ports: tuple[int, ...] = ()
        self._panic_mode = panic_mode
        self.panic = False
        self._metrics = metrics_for(name)
        self._mode = mode
        self._namespace = namespace
        self._poller = poller
        self._local = local
        self.sink: Sink | None = None
        self._cond = threading.Condition()
        self._api = api_endpoints
        self._api_error = api_error
        self._dirty = True
        self._stopped = False
        self._state = MergeState()
        self._published: tuple[Endpoint, ...] | None = None
        self._warned: set[tuple[str, str, int]] = set()
        self._fallback_warned = False
        self.discrepancies: tuple[Discrepancy, ...] = ()
        self._thread: threading.Thread | None = None
        self._wake: float | None = None
        if mode == "auto" and api_endpoints is None:
            self._warn_fallback(api_error)

    # -- inputs (any thread) ----------------------------------------------------------

    def dns_changed(self, _change: object = None) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def api_view(
        self, endpoints: tuple[Endpoint, ...] | None, error: KubernetesError | None
    ) -> None:
        with self._cond:
            if endpoints is None and self._mode == "auto":
                self._warn_fallback(error)
            elif endpoints is not None and self._fallback_warned:
                log.warning(
                    "%s: the Kubernetes API is readable again; cross-checking DNS", self._name
                )
                self._fallback_warned = False
            elif endpoints is None:
                log.warning("%s: %s; keeping the last endpoints", self._name, error)
            self._api, self._api_error = endpoints, error
            self._dirty = True
            self._cond.notify()

    def placement_changed(self, placement: Placement) -> None:
        """The client's zone, node or Service policy became known (any thread)."""
        with self._cond:
            self._placement = placement
            self._dirty = True
            self._cond.notify()

    def _warn_fallback(self, error: KubernetesError | None) -> None:
        if not self._fallback_warned:
            self._fallback_warned = True
            log.warning("%s: %s", self._name, fallback_warning(error, self._namespace))

    # -- decisions --------------------------------------------------------------------

    def evaluate(self) -> tuple[tuple[Endpoint, ...], float | None]:
        """Decide now; publish a new set. Returns it and when to evaluate again."""
        dns = self._poller.endpoints if self._poller is not None else None
        if self._poller is not None and not self._poller.state.answered:
            dns = None
        ttl = max((ep.ttl or 0 for ep in dns or ()), default=0) or DEFAULT_TTL
        now = time.monotonic()
        with self._cond:
            api = self._api
            placement = self._placement
            self._dirty = False
        result = agree(
            self._state,
            mode=self._mode,
            dns=dns,
            api=api,
            now=now,
            window=ttl + 1.0,
            listed=api.listed if isinstance(api, ApiEndpoints) else (),
            serving=api.serving if isinstance(api, ApiEndpoints) else (),
            panic_mode=self._panic_mode,
        )
        self._state = result.state
        self._note_panic(result.panic, result.endpoints)
        self._note(result.discrepancies)
        endpoints = self._topology(result.endpoints, api, placement)
        if self._target is not None:
            endpoints, left_out = dialable(endpoints, channel_port(self._target, endpoints))
            self._note_left_out(left_out)
        if endpoints != self._published:
            self._published = endpoints
            self._local.publish(dialed(endpoints, self._subsetting))
            if self.sink is not None:
                self.sink(endpoints)
        wake: float | None = None
        if result.repoll_dns and self._poller is not None:
            self._poller.poll_now()
            wake = REPOLL_INTERVAL
        if result.next_deadline is not None:
            until = max(0.0, result.next_deadline - time.monotonic())
            wake = until if wake is None else min(wake, until)
        self._wake = wake
        return endpoints, wake

    def _topology(
        self,
        agreed: tuple[Endpoint, ...],
        api: tuple[Endpoint, ...] | None,
        placement: Placement,
    ) -> tuple[Endpoint, ...]:
        """The agreed endpoints the topology rules keep (see the module documentation)."""
        if api is None:  # DNS alone: it carries no zones
            choice = decide(agreed, replace(placement, enabled=False))
            rule = "off" if not placement.enabled else "all: no API view (DNS carries no zones)"
            choice = replace(choice, rule=rule)
        else:
            choice = decide(api, placement)
        listed = api.listed if isinstance(api, ApiEndpoints) else (api or ())
        choice = applied(agreed, choice, listed)
        self._note_topology(choice, placement)
        return choice.endpoints

    def _note_topology(self, choice: TopologyChoice, placement: Placement) -> None:
        """Metrics, and one INFO line when the rule changes (not for the quiet rules a
        channel without hints starts with, nor while the Node's zone is being read)."""
        self.topology = choice
        self._metrics.topology(choice.zone, choice.in_zone, choice.out_of_zone)
        if choice.rule == self._rule_logged:
            return
        quiet = choice.rule in ("off", "all: no hints", "all: no API view (DNS carries no zones)")
        first = self._rule_logged is None
        self._rule_logged = choice.rule
        if (first and quiet) or choice.rule.startswith("all: zone not known yet"):
            return
        why = ""
        if choice.rule == "all: no zone known" and placement.why:
            if placement.node is not None:  # the Node lookup said why already, at INFO
                return
            why = f" ({placement.why})"
        log.info("%s: topology: %s%s", self._name, choice, why)

    def _note_left_out(self, left_out: tuple[Endpoint, ...]) -> None:
        ports = tuple(sorted({ep.port for ep in left_out}))
        if ports and ports != self._left_out_ports:
            log.warning(
                "%s: %d endpoints serve this port at %s, not at the port the channel dials: "
                "left out (grpc dials one port per channel; a rollout that changes the "
                "port's number?)",
                self._name,
                len(left_out),
                ", ".join(str(p) for p in ports),
            )
        self._left_out_ports = ports

    def _note_panic(self, panic: bool, endpoints: tuple[Endpoint, ...]) -> None:
        if panic == self.panic:
            return
        self.panic = panic
        self._metrics.panic(panic)
        if panic:
            log.warning(
                "%s: no endpoint is ready in the API although it lists %d; panic mode: "
                "calling the %d that are still serving or were in use (panic_mode=False "
                "empties the channel instead)",
                self._name,
                len(self._api.listed) if isinstance(self._api, ApiEndpoints) else 0,
                len(endpoints),
            )
        else:
            log.info("%s: endpoints are ready again; panic mode over", self._name)

    def _note(self, discrepancies: tuple[Discrepancy, ...]) -> None:
        self.discrepancies = discrepancies
        self._metrics.discrepancies(len(discrepancies))
        for d in discrepancies:
            key = (d.kind, d.endpoint.address, d.endpoint.port)
            if d.kind == "panic":
                continue  # panic mode has its one WARNING (see _note_panic)
            if key not in self._warned:
                self._warned.add(key)
                log.warning("%s: DNS and the API disagree: %s", self._name, d)
        current = {(d.kind, d.endpoint.address, d.endpoint.port) for d in discrepancies}
        self._warned &= current  # a disagreement that ends may be logged again later

    # -- the thread -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"dnsbalance-merge-{self._name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        wake = self._wake  # what the caller's first evaluation asked for
        while True:
            with self._cond:
                if not self._dirty and not self._stopped:
                    self._cond.wait(wake)
                if self._stopped:
                    return
            try:
                _, wake = self.evaluate()
            except Exception:  # never die: the channel keeps its last set
                log.exception("%s: merging DNS and API views failed", self._name)
                wake = 1.0

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
