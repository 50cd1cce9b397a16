"""When to poll again and what a poll's outcome means: pure decisions, no I/O.

The thread driver (:mod:`dnsbalance._poll.sync`) and the asyncio driver feed
outcomes in and act on the decisions that come out; neither holds policy.

- A good answer that differs from the current set is a change.
- An empty answer (NXDOMAIN) empties a non-empty set only after
  ``empty_after`` consecutive empty answers: one flapping poll never drains a
  Service.
- An error (SERVFAIL, timeout, ...) keeps the last known good set and backs off
  exponentially with jitter, capped at ``max_backoff``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from dnsbalance._endpoints import Change, Endpoint, diff, normalize
from dnsbalance._exceptions import ConfigError, DnsBalanceError

MIN_INTERVAL = 0.2


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """How often to poll and how to react to errors and empty answers."""

    interval: float = 5.0
    """Seconds between polls: the CoreDNS default TTL."""
    jitter: float = 0.1
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    max_backoff: float = 30.0
    """Longest delay after consecutive errors."""
    empty_after: int = 2
    """Consecutive empty answers (NXDOMAIN) before a non-empty set becomes empty."""

    def __post_init__(self) -> None:
        if not self.interval >= MIN_INTERVAL:
            raise ConfigError(
                f"poll interval must be at least {MIN_INTERVAL} s, got {self.interval}"
            )
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter must be in [0, 1), got {self.jitter}")
        if not self.max_backoff >= self.interval:
            raise ConfigError(
                f"max_backoff ({self.max_backoff}) must be at least the interval ({self.interval})"
            )
        if self.empty_after < 1:
            raise ConfigError(f"empty_after must be at least 1, got {self.empty_after}")


@dataclass(frozen=True)
class PollState:
    """What the poller knows: the last known good set and the current streaks."""

    endpoints: tuple[Endpoint, ...] = ()
    answered: bool = False
    """Whether any poll has answered yet."""
    empty_streak: int = 0
    error_streak: int = 0
    last_error: DnsBalanceError | None = field(default=None, compare=False)

    @property
    def steady(self) -> bool:
        """Answered, with no empty answer or error pending: an unchanged answer
        changes nothing."""
        return self.answered and not self.empty_streak and not self.error_streak


class PollResult(NamedTuple):
    """What a poll decided (a NamedTuple: made on every poll)."""

    state: PollState
    change: Change | None
    delay: float
    """Seconds until the next poll."""


def jittered(delay: float, policy: PollPolicy, rng: random.Random) -> float:
    return delay * rng.uniform(1 - policy.jitter, 1 + policy.jitter)


def backoff_delay(error_streak: int, policy: PollPolicy, rng: random.Random) -> float:
    """Delay after ``error_streak`` consecutive DNS errors: interval x 2^n, jittered, capped."""
    return exponential_backoff(
        error_streak + 1, policy.interval, policy.max_backoff, rng, jitter=policy.jitter
    )


def exponential_backoff(
    attempt: int, base: float, cap: float, rng: random.Random, *, jitter: float = 0.2
) -> float:
    """``base`` x 2^(attempt-1), scaled by a random factor in [1 - jitter, 1 + jitter],
    never more than ``cap``. Attempt 1 waits about ``base``."""
    exponent = min(max(attempt - 1, 0), 32)
    return min(cap, base * 2.0**exponent * rng.uniform(1 - jitter, 1 + jitter))


def on_answer(
    state: PollState, endpoints: tuple[Endpoint, ...], policy: PollPolicy, rng: random.Random
) -> PollResult:
    """A poll answered with ``endpoints`` (``()`` for NXDOMAIN)."""
    delay = jittered(policy.interval, policy, rng)
    if state.steady and endpoints is state.endpoints:
        return PollResult(state, None, delay)  # every unchanged poll: nothing to do
    normalized = normalize(endpoints)
    # Keep the caller's tuple when it was normalized already: a lookup that returns
    # the same object for an unchanged answer then meets the fast path above.
    endpoints = endpoints if normalized == endpoints else normalized
    if not endpoints and state.endpoints:
        streak = state.empty_streak + 1
        if streak < policy.empty_after:
            held = replace(
                state, answered=True, empty_streak=streak, error_streak=0, last_error=None
            )
            return PollResult(held, None, delay)
    new_state = PollState(endpoints=endpoints, answered=True)
    return PollResult(new_state, diff(state.endpoints, endpoints), delay)


def on_error(
    state: PollState, error: DnsBalanceError, policy: PollPolicy, rng: random.Random
) -> PollResult:
    """A poll failed: keep the last known good set and back off."""
    streak = state.error_streak + 1
    new_state = replace(state, error_streak=streak, last_error=error)
    return PollResult(new_state, None, backoff_delay(streak, policy, rng))
