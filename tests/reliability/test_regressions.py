"""The bugs the reliability suite found, each pinned by a small, fast test of the fixed
function (the suite's end-to-end tests show them under load)."""

from __future__ import annotations

import pytest

from dnsbalance import ConfigError, Endpoint, TargetError, parse_target
from dnsbalance._dns.servers import parse_nameserver
from dnsbalance._merge.agree import MergeState, agree

A, B, C = (Endpoint(address=f"10.0.0.{i}", port=8000) for i in (1, 2, 3))


def test_auto_never_empties_when_the_api_has_ready_endpoints_dns_lacks() -> None:
    """Every pod replaced at once (the API has the new ones, DNS still the old one), or
    no DNS answer yet: the API's ready endpoints, not an empty channel."""
    replaced = agree(MergeState(), mode="auto", dns=(A,), api=(B, C), now=0.0, window=2.0)
    assert replaced.endpoints == (B, C)
    assert replaced.repoll_dns  # still pending: DNS is asked again, late ones reported
    caught_up = agree(replaced.state, mode="auto", dns=(B, C), api=(B, C), now=0.5, window=2.0)
    assert caught_up.endpoints == (B, C)
    assert not caught_up.repoll_dns
    late = agree(replaced.state, mode="auto", dns=(A,), api=(B, C), now=2.0, window=2.0)
    assert {d.endpoint for d in late.discrepancies} == {A, B, C}
    no_dns_yet = agree(MergeState(), mode="auto", dns=None, api=(B,), now=0.0, window=2.0)
    assert no_dns_yet.endpoints == (B,)
    # Unchanged: nothing ready in the API empties an auto channel. A partial overlap is
    # the API's ready set at once (C while DNS lags), never A, which the API does not
    # call ready (issue 24: auto no slower than api).
    assert agree(MergeState(), mode="auto", dns=(A,), api=(), now=0, window=2).endpoints == ()
    partial = agree(MergeState(), mode="auto", dns=(A, B), api=(B, C), now=0, window=2)
    assert partial.endpoints == (B, C)
    assert partial.repoll_dns


@pytest.mark.parametrize(
    "text",
    [
        "svc.ns:\u00b2",  # SUPERSCRIPT TWO: isdigit() but not int()
        "svc.ns:\u0663",  # ARABIC-INDIC THREE: int() makes it 3
        "svc.ns:" + "9" * 5000,  # past int()'s 4300-digit limit
        "dns://10.0.0.1:\u00b2/svc.ns.svc.cluster.local:80",
        "dns://[::1]:" + "9" * 5000 + "/svc.ns.svc.cluster.local:80",
        "svc.\u212ans:80",  # KELVIN SIGN: lower() makes it k
    ],
)
def test_targets_with_odd_digits_and_letters_are_target_errors(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


def test_long_ports_are_out_of_range_not_crashes() -> None:
    with pytest.raises(TargetError, match="out of range"):
        parse_target("svc.ns:0000080")
    for text in ("10.0.0.1:\u00b2", "[::1]:\u00b2", "10.0.0.1:" + "9" * 5000):
        with pytest.raises(ConfigError):
            parse_nameserver(text)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
