"""FakeKubernetesAPI: a small Kubernetes API server over real HTTP, for the official client.

No kube-apiserver runs on test machines, so tests run the **unmodified** ``kubernetes``
Python client (``CoreV1Api``, ``DiscoveryV1Api``, ``AuthorizationV1Api``,
``kubernetes.watch.Watch``) against this server on ``127.0.0.1``::

    with FakeKubernetesAPI(tokens={"t1"}) as api:
        api.apply_slice("greeter-abc", "app", "greeter",
                        endpoints=[("10.0.0.1", True), ("10.0.0.2", False)],
                        ports=[("grpc", 50051, "TCP")])
        with api.api_client(token="t1") as client:
            slices = DiscoveryV1Api(client).list_namespaced_endpoint_slice(
                "app", label_selector="kubernetes.io/service-name=greeter")

Served
------
- ``/api/v1/namespaces/{ns}/services[/{name}]``, ``/api/v1/services`` (all namespaces,
  list and watch), and the same for ``discovery.k8s.io/v1`` ``endpointslices``.
  Verbs: get, list, watch (``?watch=true`` or ``1``), create (POST, 201), update (PUT),
  patch (PATCH) and delete. Also ``POST
  /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``, ``/version``, ``/api``,
  ``/apis``, the group and group-version discovery documents and ``/healthz``.
- Objects get ``metadata.uid``, ``creationTimestamp``, ``generation`` and a
  ``resourceVersion`` from ONE counter shared by every kind and bumped by every write
  (as etcd's revision); lists carry the counter in ``metadata.resourceVersion``. A write
  that changes nothing is not written (same resourceVersion, no watch event), as on a
  real server. ``generateName`` works. List items carry no ``kind``/``apiVersion``; single
  objects and watch event objects do.
- Errors are real ``metav1.Status`` bodies: 404 NotFound, 409 AlreadyExists, 409 Conflict
  (PUT or PATCH whose ``metadata.resourceVersion`` is stale; an empty one updates
  unconditionally; also DELETE preconditions), 422 Invalid with ``details.causes``, 400
  BadRequest (malformed selector, body/URL name or namespace mismatch, bad JSON), 401,
  403, 405, 410, 415. Creating an object that carries a resourceVersion answers the
  server's 500 ``resourceVersion should not be set on objects to be created``.
- DELETE answers the deleted object for Services and a Status ``Success`` (with
  ``details``) for EndpointSlices, as kube-apiserver does (``ReturnDeletedObject``).
- PATCH: ``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json``
  (RFC 6902; a failing op is 422) and ``application/strategic-merge-patch+json`` (the
  client's default for dict bodies), implemented as a merge patch that also merges Service
  ``spec.ports`` by ``port`` and honours ``$patch: delete``/``replace``; other lists are
  replaced (right for EndpointSlice ``endpoints``/``ports``, which are atomic). Server-side
  apply (``apply-patch+yaml``) answers 415.
- ``dryRun=All`` (query, or DeleteOptions ``dryRun``) on create/update/patch/delete runs
  defaulting, validation and allocation and answers as if done, storing nothing.
- Services: defaults as the v1 defaulters; ``spec.clusterIP``/``clusterIPs`` allocated
  from 10.96.0.0/12 (sequentially from 10.96.0.11, IPv4 only) unless headless (``None``)
  or ExternalName; a requested IP must be free and in range; nodePorts 30000-32767 for
  NodePort/LoadBalancer ports; headless NodePort/LoadBalancer is 422 ``spec.clusterIPs[0]:
  Invalid value: "None": may not be set to 'None' for NodePort services``; changing the
  cluster IP on update is 422 ``spec.clusterIPs[0]: Invalid value: ["None"]: may not
  change once set`` (after the Service REST's patchAllocatedValues/normalizeClusterIPs, so
  a PUT without clusterIP keeps it). Type changes release or allocate as the real server.
  No EndpointSlice controller: tests write slices themselves.
- Selectors: ``labelSelector`` with the full apimachinery grammar (``=``, ``==``, ``!=``,
  ``in``, ``notin``, ``key``, ``!key``, ``>``, ``<``; commas AND) and its error texts;
  ``fieldSelector`` on ``metadata.name`` and ``metadata.namespace`` (others: 400
  ``field label not supported``). ``limit``/``continue`` paginate lists.
- Watch: ``resourceVersion=RV`` replays every retained event newer than RV, then streams
  live events; no RV (or ``0``) starts with synthetic ADDED events for the current
  objects. Lines are ``{"type": ..., "object": ...}`` in a chunked 200 response, flushed
  per event. A filtered watch sees an object that stops matching as DELETED and one that
  starts matching as ADDED (the watch cache's rule). Each kind keeps its last ``history``
  events; a watch from an older RV (or any RV before a :meth:`compact`) gets one ERROR
  event with Status ``{"reason":"Expired","code":410,"message":"too old resource version:
  RV (OLDEST)"}`` and the stream ends (HTTP 200), or with ``expired_as_http_410=True`` a
  plain HTTP 410 with that Status. ``list`` with ``resourceVersionMatch=Exact`` answers the
  state at that RV, or 410 when it is older than the history. ``allowWatchBookmarks=true``
  adds a BOOKMARK (``{"kind", "apiVersion", "metadata": {"resourceVersion"}}``) every
  ``bookmark_interval`` seconds, never without the flag; ``sendInitialEvents=true`` ends
  the initial ADDED events with a BOOKMARK annotated ``k8s.io/initial-events-end``.
  ``timeoutSeconds=N`` ends the stream cleanly after N s (default ``max_watch_timeout``).
  :meth:`cut_watches` ends open streams now: abruptly (connection closed mid-body; the
  client sees ``urllib3.exceptions.ProtocolError``) or with ``clean=True`` as a normal end
  of stream (the client's ``Watch.stream`` then re-watches from its last RV by itself).
- Auth: ``tokens={"t1"}`` demands ``Authorization: Bearer <token>`` (scheme in any case,
  as the in-cluster loader sends ``bearer``) on every path, else 401 with the real
  Status; :meth:`rotate_token`/:meth:`set_tokens` act at once. ``deny(verb, resource,
  namespace=, group=, code=403)`` answers the real Forbidden Status, e.g.
  ``endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:app:dnsbalance"
  cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace
  "app"``; a 403 on a watch is an HTTP 403, not an event. SelfSubjectAccessReviews answer
  ``status.allowed`` by the same rules.
- Finalizers: DELETE of an object with ``metadata.finalizers`` only sets
  ``deletionTimestamp`` (once; a MODIFIED event) and answers the object; it stays
  readable until an update removes the last finalizer (then a DELETED event), e.g.
  :meth:`remove_finalizers` playing the cloud controller. Adding a finalizer to an
  object being deleted is 422 ``Forbidden: no new finalizers can be added ...``.
- Request bodies in protobuf (``application/vnd.kubernetes.protobuf``) are answered 415
  UnsupportedMediaType: this fake decodes JSON only, and says so as the server does
  for a media type it does not accept.
- Faults: :meth:`fail_next` (the next n matching requests get that code and a Status,
  ``InternalError`` for 500; 429 always with ``Retry-After``), :meth:`clear_failures`,
  :meth:`delay` (sleep before answering). A watch denied while list is allowed:
  ``deny("watch", "endpointslices")``. Order per request:
  delay, authentication, authorization, injected failure, then the real work.
- Store helpers (:meth:`put`, :meth:`apply_slice`, :meth:`delete`, :meth:`get_object`,
  :meth:`objects`) go through the same admission and produce the same watch events as
  HTTP writes; they raise :class:`FakeKubernetesAPI.StatusError` (``.status`` is the body).
  :attr:`requests` logs every answered request as (method, path, query, verb, resource,
  status).

Simplified or left out
----------------------
Namespaces are not objects (any namespace exists); no managedFields, server-side
apply, status subresource, deletecollection, protobuf/CBOR/YAML (always JSON; protobuf
bodies get 415), admission webhooks or Endpoints. A watch from a future RV waits for it
instead of the real "Too large resource version" 504. Continue tokens read the current
state, not a snapshot. Validation covers names, types, ports, addresses and the Service
rules above, not everything. The watch history is the last ``history`` events per kind
(a watch cache's window is by count and age). Bookmarks come every
``bookmark_interval`` s (60 by default, as the real server's about once a minute).
``/version`` says v1.33.0. Injected failures use the reason of their code.

Clients
-------
- :meth:`api_client` returns a ``kubernetes.client.ApiClient`` for :attr:`url` (close it:
  ``with api.api_client() as client:``). :meth:`write_kubeconfig` writes a kubeconfig for
  ``kubernetes.config.load_kube_config(config_file=...)`` or ``new_client_from_config``.
- In-cluster config: :meth:`write_service_account` writes ``token``, ``namespace`` and a
  dummy ``ca.crt`` like /var/run/secrets/kubernetes.io/serviceaccount.
  ``InClusterConfigLoader(token_filename=..., cert_filename=..., environ=
  api.incluster_environ())`` loads them but always builds an ``https://`` host, so set
  ``loader.host = api.url`` as well as ``configuration.host`` after ``load_and_set``: with
  ``try_refresh_token=True`` (the default) its refresh hook re-applies ``loader.host`` and
  the token on EVERY request. It re-reads the token file only once ``token_expires_at``
  (a naive ``datetime.now()`` + 1 minute) has passed; to test rotation without waiting,
  write the new token and set ``loader.token_expires_at = datetime.datetime.now()``.
  :meth:`incluster_config` does all this and returns ``(configuration, loader)``.

What the official client (kubernetes 37) does with these answers
-------------------------------------------------------------------
Pinned by tests/testing/test_fake_api.py:

- ``Watch().stream(list_fn, ..., resource_version=RV)`` without ``timeout_seconds``: when
  a stream ends cleanly it calls again from the last resourceVersion it saw (from
  ADDED/MODIFIED/DELETED objects and BOOKMARKs alike). On an ERROR 410 event it retries
  once from the same RV, and on a second 410 raises ``ApiException(status=410,
  reason="Expired: too old resource version: RV (OLDEST)")``: two watch requests. With
  ``timeout_seconds`` it neither resumes nor retries: one request, then the generator
  ends (or raises that 410 at once).
- An HTTP 410 (``expired_as_http_410``) raises ``ApiException(410)`` with the Status as
  ``body`` on the first request: no retry.
- An abrupt cut raises ``urllib3.exceptions.ProtocolError("Response ended
  prematurely")`` out of the generator; ``Watch.resource_version`` still holds the last
  RV seen, and a new stream from it misses nothing retained. ``Watch.stop()`` called
  from another thread shuts the socket and surfaces the same ``ProtocolError``; call it
  from the consuming loop instead.
- BOOKMARK events reach the caller with ``object`` left a dict (not deserialized).
- A 401/403 on a watch raises ``ApiException`` from the first call, before any event.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from kubernetes.client import ApiClient, Configuration
from kubernetes.config.incluster_config import InClusterConfigLoader

from . import kinds
from .credentials import (
    DUMMY_CA,
    SelfSignedTLS,
    incluster_config,
    write_kubeconfig,
    write_service_account,
)
from .faults import DEFAULT_USER, Faults, RequestLog, RequestRecord
from .http import Dispatcher, HTTPServer
from .status import StatusError
from .store import Store

__all__ = ["FakeKubernetesAPI", "RequestRecord"]

JSON = dict[str, Any]


class FakeKubernetesAPI:
    """A faithful-enough kube-apiserver for Services and EndpointSlices (see the module doc)."""

    StatusError: ClassVar[type[StatusError]] = StatusError

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 1000,
        bookmark_interval: float = 60.0,
        tokens: Iterable[str] | None = None,
        username: str = DEFAULT_USER,
        expired_as_http_410: bool = False,
        max_watch_timeout: float = 1800.0,
        tls: bool = False,
    ) -> None:
        self._address = (host, port)
        self._tls = SelfSignedTLS(host) if tls else None
        self._store = Store(history=history)
        self._faults = Faults(tokens, username)
        self._log = RequestLog()
        self._dispatcher = Dispatcher(self._store, self._faults, self._log)
        self.bookmark_interval = bookmark_interval
        self.expired_as_http_410 = expired_as_http_410
        self.max_watch_timeout = max_watch_timeout
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a thread named ``fake-kube-api``. Idempotent until closed."""
        with self._state_lock:
            if self._closed:
                raise RuntimeError("FakeKubernetesAPI is closed; create a new one")
            if self._server is not None:
                return self
            self._server = HTTPServer(
                self._address,
                self._dispatcher,
                self._tls.server_context() if self._tls is not None else None,
            )
            self._dispatcher.url = self.url
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-kube-api",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """End watch streams, stop serving, join every thread (about 2 s at most). Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            server, thread = self._server, self._thread
        self._dispatcher.stopping.set()
        self._store.end_watchers("closed")
        if self._tls is not None:
            self._tls.close()
        if server is None:
            return
        if thread is not None:
            server.shutdown()
        threads = server.drop_connections()
        server.server_close()
        deadline = time.monotonic() + 2.0
        for each in [thread, *threads]:
            if each is not None:
                each.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_server", None) is not None and not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)
            self.close()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"<FakeKubernetesAPI {where}>"

    @property
    def bookmark_interval(self) -> float:
        """Seconds between BOOKMARK events on watches that allow them."""
        return self._dispatcher.bookmark_interval

    @bookmark_interval.setter
    def bookmark_interval(self, value: float) -> None:
        self._dispatcher.bookmark_interval = value

    @property
    def expired_as_http_410(self) -> bool:
        """Answer a too-old watch with HTTP 410 instead of an ERROR event in a 200 stream."""
        return self._dispatcher.expired_as_http_410

    @expired_as_http_410.setter
    def expired_as_http_410(self, value: bool) -> None:
        self._dispatcher.expired_as_http_410 = value

    @property
    def max_watch_timeout(self) -> float:
        """The longest a watch stream lasts (``timeoutSeconds`` is capped to it)."""
        return self._dispatcher.max_watch_timeout

    @max_watch_timeout.setter
    def max_watch_timeout(self, value: float) -> None:
        self._dispatcher.max_watch_timeout = value

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeKubernetesAPI is not started")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, once started."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    # -- client configuration -------------------------------------------------------

    def configuration(self, token: str | None = None) -> Configuration:
        """A client ``Configuration`` for this server (bearer ``token`` if given)."""
        config = Configuration(host=self.url)
        if self._tls is not None:
            config.ssl_ca_cert = self._tls.ca_file
        if token is not None:
            config.api_key = {"BearerToken": token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return config

    def api_client(self, token: str | None = None) -> ApiClient:
        """A new ``ApiClient`` for this server; close it (``with`` or ``.close()``)."""
        return ApiClient(configuration=self.configuration(token))

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        token: str | None = None,
        namespace: str = "default",
        context: str = "fake",
    ) -> Path:
        """Write a kubeconfig (JSON, which is YAML) whose current context is this server."""
        return write_kubeconfig(path, self.url, token=token, namespace=namespace, context=context)

    def write_service_account(
        self, directory: str | Path, token: str, namespace: str = "default"
    ) -> Path:
        """Write ``token``, ``namespace`` and a dummy ``ca.crt`` as a pod's service account."""
        ca_pem = self._tls.cert_pem if self._tls else DUMMY_CA
        return write_service_account(directory, token, namespace=namespace, ca_pem=ca_pem)

    def incluster_environ(self) -> dict[str, str]:
        """``KUBERNETES_SERVICE_HOST``/``_PORT`` as a pod would see them for this server."""
        return {"KUBERNETES_SERVICE_HOST": self.host, "KUBERNETES_SERVICE_PORT": str(self.port)}

    def incluster_config(
        self, directory: str | Path, *, try_refresh_token: bool = True
    ) -> tuple[Configuration, InClusterConfigLoader]:
        """Load ``directory`` (see :meth:`write_service_account`) with the real loader.

        Returns the configuration and the loader; set ``loader.token_expires_at =
        datetime.datetime.now()`` to make the next request re-read the token file.
        """
        return incluster_config(
            directory, self.url, self.incluster_environ(), try_refresh_token=try_refresh_token
        )

    # -- store ----------------------------------------------------------------------

    endpoint_slice = staticmethod(kinds.endpoint_slice)
    service = staticmethod(kinds.service)

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return self._store.resource_version

    def put(self, obj: Mapping[str, Any]) -> JSON:
        """Create or replace ``obj`` (kind and metadata.namespace/name required); the result."""
        return self._store.put(dict(obj))

    def apply_slice(
        self,
        name: str,
        namespace: str,
        service: str,
        endpoints: Iterable[kinds.EndpointSpec] = (),
        ports: Iterable[kinds.PortSpec] = (),
        address_type: str = "IPv4",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> JSON:
        """:meth:`put` of :meth:`endpoint_slice` with these arguments."""
        return self.put(
            kinds.endpoint_slice(
                name, namespace, service, endpoints, ports, address_type, labels=labels
            )
        )

    def delete(self, kind: str, namespace: str, name: str) -> JSON | None:
        """Delete an object (``kind``: Service/EndpointSlice or plural); it, or None if absent."""
        try:
            return self._store.delete(kinds.resource_for(kind), namespace, name, as_object=True)
        except StatusError as exc:
            if exc.code == 404:
                return None
            raise

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        """A copy of the stored object, or None."""
        try:
            return self._store.get(kinds.resource_for(kind), namespace, name)
        except StatusError:
            return None

    def objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        """Copies of the stored objects of ``kind`` (in one namespace or all)."""
        return self._store.objects(kinds.resource_for(kind), namespace)

    def remove_finalizers(self, kind: str, namespace: str, name: str) -> JSON | None:
        """Drop every finalizer, as the controller that owns them does when it is done
        (the cloud controller for ``service.kubernetes.io/load-balancer-cleanup``); an
        object being deleted is then gone. The object after that, or None if absent."""
        current = self.get_object(kind, namespace, name)
        if current is None:
            return None
        current["metadata"].pop("finalizers", None)
        self._store.update(kinds.resource_for(kind), namespace, name, current)
        return self.get_object(kind, namespace, name)

    def compact(self) -> None:
        """Drop all watch history: watches from any older resourceVersion get 410 Expired."""
        self._store.compact()

    # -- watches --------------------------------------------------------------------

    @property
    def watch_count(self) -> int:
        """Watch streams open now."""
        return self._store.watch_count

    def cut_watches(self, *, clean: bool = False, timeout: float = 2.0) -> int:
        """End every open watch stream now; wait (up to ``timeout``) until they are over.

        Abruptly by default: the connection is closed mid-body, the client gets
        ``urllib3.exceptions.ProtocolError``. ``clean=True`` ends the chunked body
        properly, as a server-side watch timeout does. Returns how many were ended.
        """
        ended = self._store.end_watchers("clean" if clean else "cut")
        deadline = time.monotonic() + timeout
        for watcher in ended:
            watcher.done.wait(max(0.0, deadline - time.monotonic()))
        return len(ended)

    # -- auth and faults ------------------------------------------------------------

    @property
    def tokens(self) -> frozenset[str] | None:
        return self._faults.tokens

    def set_tokens(self, tokens: Iterable[str] | None) -> None:
        """Accept exactly these bearer tokens from now on (None: no authentication)."""
        self._faults.set_tokens(tokens)

    def rotate_token(self, old: str, new: str) -> None:
        """``old`` stops working at once, ``new`` works (this turns authentication on if off)."""
        self._faults.rotate_token(old, new)

    @property
    def username(self) -> str:
        """The user named in Forbidden messages."""
        return self._faults.username

    @username.setter
    def username(self, value: str) -> None:
        self._faults.username = value

    def deny(
        self,
        verb: str,
        resource: str,
        *,
        namespace: str | None = None,
        group: str | None = None,
        code: int = 403,
    ) -> None:
        """Refuse ``verb`` (or ``*``) on ``resource`` (or ``*``), in one namespace or all."""
        self._faults.deny(verb, resource, namespace=namespace, group=group, code=code)

    def allow_all(self) -> None:
        """Drop every :meth:`deny` rule."""
        self._faults.allow_all()

    def fail_next(
        self,
        n: int,
        *,
        code: int = 500,
        verb: str | None = None,
        resource: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``n`` matching requests fail with ``code`` and a Status body; with a
        ``Retry-After: retry_after`` header (and ``details.retryAfterSeconds``) when given,
        and for 429 always (1 s unless given), as API Priority and Fairness answers."""
        self._faults.fail_next(n, code, verb, resource, retry_after)

    def clear_failures(self) -> None:
        """Drop every pending :meth:`fail_next` failure (an outage ends)."""
        self._faults.clear_failures()

    def delay(
        self, seconds: float, *, verb: str | None = None, resource: str | None = None
    ) -> None:
        """Sleep ``seconds`` before answering matching requests (0 turns it off)."""
        self._faults.set_delay(seconds, verb, resource)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every answered request so far, oldest first."""
        return self._log.snapshot()

    def reset_log(self) -> None:
        self._log.reset()

    # -- HTTP -----------------------------------------------------------------------
