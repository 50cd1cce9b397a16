"""When the EndpointSlice watcher retries, and what counts as a healthy watch: pure.

One schedule covers the whole list-and-watch cycle (a good list does not reset it;
only a watch that stayed up ``stable_after`` seconds or delivered an event does), so
a watch that fails while list works (a Role without ``watch``, API Priority and
Fairness answering watches with 429) cannot loop list+watch once a second.

- For the first ``fast_window`` seconds of an outage, retries come quickly
  (``fast_first`` doubling up to ``fast_cap``): a short outage (an apiserver restart,
  a few 500s during an upgrade) is over for us within about half a second of its end
  (kuberesolver's fixed re-watch takes 1 s; measured in ``benchmarks/kube_watch.py``).
- After that the delay doubles from ``base`` up to ``cap``, with jitter, so a long
  outage costs the API a request every ``cap`` seconds per watcher.
- ``Retry-After`` (429 from API Priority and Fairness, 503) is honoured: the delay is
  never shorter than the server asked for (bounded by ``retry_after_cap``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dnsbalance._exceptions import ConfigError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    fast_first: float = 0.1
    fast_cap: float = 0.5
    fast_window: float = 10.0
    base: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2
    stable_after: float = 30.0
    retry_after_cap: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.fast_first <= self.fast_cap <= self.base <= self.cap:
            raise ConfigError("retry delays must satisfy 0 < fast_first <= fast_cap <= base <= cap")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter must be in [0, 1), got {self.jitter}")


def retry_delay(
    failures: int,
    outage: float,
    policy: RetryPolicy,
    rng: random.Random,
    *,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1 = the first),
    ``outage`` seconds after the first of them."""
    n = max(failures, 1)
    factor = rng.uniform(1 - policy.jitter, 1 + policy.jitter)
    if outage < policy.fast_window:
        delay = min(policy.fast_cap, policy.fast_first * 2.0 ** min(n - 1, 32)) * factor
    else:
        slow = max(1, n - _fast_attempts(policy))
        delay = min(policy.cap, policy.base * 2.0 ** min(slow - 1, 32) * factor)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.retry_after_cap))
    return delay


def _fast_attempts(policy: RetryPolicy) -> int:
    """How many failures the fast window holds at most (without jitter)."""
    total, n, delay = 0.0, 0, policy.fast_first
    while total < policy.fast_window and n < 1000:
        total += delay
        n += 1
        delay = min(policy.fast_cap, delay * 2)
    return n


def watch_was_healthy(up_for: float, events: int, policy: RetryPolicy) -> bool:
    """Whether a watch that ended resets the schedule: it delivered events (bookmarks
    included) or stayed open ``stable_after`` seconds."""
    return events > 0 or up_for >= policy.stable_after


def parse_retry_after(value: object) -> float | None:
    """A ``Retry-After`` header in seconds (the API server sends whole seconds; an HTTP
    date is not used by it and is ignored)."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None
