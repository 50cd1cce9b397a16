"""Outlier detection (``outlier_detection=``): grpc's own ejection of a backend that is
Ready but failing, configured here and checked at the door. Pure.

grpc's C core has an ``outlier_detection_experimental`` LB policy (gRFC A50, Envoy's
outlier detection) that wraps a child policy: it counts each backend's calls by their
final status (OK a success, every other status a failure, the client's own
DEADLINE_EXCEEDED and CANCELLED included), and every ``interval`` ejects the backends
whose counts say so, for ``baseEjectionTime`` times the number of ejections so far (at
most ``maxEjectionTime``), by reporting them to the child as failed connections: the
child (here round_robin) then picks the others. Measured: grpcio 1.63 (the declared
minimum) and 1.85 accept and enforce it (``tests/channel/test_outlier.py`` runs in
the lower-bounds run of ``scripts/check``).

The state lives in the LB policy, so in the grpc channel: every rebuild (a new grpc
channel, see :mod:`dnsbalance._channel.sync`) starts with nothing ejected and no
counts, and a failing backend gets calls again until the next sweep ejects it
(``benchmarks/outlier.py`` measures what that costs).

``outlier_detection=True`` is :data:`DEFAULTS`; a mapping is the policy's JSON config
in full (grpc's own defaults fill what it leaves out: interval 10 s, and so on), minus
``childPolicy``, which is dnsbalance's round_robin. grpc takes a config it cannot read
as a reason to fail every call ("Failed to create channel"), and ignores a field it does
not know; so a mapping is checked here, field by field, and unknown fields are refused.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from dnsbalance._exceptions import ConfigError

POLICY = "outlier_detection_experimental"

DEFAULTS: Mapping[str, Any] = {
    # A sweep a second (grpc's and Envoy's default is 10 s): the pod is Ready, so
    # nothing else stops its calls; each second it stays costs its share of them.
    "interval": "1s",
    # grpc's and Envoy's defaults: 30 s, doubled on each ejection in a row, 5 min at most.
    "baseEjectionTime": "30s",
    "maxEjectionTime": "300s",
    # Never more than about half the backends (grpc ejects while fewer than this share
    # are out, and always one): a fault on every pod (a bad request, a shared
    # dependency) cannot leave a client on one pod.
    "maxEjectionPercent": 50,
    # Failure percentage, not success rate: success rate compares each backend with the
    # others' mean and cannot single one out among fewer than 5 (with stdevFactor 1.9 a
    # lone outlier among n is at most sqrt(n - 1) deviations off); dnsbalance's small
    # Services and subsets have 2 to 10. Threshold 40 %: a pod failing every other call
    # is ejected (50 % > 40 % whatever the sweep's count), one healthy service's own
    # error rate (a few %) is far from it. 10 calls in a sweep suffice to judge.
    "failurePercentageEjection": {
        "threshold": 40,
        "enforcementPercentage": 100,
        "minimumHosts": 2,
        "requestVolume": 10,
    },
}

_DURATIONS = ("interval", "baseEjectionTime", "maxEjectionTime")
_DURATION_TEXT = re.compile(r"^[0-9]+(\.[0-9]{1,9})?s$")
_UINT32 = 2**32 - 1
_ALGORITHMS: Mapping[str, Mapping[str, int]] = {
    # field: the largest value allowed
    "successRateEjection": {
        "stdevFactor": _UINT32,
        "enforcementPercentage": 100,
        "minimumHosts": _UINT32,
        "requestVolume": _UINT32,
    },
    "failurePercentageEjection": {
        "threshold": 100,
        "enforcementPercentage": 100,
        "minimumHosts": _UINT32,
        "requestVolume": _UINT32,
    },
}
_FIELDS = (*_DURATIONS, "maxEjectionPercent", *_ALGORITHMS)


def outlier_config(value: object) -> dict[str, Any] | None:
    """``outlier_detection=`` as the policy's config (without ``childPolicy``), or
    ``None`` when off. Raises ConfigError naming the argument and the field."""
    if value is False:
        return None
    if value is True:
        return copy.deepcopy(dict(DEFAULTS))
    if not isinstance(value, Mapping):
        raise ConfigError(
            "outlier_detection must be True (dnsbalance's defaults), False, or a mapping in "
            f"grpc's outlier_detection JSON (e.g. {{'interval': '1s', ...}}), got {value!r}"
        )
    config: dict[str, Any] = {}
    for key, field_value in value.items():
        name = f"outlier_detection[{key!r}]"
        if key == "childPolicy":
            raise ConfigError(
                f"{name}: the child policy is dnsbalance's round_robin; for another, name it "
                "in service_config's loadBalancingConfig yourself"
            )
        if key not in _FIELDS:
            raise ConfigError(
                f"{name} is not a field grpc knows (grpc would ignore it): use "
                + ", ".join(_FIELDS)
            )
        if key in _DURATIONS:
            config[key] = _duration(name, field_value)
        elif key == "maxEjectionPercent":
            config[key] = _whole(name, field_value, 100)
        else:
            config[key] = _algorithm(name, field_value, _ALGORITHMS[key])
    if not any(key in config for key in _ALGORITHMS):
        raise ConfigError(
            "outlier_detection names neither successRateEjection nor "
            "failurePercentageEjection, so it would eject nothing"
        )
    return config


def load_balancing_config(outlier: Mapping[str, Any], child: list[dict[str, Any]]) -> list[Any]:
    """The ``loadBalancingConfig`` of the service config: ``child`` wrapped in the policy."""
    return [{POLICY: {**copy.deepcopy(dict(outlier)), "childPolicy": copy.deepcopy(child)}}]


def _duration(name: str, value: object) -> str:
    """A protobuf Duration in JSON (``"1.5s"``); a number of seconds is written as one."""
    if isinstance(value, str) and _DURATION_TEXT.match(value):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11:
        text = f"{value:.9f}".rstrip("0").rstrip(".")
        return f"{text}s"
    raise ConfigError(
        f"{name} must be a duration: seconds as a number (1.5) or text ('1.5s'), got {value!r}"
    )


def _whole(name: str, value: object, largest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
        raise ConfigError(f"{name} must be a whole number from 0 to {largest}, got {value!r}")
    return value


def _algorithm(name: str, value: object, fields: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of {', '.join(fields)}, got {value!r}")
    out: dict[str, int] = {}
    for key, field_value in value.items():
        if key not in fields:
            raise ConfigError(
                f"{name}[{key!r}] is not a field grpc knows (grpc would ignore it): use "
                + ", ".join(fields)
            )
        out[key] = _whole(f"{name}[{key!r}]", field_value, fields[key])
    return out
