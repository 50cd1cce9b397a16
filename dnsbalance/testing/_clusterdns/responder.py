"""DNSResponder: an embedded cluster DNS publishing headless Services as CoreDNS does."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

import dns.name
import dns.rrset

from dnsbalance._channel.zone_server import ZoneResponder

from .records import ServicePublisher

__all__ = ["DNSResponder", "FaultyZoneResponder"]


class FaultyZoneResponder(ZoneResponder):
    """The zone server with fault knobs for tests, thread-safe, effective from the next
    query (production's :class:`ZoneResponder` has none):

    - ``fail_rcode``: ``None`` (default) or an rcode (``dns.rcode.SERVFAIL``, ...) to
      answer every query with, without records (FORMERR-level errors still come first);
    - ``delay``: seconds to wait before answering each query (``close()`` cuts it short);
    - ``drop``: when true, never answer (queries are still counted);
    - ``additional``: when false, leave the Additional section empty (as some servers do),
      so clients must look SRV targets up themselves;
    - ``queries``: number of DNS messages received (UDP and TCP); assignable, e.g. 0.
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
        super().__init__(zone, host=host, port=port, ttl=ttl, tcp_idle_timeout=tcp_idle_timeout)
        # plain attributes, each read once per query (atomic under the GIL)
        self.fail_rcode: int | None = None
        self.delay = 0.0
        self.drop = False
        self.additional = True
        self._count_lock = threading.Lock()
        self._queries = 0

    @property
    def queries(self) -> int:
        """DNS messages received so far, UDP and TCP (assignable, e.g. to 0)."""
        with self._count_lock:
            return self._queries

    @queries.setter
    def queries(self, value: int) -> None:
        with self._count_lock:
            self._queries = value

    def _admit(self) -> bool:
        with self._count_lock:
            self._queries += 1
        if self.drop:
            return False
        delay = self.delay
        return not (delay > 0 and self._wait(delay))

    def _forced_rcode(self) -> int | None:
        return self.fail_rcode

    def _with_additional(self) -> bool:
        return self.additional


class DNSResponder(ServicePublisher):
    """A cluster DNS server for tests and demos, on loopback, in this process.

    Publish Services with :meth:`set_service`, :meth:`add_pod`, :meth:`remove_pod` and
    :meth:`remove_service`: each change is served from the next query on, with the
    records CoreDNS serves for a headless Service (see :func:`service_rrsets`).
    Point a resolver at :attr:`address`::

        with DNSResponder() as dns_server:
            dns_server.set_service("greeter", "default", ["10.0.0.1", "10.0.0.2"],
                                   ports={"grpc": 50051})
            # greeter.default.svc.cluster.local -> 10.0.0.1, 10.0.0.2
            # _grpc._tcp.greeter.default.svc.cluster.local -> SRV ... 50051 ...

    The fault knobs ``fail_rcode``, ``delay``, ``drop``, ``additional`` and the
    ``queries`` counter are those of the underlying :class:`FaultyZoneResponder`, also
    reachable as :attr:`server`.
    """

    def __init__(
        self,
        *,
        zone: str = "cluster.local",
        host: str = "127.0.0.1",
        port: int = 0,
        ttl: int = 5,
    ) -> None:
        super().__init__(zone=zone, ttl=ttl)
        self.server = FaultyZoneResponder(zone, host=host, port=port, ttl=ttl)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        self.server.start()
        return self

    def close(self) -> None:
        """Stop serving. Idempotent."""
        self.server.close()

    def __enter__(self) -> Self:
        self.server.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DNSResponder {self.server!r}>"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` (or ``[::1]:PORT``), once started."""
        return self.server.address

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def zone(self) -> str:
        """The cluster domain, e.g. ``cluster.local`` (no final dot)."""
        return self.registry.zone

    # -- publishing ----------------------------------------------------------------

    def _apply(
        self,
        service: str,
        namespace: str,
        old: list[dns.rrset.RRset],
        new: list[dns.rrset.RRset],
    ) -> None:
        self.server.replace(new, names=_names(old, new))

    # -- fault knobs (see FaultyZoneResponder) ------------------------------------------

    @property
    def fail_rcode(self) -> int | None:
        """Answer every query with this rcode (e.g. ``dns.rcode.SERVFAIL``); None: normal."""
        return self.server.fail_rcode

    @fail_rcode.setter
    def fail_rcode(self, value: int | None) -> None:
        self.server.fail_rcode = value

    @property
    def delay(self) -> float:
        """Seconds to wait before each answer."""
        return self.server.delay

    @delay.setter
    def delay(self, value: float) -> None:
        self.server.delay = value

    @property
    def drop(self) -> bool:
        """Never answer while true."""
        return self.server.drop

    @drop.setter
    def drop(self, value: bool) -> None:
        self.server.drop = value

    @property
    def additional(self) -> bool:
        """Whether SRV answers carry the targets' addresses in the Additional section."""
        return self.server.additional

    @additional.setter
    def additional(self, value: bool) -> None:
        self.server.additional = value

    @property
    def queries(self) -> int:
        """DNS messages received so far (assignable, e.g. to 0)."""
        return self.server.queries

    @queries.setter
    def queries(self, value: int) -> None:
        self.server.queries = value


def _names(*groups: list[dns.rrset.RRset]) -> set[dns.name.Name]:
    return {rrset.name for group in groups for rrset in group}
