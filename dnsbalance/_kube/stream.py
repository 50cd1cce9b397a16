"""What the two watchers of a Service (its slices, its pods) do alike around the API:
I/O plumbing, no decisions.

- :class:`StreamThread`: one daemon thread reading one watch stream at a time, stopped
  by closing that stream from the stopping thread;
- :func:`list_pages`: a paged list, bounded;
- :func:`json_body`: a response's JSON, its connection released;
- :func:`watch_events`: a watch stream's events, as JSON dicts;
- :func:`watch_error`: what a watch's ERROR event means (410: :class:`Expired`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dnsbalance._exceptions import KubernetesError

from .client import _kubernetes

log = logging.getLogger(__name__)

MAX_PAGES = 10_000


class Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


class StreamThread:
    """``run`` on a daemon thread named ``name``; :attr:`stopping` is set by :meth:`stop`,
    which also closes the stream the thread :meth:`hold` s, so a blocked read ends."""

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name = name
        self._run = run
        self.stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._resp_lock = threading.Lock()
        self._resp: Any = None

    def start(self) -> None:
        """Start the thread (idempotent; never again after :meth:`stop`)."""
        with self._start_lock:
            if self._thread is None and not self.stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Closes the open stream and joins the thread. Idempotent."""
        self.stopping.set()
        with self._resp_lock:
            resp, self._resp = self._resp, None
        if resp is not None:
            try:
                resp.shutdown() if hasattr(resp, "shutdown") else resp.close()
            except Exception:  # closing from another thread may race the reader
                log.debug("%s: closing the watch stream", self.name, exc_info=True)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def hold(self, resp: Any) -> bool:
        """``resp`` is the stream being read, for :meth:`stop` to close; False (and
        ``resp`` closed) when stopping already."""
        with self._resp_lock:
            if self.stopping.is_set():
                resp.close()
                return False
            self._resp = resp
        return True

    def release(self, resp: Any) -> None:
        """The stream ended: close it and give its connection back."""
        with self._resp_lock:
            self._resp = None
        resp.close()
        resp.release_conn()


def json_body(resp: Any) -> Any:
    """The JSON of a response read with ``_preload_content=False``; its connection is
    released either way."""
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


def list_pages(
    page: Callable[[str | None], Mapping[str, Any]], what: str
) -> tuple[list[dict[str, Any]], str]:
    """Every item (JSON objects only) of a list read page by page (``page(token)``, the
    continue token or ``None`` first), and the list's resourceVersion ("" if none)."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(MAX_PAGES):  # bounded
        body = page(token)
        items.extend(i for i in body.get("items") or () if isinstance(i, dict))
        metadata = body.get("metadata") or {}
        token = metadata.get("continue") or None
        if token is None:
            return items, str(metadata.get("resourceVersion") or "")
    raise KubernetesError(f"{what} list did not end after {MAX_PAGES} pages")


def watch_error(obj: Mapping[str, Any], resource: str) -> Exception:
    """What an ERROR event's Status means: :class:`Expired` for 410, else the API's
    error, as a :class:`KubernetesError` naming ``resource``."""
    code = obj.get("code")
    if code == 410:
        return Expired()
    return KubernetesError(
        f"watch of {resource} failed: {obj.get('reason')}: {obj.get('message')}",
        status=code if isinstance(code, int) else None,
        reason=str(obj.get("reason") or ""),
    )


def watch_events(resp: Any) -> Iterator[dict[str, Any]]:
    """The JSON events of a watch response, one per line."""
    _, _, watch = _kubernetes()
    for line in watch.iter_resp_lines(resp):
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("skipping a watch line that is not JSON: %.100r", line)
            continue
        if isinstance(event, dict):
            yield event
