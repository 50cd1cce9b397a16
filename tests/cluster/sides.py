"""One request sequence, two servers: what the differential rows run on.

A row (:class:`Row`) is a function of a :class:`Side`; it sends its requests through the
official client and returns what it saw, in a form where values only a server can
choose (uids, timestamps, resourceVersions, allocated IPs and ports, generated names)
are replaced by their shape (:func:`view`). The test runs every row once against
kube-apiserver (:class:`RealSide`, a namespace of its own on the session's control
plane) and once against ``FakeKubernetesAPI`` (:class:`FakeSide`, a fresh fake with
the same namespace name, so messages that name it compare equal), and asserts the two
observations are equal.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from dnsbalance.testing import ControlPlane, FakeKubernetesAPI

JSON = dict[str, Any]
Observation = Any

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# Both service ranges: the fake's 10.96.0.0/12 holds the control plane's 10.96.0.0/16.
SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")
SERVER_SET_TIMES = ("creationTimestamp", "deletionTimestamp")
DENIED_RESOURCES = ("services", "endpointslices", "nodes", "endpoints")
WATCH_READ_TIMEOUT = 30  # seconds: a bound on any one read of a watch stream


@dataclass(frozen=True)
class Row:
    """One differential row: ``run`` sends the requests and returns the observation.

    ``claim`` is the fragment of the ``_kubeapi`` package documentation the row holds
    to the real server (whitespace aside, it must appear there: test_fake_claims.py).
    ``plane`` picks the real server: ``"cached"`` (the session's, watch cache on, as
    clusters run) or ``"uncached"`` (``--watch-cache=false``: etcd serves watches and
    lists, so an etcd compaction expires them).
    """

    id: str
    claim: str
    run: Callable[[Side], Observation]
    plane: str = "cached"
    marks: tuple[Any, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=self.marks)


# -- what the rows see ---------------------------------------------------------------


def _shape(key: str, value: Any) -> Any:
    if key == "uid" and isinstance(value, str) and UUID.match(value):
        return "<uid>"
    if key in SERVER_SET_TIMES and isinstance(value, str) and TIMESTAMP.match(value):
        return "<time>"
    if key == "resourceVersion" and isinstance(value, str) and value.isdigit():
        return "<rv>"
    if key == "clusterIP" and _in_range(value):
        return "<cluster-ip>"
    if key == "clusterIPs" and isinstance(value, list):
        return ["<cluster-ip>" if _in_range(v) else v for v in value]
    if key == "nodePort" and isinstance(value, int) and 30000 <= value <= 32767:
        return "<node-port>"
    if key == "continue" and isinstance(value, str) and value:
        return "<continue>"
    return view(value)


def _in_range(value: Any) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value) in SERVICE_RANGE
    except ValueError:
        return False


def view(obj: Any) -> Any:
    """``obj`` with server-chosen values replaced by their shape, and ``managedFields``
    (not served by the fake, read by nobody here) left out."""
    if isinstance(obj, dict):
        return {k: _shape(k, v) for k, v in obj.items() if k != "managedFields"}
    if isinstance(obj, list | tuple):
        return [view(v) for v in obj]
    return obj


def names(body: Any) -> list[str]:
    """The item names of a list body (or of an error body: none)."""
    items = body.get("items") if isinstance(body, dict) else None
    return [i["metadata"]["name"] for i in items or ()]


def event_view(events: list[JSON]) -> list[tuple[str, Any]]:
    """Watch events as (type, name or the Status or bookmark)."""
    seen: list[tuple[str, Any]] = []
    for event in events:
        obj = event.get("object") or {}
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            seen.append((event["type"], obj.get("metadata", {}).get("name")))
        else:
            seen.append((event.get("type", "?"), view(obj)))
    return seen


# -- the two sides -------------------------------------------------------------------


@dataclass
class Side:
    """A server and a namespace on it, with an admin client."""

    name: str
    ns: str
    api: client.ApiClient
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def disc(self) -> client.DiscoveryV1Api:
        return client.DiscoveryV1Api(self.api)

    @property
    def auth(self) -> client.AuthorizationV1Api:
        return client.AuthorizationV1Api(self.api)

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self.api.close()

    # -- requests --------------------------------------------------------------------

    @staticmethod
    def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """``method`` (an official-client API method) as (HTTP status, JSON body)."""
        try:
            response = method(*args, _preload_content=False, _request_timeout=(5, 30), **kwargs)
        except client.ApiException as exc:
            return exc.status, _json(exc.body)
        try:
            return response.status, _json(response.data)
        finally:
            response.release_conn()

    def raw(
        self, method: str, path: str, body: str | bytes | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        """A request the typed methods cannot send (a body they would not build), through
        the client's own serializer and REST layer."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        serialized = self.api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self.api.call_api(*serialized[:4], _request_timeout=(5, 30))
        except client.ApiException as exc:
            return exc.status, _json(exc.body)
        return response.status, _json(response.read())

    def open_watch(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A watch request (``timeout_seconds`` required), its response open; an error
        answer raises ApiException."""
        assert "timeout_seconds" in kwargs, "every watch row bounds its stream"
        return method(
            *args,
            watch=True,
            _preload_content=False,
            _request_timeout=(5, WATCH_READ_TIMEOUT),
            **kwargs,
        )

    @staticmethod
    def read_events(response: Any, limit: int = 200) -> list[JSON]:
        """The events of an open watch, until the server ends the stream (bounded)."""
        events: list[JSON] = []
        try:
            for line in watch.watch.iter_resp_lines(response):
                if line:
                    events.append(json.loads(line))
                if len(events) >= limit:
                    break
        finally:
            response.close()
            response.release_conn()
        return events

    def watch(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """A whole watch: (HTTP status, its events) or (status, the error Status)."""
        try:
            response = self.open_watch(method, *args, **kwargs)
        except client.ApiException as exc:
            return exc.status, _json(exc.body)
        return response.status, self.read_events(response)

    # -- identities and history (per side) -------------------------------------------

    def denied(self) -> contextlib.AbstractContextManager[client.ApiClient]:
        """A client for ServiceAccount ``nobody`` of the namespace, bound to no Role."""
        raise NotImplementedError

    def unauthenticated(self) -> contextlib.AbstractContextManager[client.ApiClient]:
        """A client whose bearer token the server does not know."""
        raise NotImplementedError

    def compact(self) -> None:
        """Drop the history older than now (etcd compaction; the fake's compact())."""
        raise NotImplementedError

    def node_name(self, suffix: str) -> str:
        """A Node name of this row's own (Nodes are cluster-scoped), removed after it."""
        raise NotImplementedError


class FakeSide(Side):
    def __init__(self, fake: FakeKubernetesAPI, ns: str) -> None:
        super().__init__("fake", ns, fake.api_client())
        self.fake = fake

    @contextlib.contextmanager
    def denied(self) -> Iterator[client.ApiClient]:
        before = self.fake.username
        self.fake.username = f"system:serviceaccount:{self.ns}:nobody"
        for resource in DENIED_RESOURCES:  # not SelfSubjectAccessReviews: anyone may ask
            self.fake.deny("*", resource)
        try:
            with self.fake.api_client() as api:
                yield api
        finally:
            self.fake.allow_all()
            self.fake.username = before

    @contextlib.contextmanager
    def unauthenticated(self) -> Iterator[client.ApiClient]:
        self.fake.set_tokens({"the-right-token"})
        try:
            with self.fake.api_client(token="wrong") as api:
                yield api
        finally:
            self.fake.set_tokens(None)

    def compact(self) -> None:
        self.fake.compact()

    def node_name(self, suffix: str) -> str:
        return f"{self.ns}-{suffix}"


class RealSide(Side):
    def __init__(self, plane: ControlPlane, ns: str, tmp: Path) -> None:
        super().__init__("real", ns, plane.api_client())
        self.plane = plane
        self._tmp = tmp

    def _client(self, path: Path) -> client.ApiClient:
        api: client.ApiClient = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
        return api

    @contextlib.contextmanager
    def denied(self) -> Iterator[client.ApiClient]:
        path = self.plane.kubeconfig_for(self.ns, "nobody", path=self._tmp / "nobody.kubeconfig")
        with self._client(path) as api:
            yield api

    @contextlib.contextmanager
    def unauthenticated(self) -> Iterator[client.ApiClient]:
        path = self.plane.write_kubeconfig(self._tmp / "wrong.kubeconfig", token="wrong")
        with self._client(path) as api:
            yield api

    def compact(self) -> None:
        """Compact etcd at its current revision, through its HTTP/JSON gateway."""
        key = base64.b64encode(b"/registry/").decode()
        header = _post(f"{self.plane.etcd_url}/v3/kv/range", {"key": key, "limit": 1})["header"]
        _post(
            f"{self.plane.etcd_url}/v3/kv/compaction",
            {"revision": int(header["revision"]), "physical": True},
        )

    def node_name(self, suffix: str) -> str:
        name = f"{self.ns}-{suffix}"
        core = client.CoreV1Api(self.plane.admin)
        self._cleanups.append(lambda: core.delete_node(name))
        return name


def _post(url: str, body: JSON) -> JSON:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # etcd on loopback
        answer: JSON = json.loads(response.read())
    return answer


def _json(data: Any) -> Any:
    if isinstance(data, bytes):
        data = data.decode()
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data


def run_both(row: Row, plane: ControlPlane, tmp: Path) -> tuple[Observation, Observation]:
    """``row`` against kube-apiserver (a new namespace on ``plane``), then against a new
    FakeKubernetesAPI with a namespace of the same name: (real, fake)."""
    ns = plane.create_namespace()
    real = RealSide(plane, ns, tmp)
    try:
        seen_real = row.run(real)
    finally:
        real.close()
    with FakeKubernetesAPI() as fake_api:
        fake = FakeSide(fake_api, ns)
        try:
            seen_fake = row.run(fake)
        finally:
            fake.close()
    return seen_real, seen_fake


def differences(real: Any, fake: Any, path: str = "") -> list[str]:
    """Where two observations differ, one line per leaf (empty when equal)."""
    if isinstance(real, dict) and isinstance(fake, dict):
        found: list[str] = []
        for key in sorted(set(real) | set(fake), key=str):
            where = f"{path}.{key}"
            if key not in fake:
                found.append(f"{where}: only the real server has {real[key]!r}")
            elif key not in real:
                found.append(f"{where}: only the fake has {fake[key]!r}")
            else:
                found += differences(real[key], fake[key], where)
        return found
    if isinstance(real, list | tuple) and isinstance(fake, list | tuple):
        if len(real) != len(fake):
            return [f"{path}: real {list(real)!r}, fake {list(fake)!r}"]
        return [
            d
            for i, (r, f) in enumerate(zip(real, fake, strict=True))
            for d in differences(r, f, f"{path}[{i}]")
        ]
    if real != fake:
        return [f"{path}: real {real!r}, fake {fake!r}"]
    return []
