"""The process-wide share registry: the first acquire makes, the last release stops, a
release racing an acquire never hands out a stopped object, and a forked child starts
empty. Pure: no servers needed."""

from __future__ import annotations

import threading

from dnsbalance._shares import Shares


class Thing:
    made = 0

    def __init__(self) -> None:
        Thing.made += 1
        self.number = Thing.made
        self.stopped = False


def test_the_first_acquire_makes_later_ones_share_and_the_last_release_says_stop() -> None:
    shares: Shares[str, Thing] = Shares()
    a = shares.acquire("svc", Thing)
    b = shares.acquire("svc", Thing)
    other = shares.acquire("other", Thing)
    assert a is b
    assert other is not a
    assert shares.count("svc") == 2
    assert shares.release("svc", a) is False  # one user left
    assert shares.release("svc", b) is True  # the last: the caller stops it
    assert shares.count("svc") == 0
    assert shares.release("other", other) is True
    assert len(shares) == 0


def test_after_the_last_release_a_new_acquire_makes_a_fresh_object() -> None:
    shares: Shares[str, Thing] = Shares()
    first = shares.acquire("svc", Thing)
    assert shares.release("svc", first)
    second = shares.acquire("svc", Thing)
    assert second is not first
    assert shares.release("svc", second)


def test_releasing_an_object_the_registry_no_longer_holds_says_nothing() -> None:
    """A handle kept from before a fork (or released twice) never stops someone else's."""
    shares: Shares[str, Thing] = Shares()
    old = shares.acquire("svc", Thing)
    shares._after_fork()  # what a forked child runs
    assert len(shares) == 0
    new = shares.acquire("svc", Thing)
    assert new is not old
    assert shares.release("svc", old) is False
    assert shares.count("svc") == 1
    assert shares.release("svc", new) is True


def test_acquires_racing_releases_never_get_a_stopped_object() -> None:
    """Threads open and close users of one key at once (bounded: 8 threads x 200 cycles);
    whoever gets the object sees it running, and every object made is stopped once."""
    shares: Shares[str, Thing] = Shares()
    lock = threading.Lock()
    made: list[Thing] = []
    problems: list[str] = []

    def make() -> Thing:
        thing = Thing()
        with lock:
            made.append(thing)
        return thing

    def cycle() -> None:
        for _ in range(200):
            thing = shares.acquire("svc", make)
            if thing.stopped:
                problems.append(f"got stopped object {thing.number}")
            if shares.release("svc", thing):
                with lock:
                    if thing.stopped:
                        problems.append(f"stopped twice: {thing.number}")
                    thing.stopped = True

    threads = [threading.Thread(target=cycle) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    assert len(shares) == 0
    assert made
    assert all(thing.stopped for thing in made)
