"""ZoneResponder's lifecycle under races: close() while a thread is being spawned, close()
interrupted while it waits for its threads, close() on one of its own threads."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from dnsbalance._channel import local_dns
from dnsbalance._channel.zone_server import ZoneResponder
from tests.kits.backends import wait_until


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


class _Interrupted(Exception):
    """What a signal handler raises in the main thread (KeyboardInterrupt, pytest-timeout)."""


def _released(port: int) -> bool:
    """Whether nothing listens on ``port`` any more and its UDP port can be bound again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("127.0.0.1", port))  # EADDRINUSE while the server's UDP socket is open
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        try:
            tcp.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def _assert_sockets_closed(port: int) -> None:
    """Both sockets closed (a thread still in a system call on one holds it a moment)."""
    assert wait_until(lambda: _released(port), 5.0), f"port {port} still open"


class _HeldQuery(ZoneResponder):
    """Holds each query's handler thread until ``release`` is set (close() must wait)."""

    def __init__(self) -> None:
        super().__init__("cluster.local")
        self.holding = threading.Event()
        self.release = threading.Event()

    def _admit(self) -> bool:
        self.holding.set()
        self.release.wait(10.0)
        return False


def _query(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",
            ("127.0.0.1", port),
        )


def test_close_interrupted_while_waiting_for_its_threads_closes_its_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception while close() waits for its threads (a signal's: Ctrl-C, pytest-timeout)
    left both sockets open, and local_dns had let go of the server already: they stayed
    open until the garbage collector found them and warned (ResourceWarning). The full
    suite failed so in tests/test_aio.py's gc.collect(), after the 1,000-cycle test timed
    out inside close()."""
    server = _HeldQuery().start()
    port = server.port
    _query(port)
    assert server.holding.wait(5.0)
    joined: list[threading.Thread] = []
    original_join = threading.Thread.join

    def interrupted_join(thread: threading.Thread, timeout: float | None = None) -> None:
        if thread.name.startswith("dnsbalance-dns-"):
            joined.append(thread)
            raise _Interrupted
        original_join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    try:
        with pytest.raises(_Interrupted):
            server.close()
    finally:
        monkeypatch.undo()
        server.release.set()
    _assert_sockets_closed(port)
    for thread in joined:
        thread.join(5.0)


def test_close_on_one_of_its_own_threads_closes_its_sockets() -> None:
    """A channel's finalizer runs on whichever thread the garbage collector interrupts,
    one of the local DNS's own included, and closes the server there: close() raised
    'cannot join current thread' and left both sockets open."""
    errors: list[BaseException] = []
    closed = threading.Event()

    class ClosingOnQuery(ZoneResponder):
        def _admit(self) -> bool:
            try:
                self.close()
            except BaseException as exc:  # reported below
                errors.append(exc)
            closed.set()
            return False

    server = ClosingOnQuery("cluster.local").start()
    port = server.port
    _query(port)
    assert closed.wait(5.0)
    assert errors == []
    _assert_sockets_closed(port)


def _wakeups(thread: threading.Thread) -> int:
    """How often ``thread`` has slept and been woken (Linux: voluntary context switches)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_an_idle_server_never_wakes_up() -> None:
    """Its threads block without a timeout (they woke every 0.1 s to check for close())."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux's /proc")
    with ZoneResponder("cluster.local") as server:
        listeners = [t for t in threading.enumerate() if t.name.endswith(f"-{server.port}")]
        assert len(listeners) == 2
        time.sleep(0.1)  # both are in poll() by now
        before = [_wakeups(t) for t in listeners]
        time.sleep(0.5)
        assert [_wakeups(t) for t in listeners] == before


def test_close_ends_an_idle_tcp_connection() -> None:
    """close() shuts down the connections it serves: the client reads EOF and the
    connection's thread ends with the others."""
    server = ZoneResponder("cluster.local").start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as client:
        assert wait_until(
            lambda: any(
                t.name.startswith("dnsbalance-dns-tcp-conn") for t in threading.enumerate()
            ),
            5.0,
        )
        server.close()
        assert client.recv(1) == b""
    assert not [t for t in threading.enumerate() if t.name.endswith(f"-{server.port}")]
