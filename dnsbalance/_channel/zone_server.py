"""A small authoritative DNS server for one in-memory zone, on loopback.

It serves UDP and TCP on the same port, each from a named daemon thread, with a
short-lived daemon thread per UDP query and per TCP connection (at most
``_MAX_HANDLERS`` at once; more are dropped, like an overloaded server would).
The records live in an immutable snapshot swapped under a lock by :meth:`replace`;
queries read the current snapshot without locking.

No thread polls: the two listeners block, without a timeout, until their socket or a
wake-up socket is readable, and a TCP connection's thread until its next bytes or its
deadline. :meth:`close` writes to the wake-up socket and shuts the open connections
down, so an idle server never wakes and a close returns as soon as the threads end.

What it answers (no recursion, no CNAME chasing, wildcards, delegation or zone transfer):

- outside the zone: REFUSED;
- the apex: SOA (``ns.dns.<zone>. hostmaster.<zone>.``, as CoreDNS) and NS
  (``ns.dns.<zone>.``, whose A/AAAA is the listening address);
- a stored (name, type): the RRset, authoritative; SRV answers carry the targets'
  A/AAAA in the Additional section; ANY returns every RRset of the name;
- a name that exists, or has a name below it (an empty non-terminal), but lacks the
  type: NOERROR/NODATA with the SOA in Authority; anything else: NXDOMAIN with the SOA.

Sizes: EDNS is echoed (version 0) and the client's payload size honoured; without
EDNS a UDP answer is limited to 512 bytes. Additional records that do not fit are
left out; when the Answer itself does not fit, a UDP reply carries the TC flag and
the question only (clients then retry over TCP). TCP replies may use 65535 bytes.
Unparseable queries get FORMERR when their header can be read, else no reply.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Literal, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnsbalance._exceptions import ClosedError

from .zone_records import (
    OUR_PAYLOAD,
    TCP_LIMIT,
    UDP_LIMIT,
    Node,
    answer,
    build_snapshot,
    check_rrset,
    checked_nodes,
    formerr,
    ns_address,
    quick_reply,
    render,
)

__all__ = ["ZoneResponder"]

logger = logging.getLogger(__name__)

_ERROR_PAUSE = 0.1  # after a socket error (EMFILE, ICMP ...), cut short by close()
_JOIN_TIMEOUT = 1.0  # close() waits this long, in total, for the threads
_MAX_HANDLERS = 64  # concurrent UDP queries + TCP connections
_MAX_TCP_QUERIES = 10_000  # per connection
_TCP_READ_TIMEOUT = 2.0  # to read one message once its first byte arrived, or send a reply
_BIND_ATTEMPTS = 20  # port=0: tries to find a port free for both UDP and TCP


class ZoneResponder:
    """An authoritative DNS server for ONE zone held in memory, UDP and TCP on one port.

    ``zone`` is the origin (``"cluster.local"``); ``host`` an IP literal (``"127.0.0.1"``,
    ``"::1"``); ``port`` 0 picks a port free for both UDP and TCP; ``ttl`` is the TTL of
    the SOA and NS records and of negative answers. Load records with :meth:`replace`.

    Subclasses may change how it answers through three hooks, each called once per
    DNS message from the socket threads: :meth:`_admit` (reply at all?),
    :meth:`_forced_rcode` (an rcode instead of records) and :meth:`_with_additional`
    (fill the Additional section?). The test kit's fault knobs
    (``dnsbalance.testing.DNSResponder``) are built on them; this server has none.
    """

    def __init__(
        self,
        zone: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ttl: int = 5,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self._origin = dns.name.from_text(zone)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be an IP address, not {host!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        self._host = str(ip)
        self._family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self._requested_port = port
        self._port = 0
        self._ttl = ttl
        self._tcp_idle_timeout = tcp_idle_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state: Literal["new", "running", "closed"] = "new"
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        # close() writes to the second; the listeners wait for the first to be readable
        self._waker: tuple[socket.socket, socket.socket] | None = None
        self._connections: set[socket.socket] = set()  # open TCP connections, under _lock
        self._threads: set[threading.Thread] = set()
        self._handlers = threading.BoundedSemaphore(_MAX_HANDLERS)
        self._serial = int(time.time()) & 0xFFFFFFFF
        self._snapshot = build_snapshot(self._origin, self._ttl, self._serial, {}, None)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        """Bind UDP then TCP on the same port and start serving; returns ``self``."""
        with self._lock:
            if self._state == "closed":
                raise ClosedError(f"{self!r} is closed; create a new ZoneResponder")
            if self._state == "running":
                raise RuntimeError(f"{self!r} is already started")
            self._udp, self._tcp = self._bind()
            try:
                self._waker = socket.socketpair()
            except OSError:
                self._udp.close()
                self._tcp.close()
                raise
            self._port = self._udp.getsockname()[1]
            self._state = "running"
            self._snapshot = build_snapshot(  # the ns.dns address is known now
                self._origin, self._ttl, self._serial, self._snapshot.user, self._ns_address()
            )
        self._spawn(self._listen, "udp", self._udp, self._receive_udp, tracked=False)
        self._spawn(self._listen, "tcp", self._tcp, self._accept_tcp, tracked=False)
        logger.debug("serving zone %s on %s", self._origin, self.address)
        return self

    def close(self) -> None:
        """Stop serving: wake the threads, join them (1 s at most) and close the sockets.

        Idempotent. The sockets are closed even when the wait is interrupted (a signal's
        exception), and close() may run on one of the server's own threads (a channel's
        finalizer can run on any thread): that one is not waited for.
        """
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
            self._stop.set()  # under the lock: a connection registers before, or sees it
            if self._waker is not None:
                with contextlib.suppress(OSError):
                    self._waker[1].send(b"\0")  # never read: readable for every listener
            for conn in self._connections:
                with contextlib.suppress(OSError):  # already reset by the peer
                    conn.shutdown(socket.SHUT_RDWR)  # its recv() or sendall() returns
        try:
            self._join_threads()
        finally:
            for sock in (self._udp, self._tcp, *(self._waker or ())):
                if sock is not None:
                    sock.close()

    def _join_threads(self) -> None:
        deadline = time.monotonic() + _JOIN_TIMEOUT
        current = threading.current_thread()
        while (remaining := deadline - time.monotonic()) > 0:
            with self._lock:
                threads = [t for t in self._threads if t is not current]
            if not threads:
                return
            threads[0].join(remaining)

    def __enter__(self) -> Self:
        if self._state == "new":
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address if self._state == "running" else self._state
        return f"<ZoneResponder {self._origin} {where}>"

    # -- properties ----------------------------------------------------------------

    @property
    def zone(self) -> str:
        """The zone, without the final dot (``cluster.local``)."""
        return self._origin.to_text(omit_final_dot=True)

    @property
    def origin(self) -> dns.name.Name:
        """The zone as an absolute dnspython name."""
        return self._origin

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if not self._port:
            raise RuntimeError(f"{self!r} has no port until start()")
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` or ``[::1]:PORT``."""
        host = f"[{self._host}]" if self._family == socket.AF_INET6 else self._host
        return f"{host}:{self.port}"

    # -- records -------------------------------------------------------------------

    def replace(
        self,
        rrsets: Iterable[dns.rrset.RRset],
        *,
        names: Iterable[dns.name.Name] | None = None,
        nodes: Mapping[dns.name.Name, Node] | None = None,
    ) -> None:
        """Atomically install ``rrsets`` as the zone's records (SOA/NS excepted).

        With ``names=None`` every previous record goes. With ``names``, only the records
        owned by those names go; the others stay, and each given RRset replaces any
        RRset of the same name and type; ``nodes`` installs whole names, uncopied. Raises
        ValueError for a name outside the zone, a class other than IN, or SOA/NS at the apex.
        """
        incoming: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        for rrset in rrsets:
            check_rrset(self._origin, rrset)
            if not rrset:
                continue
            node = incoming.setdefault(rrset.name, {})
            rdatas = list(rrset)
            ttl = rrset.ttl
            if rrset.rdtype in node:
                rdatas = list(node[rrset.rdtype]) + rdatas
                ttl = min(ttl, node[rrset.rdtype].ttl)
            # A private copy: the caller may change its RRset afterwards.
            node[rrset.rdtype] = dns.rrset.from_rdata_list(rrset.name, ttl, rdatas)
        drop = None if names is None else set(names)
        with self._lock:
            if drop is None:
                user: dict[dns.name.Name, Node] = {}
            else:
                user = {n: node for n, node in self._snapshot.user.items() if n not in drop}
            for name, new_node in incoming.items():
                merged = dict(user.get(name, {}))
                merged.update(new_node)
                user[name] = MappingProxyType(merged)
            user.update(checked_nodes(self._origin, nodes or {}))
            self._serial = (self._serial + 1) & 0xFFFFFFFF
            self._snapshot = build_snapshot(
                self._origin, self._ttl, self._serial, user, self._ns_address()
            )

    def _ns_address(self) -> dns.rrset.RRset | None:
        """The A/AAAA of ``ns.dns.<zone>``: the listening address, once bound."""
        if not self._port:
            return None
        rdtype = "AAAA" if self._family == socket.AF_INET6 else "A"
        return ns_address(self._origin, self._ttl, rdtype, self._host)  # made once

    # -- hooks (see the class documentation) --------------------------------------------

    def _admit(self) -> bool:
        """Whether to answer the message just received (False: no reply at all)."""
        return True

    def _forced_rcode(self) -> int | None:
        """An rcode to answer with instead of records (None: answer from the zone)."""
        return None

    def _with_additional(self) -> bool:
        """Whether SRV and NS answers carry their targets' A/AAAA as Additional records."""
        return True

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless :meth:`close` comes first; True when it did."""
        return self._stop.wait(seconds)

    # -- answering -------------------------------------------------------------------

    def _handle(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The reply to one DNS message (``None``: no reply). Used by the socket threads."""
        if not self._admit():
            return None
        forced = self._forced_rcode()
        if forced is None and (quick := quick_reply(wire, self._snapshot, tcp=tcp)):
            return quick
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # anything dnspython cannot parse, by design
            return formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        try:
            response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        except Exception:
            return formerr(wire)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        elif forced is not None:
            response.set_rcode(dns.rcode.Rcode.make(forced))
        else:
            q = query.question[0]
            answer(
                response,
                self._snapshot,
                self._origin,
                q,
                with_additional=self._with_additional(),
            )
        if tcp:
            limit = TCP_LIMIT
        elif query.edns >= 0:
            limit = max(UDP_LIMIT, min(query.payload, TCP_LIMIT))
        else:
            limit = UDP_LIMIT
        return render(response, limit)

    # -- sockets ---------------------------------------------------------------------

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        attempts = _BIND_ATTEMPTS if self._requested_port == 0 else 1
        last: OSError | None = None
        for _ in range(attempts):
            udp = socket.socket(self._family, socket.SOCK_DGRAM)
            tcp = socket.socket(self._family, socket.SOCK_STREAM)
            try:
                udp.bind((self._host, self._requested_port))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self._host, udp.getsockname()[1]))
                tcp.listen(64)
            except OSError as exc:
                udp.close()
                tcp.close()
                last = exc
                continue
            udp.setblocking(False)  # read only when poll() says so
            tcp.setblocking(False)
            return udp, tcp
        assert last is not None
        raise OSError(
            last.errno, f"cannot bind UDP+TCP on {self._host} port {self._requested_port}: {last}"
        ) from last

    def _spawn(
        self, target: Callable[..., None], kind: str, *args: object, tracked: bool = True
    ) -> bool:
        """Start a named daemon thread; a handler thread needs a free slot (else False)."""
        if tracked and not self._handlers.acquire(blocking=False):
            return False
        thread = threading.Thread(
            target=self._run,
            args=(target, tracked, *args),
            name=f"dnsbalance-dns-{kind}-{self._port}",
            daemon=True,
        )
        with self._lock:  # started under the lock: close() never joins an unstarted one
            self._threads.add(thread)
            thread.start()
        return True

    def _run(self, target: Callable[..., None], tracked: bool, *args: object) -> None:
        try:
            target(*args)
        except Exception:  # a bad packet must never kill the server: log and go on
            logger.exception("DNS responder thread failed")
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
            if tracked:
                self._handlers.release()

    def _listen(self, sock: socket.socket, receive: Callable[[socket.socket], None]) -> None:
        """``receive(sock)`` each time ``sock`` is readable, until close() wakes us.

        Blocks in poll() without a timeout: an idle server never wakes up."""
        assert self._waker is not None
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._waker[0], select.POLLIN)
        while True:
            poller.poll()
            if self._stop.is_set():
                return
            try:
                receive(sock)
            except (BlockingIOError, InterruptedError):
                continue  # taken by nobody else, but a datagram or peer may be gone already
            except OSError:
                if self._stop.is_set():
                    return
                # e.g. ICMP errors surfacing, EMFILE: a pause, not a busy loop
                if self._stop.wait(_ERROR_PAUSE):
                    return

    def _receive_udp(self, sock: socket.socket) -> None:
        wire, peer = sock.recvfrom(65535)
        self._spawn(self._answer_udp, "udp-query", sock, wire, peer)

    def _answer_udp(self, sock: socket.socket, wire: bytes, peer: tuple[str, int]) -> None:
        reply = self._handle(wire, tcp=False)
        if reply is not None and not self._stop.is_set():
            with contextlib.suppress(OSError):
                sock.sendto(reply, peer)

    def _accept_tcp(self, sock: socket.socket) -> None:
        conn, _ = sock.accept()
        try:
            spawned = self._spawn(self._serve_connection, "tcp-conn", conn)
        except BaseException:
            conn.close()
            raise
        if not spawned:
            conn.close()

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn:
            with self._lock:
                if self._stop.is_set():
                    return
                self._connections.add(conn)  # close() shuts it down from now on
            try:
                self._converse(conn)
            finally:
                with self._lock:  # before the socket closes: close() never shuts a closed one
                    self._connections.discard(conn)

    def _converse(self, conn: socket.socket) -> None:
        for _ in range(_MAX_TCP_QUERIES):
            idle_deadline = time.monotonic() + self._tcp_idle_timeout
            head = self._recv_exact(conn, 2, idle_deadline)
            if head is None:
                return
            (length,) = struct.unpack("!H", head)
            wire = self._recv_exact(conn, length, time.monotonic() + _TCP_READ_TIMEOUT)
            if wire is None:
                return
            reply = self._handle(wire, tcp=True)
            if reply is None:
                continue
            if self._stop.is_set():
                return
            try:
                conn.settimeout(_TCP_READ_TIMEOUT)  # a client that never reads lets go
                conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

    def _recv_exact(self, conn: socket.socket, size: int, deadline: float) -> bytes | None:
        """``size`` bytes, or None on EOF (close() shuts the connection down), error or
        deadline."""
        buf = bytearray()
        while len(buf) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return None
            try:
                conn.settimeout(remaining)
                chunk = conn.recv(size - len(buf))
            except OSError:  # TimeoutError included: the deadline passed
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)
