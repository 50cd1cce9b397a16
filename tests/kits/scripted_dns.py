"""A DNS server on loopback that answers with whatever bytes a test says: good, hostile
or garbage. UDP and TCP on one port; each query is handed to ``script(query, tcp)``,
which returns the response bytes (its ID is not patched: the script decides) or None
to stay silent. Used by the differential and hostile-server tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

Script = Callable[[bytes, bool], bytes | None]


class ScriptedDNS:
    def __init__(self, script: Script, host: str = "127.0.0.1") -> None:
        self.script = script
        self.queries = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._udp, self._tcp = _bind_pair(host)
        self.address = f"{host}:{self._udp.getsockname()[1]}"
        self._threads = [
            threading.Thread(target=self._serve_udp, name="scripted-dns-udp", daemon=True),
            threading.Thread(target=self._serve_tcp, name="scripted-dns-tcp", daemon=True),
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)
        self._udp.close()
        self._tcp.close()

    def _answer(self, query: bytes, tcp: bool) -> bytes | None:
        with self._lock:
            self.queries += 1
            return self.script(query, tcp)

    def _serve_udp(self) -> None:
        self._udp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                query, peer = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            response = self._answer(query, False)
            if response is not None:
                try:
                    self._udp.sendto(response, peer)
                except OSError:
                    return

    def _serve_tcp(self) -> None:
        self._tcp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    self._serve_connection(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        buffer = b""
        for _ in range(64):  # bounded: a test never pipelines more
            while len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
                chunk = conn.recv(65535)
                if not chunk:
                    return
                buffer += chunk
            size = int.from_bytes(buffer[:2], "big")
            query, buffer = buffer[2 : 2 + size], buffer[2 + size :]
            response = self._answer(query, True)
            if response is not None:
                conn.sendall(len(response).to_bytes(2, "big") + response[:65535])


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(16)
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError("no port free for both UDP and TCP")
