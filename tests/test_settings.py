"""ChannelSettings: plain validated data, frozen, checked in __post_init__."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

import dnsbalance.aio
from dnsbalance import ConfigError, PollPolicy, TargetError, parse_target, resolve_channel
from dnsbalance._channel.subset import Subsetting
from dnsbalance._settings import ChannelSettings, settings_for

TARGET = parse_target("svc.ns:8000")
NO_PORT = parse_target("kubernetes:///svc.ns")


def test_defaults_and_derived_values() -> None:
    settings = ChannelSettings(target=TARGET)
    assert settings.mode == "auto"
    assert not settings.api_only
    assert settings.name == "kubernetes:///svc.ns:8000"
    assert settings.policy == PollPolicy(interval=5.0)
    assert settings.servers is None  # resolv.conf's
    assert settings.poller_options() == {
        "policy": PollPolicy(interval=5.0),
        "name": "dnsbalance-poll-svc.ns",
    }
    assert settings.channel_args() == {
        "name": "kubernetes:///svc.ns:8000",
        "drain_timeout": 30.0,
        "on_change": None,
        "subsetting": None,
    }


def test_frozen() -> None:
    settings = ChannelSettings(target=TARGET)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mode = "dns"  # type: ignore[misc]


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        ChannelSettings(TARGET)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"mode": "fast"}, ConfigError, "mode must be one of auto, dns, api"),
        ({"drain_timeout": -1.0}, ConfigError, "drain_timeout must be >= 0"),
        ({"dns_timeout": 0.0}, ConfigError, "dns_timeout must be positive"),
        ({"poll_interval": 0.01}, ConfigError, "interval"),
        ({"target": NO_PORT, "mode": "dns"}, TargetError, "needs the Kubernetes API"),
    ],
)
def test_invalid_settings_are_refused(
    changes: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ChannelSettings(**{"target": TARGET, **changes})  # type: ignore[arg-type]


def test_a_target_without_a_port_reads_the_api_only() -> None:
    assert ChannelSettings(target=NO_PORT).api_only
    assert ChannelSettings(target=TARGET, mode="api").api_only


def test_a_poll_policy_overrides_the_interval() -> None:
    policy = PollPolicy(interval=1.0, max_backoff=10.0)
    assert ChannelSettings(target=TARGET, poll_policy=policy).policy is policy


def test_servers_given_else_the_targets() -> None:
    assert ChannelSettings(target=TARGET, nameservers=("10.96.0.10",)).servers == ("10.96.0.10",)
    via = parse_target("dns://127.0.0.1:5353/svc.ns.svc.cluster.local:8000")
    assert ChannelSettings(target=via).servers == ("127.0.0.1:5353",)


def test_subset_size_and_key_become_the_channels_subsetting() -> None:
    assert settings_for("svc.ns:8000", mode="dns").subsetting is None
    keyed = settings_for("svc.ns:8000", mode="dns", subset_size=3, subset_key="pod-a")
    assert keyed.subsetting == Subsetting(3, b"pod-a")
    assert keyed.channel_args()["subsetting"] == keyed.subsetting
    salted = settings_for("svc.ns:8000", mode="dns", subset_size=3).subsetting
    assert salted is not None
    assert salted.size == 3
    assert salted != settings_for("svc.ns:8000", mode="dns", subset_size=3).subsetting


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"subset_size": 0}, "subset_size must be a whole number >= 1"),
        ({"subset_size": -2}, "subset_size must be a whole number >= 1"),
        ({"subset_size": True}, "subset_size must be a whole number >= 1"),
        ({"subset_size": 2.0}, "subset_size must be a whole number >= 1"),
        ({"subset_size": "3"}, "subset_size must be a whole number >= 1"),
        ({"subset_size": 3, "subset_key": ""}, "subset_key must be a non-empty string"),
        ({"subset_size": 3, "subset_key": 7}, "subset_key must be a non-empty string"),
        ({"subset_key": "pod-a"}, "subset_key needs subset_size"),
        ({"outlier_detection": 1}, "outlier_detection must be True"),
        ({"outlier_detection": "on"}, "outlier_detection must be True"),
        ({"outlier_detection": {"interval": "1s"}}, "would eject nothing"),
        (
            {"outlier_detection": True, "service_config": {"loadBalancingPolicy": "pick_first"}},
            "service_config names its own loadBalancingPolicy",
        ),
    ],
)
def test_both_drivers_check_the_new_arguments_at_the_door(
    kwargs: dict[str, Any], named: str
) -> None:
    arguments: dict[str, Any] = {"target": "greeter.app:8000", "mode": "dns", **kwargs}
    with pytest.raises(ConfigError, match=named):
        settings_for(**arguments)
    with pytest.raises(ConfigError, match=named):
        resolve_channel(**arguments)
    with pytest.raises(ConfigError, match=named):
        asyncio.run(dnsbalance.aio.resolve_channel(**arguments))
