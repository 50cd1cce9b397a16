"""One object per key per process, counted: how channels share a watch or a DNS poller.

The first :meth:`Shares.acquire` of a key makes the object; later ones get the same
object and count one more user; the :meth:`Shares.release` that brings the count to
zero forgets the object and returns True, telling the caller to stop it. Acquire and
release are atomic under one lock, so a channel that opens while the last one closes
either acquires first (and keeps the object alive) or finds the key gone and makes a
fresh object: it never gets one that is being stopped. Stopping happens outside the
lock, so a slow stop never holds up channels of other keys.

No I/O here: ``make`` runs under the lock and must be cheap (build objects, start
nothing); starting and stopping are the caller's. A forked child starts with no
shares (the parent's threads are not in it); releasing an object the registry no
longer holds says nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Shares(Generic[K, V]):
    """Objects by key, each with a count of users."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[V, int]] = {}
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def acquire(self, key: K, make: Callable[[], V]) -> V:
        """The object of ``key`` (made now if there is none), counted as one more user."""
        with self._lock:
            entry = self._entries.get(key)
            value = make() if entry is None else entry[0]
            self._entries[key] = (value, 1 if entry is None else entry[1] + 1)
            return value

    def release(self, key: K, value: V) -> bool:
        """One user of ``value`` less; True when it was the last (the caller stops it)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not value:
                return False  # not ours (a fork, or released already)
            if entry[1] > 1:
                self._entries[key] = (value, entry[1] - 1)
                return False
            del self._entries[key]
            return True

    def count(self, key: K) -> int:
        """Users of ``key``'s object now (0: none)."""
        with self._lock:
            entry = self._entries.get(key)
            return 0 if entry is None else entry[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _after_fork(self) -> None:
        """In a forked child: nothing is shared yet."""
        self._lock = threading.Lock()
        self._entries = {}
