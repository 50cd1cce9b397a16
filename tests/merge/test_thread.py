"""MergeThread: what it does with agree()'s decisions, with a scripted DNS poller and a
recording local name (the decisions themselves are tests/merge/test_agree.py's)."""

from __future__ import annotations

import logging
import threading

import pytest

from dnsbalance import Endpoint, KubernetesError, parse_target
from dnsbalance._channel.subset import Subsetting
from dnsbalance._kube.slices import ApiEndpoints
from dnsbalance._merge.agree import REPOLL_INTERVAL
from dnsbalance._merge.thread import MergeThread
from dnsbalance._poll.policy import PollState

E1, E2, E3 = (Endpoint(address=f"10.0.0.{i}", port=8000, ttl=5) for i in (1, 2, 3))
OTHER_PORT = Endpoint(address="10.0.0.9", port=9000)
TARGET = parse_target("svc.ns:8000")


class ScriptedPoller:
    """The DNS poller as the merge sees it: a set, whether it answered, poll_now()."""

    def __init__(self, *endpoints: Endpoint, answered: bool = True) -> None:
        self.state = PollState(endpoints=tuple(endpoints), answered=answered)
        self.polls_asked = 0

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.state.endpoints

    def poll_now(self) -> None:
        self.polls_asked += 1


class RecordingName:
    """The local DNS name: records what would be published."""

    def __init__(self) -> None:
        self.published: list[tuple[Endpoint, ...]] = []

    def publish(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.published.append(tuple(endpoints))


def merge(
    poller: ScriptedPoller | None,
    api: tuple[Endpoint, ...] | None,
    *,
    mode: str = "auto",
    error: KubernetesError | None = None,
    subsetting: Subsetting | None = None,
) -> tuple[MergeThread, RecordingName]:
    name = RecordingName()
    thread = MergeThread(
        name="svc.ns:8000",
        mode=mode,  # type: ignore[arg-type]
        namespace="ns",
        poller=poller,
        local=name,  # type: ignore[arg-type]
        api_endpoints=ApiEndpoints(api, api) if api is not None else None,
        api_error=error,
        target=TARGET,
        subsetting=subsetting,
    )
    return thread, name


def test_agreed_set_is_published_and_handed_on_once() -> None:
    thread, name = merge(ScriptedPoller(E1, E2), (E1, E2))
    sunk: list[tuple[Endpoint, ...]] = []
    thread.sink = sunk.append
    endpoints, wake = thread.evaluate()
    assert endpoints == (E1, E2)
    assert wake is None
    thread.evaluate()  # nothing changed: nothing published or handed on again
    assert name.published == [(E1, E2)]
    assert sunk == [(E1, E2)]


def test_with_subsetting_the_subset_is_published_and_the_whole_set_handed_on() -> None:
    subsetting = Subsetting.keyed(2, "client")
    thread, name = merge(ScriptedPoller(E1, E2, E3), (E1, E2, E3), subsetting=subsetting)
    sunk: list[tuple[Endpoint, ...]] = []
    thread.sink = sunk.append
    endpoints, _ = thread.evaluate()
    assert endpoints == (E1, E2, E3)
    assert sunk == [(E1, E2, E3)]  # the channel draws the same subset from it
    assert name.published == [subsetting.pick((E1, E2, E3))]
    assert len(name.published[0]) == 2


def test_ready_in_the_api_but_not_in_dns_is_used_and_dns_repolled() -> None:
    poller = ScriptedPoller(E1)
    thread, _ = merge(poller, (E1, E2))
    endpoints, wake = thread.evaluate()
    assert endpoints == (E1, E2)  # the API's word at once; DNS cross-checked
    assert poller.polls_asked == 1
    assert wake == pytest.approx(REPOLL_INTERVAL)


def test_not_ready_in_the_api_is_dropped_at_once() -> None:
    thread, _ = merge(ScriptedPoller(E1, E2, E3), (E1, E3))
    assert thread.evaluate()[0] == (E1, E3)


def test_no_dns_answer_yet_takes_the_api_set() -> None:
    thread, _ = merge(ScriptedPoller(answered=False), (E1, E2))
    assert thread.evaluate()[0] == (E1, E2)


def test_mode_api_ignores_dns() -> None:
    thread, _ = merge(None, (E2, E3), mode="api")
    assert thread.evaluate()[0] == (E2, E3)


def test_endpoints_on_another_port_are_left_out_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    thread, _ = merge(None, (E1, OTHER_PORT), mode="api")
    with caplog.at_level(logging.WARNING, logger="dnsbalance"):
        assert thread.evaluate()[0] == (E1,)
        thread.evaluate()
    warnings = [r for r in caplog.records if "not at the port the channel dials" in r.message]
    assert len(warnings) == 1
    assert "9000" in warnings[0].message


def test_fallback_to_dns_warns_once_and_says_when_the_api_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forbidden = KubernetesError("forbidden", status=403, reason="Forbidden")
    with caplog.at_level(logging.WARNING, logger="dnsbalance"):
        thread, _ = merge(ScriptedPoller(E1), None, error=forbidden)
        assert thread.evaluate()[0] == (E1,)  # DNS alone decides
        thread.api_view(None, forbidden)
        thread.api_view(ApiEndpoints((E1,), (E1,)), None)
    messages = [r.message for r in caplog.records]
    assert sum("using DNS only" in m for m in messages) == 1
    assert "manifests/rbac.yaml" in next(m for m in messages if "using DNS only" in m)
    assert sum("readable again" in m for m in messages) == 1


def test_the_thread_follows_dns_changes_and_stops() -> None:
    poller = ScriptedPoller(E1)
    thread, _ = merge(poller, None)
    thread.evaluate()
    handed: list[tuple[Endpoint, ...]] = []
    changed = threading.Event()

    def sink(endpoints: tuple[Endpoint, ...]) -> None:
        handed.append(endpoints)
        changed.set()

    thread.sink = sink
    thread.start()
    poller.state = PollState(endpoints=(E1, E2), answered=True)
    thread.dns_changed()
    assert changed.wait(3.0)
    assert handed == [(E1, E2)]
    thread.stop()
    assert thread._thread is not None
    assert not thread._thread.is_alive()


def test_a_failing_evaluation_keeps_the_thread_alive(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(ScriptedPoller):
        failures = 1

        @property
        def endpoints(self) -> tuple[Endpoint, ...]:
            if Broken.failures:
                Broken.failures -= 1
                raise RuntimeError("boom")
            return (E1, E2)

    poller = Broken(E1)
    thread, _ = merge(poller, None)
    handed = threading.Event()
    thread.sink = lambda endpoints: handed.set()
    with caplog.at_level(logging.ERROR, logger="dnsbalance"):
        thread.start()
        thread.dns_changed()
        # the failed round waits 1 s, then the next one succeeds
        assert handed.wait(3.0)
    thread.stop()
    assert any("merging DNS and API views failed" in r.message for r in caplog.records)
