"""A real BIND9 ``named`` on loopback, publishing headless Services as CoreDNS does.

:class:`BindServer` has the publishing API of :class:`dnsbalance.testing.DNSResponder`
(``set_service``, ``add_pod``, ``remove_pod``, ``remove_service``, ``address``, ``zone``)
and sends each change to named as one RFC 2136 dynamic update (several, in order, only
when one would not fit in a 64 KiB TCP message). named serves:

- ``cluster.local``: primary, TTL 5, SOA/NS like CoreDNS (``ns.dns.cluster.local``),
  updates allowed from 127.0.0.0/8; no limit on records per type or types per name;
  ``check-names`` off, since CoreDNS's dashed IPv6 labels (``--1``) are no hostnames;
- ``broken.local`` (:attr:`BindServer.broken_zone`): a zone file with a syntax error.
  named starts anyway, logs ``not loaded due to errors`` and answers SERVFAIL for every
  name under it.

named runs in the foreground (``-g``, log in ``<tmp>/named.log``) from a temporary
directory that holds its config, zone files, journal, pid and session key; as root
it needs no ``-u`` since everything it writes is in that directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.update

from .records import ServicePublisher

__all__ = ["BindServer", "find_named", "free_port"]

_START_TIMEOUT = 10.0
_START_ATTEMPTS = 3
_UPDATE_BUDGET = 60_000  # bytes of records per update message, under the 65535 TCP limit


def find_named() -> str | None:
    """The ``named`` binary on PATH or in the usual sbin directories, else None."""
    return shutil.which("named") or shutil.which(
        "named", path=os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    )


def free_port(host: str = "127.0.0.1", attempts: int = 20) -> int:
    """A port free for both TCP and UDP on ``host`` right now (racy by nature)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no port free for TCP and UDP on {host} after {attempts} tries")


_CONF = """\
options {{
    directory "{tmp}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{tmp}/named.pid";
    session-keyfile "{tmp}/session.key";
    managed-keys-directory "{tmp}";
    recursion no;
    dnssec-validation no;
    notify no;
    minimal-responses no-auth;
    check-names primary ignore;
    max-records-per-type 0;
    max-types-per-name 0;
}};

controls {{ }};

zone "{zone}" {{
    type primary;
    file "{tmp}/{zone}.db";
    allow-update {{ 127.0.0.0/8; }};
}};

zone "{broken}" {{
    type primary;
    file "{tmp}/{broken}.db";
}};
"""

_ZONE = """\
$TTL {ttl}
@       IN SOA ns.dns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 {ttl}
@       IN NS  ns.dns.{zone}.
ns.dns  IN A   127.0.0.1
"""


class BindServer(ServicePublisher):
    """named serving ``zone`` (dynamic) and ``broken.local`` (SERVFAIL) on 127.0.0.1."""

    broken_zone = "broken.local"
    host = "127.0.0.1"

    def __init__(self, *, zone: str = "cluster.local", ttl: int = 5, named: str | None = None):
        super().__init__(zone=zone, ttl=ttl)
        self.zone = self.registry.zone
        self.ttl = ttl
        self.named = named or find_named()
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        if self._closed or self._proc is not None:
            raise RuntimeError(f"{self!r} cannot start twice")
        if self.named is None:
            raise RuntimeError("named (BIND9) not found: apt-get install -y bind9")
        self._tmp = tempfile.TemporaryDirectory(prefix="dnsbalance-named-")
        tmp = Path(self._tmp.name)
        (tmp / f"{self.zone}.db").write_text(_ZONE.format(zone=self.zone, ttl=self.ttl))
        (tmp / f"{self.broken_zone}.db").write_text("this is not ( a zone file\n")
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                self.port = free_port(self.host)
                conf = _CONF.format(
                    tmp=tmp, port=self.port, zone=self.zone, broken=self.broken_zone
                )
                (tmp / "named.conf").write_text(conf)
                if self._launch(tmp):
                    return self
                self._stop()
                if attempt == _START_ATTEMPTS or "address in use" not in self.log_tail():
                    break
            raise RuntimeError(
                f"named did not answer on {self.address} within {_START_TIMEOUT} s:\n"
                + self.log_tail()
            )
        except BaseException:
            self.close()
            raise

    def _launch(self, tmp: Path) -> bool:
        assert self.named is not None
        with open(tmp / "named.log", "ab") as log:
            self._proc = subprocess.Popen(
                [self.named, "-g", "-c", str(tmp / "named.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        query = dns.message.make_query(self.zone, "SOA")
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                reply = dns.query.udp(query, self.host, port=self.port, timeout=0.2)
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
                continue
            return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)
        return False

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        """Stop named (SIGTERM, SIGKILL after 5 s) and remove its directory. Idempotent."""
        self._closed = True
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        if self._proc is None:
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
        return f"<BindServer {self.zone} {self.host}:{self.port}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        if self._tmp is None:
            return ""
        log = Path(self._tmp.name) / "named.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # -- publishing (the API of DNSResponder) ---------------------------------------

    def _apply(
        self,
        service: str,
        namespace: str,
        old: list[dns.rrset.RRset],
        new: list[dns.rrset.RRset],
    ) -> None:
        for update in _updates(self.zone, old, new):
            reply = dns.query.tcp(update, self.host, port=self.port, timeout=10)
            if reply.rcode() != dns.rcode.NOERROR:
                raise RuntimeError(
                    f"named refused the update of {namespace}/{service}: "
                    f"{dns.rcode.to_text(reply.rcode())}\n{self.log_tail(10)}"
                )


_Key = tuple[dns.name.Name, dns.rdatatype.RdataType]


def _updates(
    zone: str, old: list[dns.rrset.RRset], new: list[dns.rrset.RRset]
) -> list[dns.update.UpdateMessage]:
    """The update(s) turning ``old`` into ``new``: delete each changed RRset, add the new.

    One message when it fits in a TCP message; else several, deletions first.
    """
    before: dict[_Key, dns.rrset.RRset] = {(r.name, r.rdtype): r for r in old}
    after: dict[_Key, dns.rrset.RRset] = {(r.name, r.rdtype): r for r in new}
    deletes = [key for key in before if after.get(key) != before[key]]
    adds = [rrset for key, rrset in after.items() if before.get(key) != rrset]
    whole = dns.update.UpdateMessage(zone)
    for name, rdtype in deletes:
        whole.delete(name, rdtype)
    for rrset in adds:
        whole.add(rrset.name, rrset)
    try:
        whole.to_wire()
    except dns.exception.TooBig:
        pass
    else:
        return [whole] if deletes or adds else []
    # Too big: pack greedily, by estimated (uncompressed) size.
    messages = [dns.update.UpdateMessage(zone)]
    used = 0

    def room(size: int) -> dns.update.UpdateMessage:
        nonlocal used
        if used + size > _UPDATE_BUDGET:
            messages.append(dns.update.UpdateMessage(zone))
            used = 0
        used += size
        return messages[-1]

    for name, rdtype in deletes:
        room(len(name.to_wire() or b"") + 10).delete(name, rdtype)
    for rrset in adds:
        owner = len(rrset.name.to_wire() or b"") + 10
        for rdata in rrset:
            room(owner + len(rdata.to_wire() or b"")).add(rrset.name, rrset.ttl, rdata)
    return messages
