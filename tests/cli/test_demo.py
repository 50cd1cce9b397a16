"""dnsbalance demo, run the way a new user runs it (a subprocess), checked for its story."""

from __future__ import annotations

import json
import subprocess
import sys


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsbalance", "demo", "--duration", "8", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_json_shows_the_problem_and_the_fix() -> None:
    result = run_demo("--no-live", "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backends"] == ["pod-1", "pod-2", "pod-3", "pod-4", "pod-5"]
    assert report["new_backends"] == ["pod-4", "pod-5"]
    clients = report["clients"]

    # (1) ClusterIP: every call on one backend.
    clusterip = clients["clusterip"]
    assert [n for n in clusterip["calls"].values() if n] == [sum(clusterip["calls"].values())]
    assert clusterip["spread"] is None
    assert clusterip["seconds_to_use_new_backends"] is None

    # (2) gRPC's dns: resolver: balanced over the first three, never the new ones.
    native = clients["grpc-dns"]["calls"]
    first = [native[b] for b in ("pod-1", "pod-2", "pod-3")]
    assert min(first) > 0.8 * max(first)
    assert native["pod-4"] == native["pod-5"] == 0
    assert clients["grpc-dns"]["seconds_to_use_new_backends"] is None

    # (3) dnsbalance: balanced, and the new backends take their share.
    balanced = clients["dnsbalance"]
    assert balanced["seconds_to_use_new_backends"] is not None
    assert balanced["spread"] is not None
    assert balanced["spread"] <= 1.25
    assert all(n > 0 for n in balanced["calls_settled"].values())
    assert all(c["errors"] == 0 for c in clients.values())
    assert len(balanced["timeline"]) >= 7


def test_demo_plain_text() -> None:
    result = run_demo("--no-live", "--backends", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "s: pod-3, pod-4 added ---" in out
    assert "t=  1s clusterip" in out
    summary = out[out.index("summary") :].splitlines()
    assert summary[1].split()[:2] == ["client", "spread"]
    rows = {line.split()[0]: line for line in summary[2:] if line.strip()}
    assert "never balanced" in rows["clusterip"]
    assert "balanced, never uses new backends" in rows["grpc-dns"]
    assert "never" not in rows["dnsbalance"]


def test_demo_bad_arguments_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dnsbalance", "demo", "--backends", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--backends must be 1 to 20" in result.stderr
