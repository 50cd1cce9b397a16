"""Where the client runs (I/O): its zone (``zone=``, ``DNSBALANCE_ZONE`` or its Node's
label), its node (``NODE_NAME``), and its Service's ``internalTrafficPolicy``.

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

``internalTrafficPolicy`` (``Local``: node-local endpoints only) is on the Service, so
it is read (``CoreV1Api.read_namespaced_service``) only when the node is known and the
identity may ``get`` the Service (``manifests/rbac.yaml`` does not grant it); forbidden
or missing means unknown, with one INFO line, and the hint rules alone apply.
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
EVERY_ZONE = "no zone known, calls use every zone: "


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
    ``NODE_NAME``), else none. Raises ConfigError for a zone the API would refuse; a
    ``NODE_NAME`` that is no node name (other tools use that variable too) is ignored,
    and ``why`` says so."""
    env = os.environ if environ is None else environ
    node: str | None = env.get(NODE_NAME_ENV) or None
    why = ""
    if node is not None and not valid_node_name(node):
        why = (
            f"{NODE_NAME_ENV}={node!r} is not a node name (a lowercase DNS subdomain), so it "
            "is not used; set it from the downward API: fieldRef fieldPath spec.nodeName"
        )
        node = None
    if zone is not None:
        if not isinstance(zone, str) or not valid_zone_name(zone):
            raise ConfigError(
                f"zone must be a zone name (a label value: at most 63 characters, "
                f"alphanumeric at both ends, '-', '_' or '.' inside), got {zone!r}"
            )
        return ZoneSource(zone, node, "argument", why)
    from_env = env.get(ZONE_ENV)
    if from_env:
        if not valid_zone_name(from_env):
            raise ConfigError(
                f"{ZONE_ENV}={from_env!r} is not a zone name (a label value: at most 63 "
                "characters, alphanumeric at both ends, '-', '_' or '.' inside)"
            )
        return ZoneSource(from_env, node, ZONE_ENV, why)
    if node is not None:
        return ZoneSource(None, node, "node")
    return ZoneSource(
        None,
        None,
        "none",
        why
        or f"no zone known: pass zone=, set {ZONE_ENV}, or set {NODE_NAME_ENV} from the "
        "downward API (spec.nodeName) with get on nodes (manifests/rbac-topology.yaml)",
    )


@dataclass(frozen=True)
class Answer:
    """One attempt to read a value off the API (a Node's zone, a Service's traffic
    policy): the value, or why not; ``final`` when retrying cannot change the answer."""

    value: str | None
    final: bool
    why: str = ""
    error: KubernetesError | None = None
    retry_after: float | None = None


def _failed(exc: BaseException, resource: str, namespace: str | None = None) -> Answer:
    """A failed read as an Answer: final for 401/403/404 (the caller words those), else
    retryable (with the server's Retry-After, if any)."""
    error = api_error(exc, verb="get", resource=resource, namespace=namespace)
    if error.status in (401, 403, 404):
        return Answer(None, True, str(error), error)
    headers = getattr(exc, "headers", None)
    retry_after = None
    if headers is not None and hasattr(headers, "get"):
        retry_after = parse_retry_after(headers.get("Retry-After"))
    return Answer(None, False, str(error), error, retry_after)


def read_node_zone(api_client: ApiClient, node: str) -> Answer:
    """GET the Node once and read its ``topology.kubernetes.io/zone`` label."""
    from kubernetes import client

    try:
        obj = client.CoreV1Api(api_client).read_node(node, _request_timeout=(5, 10))
    except Exception as exc:
        answer = _failed(exc, f'nodes "{node}"')
        if answer.error is not None and answer.error.status in (401, 403):
            why = f"the Node {node!r} cannot be read ({answer.error}); grant get on nodes " + (
                "with manifests/rbac-topology.yaml"
            )
            return Answer(None, True, EVERY_ZONE + why, answer.error)
        if answer.error is not None and answer.error.status == 404:
            why = f"there is no Node {node!r} ({NODE_NAME_ENV})"
            return Answer(None, True, EVERY_ZONE + why, answer.error)
        return answer
    labels = getattr(getattr(obj, "metadata", None), "labels", None) or {}
    value = labels.get(ZONE_LABEL) if isinstance(labels, Mapping) else None
    if not value:
        return Answer(None, True, f"{EVERY_ZONE}the Node {node!r} has no {ZONE_LABEL} label")
    if not valid_zone_name(value):
        why = f"{EVERY_ZONE}the Node {node!r} has a bad {ZONE_LABEL} {value!r}"
        return Answer(None, True, why)
    return Answer(str(value), True)


def read_traffic_policy(api_client: ApiClient, namespace: str, service: str) -> Answer:
    """GET the Service once and read ``spec.internalTrafficPolicy`` (``Cluster`` when
    unset, as the API defaults it)."""
    from kubernetes import client

    try:
        obj = client.CoreV1Api(api_client).read_namespaced_service(
            service, namespace, _request_timeout=(5, 10)
        )
    except Exception as exc:
        answer = _failed(exc, f'services "{service}"', namespace)
        if answer.final:
            why = (
                f"the internalTrafficPolicy of service/{service} is unknown ({answer.error}): "
                "a Local policy is not honoured (add get on services to the Role to honour it)"
            )
            return Answer(None, True, why, answer.error)
        return answer
    policy = getattr(getattr(obj, "spec", None), "internal_traffic_policy", None) or "Cluster"
    if policy not in ("Cluster", "Local"):
        return Answer(None, True, f"service/{service} has an unknown internalTrafficPolicy")
    return Answer(str(policy), True)


class ReadOnce:
    """Reads one value off the API (``read()``, e.g. :func:`read_node_zone` bound to a
    client) on a named daemon thread until it has a final answer.

    ``on_answer(answer)`` once, with the final answer (a value, or why none). Errors
    that may pass are retried (``retry``, the watcher's schedule) and logged at DEBUG;
    a final answer without a value is logged once at INFO. :meth:`stop` ends it.
    """

    def __init__(
        self,
        read: Callable[[], Answer],
        *,
        on_answer: Callable[[Answer], None],
        name: str = "dnsbalance-node-zone",
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._on_answer = on_answer
        self._name = name
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._read = read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.attempts = 0
        self.answer: Answer | None = None

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

    def wait(self, timeout: float) -> Answer | None:
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
                answer = self._read()
            except Exception as exc:  # a bug or an odd failure: retried, never fatal
                answer = Answer(None, False, f"{type(exc).__name__}: {exc}")
            if answer.final:
                self.answer = answer
                if answer.value is None:
                    log.info("%s: %s", self._name, answer.why)
                else:
                    log.debug("%s: read %s", self._name, answer.value)
                try:
                    self._on_answer(answer)
                except Exception:
                    log.exception("%s: zone callback failed", self._name)
                return
            failures += 1
            log.debug("%s: %s (retrying)", self._name, answer.why)
            delay = retry_delay(
                failures,
                time.monotonic() - started,
                self._retry,
                self._rng,
                retry_after=answer.retry_after,
            )
            self._stop.wait(delay)
