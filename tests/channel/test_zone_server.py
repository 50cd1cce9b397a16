"""ZoneResponder's lifecycle under races: close() while a thread is being spawned."""

from __future__ import annotations

import threading
import time

import pytest

from dnsbalance._channel import local_dns
from dnsbalance._channel.zone_server import ZoneResponder


def test_close_while_a_handler_thread_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler thread registered but not started yet must not make close() fail
    ("cannot join thread before it is started"), which left the process's local DNS
    closed but in use, and every later channel without answers."""
    server = ZoneResponder("cluster.local", host="127.0.0.1", port=0).start()
    original = threading.Thread.start
    spawning = threading.Event()

    def slow_start(thread: threading.Thread) -> None:
        if thread.name.startswith("dnsbalance-dns-late"):
            spawning.set()
            time.sleep(0.3)  # close() runs meanwhile
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    spawner = threading.Thread(
        target=server._spawn, args=(lambda: None, "late"), kwargs={"tracked": True}
    )
    original(spawner)
    assert spawning.wait(2.0)
    server.close()  # raised RuntimeError before the fix
    spawner.join(2.0)
    assert not spawner.is_alive()


def test_a_local_dns_that_fails_to_close_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A process state of this test alone (other tests' channels may hold names).
    monkeypatch.setattr(local_dns, "_server", None)
    monkeypatch.setattr(local_dns, "_users", 0)
    monkeypatch.setattr(local_dns, "_lock", threading.Lock())
    first = local_dns.local_name()
    server = local_dns._server
    assert server is not None

    def failing_close() -> None:
        ZoneResponder.close(server)
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "close", failing_close)
    with pytest.raises(RuntimeError, match="boom"):
        first.close()
    second = local_dns.local_name()
    try:
        assert local_dns._server is not server
    finally:
        second.close()
