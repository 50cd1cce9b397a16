"""The client's own zone (I/O): the ``zone=`` argument, ``DNSBALANCE_ZONE``, or its Node.

Order, first that applies:

1. ``zone=`` passed to ``resolve_channel`` (checked as a label value at the door);
2. the ``DNSBALANCE_ZONE`` environment variable (the same check; a bad value is a
   :class:`~dnsbalance.ConfigError`, never silently ignored);
3. when ``NODE_NAME`` is set (the downward API's ``spec.nodeName``) and the API is
   configured: the Node's ``topology.kubernetes.io/zone`` label, read once with the
   official client (``CoreV1Api.read_node``), on a named daemon thread, never on a
   call's path. Needs ``get`` on ``nodes`` (``manifests/rbac-topology.yaml``). An error
   that may pass (unreachable, 5xx, 429) is retried on the watcher's backoff schedule
   (:func:`dnsbalance._kube.watch_policy.retry_delay`: fast at first, then at most every
   30 s); an answer that will not change by retrying (403 forbidden, 404 no such Node,
   no zone label, a label the API would refuse) ends the lookup, with one INFO line
   saying why calls use every zone.

kube-proxy reads the same label from its own Node (``CategorizeEndpoints``'s
``topologyLabels[v1.LabelTopologyZone]``); a node without it routes to every endpoint.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dnsbalance._exceptions import ConfigError, KubernetesError, api_error

from .topology import ZONE_LABEL, valid_node_name, valid_zone_name
from .watch_policy import RetryPolicy, parse_retry_after, retry_delay

log = logging.getLogger(__name__)

ZONE_ENV = "DNSBALANCE_ZONE"
NODE_NAME_ENV = "NODE_NAME"
ApiClient = Any


@dataclass(frozen=True)
class ZoneSource:
    """Where the zone comes from, decided before any I/O.

    ``zone`` is known now (from the argument or the environment), or ``node`` names
    the Node to read it from, or neither (``why`` says why no zone is known).
    """

    zone: str | None
    node: str | None
    origin: str  # "argument", "DNSBALANCE_ZONE", "node", "none"
    why: str = ""


def zone_source(zone: str | None, environ: Mapping[str, str] | None = None) -> ZoneSource:
    """The zone from ``zone=`` or ``DNSBALANCE_ZONE``, else the Node to ask (from
    ``NODE_NAME``), else none. Raises ConfigError for a zone or node name the API
    would refuse."""
    env = os.environ if environ is None else environ
    node = env.get(NODE_NAME_ENV) or None
    if node is not None and not valid_node_name(node):
        raise ConfigError(
            f"{NODE_NAME_ENV}={node!r} is not a node name (a lowercase DNS subdomain); "
            "set it from the downward API: fieldRef fieldPath spec.nodeName"
        )
    if zone is not None:
        if not isinstance(zone, str) or not valid_zone_name(zone):
            raise ConfigError(
                f"zone must be a zone name (a label value: at most 63 characters, "
                f"alphanumeric at both ends, '-', '_' or '.' inside), got {zone!r}"
            )
        return ZoneSource(zone, node, "argument")
    from_env = env.get(ZONE_ENV)
    if from_env:
        if not valid_zone_name(from_env):
            raise ConfigError(
                f"{ZONE_ENV}={from_env!r} is not a zone name (a label value: at most 63 "
                "characters, alphanumeric at both ends, '-', '_' or '.' inside)"
            )
        return ZoneSource(from_env, node, ZONE_ENV)
    if node is not None:
        return ZoneSource(None, node, "node")
    return ZoneSource(
        None,
        None,
        "none",
        f"no zone known: pass zone=, set {ZONE_ENV}, or set {NODE_NAME_ENV} from the "
        "downward API (spec.nodeName) with get on nodes (manifests/rbac-topology.yaml)",
    )


@dataclass(frozen=True)
class ZoneAnswer:
    """One attempt to read the Node's zone: the zone, or why not; ``final`` when
    retrying cannot change the answer."""

    zone: str | None
    final: bool
    why: str = ""
    error: KubernetesError | None = None
    retry_after: float | None = None


def read_node_zone(api_client: ApiClient, node: str) -> ZoneAnswer:
    """GET the Node once and read its ``topology.kubernetes.io/zone`` label."""
    from kubernetes import client

    try:
        obj = client.CoreV1Api(api_client).read_node(node, _request_timeout=(5, 10))
    except Exception as exc:
        error = api_error(exc, verb="get", resource=f'nodes "{node}"')
        headers = getattr(exc, "headers", None)
        retry_after = None
        if headers is not None and hasattr(headers, "get"):
            retry_after = parse_retry_after(headers.get("Retry-After"))
        if error.status in (401, 403):
            why = f"the Node {node!r} cannot be read ({error}); grant get on nodes with " + (
                "manifests/rbac-topology.yaml"
            )
            return ZoneAnswer(None, True, why, error)
        if error.status == 404:
            return ZoneAnswer(None, True, f"there is no Node {node!r} ({NODE_NAME_ENV})", error)
        return ZoneAnswer(None, False, str(error), error, retry_after)
    labels = getattr(getattr(obj, "metadata", None), "labels", None) or {}
    value = labels.get(ZONE_LABEL) if isinstance(labels, Mapping) else None
    if not value:
        return ZoneAnswer(None, True, f"the Node {node!r} has no {ZONE_LABEL} label")
    if not valid_zone_name(value):
        return ZoneAnswer(None, True, f"the Node {node!r} has a bad {ZONE_LABEL} {value!r}")
    return ZoneAnswer(str(value), True)


class NodeZoneLookup:
    """Reads the Node's zone on a named daemon thread until it has a final answer.

    ``on_answer(answer)`` once, with the final answer (a zone, or why none). Errors
    that may pass are retried (``retry``, the watcher's schedule) and logged at DEBUG;
    the final "no zone" answer is logged once at INFO. :meth:`stop` ends it.
    """

    def __init__(
        self,
        api_client: ApiClient,
        node: str,
        *,
        on_answer: Callable[[ZoneAnswer], None],
        name: str = "dnsbalance-node-zone",
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        read: Callable[[ApiClient, str], ZoneAnswer] = read_node_zone,
    ) -> None:
        self._api_client = api_client
        self.node = node
        self._on_answer = on_answer
        self._name = name
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._read = read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.attempts = 0
        self.answer: ZoneAnswer | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop retrying and join the thread. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait(self, timeout: float) -> ZoneAnswer | None:
        """The final answer, waiting up to ``timeout`` seconds for it (tests, tools)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.answer

    def _run(self) -> None:
        started = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            self.attempts += 1
            try:
                answer = self._read(self._api_client, self.node)
            except Exception as exc:  # a bug or an odd failure: retried, never fatal
                answer = ZoneAnswer(None, False, f"{type(exc).__name__}: {exc}")
            if answer.final:
                self.answer = answer
                if answer.zone is None:
                    log.info("%s: calls use every zone: %s", self._name, answer.why)
                else:
                    log.debug("%s: node %s is in zone %s", self._name, self.node, answer.zone)
                try:
                    self._on_answer(answer)
                except Exception:
                    log.exception("%s: zone callback failed", self._name)
                return
            failures += 1
            log.debug("%s: reading node %s: %s", self._name, self.node, answer.why)
            delay = retry_delay(
                failures,
                time.monotonic() - started,
                self._retry,
                self._rng,
                retry_after=answer.retry_after,
            )
            self._stop.wait(delay)
