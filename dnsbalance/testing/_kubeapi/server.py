"""FakeKubernetesAPI, the facade: starts the HTTP server and gives tests their handles
(clients, kubeconfigs, object builders, faults). What it serves and how faithfully:
the package documentation, :mod:`dnsbalance.testing._kubeapi`."""

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

from . import builders, kinds, nodes
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
    """A faithful-enough kube-apiserver for Services and EndpointSlices (what is faithful and
    what is simplified: the documentation of :mod:`dnsbalance.testing._kubeapi`)."""

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

    endpoint_slice = staticmethod(builders.endpoint_slice)
    service = staticmethod(builders.service)
    node = staticmethod(nodes.node)

    def apply_node(self, name: str, *, zone: str | None = None, **kwargs: Any) -> JSON:
        """:meth:`put` of :meth:`node` (a cluster-scoped Node; see ``_kubeapi/nodes.py``)."""
        return self.put(nodes.node(name, zone=zone, **kwargs))

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
        endpoints: Iterable[builders.EndpointSpec] = (),
        ports: Iterable[builders.PortSpec] = (),
        address_type: str = "IPv4",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> JSON:
        """:meth:`put` of :meth:`endpoint_slice` with these arguments."""
        return self.put(
            builders.endpoint_slice(
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
        dry_run: bool | None = None,
    ) -> None:
        """The next ``n`` matching requests fail with ``code`` and a Status body; with a
        ``Retry-After: retry_after`` header (and ``details.retryAfterSeconds``) when given,
        and for 429 always (1 s unless given), as API Priority and Fairness answers.
        ``dry_run``: only writes that are (True) or are not (False) dry runs match; None,
        any request (an admission policy refuses both alike)."""
        self._faults.fail_next(n, code, verb, resource, retry_after, dry_run)

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
