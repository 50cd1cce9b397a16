"""The HTTP side of FakeKubernetesAPI: server, connection threads and request dispatch.

``Dispatcher.handle`` turns one request into an answer: delay, authentication,
authorization, injected failure, then the store; watches stream chunked JSON lines until
their timeout, a cut, the client hanging up or the server closing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .endpoints import ENDPOINTS, EndpointsView
from .faults import Faults, RequestLog, RequestRecord, field_manager_of
from .paging import validate_list_options, watch_start
from .query import client_gone, delete_options, dry_run_of, int_param, parse_json, selectors_of
from .routes import Route, discovery_document, route
from .selectors import parse_field_selector
from .status import (
    StatusError,
    bad_request,
    forbidden,
    internal_error,
    status_for_code,
    unauthorized,
)
from .store import Store
from .watch import BookmarkSchedule, Watcher, bookmark

__all__ = ["Dispatcher", "HTTPServer"]

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_POLL = 0.2  # longest wait of a watch loop round: bounds how late cut/close/hang-up is seen
_DECODES = ("create", "update", "delete")  # verbs whose JSON body is decoded (patch: below)


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _is_dry_run(found: Route, query: dict[str, str], raw: bytes) -> bool:
    """Whether a write is a dry run, for matching injected failures (a malformed one is
    not: it fails later with its own error)."""
    try:
        if found.verb == "delete":
            return delete_options(query, raw)[0]
        return found.verb in ("create", "update", "patch") and dry_run_of(query)
    except StatusError:
        return False


class HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server whose connection threads are named, tracked and joined."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        dispatcher: Dispatcher,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self._ssl_context = ssl_context
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._numbers = itertools.count(1)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        if self._ssl_context is not None:
            # The handshake runs in the connection's own thread (first read or write).
            self.socket = self._ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-kube-api-conn-{next(self._numbers)}",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conns.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("fake API connection from %s failed", client_address, exc_info=True)

    def drop_connections(self) -> list[threading.Thread]:
        """Shut every open connection down (wakes idle keep-alive readers); their threads."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return [thread for _, thread in conns]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake API: " + format, *args)

    def do_GET(self) -> None:
        self.server.dispatcher.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.dispatcher.handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.dispatcher.handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.dispatcher.handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.dispatcher.handle(self, "DELETE")


class Dispatcher:
    """Answers requests from the store, the fault rules and these settings."""

    def __init__(self, store: Store, faults: Faults, log: RequestLog) -> None:
        self.store = store
        self.endpoints = EndpointsView(store)
        self.faults = faults
        self.log = log
        self.url = ""
        self.bookmark_interval = 1.0
        self.expired_as_http_410 = False
        self.max_watch_timeout = 1800.0
        self.stopping = threading.Event()

    def handle(self, h: _Handler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        found = route(method, parts.path, watch=query.get("watch", "") in _TRUE)

        retry_after: int | None = None

        def answer(code: int, body: Any) -> None:
            manager = None
            if found.verb in ("create", "update", "patch"):
                manager = field_manager_of(query, h.headers.get("User-Agent") or "")
            self.log.add(
                RequestRecord(method, parts.path, query, found.verb, found.resource, code, manager)
            )
            data = _dump(body)
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                h.send_header("Retry-After", str(retry_after))
            h.end_headers()
            h.wfile.write(data)

        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        decodes = found.kind in ("resource", "ssar") and found.verb in _DECODES
        if raw and decodes and ctype not in ("application/json", ""):
            # protobuf, YAML, text...: this fake decodes JSON only, and says so
            answer(
                415,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "the body of the request was in an unknown format - accepted "
                    "media types include: application/json",
                    "reason": "UnsupportedMediaType",
                    "code": 415,
                },
            )
            return
        seconds = self.faults.delay_for(found.verb, found.resource)
        if seconds > 0:
            self.stopping.wait(seconds)
        try:
            if not self.faults.authenticated(h.headers.get("Authorization")):
                raise unauthorized()
            self._authorize(found)
            injected = self.faults.take_failure(
                found.verb, found.resource, dry_run=_is_dry_run(found, query, raw)
            )
            if injected is not None:
                error = status_for_code(injected.code)
                if injected.retry_after is not None:
                    # As the API server's tooManyRequests: header and details agree.
                    retry_after = injected.retry_after
                    error.status["details"] = {"retryAfterSeconds": retry_after}
                raise error
            if found.kind == "watch":
                self._serve_watch(h, found, query, parts.path)
                return
            code, body = self._serve(found, method, query, raw, h.headers.get("Content-Type"))
        except StatusError as exc:
            code, body = exc.code, exc.status
        except Exception as exc:
            if found.kind == "watch":
                raise  # the stream may have started: the connection just ends
            logger.exception("fake API failed on %s %s", method, h.path)
            code, body = 500, internal_error(f"{type(exc).__name__}: {exc}").status
        answer(code, body)

    def _authorize(self, found: Route) -> None:
        if found.verb is None or found.resource is None:
            return
        code = self.faults.denied(found.verb, found.resource, found.group, found.namespace)
        if code is None:
            return
        error = forbidden(
            found.resource,
            found.group,
            found.name,
            found.verb,
            found.namespace,
            self.faults.username,
        )
        if code != 403:
            error.status["code"] = code
        raise error

    def _serve(
        self, found: Route, method: str, query: dict[str, str], raw: bytes, ctype: str | None
    ) -> tuple[int, Any]:
        if found.kind == "missing":
            return 404, found.document
        if found.kind == "not-allowed":
            return 405, found.document
        if found.kind == "document":
            return 200, found.document or discovery_document(found.path, self.url)
        if found.kind == "ssar":
            return 201, self._review(parse_json(raw))
        res = found.res
        assert res is not None
        ns, name = found.namespace or "", found.name or ""
        if res is ENDPOINTS and found.verb == "get":
            return 200, self.endpoints.get(ns, name)
        if res is ENDPOINTS and found.verb == "list":
            return 200, self.endpoints.list(found.namespace, *selectors_of(query))
        if found.verb == "get":
            return 200, self.store.get(res, ns, name)
        if found.verb == "list":
            labels, fields = selectors_of(query, res.resource)
            validate_list_options(query, watch=False)
            return 200, self.store.list_collection(
                res,
                found.namespace,
                labels,
                fields,
                resource_version=query.get("resourceVersion", ""),
                match=query.get("resourceVersionMatch", ""),
                limit=int_param(query, "limit"),
                continue_token=query.get("continue", ""),
            )
        if found.verb == "delete":
            dry_run, pre = delete_options(query, raw)
            return 200, self.store.delete(res, ns, name, preconditions=pre, dry_run=dry_run)
        body = parse_json(raw) if raw else {}
        dry_run = dry_run_of(query)
        if found.verb == "create":
            return 201, self.store.create(res, ns, body, dry_run=dry_run)
        if found.verb == "update":
            return 200, self.store.update(res, ns, name, body, dry_run=dry_run)
        # the one verb left: patch
        media = (ctype or "").split(";")[0].strip()
        if media not in _PATCH_TYPES:
            raise StatusError(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"the body of the request was in an unknown format - "
                    f"accepted media types include: {', '.join(_PATCH_TYPES)}",
                    "reason": "UnsupportedMediaType",
                    "code": 415,
                }
            )
        return 200, self.store.patch(res, ns, name, media, body, dry_run=dry_run)

    def _review(self, body: Any) -> JSON:
        spec = body.get("spec") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise bad_request("SelfSubjectAccessReview: spec is required")
        attrs = spec.get("resourceAttributes")
        allowed = True
        if isinstance(attrs, dict):
            code = self.faults.denied(
                str(attrs.get("verb", "")),
                str(attrs.get("resource", "")),
                str(attrs.get("group", "")),
                attrs.get("namespace") or None,
            )
            allowed = code is None
        status: JSON = {"allowed": allowed}
        if allowed:
            status["reason"] = "allowed by the fake API (no deny rule matches)"
        return {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }

    # -- watch streaming ------------------------------------------------------------

    def _serve_watch(self, h: _Handler, found: Route, query: dict[str, str], path: str) -> None:
        res = found.res
        assert res is not None
        labels, fields = selectors_of(query, res.resource)
        rv = watch_start(query, lambda: int(self.store.resource_version))
        bookmarks = query.get("allowWatchBookmarks", "") in _TRUE
        timeout = float(int_param(query, "timeoutSeconds") or self.max_watch_timeout)
        timeout = min(timeout, self.max_watch_timeout)

        def log(code: int) -> None:
            self.log.add(RequestRecord("GET", path, query, "watch", res.resource, code))

        if res is ENDPOINTS:
            self._serve_endpoints_watch(h, found, query, rv, timeout, log)
            return
        try:
            watcher = self.store.watch(res, found.namespace, labels, fields, rv)
        except StatusError as exc:
            if exc.code != 410 or self.expired_as_http_410:
                raise
            log(200)
            self._start_stream(h)
            self._write_event(h, "ERROR", exc.status)
            self._end_stream(h)
            return
        log(200)
        since = int(self.store.resource_version) if rv is None else rv
        try:
            # the initial events (no resourceVersion, or sendInitialEvents=true) end with a
            # bookmark when bookmarks are allowed, as the cacher's watches do
            self._stream(
                h, watcher, bookmarks=bookmarks, initial=rv is None, since=since, timeout=timeout
            )
        finally:
            self.store.unwatch(watcher)

    def _serve_endpoints_watch(
        self,
        h: _Handler,
        found: Route,
        query: dict[str, str],
        rv: int | None,
        timeout: float,
        log: Any,
    ) -> None:
        labels, fields = selectors_of(query)
        if found.name is not None:
            fields = parse_field_selector(
                f"metadata.name={found.name}", ("metadata.name", "metadata.namespace")
            )
        log(200)
        self._start_stream(h)

        def stop() -> bool:
            return self.stopping.is_set() or client_gone(h.connection)

        ended = self.endpoints.watch(
            found.namespace,
            labels,
            fields,
            rv,
            write=lambda kind, obj: self._write_event(h, kind, obj),
            stop=stop,
            timeout=timeout,
        )
        if ended == "cut":
            self._hang_up(h)
        elif ended != "gone":
            self._end_stream(h)

    def _stream(
        self,
        h: _Handler,
        watcher: Watcher,
        *,
        bookmarks: bool,
        initial: bool,
        since: int,
        timeout: float,
    ) -> None:
        """Events until the timeout, a cut or a hang-up; bookmarks as
        :class:`~.watch.BookmarkSchedule` says (``since``: where the stream starts)."""
        self._start_stream(h)
        start = time.monotonic()
        end_at = start + timeout
        schedule = BookmarkSchedule(
            enabled=bookmarks,
            initial=initial,
            interval=self.bookmark_interval,
            start=start,
            end_at=end_at,
            since=since,
        )
        rounds = int(timeout / 0.001) + 10  # a round waits or writes; this bound is never hit
        for _ in range(rounds):
            now = time.monotonic()
            if now >= end_at:
                break
            items, ended = self.store.take(watcher, min(_POLL, end_at - now, schedule.wait(now)))
            if ended == "cut":
                self._hang_up(h)
                return
            for kind, obj in items:
                if not self._write_event(h, kind, obj):
                    return
                schedule.carried(int(obj["metadata"].get("resourceVersion") or 0))
            if ended is not None:
                break
            now = time.monotonic()
            if not schedule.due(now):
                if not items and client_gone(h.connection):
                    h.close_connection = True
                    return
                continue
            rv = self.store.bookmark_rv(watcher)
            if rv is None or not schedule.wants(now, int(rv)):
                continue
            mark = bookmark(watcher.resource, rv, initial_events_end=schedule.initial)
            if not self._write_event(h, "BOOKMARK", mark):
                return
            schedule.bookmarked(int(rv), time.monotonic())
        self._end_stream(h)

    @staticmethod
    def _start_stream(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    @staticmethod
    def _write_event(h: _Handler, kind: str, obj: Any) -> bool:
        line = _dump({"type": kind, "object": obj}) + b"\n"
        try:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        except OSError:
            h.close_connection = True
            return False
        return True

    @staticmethod
    def _end_stream(h: _Handler) -> None:
        try:
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            h.close_connection = True

    @staticmethod
    def _hang_up(h: _Handler) -> None:
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)
