"""Prometheus metrics: reported per target when prometheus_client is installed."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import dns.rcode
import prometheus_client

from dnsbalance import resolve_channel
from tests.kits.backends import Fleet, call_counts, demo_pb2_grpc, wait_until


def sample(name: str, target: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, {"target": target})


def test_channel_metrics(embedded_dns: Any, fleet: Fleet, unique_service: str) -> None:
    embedded_dns.add_pod(unique_service, "ns", fleet.add().host)
    target = f"kubernetes:///{unique_service}.ns:{fleet.port}"
    before = time.time()
    with resolve_channel(
        f"{unique_service}.ns:{fleet.port}",
        nameservers=[embedded_dns.address],
        mode="dns",
        poll_interval=0.2,
    ) as channel:
        assert sample("dnsbalance_endpoints", target) == 1
        embedded_dns.add_pod(unique_service, "ns", fleet.add().host)
        assert wait_until(lambda: channel.generation == 1, 3.0)
        call_counts(demo_pb2_grpc.DemoServiceStub(channel), 4)
        assert sample("dnsbalance_endpoints", target) == 2
        assert sample("dnsbalance_rebuilds_total", target) == 1
        updated = sample("dnsbalance_last_update_timestamp_seconds", target)
        assert updated is not None
        assert updated >= before
        embedded_dns.fail_rcode = dns.rcode.SERVFAIL
        try:
            assert wait_until(
                lambda: (sample("dnsbalance_resolution_errors_total", target) or 0) >= 1, 3.0
            )
        finally:
            embedded_dns.fail_rcode = None


def test_nothing_imported_without_it() -> None:
    code = (
        "import sys, dnsbalance, dnsbalance.aio; "
        "from dnsbalance._metrics import metrics_for; "
        "metrics_for('x').endpoints(1, rebuilt=True); "
        "print('prometheus_client' in sys.modules)"
    )
    env_off = {"DNSBALANCE_METRICS": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env_off
    )
    assert out.stdout.strip() == "False", out.stderr
    plain = subprocess.run(
        [sys.executable, "-c", "import sys, dnsbalance; print('prometheus_client' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.stdout.strip() == "False", plain.stderr


def test_watch_restarts(unique_service: str, tmp_path: Any) -> None:
    from dnsbalance.testing import FakeKubernetesAPI

    with FakeKubernetesAPI() as kube:
        config = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="app")
        kube.apply_slice(f"{unique_service}-a", "app", unique_service, endpoints=["10.8.0.1"])
        target = f"kubernetes:///{unique_service}.app:80"
        with resolve_channel(f"{unique_service}.app:80", kubeconfig=config, mode="api"):
            assert sample("dnsbalance_endpoints", target) == 1
            assert wait_until(lambda: kube.watch_count > 0, 3.0)
            kube.cut_watches()
            assert wait_until(
                lambda: (sample("dnsbalance_watch_restarts_total", target) or 0) >= 1, 3.0
            )
