"""HTTP/2 listeners at many pod IPs, run inside the pod network's namespace (or, for
the fake API's benchmark, at loopback addresses).

``[ip netns exec NS] python -m benchmarks._podlisten`` (started by :class:`PodListeners`)
reads one JSON command a line on stdin and answers one JSON line:

- ``{"op": "listen", "ips": [...], "port": P}``: listen on each ``IP:P`` (``P`` 0: the
  port the first listener got, for all); answers ``{"port": P}``;
- ``{"op": "open"}``: ``{"open": [ip, ...]}``, the IPs that hold an open connection now;
- ``{"op": "seen"}``: ``{"seen": [ip, ...]}``, the IPs a connection reached since the
  last ``reset``;
- ``{"op": "reset"}``.

Each connection gets what makes a gRPC client call its subchannel READY (the server's
HTTP/2 SETTINGS, and an ACK for each of the client's SETTINGS and PINGs) and is kept
open; requests are never answered. So the IPs with an open connection are the
endpoints a client is using now, with no gRPC server per pod: a client that drops an
address closes its connection. It exits when stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from typing import Any

__all__ = ["PodListeners"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


class _Conn:
    def __init__(self, sock: socket.socket, ip: str) -> None:
        self.sock, self.ip, self.buffer, self.preface = sock, ip, b"", False

    def feed(self, data: bytes) -> None:
        """Read HTTP/2 frames; ACK SETTINGS and PING."""
        self.buffer += data
        if not self.preface:
            if len(self.buffer) < len(_PREFACE):
                return
            self.buffer, self.preface = self.buffer[len(_PREFACE) :], True
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags = self.buffer[3], self.buffer[4]
            payload = self.buffer[9 : 9 + length]
            self.buffer = self.buffer[9 + length :]
            if kind == 4 and not flags & 1:
                self.sock.sendall(_SETTINGS_ACK)
            elif kind == 6 and not flags & 1:
                self.sock.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)


def _serve() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per pod and client
    selector = selectors.DefaultSelector()
    seen: set[str] = set()
    conns: dict[int, _Conn] = {}
    lock = threading.Lock()
    done = threading.Event()

    def close(conn: _Conn) -> None:
        with lock:
            conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(Exception):
            selector.unregister(conn.sock)
        conn.sock.close()

    def loop() -> None:
        while not done.is_set():
            for key, _ in selector.select(0.1):
                if isinstance(key.data, str):  # a listener
                    with contextlib.suppress(OSError):
                        sock, _ = key.fileobj.accept()  # type: ignore[union-attr]
                        sock.setblocking(True)
                        sock.settimeout(1.0)
                        conn = _Conn(sock, key.data)
                        sock.sendall(_SETTINGS)
                        with lock:
                            seen.add(key.data)
                            conns[sock.fileno()] = conn
                        selector.register(sock, selectors.EVENT_READ, conn)
                    continue
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                    if not data:
                        raise ConnectionResetError
                    conn.feed(data)
                except OSError:
                    close(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    for line in sys.stdin:
        command = json.loads(line)
        reply: dict[str, Any] = {"ok": True}
        try:
            if command["op"] == "listen":
                port = int(command["port"])
                for ip in command["ips"]:
                    sock = socket.create_server((ip, port), backlog=128)
                    port = sock.getsockname()[1]
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ, ip)
                reply["port"] = port
            elif command["op"] == "open":
                with lock:
                    reply["open"] = sorted({c.ip for c in conns.values()})
            elif command["op"] == "seen":
                with lock:
                    reply["seen"] = sorted(seen)
            elif command["op"] == "reset":
                with lock:
                    seen.clear()
        except Exception as exc:  # every command gets an answer
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    done.set()
    thread.join(2)


class PodListeners:
    """The listener process (in network namespace ``netns`` when given); stopped by
    :meth:`close`."""

    def __init__(self, netns: str | None = None) -> None:
        inside = ["ip", "netns", "exec", netns] if netns else []
        self._proc = subprocess.Popen(
            [*inside, sys.executable, "-m", "benchmarks._podlisten"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pod listeners exited with status {self._proc.poll()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"pod listeners: {reply['error']}")
        return reply

    def listen(self, ips: list[str], port: int = 0) -> int:
        """Listen at each of ``ips``; the port (``0``: one chosen for all)."""
        return int(self._ask({"op": "listen", "ips": ips, "port": port})["port"])

    def open(self) -> set[str]:
        return set(self._ask({"op": "open"})["open"])

    def seen(self) -> set[str]:
        return set(self._ask({"op": "seen"})["seen"])

    def reset(self) -> None:
        self._ask({"op": "reset"})

    def held_when_steady(self, quiet: float = 5.0, timeout: float = 90.0) -> set[str]:
        """The endpoints with an open connection once their number has not changed for
        ``quiet`` seconds (or at ``timeout``): what a client settled on."""
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - stable_since < quiet:
            time.sleep(0.5)
            now_open = len(self.open())
            if now_open != last:
                last, stable_since = now_open, time.monotonic()
        return self.open()

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # our own child, by its handle
            self._proc.wait(5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def slices_note(name: str, held: set[str], ever: int, slices: list[set[str]]) -> str:
    """How a client that holds fewer endpoints than the Service has maps onto its
    EndpointSlices (kuberesolver's issue #66: the most recently changed slice only)."""
    best = max(slices, key=lambda x: len(x & held))
    return (
        f"{name}: {len(held)} endpoints held open, {len(best & held)} of them from one "
        f"slice (of {len(best)}); {ever} endpoints dialed at some point"
    )


if __name__ == "__main__":
    _serve()
