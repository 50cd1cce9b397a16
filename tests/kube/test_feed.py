"""ApiFeed's first-list rule with a scripted watcher: mode "api" lists on the caller's
thread and raises; mode "auto" waits a bounded time and hands a late answer on."""

from __future__ import annotations

import threading

import pytest

from dnsbalance import Endpoint, KubernetesError
from dnsbalance._kube.feed import AUTO_FIRST_LIST_TIMEOUT, ApiFeed

E1 = Endpoint(address="10.0.0.1", port=8000)
Views = list[tuple[tuple[Endpoint, ...] | None, KubernetesError | None]]


class ScriptedWatcher:
    """A SliceWatcher stand-in: ``list_once`` answers ``endpoints`` (or raises
    ``error``); ``start`` reports that answer on its own thread after ``delay``."""

    def __init__(
        self, feed: ApiFeed, *, delay: float = 0.0, error: KubernetesError | None = None
    ) -> None:
        self.feed, self.delay, self.error = feed, delay, error
        self.started = self.stopped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def list_once(self) -> tuple[Endpoint, ...]:
        if self.error is not None:
            raise self.error
        return (E1,)

    def start(self) -> None:
        self.started += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        if not self._stop.wait(self.delay):
            if self.error is not None:
                self.feed._view(None, self.error)
            else:
                self.feed._view((E1,), None)

    def stop(self) -> None:
        self.stopped += 1
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)


def feed_with(**kwargs: object) -> tuple[ApiFeed, ScriptedWatcher]:
    feed = ApiFeed(None, False, None)
    watcher = ScriptedWatcher(feed, **kwargs)  # type: ignore[arg-type]
    feed.watcher = watcher  # type: ignore[assignment]
    return feed, watcher


def test_auto_waits_five_seconds_at_most() -> None:
    assert AUTO_FIRST_LIST_TIMEOUT == 5.0


def test_auto_takes_a_prompt_answer() -> None:
    feed, watcher = feed_with(delay=0.0)
    feed.first_list(strict=False, timeout=2.0)
    assert feed.endpoints == (E1,)
    assert feed.error is None
    assert watcher.started == 1
    feed.close()


def test_auto_goes_on_without_a_late_answer_and_hands_it_on_later() -> None:
    feed, watcher = feed_with(delay=0.5)
    feed.first_list(strict=False, timeout=0.05)
    assert feed.endpoints is None
    assert feed.error is not None
    assert feed.error.reason == "Timeout"
    assert "within 0.05 s" in str(feed.error)
    got: Views = []
    arrived = threading.Event()

    def sink(endpoints: tuple[Endpoint, ...] | None, error: KubernetesError | None) -> None:
        got.append((endpoints, error))
        arrived.set()

    feed.follow(sink)
    assert arrived.wait(3.0)
    assert got == [((E1,), None)]
    feed.close()
    assert watcher.stopped == 1


def test_auto_keeps_the_error_of_a_failed_first_list() -> None:
    error = KubernetesError("forbidden", status=403, reason="Forbidden")
    feed, _ = feed_with(error=error)
    feed.first_list(strict=False, timeout=2.0)
    assert feed.endpoints is None
    assert feed.error is error
    feed.close()


def test_api_lists_on_the_callers_thread() -> None:
    feed, watcher = feed_with()
    feed.first_list(strict=True, timeout=0.0)
    assert feed.endpoints == (E1,)
    assert watcher.started == 0  # follow() starts it
    feed.close()


def test_api_raises_and_leaves_no_watcher_running() -> None:
    error = KubernetesError("unreachable", reason="ConnectionError")
    feed, watcher = feed_with(error=error)
    with pytest.raises(KubernetesError, match="unreachable"):
        feed.first_list(strict=True, timeout=0.0)
    assert watcher.stopped == 1


def test_views_before_follow_keep_only_the_latest_in_order() -> None:
    feed, _ = feed_with(delay=10.0)
    feed._view((E1,), None)
    feed._view(None, KubernetesError("gone", reason="ConnectionError"))
    got: Views = []
    feed.follow(lambda endpoints, error: got.append((endpoints, error)))
    assert len(got) == 1
    assert got[0][0] is None
    feed._view((E1,), None)
    assert got[-1] == ((E1,), None)
    feed.close()
