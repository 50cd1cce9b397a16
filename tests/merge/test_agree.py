"""Which endpoints to use when DNS and the API speak: pure (dnsbalance._merge.agree)."""

from __future__ import annotations

from typing import Any

from dnsbalance import Endpoint
from dnsbalance._merge.agree import MergeState, agree


def addrs(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [e.address for e in endpoints]


E1, E2, E3 = (Endpoint(address=f"10.0.0.{i}", port=8000) for i in (1, 2, 3))


def test_auto_uses_what_both_agree_on() -> None:
    result = agree(MergeState(), mode="auto", dns=(E1, E2), api=(E1, E2), now=0, window=6)
    assert result.endpoints == (E1, E2)
    assert result.discrepancies == ()
    assert not result.repoll_dns


def test_auto_new_api_endpoint_is_used_at_once_and_dns_cross_checked() -> None:
    """As mode "api" (DNS lags the same slices by its TTL and caches): the API's ready
    endpoint is used at once; DNS is re-polled until it agrees, and a disagreement
    older than the window is a discrepancy."""
    first = agree(MergeState(), mode="auto", dns=(E1,), api=(E1, E2), now=10.0, window=6)
    assert first.endpoints == (E1, E2)
    assert first.discrepancies == ()
    assert first.repoll_dns
    assert first.next_deadline == 16.0
    # DNS agrees 1 s later: nothing more to check.
    agreed = agree(first.state, mode="auto", dns=(E1, E2), api=(E1, E2), now=11.0, window=6)
    assert agreed.endpoints == (E1, E2)
    assert not agreed.repoll_dns
    # DNS never agrees: a discrepancy once the window has passed.
    still = agree(first.state, mode="auto", dns=(E1,), api=(E1, E2), now=15.9, window=6)
    assert still.endpoints == (E1, E2)
    assert still.discrepancies == ()
    late = agree(still.state, mode="auto", dns=(E1,), api=(E1, E2), now=16.0, window=6)
    assert late.endpoints == (E1, E2)
    assert [(d.endpoint, d.kind, d.since) for d in late.discrepancies] == [(E2, "api-only", 10.0)]
    assert "ready in the API but not in DNS" in str(late.discrepancies[0])


def test_auto_drops_what_the_api_says_is_not_ready_even_if_dns_lists_it() -> None:
    first = agree(MergeState(), mode="auto", dns=(E1, E2, E3), api=(E1, E2), now=0.0, window=6)
    assert first.endpoints == (E1, E2)
    assert first.discrepancies == ()
    later = agree(first.state, mode="auto", dns=(E1, E2, E3), api=(E1, E2), now=6.0, window=6)
    assert [(d.endpoint, d.kind) for d in later.discrepancies] == [(E3, "dns-only")]
    gone = agree(later.state, mode="auto", dns=(E1, E2), api=(E1, E2), now=7.0, window=6)
    assert gone.discrepancies == ()
    assert gone.state.dns_only_since == {}


def test_auto_without_api_view_is_dns_only() -> None:
    pending = agree(MergeState(), mode="auto", dns=(E1,), api=(E1, E2), now=0.0, window=6)
    fallback = agree(pending.state, mode="auto", dns=(E1, E3), api=None, now=1.0, window=6)
    assert fallback.endpoints == (E1, E3)
    assert fallback.state.api_only_since == {}
    assert agree(MergeState(), mode="auto", dns=None, api=None, now=0, window=6).endpoints == ()


def test_api_mode_is_the_api_and_keeps_its_set_only_while_the_api_is_unreadable() -> None:
    one = agree(MergeState(), mode="api", dns=None, api=(E2, E1), now=0, window=6)
    assert one.endpoints == (E1, E2)
    empty = agree(one.state, mode="api", dns=None, api=(), now=1, window=6)
    assert empty.endpoints == ()  # nothing listed: slices gone (panic needs listed ones)
    lost = agree(one.state, mode="api", dns=None, api=None, now=1, window=6)
    assert lost.endpoints == (E1, E2)
    assert agree(MergeState(), mode="api", dns=(E3,), api=(E1,), now=0, window=6).endpoints == (E1,)


def test_hostname_from_either_side_survives() -> None:
    named = Endpoint(address="10.0.0.1", port=8000, hostname="web-0")
    result = agree(MergeState(), mode="auto", dns=(E1,), api=(named,), now=0, window=6)
    assert result.endpoints[0].hostname == "web-0"
    result = agree(MergeState(), mode="auto", dns=(named,), api=(E1,), now=0, window=6)
    assert result.endpoints[0].hostname == "web-0"


def test_panic_mode_keeps_listed_endpoints_when_none_is_ready() -> None:
    from dnsbalance._kube.slices import ApiEndpoints

    a, b, c = (Endpoint(address=f"10.0.0.{i}", port=9000) for i in (1, 2, 3))
    last = MergeState(endpoints=(a, b))
    none_ready = ApiEndpoints((), listed=(a, b, c), serving=(c,))

    def decide(state: MergeState, mode: Any, api: Any, now: float = 5.0, **kw: Any) -> Any:
        kw.setdefault("listed", getattr(api, "listed", ()))
        kw.setdefault("serving", getattr(api, "serving", ()))
        return agree(state, mode=mode, dns=(), api=api, now=now, window=6.0, **kw)

    for mode in ("api", "auto"):
        result = decide(last, mode, none_ready)
        assert result.panic
        assert result.endpoints == (a, b, c)  # serving + last known
        assert {d.kind for d in result.discrepancies} == {"panic"}
        assert "panic mode" in str(result.discrepancies[0])
        again = decide(result.state, mode, none_ready, now=9.0, serving=())
        assert again.endpoints == (a, b, c)
        assert again.discrepancies[0].since == 5.0
        # Slices gone or empty: the channel is emptied, whatever was used before.
        gone = decide(last, mode, ApiEndpoints())
        assert gone.endpoints == ()
        assert not gone.panic
        # The knob: off empties the channel.
        off = decide(last, mode, none_ready, panic_mode=False)
        assert off.endpoints == ()
        assert not off.panic
    # Endpoints listed but neither serving nor in the last set are never called.
    assert decide(MergeState(), "api", ApiEndpoints((), (a,), ())).endpoints == ()
