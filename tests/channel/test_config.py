"""Pure planning of the underlying grpc channel: target string, options, service config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dnsbalance import ConfigError, Endpoint, parse_target
from dnsbalance._channel.config import (
    address_list,
    channel_port,
    grpc_dns_resolver,
    plan_channel,
    service_config_json,
)

ROOT = Path(__file__).resolve().parents[2]


def ep(address: str, port: int = 8000) -> Endpoint:
    return Endpoint(address=address, port=port)


def test_round_robin_by_default() -> None:
    assert json.loads(service_config_json(None)) == {"loadBalancingConfig": [{"round_robin": {}}]}


def test_user_config_survives_and_health_check_is_added() -> None:
    user = {
        "methodConfig": [
            {
                "name": [{"service": "demo.DemoService"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    merged = json.loads(service_config_json(user, health_check=True))
    assert merged["methodConfig"] == user["methodConfig"]
    assert merged["loadBalancingConfig"] == [{"round_robin": {}}]
    assert merged["healthCheckConfig"] == {"serviceName": ""}
    assert "healthCheckConfig" not in user  # the caller's dict is not changed
    assert json.loads(service_config_json(json.dumps(user))) == {
        **user,
        "loadBalancingConfig": [{"round_robin": {}}],
    }


def test_users_own_policy_wins() -> None:
    mine = {"loadBalancingConfig": [{"weighted_round_robin": {}}]}
    assert json.loads(service_config_json(mine)) == mine
    legacy = {"loadBalancingPolicy": "round_robin"}
    assert json.loads(service_config_json(legacy)) == legacy


def test_service_config_text_is_deterministic() -> None:
    a = service_config_json({"b": 1, "a": {"y": 1, "x": 2}})
    b = service_config_json({"a": {"x": 2, "y": 1}, "b": 1})
    assert a == b


@pytest.mark.parametrize("bad", ["{", "[1]", 3, {"x": object()}])
def test_bad_service_config(bad: Any) -> None:
    with pytest.raises(ConfigError):
        service_config_json(bad)


def test_plan_uses_one_dns_target_for_every_endpoint_set() -> None:
    target = parse_target("svc.ns:8000", cluster_domain="cluster.local")
    options = (("grpc.service_config", "{}"),)
    one = plan_channel(target, [ep("10.0.0.1")], dns_authority="10.96.0.10:53", options=options)
    two = plan_channel(
        target, [ep("10.0.0.1"), ep("10.0.0.2")], dns_authority="10.96.0.10:53", options=options
    )
    assert one.target == two.target == "dns://10.96.0.10:53/svc.ns.svc.cluster.local:8000"
    assert one.options == two.options == options
    bare = plan_channel(target, [], dns_authority=None, options=options)
    assert bare.target == "dns:///svc.ns.svc.cluster.local:8000"


def test_named_port_comes_from_the_endpoints() -> None:
    target = parse_target("svc.ns:grpc", cluster_domain="cluster.local")
    assert channel_port(target, []) is None
    assert (
        channel_port(target, [ep("10.0.0.1", 9000), ep("10.0.0.2", 9000), ep("10.0.0.3", 7)])
        == 9000
    )
    assert channel_port(target, [ep("10.0.0.1", 9001), ep("10.0.0.2", 9000)]) == 9000
    plan = plan_channel(target, [ep("10.0.0.1", 9000)], dns_authority=None, options=())
    assert plan.target.endswith(":9000")


def test_native_resolver_falls_back_to_address_list() -> None:
    target = parse_target("svc.ns:8000", cluster_domain="cluster.local")
    endpoints = [ep("10.0.0.2"), ep("10.0.0.1")]
    plan = plan_channel(
        target, endpoints, dns_authority="127.0.0.1:53", options=(), resolver="native"
    )
    assert plan.target == "ipv4:10.0.0.2:8000,10.0.0.1:8000"
    assert ("grpc.default_authority", "svc.ns.svc.cluster.local:8000") in plan.options
    # Without an authority the native resolver reads resolv.conf, as our poller does.
    plan = plan_channel(target, endpoints, dns_authority=None, options=(), resolver="native")
    assert plan.target.startswith("dns:///")


def test_address_lists() -> None:
    assert address_list([ep("10.0.0.1"), ep("10.0.0.2")]) == "ipv4:10.0.0.1:8000,10.0.0.2:8000"
    assert address_list([ep("fd00::1"), ep("10.0.0.1")]) == (
        "ipv6:[fd00::1]:8000,[::ffff:10.0.0.1]:8000"
    )


def test_grpc_dns_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRPC_DNS_RESOLVER", raising=False)
    assert grpc_dns_resolver() == "ares"
    monkeypatch.setenv("GRPC_DNS_RESOLVER", "Native")
    assert grpc_dns_resolver() == "native"
    monkeypatch.setenv("GRPC_DNS_RESOLVER", "ares")
    assert grpc_dns_resolver() == "ares"


def test_native_resolver_for_real(embedded_dns: Any) -> None:
    """grpc really ignores the DNS server with GRPC_DNS_RESOLVER=native (it reads the
    variable at start-up, so this runs in a child): the fallback still balances."""
    script = textwrap.dedent(
        f"""
        import logging, sys
        from collections import Counter
        sys.path.insert(0, {str(ROOT)!r})
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        from tests.kits.backends import Fleet, demo_pb2, demo_pb2_grpc
        from dnsbalance import resolve_channel
        from dnsbalance.testing import DNSResponder
        fleet = Fleet(240)
        with DNSResponder() as dns_:
            for _ in range(3):
                dns_.add_pod("native", "ns", fleet.add().host)
            with resolve_channel(f"native.ns:{{fleet.port}}", nameservers=[dns_.address],
                                 mode="dns") as channel:
                stub = demo_pb2_grpc.DemoServiceStub(channel)
                for _ in range(30):  # until every backend is connected
                    stub.Demo(demo_pb2.Empty(), timeout=5)
                counts = Counter(stub.Demo(demo_pb2.Empty(), timeout=5).value for _ in range(30))
                print(channel.target)
                print(sorted(counts.values()))
        fleet.close()
        """
    )
    env = {**os.environ, "GRPC_DNS_RESOLVER": "native"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    target, counts = result.stdout.split("\n")[:2]
    assert target.startswith("ipv4:127.0.240.1:")
    assert counts == "[10, 10, 10]"
    assert "GRPC_DNS_RESOLVER=native ignores the DNS server" in result.stderr
