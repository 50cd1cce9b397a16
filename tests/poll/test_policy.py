"""The pure decision logic: endpoint diffs, NXDOMAIN policy, backoff schedule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsbalance import ConfigError, Endpoint, PollPolicy, ResolutionError
from dnsbalance._endpoints import diff, normalize
from dnsbalance._poll.policy import PollState, backoff_delay, on_answer, on_error


def ep(address: str, port: int = 8000, ttl: int | None = 5) -> Endpoint:
    return Endpoint(address=address, port=port, ttl=ttl)


A, B, C = ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.10")
ERROR = ResolutionError(qname="x", rdtype="A", server="s", reason="SERVFAIL", detail="d")
NO_JITTER = PollPolicy(interval=5.0, jitter=0.0)


def test_normalize_sorts_numerically_and_dedupes_keeping_lowest_ttl() -> None:
    v6 = ep("fd00::1")
    got = normalize([v6, C, ep("10.0.0.2", ttl=30), B, A, ep("10.0.0.2", ttl=None)])
    assert [e.address for e in got] == ["10.0.0.1", "10.0.0.2", "10.0.0.10", "fd00::1"]
    assert got[1].ttl == 5


def test_ttl_is_not_identity() -> None:
    assert ep("10.0.0.1", ttl=1) == ep("10.0.0.1", ttl=30)
    assert diff([ep("10.0.0.1", ttl=1)], [ep("10.0.0.1", ttl=30)]) is None


def test_diff_reports_added_and_removed() -> None:
    change = diff([A, B], [B, C])
    assert change is not None
    assert change.added == (C,)
    assert change.removed == (A,)
    assert change.old == (A, B)
    assert change.new == (B, C)
    assert str(change) == "2 -> 2 endpoints (+1 -1)"
    assert diff([B, A], [A, B]) is None


def test_port_change_is_a_change() -> None:
    change = diff([ep("10.0.0.1", 8000)], [ep("10.0.0.1", 9000)])
    assert change is not None
    assert len(change.added) == len(change.removed) == 1


@given(st.lists(st.sampled_from([A, B, C, ep("fd00::1")])), st.lists(st.sampled_from([A, B, C])))
def test_diff_is_consistent(old: list[Endpoint], new: list[Endpoint]) -> None:
    change = diff(old, new)
    if set(old) == set(new):
        assert change is None
    else:
        assert change is not None
        assert set(change.new) == (set(change.old) - set(change.removed)) | set(change.added)


def test_policy_validation() -> None:
    for bad in (
        {"interval": 0.1},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"interval": 10, "max_backoff": 5},
        {"empty_after": 0},
        {"interval": float("nan")},
    ):
        with pytest.raises(ConfigError):
            PollPolicy(**bad)  # type: ignore[arg-type]


def test_first_answer_is_a_change_and_delay_is_jittered() -> None:
    policy = PollPolicy(interval=5.0, jitter=0.1)
    rng = random.Random(1)
    delays = set()
    for _ in range(50):
        result = on_answer(PollState(), (A, B), policy, rng)
        assert result.change is not None
        assert result.change.added == (A, B)
        assert 4.5 <= result.delay <= 5.5
        delays.add(result.delay)
    assert len(delays) > 10


def test_unchanged_answer_is_not_a_change() -> None:
    state = on_answer(PollState(), (A, B), NO_JITTER, random.Random()).state
    result = on_answer(state, (B, A), NO_JITTER, random.Random())
    assert result.change is None
    assert result.delay == 5.0


def test_nxdomain_empties_only_after_two_in_a_row() -> None:
    rng = random.Random()
    state = on_answer(PollState(), (A, B), NO_JITTER, rng).state
    first = on_answer(state, (), NO_JITTER, rng)
    assert first.change is None
    assert first.state.endpoints == (A, B)
    # A flap: the set comes back, the streak resets.
    back = on_answer(first.state, (A, B), NO_JITTER, rng)
    assert back.change is None
    assert back.state.empty_streak == 0
    again = on_answer(back.state, (), NO_JITTER, rng)
    assert again.change is None
    second = on_answer(again.state, (), NO_JITTER, rng)
    assert second.change is not None
    assert second.change.removed == (A, B)
    assert second.state.endpoints == ()


def test_empty_after_is_configurable_and_first_answer_may_be_empty() -> None:
    policy = PollPolicy(interval=1.0, jitter=0.0, empty_after=3)
    rng = random.Random()
    assert on_answer(PollState(), (), policy, rng).change is None
    assert on_answer(PollState(), (), policy, rng).state.answered
    state = on_answer(PollState(), (A,), policy, rng).state
    for _ in range(2):
        result = on_answer(state, (), policy, rng)
        assert result.change is None
        state = result.state
    assert on_answer(state, (), policy, rng).change is not None


def test_errors_keep_last_known_good_and_back_off_exponentially() -> None:
    rng = random.Random()
    state = on_answer(PollState(), (A, B), NO_JITTER, rng).state
    delays = []
    for _ in range(6):
        result = on_error(state, ERROR, NO_JITTER, rng)
        assert result.change is None
        assert result.state.endpoints == (A, B)
        assert result.state.last_error is ERROR
        state = result.state
        delays.append(result.delay)
    assert delays == [10.0, 20.0, 30.0, 30.0, 30.0, 30.0]
    recovered = on_answer(state, (A, B), NO_JITTER, rng)
    assert recovered.state.error_streak == 0
    assert recovered.delay == 5.0


def test_backoff_never_exceeds_cap_even_with_jitter() -> None:
    policy = PollPolicy(interval=0.2, jitter=0.5, max_backoff=3.0)
    rng = random.Random(7)
    for streak in range(1, 200):
        delay = backoff_delay(streak, policy, rng)
        assert 0 < delay <= 3.0
    assert 0.2 <= backoff_delay(1, policy, rng) <= 0.6
