"""``outlier_detection=``, pure: the defaults, a mapping checked field by field, and how it
enters the service config (the merge rule with the user's own load balancing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dnsbalance import ConfigError
from dnsbalance._channel.config import service_config_json
from dnsbalance._channel.outlier import DEFAULTS, POLICY, outlier_config


def lb_of(config_json: str) -> Any:
    return json.loads(config_json)["loadBalancingConfig"]


def test_off_by_default_and_true_is_the_documented_defaults() -> None:
    assert outlier_config(False) is None
    assert outlier_config(True) == {
        "interval": "1s",
        "baseEjectionTime": "30s",
        "maxEjectionTime": "300s",
        "maxEjectionPercent": 50,
        "failurePercentageEjection": {
            "threshold": 40,
            "enforcementPercentage": 100,
            "minimumHosts": 2,
            "requestVolume": 10,
        },
    }
    mine = outlier_config(True)
    assert mine is not None
    mine["interval"] = "9s"
    assert DEFAULTS["interval"] == "1s"  # a copy each time


def test_round_robin_is_wrapped_as_the_child() -> None:
    config = lb_of(service_config_json(None, outlier_detection=outlier_config(True)))
    assert config == [{POLICY: {**outlier_config(True), "childPolicy": [{"round_robin": {}}]}}]  # type: ignore[dict-item]
    assert lb_of(service_config_json(None)) == [{"round_robin": {}}]  # off: unchanged


def test_health_check_and_method_config_survive() -> None:
    user = {"methodConfig": [{"name": [{}], "timeout": "2s"}]}
    config = json.loads(
        service_config_json(user, health_check=True, outlier_detection=outlier_config(True))
    )
    assert config["healthCheckConfig"] == {"serviceName": ""}
    assert config["methodConfig"] == user["methodConfig"]
    assert POLICY in config["loadBalancingConfig"][0]


@pytest.mark.parametrize("own", ["loadBalancingConfig", "loadBalancingPolicy"])
def test_the_users_own_load_balancing_wins_and_both_together_are_refused(own: str) -> None:
    value: Any = [{"pick_first": {}}] if own == "loadBalancingConfig" else "pick_first"
    assert own in json.loads(service_config_json({own: value}))  # theirs, as before
    with pytest.raises(ConfigError, match=f"service_config names its own {own}"):
        service_config_json({own: value}, outlier_detection=outlier_config(True))


def test_a_mapping_is_grpcs_config_in_full_with_seconds_as_numbers() -> None:
    config = outlier_config(
        {
            "interval": 2,
            "baseEjectionTime": 0.5,
            "maxEjectionTime": "60s",
            "maxEjectionPercent": 20,
            "successRateEjection": {"stdevFactor": 1500, "minimumHosts": 3},
        }
    )
    assert config == {
        "interval": "2s",
        "baseEjectionTime": "0.5s",
        "maxEjectionTime": "60s",
        "maxEjectionPercent": 20,
        "successRateEjection": {"stdevFactor": 1500, "minimumHosts": 3},
    }


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (1, "outlier_detection must be True"),
        ("yes", "outlier_detection must be True"),
        (None, "outlier_detection must be True"),
        ({}, "names neither successRateEjection nor failurePercentageEjection"),
        ({"interval": "1s"}, "would eject nothing"),
        ({"intervall": "1s"}, r"outlier_detection\['intervall'\] is not a field grpc knows"),
        ({"base_ejection_time": "1s"}, "is not a field grpc knows"),
        ({"childPolicy": [{"pick_first": {}}]}, "the child policy is dnsbalance's round_robin"),
        ({"interval": "1m"}, r"outlier_detection\['interval'\] must be a duration"),
        ({"interval": -1}, "must be a duration"),
        ({"interval": True}, "must be a duration"),
        ({"maxEjectionPercent": 101}, "must be a whole number from 0 to 100"),
        ({"maxEjectionPercent": 50.0}, "must be a whole number from 0 to 100"),
        ({"failurePercentageEjection": []}, "must be a mapping of threshold"),
        ({"failurePercentageEjection": {"threshold": 200}}, r"\['threshold'\] must be a whole"),
        ({"failurePercentageEjection": {"threshold": -1}}, "from 0 to 100"),
        ({"failurePercentageEjection": {"stdevFactor": 1}}, r"\['stdevFactor'\] is not a field"),
        ({"successRateEjection": {"requestVolume": 2**32}}, "from 0 to 4294967295"),
        ({"successRateEjection": {"enforcementPercentage": 101}}, "from 0 to 100"),
    ],
)
def test_what_grpc_would_refuse_or_ignore_is_refused_at_the_door(value: object, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        outlier_config(value)
