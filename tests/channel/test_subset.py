"""Subsetting (gRFC A68's rendezvous hashing), pure: the properties a fleet relies on."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsbalance import Endpoint
from dnsbalance._channel.subset import SALT_BYTES, Subsetting, dialed, new_salt


def ep(address: str, port: int = 8000) -> Endpoint:
    return Endpoint(address=address, port=port)


POOL = [ep(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(300)] + [
    ep(f"fd00::{i:x}") for i in range(1, 40)
]
addresses = st.lists(st.sampled_from(POOL), unique=True, max_size=60)
sizes = st.integers(min_value=1, max_value=20)
keys = st.text(max_size=40)


@given(addresses, sizes, keys)
def test_the_subset_is_the_size_asked_from_the_endpoints_given(
    endpoints: list[Endpoint], size: int, key: str
) -> None:
    picked = Subsetting.keyed(size, key).pick(endpoints)
    assert len(picked) == min(size, len(endpoints))
    assert set(picked) <= set(endpoints)
    assert list(picked) == sorted(picked, key=Endpoint.sort_key)  # the usual order


@given(addresses, sizes, keys)
def test_with_no_more_endpoints_than_the_size_every_one_is_kept(
    endpoints: list[Endpoint], size: int, key: str
) -> None:
    endpoints = endpoints[:size]
    assert set(Subsetting.keyed(size, key).pick(endpoints)) == set(endpoints)


@given(addresses, sizes, keys, st.sampled_from(POOL))
def test_adding_one_endpoint_changes_at_most_one_entry(
    endpoints: list[Endpoint], size: int, key: str, added: Endpoint
) -> None:
    subsetting = Subsetting.keyed(size, key)
    before = set(subsetting.pick(endpoints))
    after = set(subsetting.pick([*endpoints, added]))
    assert len(after - before) <= 1
    assert len(before - after) <= 1
    assert after - before <= {added}  # only the new endpoint can come in


@given(addresses.filter(bool), sizes, keys, st.data())
def test_removing_one_endpoint_changes_at_most_one_entry(
    endpoints: list[Endpoint], size: int, key: str, data: st.DataObject
) -> None:
    subsetting = Subsetting.keyed(size, key)
    removed = data.draw(st.sampled_from(endpoints))
    before = set(subsetting.pick(endpoints))
    after = set(subsetting.pick([e for e in endpoints if e != removed]))
    assert len(after - before) <= 1
    assert before - after <= {removed}  # only the removed endpoint can go


@given(addresses, sizes, keys, st.randoms())
def test_the_order_endpoints_arrive_in_does_not_matter(
    endpoints: list[Endpoint], size: int, key: str, rnd: object
) -> None:
    subsetting = Subsetting.keyed(size, key)
    shuffled = list(endpoints)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert subsetting.pick(shuffled) == subsetting.pick(endpoints)


def test_the_same_key_gives_the_same_subset_and_other_keys_other_subsets() -> None:
    endpoints = POOL[:50]
    first = Subsetting.keyed(10, "pod-a").pick(endpoints)
    assert Subsetting.keyed(10, "pod-a").pick(endpoints) == first
    others = {Subsetting.keyed(10, f"pod-{i}").pick(endpoints) for i in range(20)}
    assert len(others) == 20  # 50 choose 10 subsets: twenty keys, twenty subsets


def test_without_a_key_each_client_draws_its_own_salt() -> None:
    assert len(new_salt()) == SALT_BYTES
    assert Subsetting(3).salt != Subsetting(3).salt
    endpoints = POOL[:40]
    assert len({Subsetting(5).pick(endpoints) for _ in range(10)}) > 1


def test_the_port_takes_no_part_in_the_rank() -> None:
    subsetting = Subsetting.keyed(3, "k")
    at_8000 = [ep(f"10.1.0.{i}") for i in range(1, 21)]
    at_9000 = [ep(f"10.1.0.{i}", 9000) for i in range(1, 21)]
    assert [e.address for e in subsetting.pick(at_8000)] == [
        e.address for e in subsetting.pick(at_9000)
    ]


def test_two_spellings_of_one_ipv6_address_rank_alike() -> None:
    subsetting = Subsetting.keyed(1, "k")
    assert subsetting.score("fd00::1") == subsetting.score("fd00:0:0::0001")


def test_picks_spread_over_the_endpoints_across_many_clients() -> None:
    """Every endpoint is as likely to be picked: 1,000 clients x 5 of 20 is 250 each on
    average; a uniform hash keeps every count within 5 standard deviations (about 70)."""
    endpoints = POOL[:20]
    counts: Counter[Endpoint] = Counter()
    for client in range(1000):
        counts.update(Subsetting.keyed(5, f"client-{client}").pick(endpoints))
    assert set(counts) == set(endpoints)
    assert all(abs(n - 250) < 70 for n in counts.values()), counts


def test_dialed_without_subsetting_is_every_endpoint() -> None:
    endpoints = [POOL[3], POOL[1], POOL[2]]
    assert dialed(endpoints, None) == (POOL[1], POOL[2], POOL[3])
    assert dialed(endpoints, Subsetting.keyed(2, "k")) == Subsetting.keyed(2, "k").pick(endpoints)


@pytest.mark.parametrize("size", [0, -1, True, 2.0, "3", None])
def test_a_size_that_is_not_a_whole_number_from_one_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match="subset size"):
        Subsetting(size)  # type: ignore[arg-type]
