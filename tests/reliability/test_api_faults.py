"""The Kubernetes API misbehaving under mode="api" and mode="auto" channels (the official
client against FakeKubernetesAPI): cut watches, 410s, 500s, a 403 appearing, the API
gone, a slow list. Calls keep going throughout."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from dnsbalance import BalancedChannel
from dnsbalance.testing import DNSResponder, FakeKubernetesAPI
from tests.kits.backends import Fleet, wait_until
from tests.kits.reliability import (
    NS,
    Cluster,
    addresses,
    calling,
    fallback_warnings,
    measured,
    publish_slice,
    requests_of,
)


def test_watch_cut_every_2s(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = Cluster(kube, cluster_dns, fleet, unique_service, 3)
    a, b, c = cluster.hosts
    memberships = [[a, b], [b, c], [a, c], [a, b, c], [a], [b, c]]
    cluster.publish(memberships[0])
    cuts = 0
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        cluster.api_channel(kubeconfig) as api_ch,
        cluster.auto_channel(kubeconfig) as auto_ch,
        calling(api_ch, auto_ch) as log,
    ):
        for hosts in memberships[1:]:
            started = time.monotonic()
            assert wait_until(lambda: kube.watch_count == 1, 5.0)  # api + auto share it
            cuts += kube.cut_watches()  # abrupt: the client sees ProtocolError
            cluster.publish(hosts)
            assert wait_until(lambda h=hosts: addresses(api_ch) == h, 5.0), hosts  # type: ignore[misc]
            assert wait_until(lambda h=hosts: addresses(auto_ch) == h, 5.0), hosts  # type: ignore[misc]
            time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    assert log.failed == 0, (log.error_kinds(), [str(e)[:300] for e in log.errors[:2]])
    assert cuts >= len(memberships) - 1  # the one shared watch, cut each round
    assert fallback_warnings(caplog) == []  # a cut stream is no outage
    watches = requests_of(kube, "watch")
    measured(
        "API watch stream cut every 2 s (api + auto)",
        f"{cuts} streams cut, {watches} watches opened, every change followed, "
        f"{log.ok} calls ok, no fallback",
        log.failed,
    )


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
def test_repeated_410_expired(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
    as_http: bool,
) -> None:
    """Watches resumed from a compacted resourceVersion get 410 Expired (as an ERROR event
    or a plain HTTP 410): list again at once, no outage, no warning."""
    kube.expired_as_http_410 = as_http
    cluster = Cluster(kube, cluster_dns, fleet, unique_service, 3)
    a, b, c = cluster.hosts
    memberships = [[a, b, c], [a, b], [b, c], [a, c]]
    cluster.publish(memberships[0])
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        cluster.api_channel(kubeconfig) as api_ch,
        cluster.auto_channel(kubeconfig) as auto_ch,
        calling(api_ch, auto_ch) as log,
    ):
        lists_before = requests_of(kube, "list")
        for hosts in memberships[1:]:
            assert wait_until(lambda: kube.watch_count == 1, 5.0)  # api + auto share it
            kube.delay(0.5, verb="watch")  # hold the resumed watches until compacted
            kube.cut_watches()
            cluster.publish(hosts)
            kube.compact()
            assert wait_until(lambda h=hosts: addresses(api_ch) == h, 5.0), hosts  # type: ignore[misc]
            assert wait_until(lambda h=hosts: addresses(auto_ch) == h, 5.0), hosts  # type: ignore[misc]
            kube.delay(0, verb="watch")
        expired = sum(1 for r in kube.requests if r.status == 410) if as_http else None
        relists = requests_of(kube, "list") - lists_before
    assert log.failed == 0, (log.error_kinds(), [str(e)[:300] for e in log.errors[:2]])
    assert relists >= len(memberships) - 1  # the shared watch listed again after each 410
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == []  # expiry is routine: no fallback, no "keeping the last endpoints"
    measured(
        f"repeated 410 Expired ({'HTTP 410' if as_http else 'ERROR event'}), api + auto",
        f"{relists} re-lists{f' after {expired} HTTP 410s' if expired else ''}, "
        f"every change followed, no warning, {log.ok} calls ok",
        log.failed,
    )


def test_403_appearing_mid_run(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Role is removed while the channel runs: DNS only, with exactly one warning over
    several forbidden retries; the Role comes back: the API counts again."""
    cluster = Cluster(kube, cluster_dns, fleet, unique_service, 3)
    a, b, c = cluster.hosts
    cluster.publish([a, b])
    with (
        caplog.at_level(logging.WARNING, logger="dnsbalance"),
        cluster.auto_channel(kubeconfig) as auto_ch,
        calling(auto_ch) as log,
    ):
        assert wait_until(lambda: kube.watch_count >= 1, 5.0)
        kube.deny("*", "endpointslices", namespace=NS)
        kube.cut_watches()
        assert wait_until(lambda: requests_of(kube, "list", 403) >= 2, 15.0)  # retried
        forbidden = requests_of(kube, "list", 403) + requests_of(kube, "watch", 403)
        assert len(fallback_warnings(caplog)) == 1, fallback_warnings(caplog)
        assert "HTTP 403 Forbidden" in fallback_warnings(caplog)[0]
        cluster.publish([a, b, c], api=False)  # DNS alone decides now
        assert wait_until(lambda: addresses(auto_ch) == [a, b, c], 3.0)
        kube.allow_all()
        cluster.publish([a, c], dns=False)  # b is not ready in the API: dropped at once
        assert wait_until(lambda: addresses(auto_ch) == [a, c], 20.0)
    assert log.failed == 0, (log.error_kinds(), [str(e)[:300] for e in log.errors[:2]])
    assert len(fallback_warnings(caplog)) == 1
    measured(
        "403 appearing mid-run (auto)",
        f"{forbidden} requests refused, DNS only with exactly 1 warning, API used again "
        "once allowed",
        log.failed,
    )


def test_api_server_gone(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = Cluster(kube, cluster_dns, fleet, unique_service, 3)
    a, b, c = cluster.hosts
    cluster.publish([a, b])
    with caplog.at_level(logging.WARNING, logger="dnsbalance"):
        api_ch = cluster.api_channel(kubeconfig)
        auto_ch = cluster.auto_channel(kubeconfig)
        try:
            with calling(api_ch, auto_ch) as log:
                assert wait_until(lambda: kube.watch_count == 1, 5.0)  # shared by both
                kube.close()  # streams end, the port closes: connection refused from now on
                assert wait_until(lambda: len(fallback_warnings(caplog)) == 1, 5.0)
                cluster.publish([a, b, c], api=False)
                assert wait_until(lambda: addresses(auto_ch) == [a, b, c], 3.0)
                time.sleep(2.0)  # a few refused retries
                assert addresses(api_ch) == [a, b]
        finally:
            started = time.monotonic()
            api_ch.close()
            auto_ch.close()
            closed_in = time.monotonic() - started
    assert log.failed == 0, (log.error_kinds(), [str(e)[:300] for e in log.errors[:2]])
    assert len(fallback_warnings(caplog)) == 1
    assert "unreachable" in fallback_warnings(caplog)[0]
    assert closed_in < 5.0
    measured(
        "API server gone (closed)",
        f"auto: DNS only (1 warning) and followed DNS; api: kept its set; {log.ok} calls ok; "
        f"both closed in {closed_in:.2f} s",
        log.failed,
    )


def test_slow_list(
    kube: FakeKubernetesAPI,
    kubeconfig: Path,
    cluster_dns: DNSResponder,
    fleet: Fleet,
    unique_service: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first list takes 10 s. Mode api has nothing else to go on: resolve_channel
    waits the ~10 s and succeeds. Mode auto does not hold the caller up for the API:
    after at most 5 s it starts on DNS alone (one warning) and cross-checks with the API
    once the list answers."""
    cluster = Cluster(kube, cluster_dns, fleet, unique_service, 2)
    a, b = cluster.hosts
    cluster.publish([a, b])
    kube.delay(10, verb="list")
    results: dict[str, object] = {}

    def open_api() -> None:
        started = time.monotonic()
        try:
            results["api"] = cluster.api_channel(kubeconfig)
        except Exception as exc:  # reported below
            results["api"] = exc
        results["api_seconds"] = time.monotonic() - started

    opener = threading.Thread(target=open_api, name="rel-open-api", daemon=True)
    with caplog.at_level(logging.WARNING, logger="dnsbalance"):
        opener.start()
        started = time.monotonic()
        auto_ch = cluster.auto_channel(kubeconfig)
        auto_seconds = time.monotonic() - started
        try:
            assert addresses(auto_ch) == [a, b]
            kube.delay(0, verb="list")
            opener.join(30)
            api_ch = results["api"]
            assert isinstance(api_ch, BalancedChannel), api_ch
            try:
                with calling(api_ch, auto_ch) as log:
                    assert addresses(api_ch) == [a, b]
                    # The API's word counts in auto mode once its list answers.
                    publish_slice(kube, unique_service, [a, b], fleet.port, not_ready=[b])
                    assert wait_until(lambda: addresses(auto_ch) == [a], 20.0)
                    assert wait_until(lambda: addresses(api_ch) == [a], 5.0)
            finally:
                api_ch.close()
        finally:
            auto_ch.close()
    api_seconds = results["api_seconds"]
    assert isinstance(api_seconds, float)
    assert 9.0 <= api_seconds < 25.0
    assert auto_seconds < 9.0  # ~5 s: it never waited for the 10 s list
    assert len(fallback_warnings(caplog)) == 1
    assert log.failed == 0, (log.error_kinds(), [str(e)[:300] for e in log.errors[:2]])
    measured(
        "first list takes 10 s",
        f"api: resolve_channel took {api_seconds:.1f} s and worked; auto: returned in "
        f"{auto_seconds:.1f} s on DNS alone (1 warning), API cross-check once listed",
        log.failed,
    )
