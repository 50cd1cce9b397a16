"""The watcher's retry schedule: pure decisions (dnsbalance._kube.watch_policy)."""

from __future__ import annotations

import random

import pytest

from dnsbalance import ConfigError
from dnsbalance._kube.watch_policy import (
    RetryPolicy,
    parse_retry_after,
    retry_delay,
    watch_was_healthy,
)

POLICY = RetryPolicy(jitter=0.0)


def schedule(n: int, policy: RetryPolicy = POLICY) -> list[float]:
    """The delays of n consecutive failures, each outage age the sum of those before."""
    rng = random.Random(1)
    delays: list[float] = []
    for failures in range(1, n + 1):
        delays.append(retry_delay(failures, sum(delays), policy, rng))
    return delays


def test_a_short_outage_is_retried_within_a_second() -> None:
    delays = schedule(30)
    fast = [d for i, d in enumerate(delays) if sum(delays[:i]) < POLICY.fast_window]
    assert fast[:4] == [0.1, 0.2, 0.4, 0.5]
    assert max(fast) <= 0.5
    # Any outage shorter than the fast window ends for us within fast_cap of its end.


def test_a_long_outage_backs_off_to_the_cap() -> None:
    delays = schedule(30)
    slow = [d for i, d in enumerate(delays) if sum(delays[:i]) >= POLICY.fast_window]
    assert slow[:5] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(delays) == 30.0
    assert delays[-1] == 30.0


def test_retry_after_is_honoured_and_bounded() -> None:
    rng = random.Random(1)
    assert retry_delay(1, 0.0, POLICY, rng, retry_after=5) == 5.0
    assert retry_delay(1, 0.0, POLICY, rng, retry_after=10_000) == POLICY.retry_after_cap
    assert retry_delay(30, 600.0, POLICY, rng, retry_after=1) == 30.0  # never shorter


def test_jitter_stays_in_bounds() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(7)
    for failures in range(1, 40):
        delay = retry_delay(failures, 100.0, policy, rng)
        assert 0 < delay <= policy.cap


def test_only_a_watch_that_delivered_or_stayed_up_resets() -> None:
    assert watch_was_healthy(0.1, 1, POLICY)
    assert watch_was_healthy(30.0, 0, POLICY)
    assert not watch_was_healthy(5.0, 0, POLICY)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        ("30", 30.0),
        (2, 2.0),
        ("", None),
        ("soon", None),
        ("-1", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        (True, None),
    ],
)
def test_parse_retry_after(value: object, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_policy_is_validated() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(fast_first=2.0, fast_cap=1.0)
    with pytest.raises(ConfigError):
        RetryPolicy(jitter=1.0)
