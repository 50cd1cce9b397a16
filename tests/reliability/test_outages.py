"""The two long outages: cluster DNS gone for a minute under a mode="dns" channel, and
the Kubernetes API answering 500 for 30 s under mode="api" and mode="auto" channels.

They run at the same time, in one test, to keep the suite short: they share nothing
(separate Services, DNS servers and channels) but the backends' port and the clock."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from dnsbalance import PollPolicy, resolve_channel
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits.backends import Fleet, demo_pb2_grpc, wait_until
from tests.kits.reliability import (
    Callers,
    CallLog,
    Cluster,
    addresses,
    calling,
    fallback_warnings,
    measured,
    requests_of,
)

DNS_DOWN = 60.0
API_DOWN = 30.0


def test_dns_down_60s_and_api_500s_30s(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DNS: a call every ~0.5 s for 60 s, all served by the last known good set; a pod
    added during the outage is used once DNS is back.

    API: auto falls back to DNS (one warning) and follows it; api keeps its last set;
    both pick the API up again once it answers (its retries back off to 30 s)."""
    # -- mode dns, on a DNS server of its own that is about to go away
    dns_service = f"{unique_service}-dns"
    doomed = DNSResponder(ttl=1).start()
    port = doomed.port
    dns_hosts = [fleet.add().host for _ in range(2)]
    for host in dns_hosts:
        doomed.add_pod(dns_service, "ns", host)
    dns_channel = resolve_channel(
        f"{dns_service}.ns:{fleet.port}",
        nameservers=[doomed.address],
        mode="dns",
        poll_policy=PollPolicy(interval=0.5, max_backoff=2.0),
        dns_timeout=0.5,
    )
    revived: DNSResponder | None = None
    # -- modes api and auto, on the API (and the fixture's DNS server, which stays up)
    cluster = Cluster(kube, cluster_dns, fleet, unique_service, 3)
    a, b, c = cluster.hosts
    cluster.publish([a, b])
    try:
        with (
            caplog.at_level(logging.WARNING, logger="dnsbalance"),
            cluster.api_channel(kubeconfig) as api_ch,
            cluster.auto_channel(kubeconfig) as auto_ch,
            calling(api_ch, auto_ch, interval=0.05) as api_log,
        ):
            dns_stub = demo_pb2_grpc.DemoServiceStub(dns_channel)
            assert wait_until(lambda: CallLog().call(dns_stub) == dns_hosts[1], 5.0)
            assert wait_until(lambda: kube.watch_count == 1, 5.0)  # api + auto share it

            doomed.close()  # nothing listens on its port any more
            kube.deny("*", "endpointslices", code=500)  # every API request: HTTP 500
            kube.cut_watches()
            down_at = time.monotonic()
            late_pod = fleet.add()  # starts during the DNS outage
            dns_calls = Callers(dns_stub, threads=1, interval=0.5, deadline=DNS_DOWN)

            # API outage: auto on DNS alone (one warning), api on its last set.
            assert wait_until(lambda: len(fallback_warnings(caplog)) == 1, 5.0)
            cluster.publish([a, b, c], api=False)
            assert wait_until(lambda: addresses(auto_ch) == [a, b, c], 3.0)
            time.sleep(max(0.0, API_DOWN - (time.monotonic() - down_at)))
            failed_requests = requests_of(kube, "list", 500) + requests_of(kube, "watch", 500)
            assert addresses(api_ch) == [a, b]
            assert len(fallback_warnings(caplog)) == 1
            calls_during = api_log.ok

            # The API returns, with a change of its own (a is not ready; DNS still has it).
            cluster.publish([b, c], dns=False)
            kube.allow_all()
            api_back_at = time.monotonic()
            back: dict[str, float] = {}

            def recovered() -> bool:
                for name, channel in (("api", api_ch), ("auto", auto_ch)):
                    if name not in back and addresses(channel) == [b, c]:
                        back[name] = time.monotonic() - api_back_at
                return len(back) == 2

            assert wait_until(recovered, 40.0, 0.05), back  # retries back off to 30 s at most
            assert any("readable again" in r.getMessage() for r in caplog.records)

            # The DNS outage goes on to 60 s.
            dns_log = dns_calls.join(DNS_DOWN + 15.0)
            assert time.monotonic() - down_at >= DNS_DOWN - 1.0
            failed_polls = sum(
                "DNS poll failed" in r.getMessage() and dns_service in r.getMessage()
                for r in caplog.records
            )
            assert dns_log.failed == 0, dns_log.error_kinds()
            assert dns_log.ok >= 100
            assert set(dns_log.values) == set(dns_hosts)
            assert addresses(dns_channel) == dns_hosts
            assert dns_channel.generation == 0
            assert failed_polls >= 10  # it kept trying, backing off to 2 s

            revived = DNSResponder(port=port, ttl=1).start()
            revived.set_service(dns_service, "ns", [*dns_hosts, late_pod.host])
            dns_back_at = time.monotonic()
            assert wait_until(lambda: late_pod.host in addresses(dns_channel), 10.0)
            dns_recovered = time.monotonic() - dns_back_at
            assert wait_until(lambda: dns_log.call(dns_stub) == late_pod.host, 5.0)
    finally:
        dns_channel.close()
        doomed.close()
        if revived is not None:
            revived.close()
    assert dns_log.failed == 0, dns_log.error_kinds()
    assert api_log.failed == 0, api_log.error_kinds()
    measured(
        "DNS server stopped for 60 s (mode dns)",
        f"{dns_log.ok} calls served by the last good set ({failed_polls} failed polls); the "
        f"pod added during the outage used {dns_recovered:.1f} s after DNS returned",
        dns_log.failed,
    )
    measured(
        "API answers 500 for 30 s (api + auto)",
        f"{failed_requests} requests failed; auto: DNS only (1 warning), followed a DNS "
        f"change; api: kept its set; {calls_during} calls ok meanwhile; API used again "
        f"{back['api']:.1f} s (api) / {back['auto']:.1f} s (auto) after it recovered "
        "(retry backoff, capped at 30 s)",
        api_log.failed,
    )
