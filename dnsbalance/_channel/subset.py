"""Subsetting: which of the channel's endpoints this one client dials. Pure.

gRFC A68 ("Random subsetting with rendezvous hashing LB policy"): every client has
its own salt, ranks every address by a 128-bit hash of the address and the salt, and
dials the first ``size`` of them; with ``size`` or fewer addresses it dials them all.
Because an address's rank depends only on that address and the client's salt, adding
or removing one endpoint changes a client's subset by at most one entry (the
property ``tests/channel/test_subset.py`` holds by hypothesis), so a scale-up or a
rolling replacement costs each client at most one new connection per pod changed,
and over many clients every pod is picked about as often (uniformly as the
``clients * size / pods`` ratio grows; ``benchmarks/subset.py`` measures it).

The hash is BLAKE2b (the standard library's ``hashlib``), keyed with the salt, 16
bytes of digest: A68 names MurmurHash3, whose only property used here is a uniform
128-bit hash, which a keyed BLAKE2b gives without a dependency. The address is
hashed in its packed form (4 or 16 bytes), so two spellings of one IPv6 address rank
alike. The port is not hashed: grpc dials every address of a channel at one port (the
local DNS serves A/AAAA records), so a subset is a set of addresses, and a pod keeps
its rank if its port changes. Ties (one address at several ports, possible only with
SRV records of mixed ports) are broken by the endpoint's sort order.

grpc's C core has no such policy that dnsbalance could name in the service config,
and one inside the channel would draw a new salt on each rebuild (each rebuild is a
new grpc channel): the subset must be chosen here, once per client, with a salt that
lives as long as the BalancedChannel.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from dnsbalance._endpoints import Endpoint, Endpoints, normalize

SALT_BYTES = 32  # A68: "a random 32-byte long salt"


def new_salt() -> bytes:
    """A random salt: each client its own subset."""
    return secrets.token_bytes(SALT_BYTES)


def _packed(address: str) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.inet_pton(family, address)


@dataclass(frozen=True)
class Subsetting:
    """``size`` endpoints ranked by a hash keyed with ``salt`` (``subset_key`` encoded,
    or :func:`new_salt`)."""

    size: int
    salt: bytes = field(default_factory=new_salt, repr=False)
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"subset size must be a whole number >= 1, got {self.size!r}")
        # BLAKE2b takes a key of at most 64 bytes; a salt of any length is folded into one.
        object.__setattr__(self, "_key", hashlib.blake2b(self.salt, digest_size=32).digest())

    @classmethod
    def keyed(cls, size: int, key: str | None) -> Subsetting:
        """``subset_key`` as the salt (the same key: the same subset), else a random one."""
        return cls(size) if key is None else cls(size, key.encode("utf-8"))

    def score(self, address: str) -> bytes:
        """The 128-bit rank of ``address`` for this client (lower ranks first)."""
        return hashlib.blake2b(_packed(address), key=self._key, digest_size=16).digest()

    def rank(self, endpoints: Iterable[Endpoint]) -> Endpoints:
        """Every endpoint, best ranked first."""
        return tuple(
            sorted(normalize(endpoints), key=lambda ep: (self.score(ep.address), ep.sort_key()))
        )

    def pick(self, endpoints: Iterable[Endpoint]) -> Endpoints:
        """The subset to dial, in the usual (sorted) order: the ``size`` best ranked, or
        every endpoint when there are no more than ``size``."""
        everything = normalize(endpoints)
        if len(everything) <= self.size:
            return everything
        return normalize(self.rank(everything)[: self.size])


def dialed(endpoints: Iterable[Endpoint], subsetting: Subsetting | None) -> Endpoints:
    """What a channel dials of ``endpoints``: its subset, or all of them (no subsetting)."""
    return normalize(endpoints) if subsetting is None else subsetting.pick(endpoints)
