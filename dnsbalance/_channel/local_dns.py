"""An in-process DNS server on loopback that serves each channel's agreed endpoint set.

In modes ``"auto"`` and ``"api"`` the channel's endpoints are decided by
dnsbalance (DNS cross-checked with the API), not by cluster DNS alone, so gRPC's
own resolver must see that decision. Two ways were measured (see the
benchmarks): an explicit ``ipv4:a,b,c`` address list opens a new connection to
*every* backend on each change (grpcio shares connections only between channels
with identical targets), while a ``dns://127.0.0.1:PORT/<name>`` target kept
identical across rebuilds, answered by this server, opens exactly one per new
backend, and gRPC's own re-resolution after a failure also sees the agreed set.

One server per process, started with the first channel that needs it and closed
with the last: two listener threads (UDP, TCP), and a short-lived thread per query or
TCP connection, at most 64 at once (see :mod:`.zone_server`). Each channel gets its own name
under the reserved ``.invalid`` domain, which nothing outside this process
resolves.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnsbalance._endpoints import Endpoint

from .zone_records import AddressNode
from .zone_server import ZoneResponder

ZONE = "dnsbalance.invalid"
TTL = 1

_lock = threading.Lock()
_server: ZoneResponder | None = None
_users = 0
_numbers = itertools.count(1)


class LocalName:
    """One channel's name on the local DNS server; ``publish`` replaces its records."""

    def __init__(self, server: ZoneResponder, name: str) -> None:
        self._server = server
        self.name = name
        self.authority = server.address
        self._dns_name = dns.name.from_text(name)
        self._closed = False

    def publish(self, endpoints: Sequence[Endpoint]) -> None:
        """Serve exactly ``endpoints``' addresses (A and AAAA) under this name, as an
        :class:`AddressNode`: written to the wire once, here (no dnspython RRset)."""
        by_type: dict[dns.rdatatype.RdataType, list[str]] = {}
        for ep in endpoints:
            rdtype = dns.rdatatype.A if ep.version == 4 else dns.rdatatype.AAAA
            by_type.setdefault(rdtype, []).append(ep.address)
        node = AddressNode(self._dns_name, TTL, by_type)
        self._server.replace(
            [], names=[self._dns_name], nodes={self._dns_name: node} if node else {}
        )

    def close(self) -> None:
        """Drop the records; the last name closed stops the server. Idempotent."""
        global _server, _users
        with _lock:
            if self._closed:
                return
            self._closed = True
            self._server.replace([], names=[self._dns_name])
            _users -= 1
            if _users == 0 and _server is not None:
                server, _server = _server, None  # never handed out again, even if close fails
                server.close()


def _forget_after_fork() -> None:
    """A forked child has the parent's server object but none of its threads: its
    channels start a server of their own."""
    global _lock, _server, _users
    _lock = threading.Lock()
    _server, _users = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def local_name() -> LocalName:
    """A new name on the process's local DNS server (started on first use)."""
    global _server, _users
    with _lock:
        if _server is None:
            _server = ZoneResponder(ZONE, host="127.0.0.1", port=0, ttl=TTL)
            _server.start()
        _users += 1
        return LocalName(_server, f"c{next(_numbers)}.{ZONE}")
