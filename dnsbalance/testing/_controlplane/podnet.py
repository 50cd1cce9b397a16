"""A pod network for a control plane without kubelet: a network namespace the test makes.

The API server refuses pod IPs in 127.0.0.0/8 ("may not be in the loopback range"),
so the pods get addresses from 198.18.0.0/15, the range reserved for benchmark
networks, on a network this class makes and removes itself:

- a network namespace ``dnsb-<pid>-<n>`` and a veth pair, one end in it;
- a /20 block of 198.18.0.0/15 that no other address of this machine uses (chosen
  under a file lock, so two test runs side by side get different blocks): the root
  end holds ``.1``, the namespace end ``.2`` and every pod IP handed out; the root
  namespace routes the block through ``.2`` (one neighbour entry, however many pods);
- the pods' gRPC backends in one process inside the namespace (``ip netns exec``,
  :mod:`.podserver`), serving the demo service at the pods' IPs.

The client stays in the root namespace and dials the pod IPs through the veth pair:
traffic only ever reaches addresses inside the namespace made here. It needs root
(``ip netns``); without it :class:`ControlPlaneError` says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .assets import ControlPlaneError

POD_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
_BLOCK_PREFIX = 20
_LOCK_FILE = Path("/run/lock/dnsbalance-podnet.lock")
_numbers = itertools.count(1)
_NETNS_EXEC = ("ip", "netns", "exec")
_PODSERVER = "dnsbalance.testing._controlplane.podserver"


def _ip(*args: str, input: str | None = None) -> str:
    done = subprocess.run(
        ["ip", *args], input=input, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise ControlPlaneError(
            f"pod network: `ip {' '.join(args)}` failed: {done.stderr.strip()}",
            component="pod network",
        )
    return done.stdout


def _used_blocks() -> set[ipaddress.IPv4Network]:
    """The /20 blocks of 198.18.0.0/15 that an address or route of this machine is in."""
    used: set[ipaddress.IPv4Network] = set()
    for entry in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for info in entry.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if address in POD_RANGE:
                used.add(ipaddress.IPv4Network(f"{address}/{_BLOCK_PREFIX}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route", "show") or "[]"):
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(route.get("dst", ""), strict=False)
            if isinstance(net, ipaddress.IPv4Network) and net.overlaps(POD_RANGE):
                for block in POD_RANGE.subnets(new_prefix=_BLOCK_PREFIX):
                    if block.overlaps(net):
                        used.add(block)
    return used


def _remove_orphans() -> None:
    """Delete the namespaces a pod network of a process that no longer runs left
    behind (a test run killed before it could clean up): their blocks are free again."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        ours = len(parts) == 3 and parts[0] == "dnsb" and parts[1].isdigit()
        if ours and not Path(f"/proc/{parts[1]}").exists():
            with contextlib.suppress(ControlPlaneError):
                _ip("netns", "del", name)


class PodNetwork:
    """A namespace with a veth pair to the root namespace, and the pods' backends in it.

    :meth:`allocate` hands out a pod IP; :meth:`serve` starts the demo service as a
    named pod on ``IP:port`` inside the namespace; :meth:`stop_serving` stops it
    gracefully; :meth:`calls` counts the calls each pod served. :meth:`close` stops
    the backends and deletes the namespace (and with it the veth pair).
    """

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise ControlPlaneError(
                "the pod network needs root (it makes a network namespace and a veth "
                "pair); run the cluster tests as root",
                component="pod network",
            )
        if shutil.which("ip") is None:
            raise ControlPlaneError(
                "the pod network needs iproute2's `ip`: apt-get install -y iproute2",
                component="pod network",
            )
        suffix = f"{os.getpid()}-{next(_numbers)}"
        self.namespace = f"dnsb-{suffix}"
        self._host_link = f"dnsbh{suffix.replace('-', '')}"[:15]
        self._pod_link = f"dnsbp{suffix.replace('-', '')}"[:15]
        self._lock = threading.Lock()
        self._server: subprocess.Popen[str] | None = None
        self._closed = False
        _LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK_FILE.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs side by side pick different blocks
            _remove_orphans()
            used = _used_blocks()
            free = [b for b in POD_RANGE.subnets(new_prefix=_BLOCK_PREFIX) if b not in used]
            if not free:
                raise ControlPlaneError("pod network: no free /20 left in 198.18.0.0/15")
            self.block = free[0]
            self._create()
        hosts = self.block.hosts()
        self.gateway = str(next(hosts))  # .1, the root end
        next(hosts)  # .2, the namespace end
        self._free = hosts

    def _create(self) -> None:
        # The block is routed through the namespace's end, not on-link: the root
        # namespace then keeps one neighbour (ARP) entry for the whole pod network
        # instead of one per pod IP. Its table is shared by every process of the
        # machine and holds 1,024 entries by default (gc_thresh3): a Service of 1,100
        # on-link pods overflowed it.
        outer, inner = (str(h) for h in itertools.islice(self.block.hosts(), 2))
        _ip("netns", "add", self.namespace)
        try:
            veth = ("type", "veth", "peer", "name", self._pod_link, "netns", self.namespace)
            _ip("link", "add", self._host_link, *veth)
            _ip("addr", "add", f"{outer}/32", "dev", self._host_link)
            _ip("link", "set", self._host_link, "up")
            _ip("route", "add", f"{inner}/32", "dev", self._host_link, "src", outer)
            _ip("route", "add", str(self.block), "via", inner, "dev", self._host_link)
            _ip("-n", self.namespace, "link", "set", "lo", "up")
            _ip("-n", self.namespace, "addr", "add", f"{inner}/32", "dev", self._pod_link)
            _ip("-n", self.namespace, "link", "set", self._pod_link, "up")
            _ip("-n", self.namespace, "route", "add", f"{outer}/32", "dev", self._pod_link)
        except ControlPlaneError:
            with contextlib.suppress(ControlPlaneError):
                _ip("netns", "del", self.namespace)
            raise

    def allocate(self, count: int = 1) -> list[str]:
        """``count`` new pod IPs, each added to the namespace's end of the veth pair."""
        with self._lock:
            try:
                ips = [str(next(self._free)) for _ in range(count)]
            except StopIteration:
                raise ControlPlaneError(f"pod network: {self.block} is used up") from None
            batch = "".join(f"addr add {ip}/32 dev {self._pod_link}\n" for ip in ips)
            _ip("-n", self.namespace, "-batch", "-", input=batch)
            return ips

    def _request(self, command: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._closed:
                raise ControlPlaneError("pod network is closed", component="pod network")
            if self._server is None:
                self._server = subprocess.Popen(
                    [*_NETNS_EXEC, self.namespace, sys.executable, "-m", _PODSERVER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            server = self._server
            assert server.stdin is not None
            assert server.stdout is not None
            try:
                server.stdin.write(json.dumps(command) + "\n")
                server.stdin.flush()
                line = server.stdout.readline()
            except OSError as exc:
                raise ControlPlaneError(f"pod backends: {exc}", component="pod backends") from exc
            if not line:
                raise ControlPlaneError(
                    f"the pods' backend process exited with status {server.poll()}",
                    component="pod backends",
                )
            reply: dict[str, Any] = json.loads(line)
            if "error" in reply:
                raise ControlPlaneError(f"pod backends: {reply['error']}", component="pod backends")
            return reply

    def serve(self, name: str, ip: str, port: int) -> None:
        """Serve the demo service as pod ``name`` on ``ip:port`` in the namespace."""
        self._request({"op": "start", "name": name, "ip": ip, "port": port})

    def stop_serving(self, name: str, grace: float = 1.0) -> None:
        """Stop pod ``name``'s server (GOAWAY; calls running get ``grace`` seconds)."""
        self._request({"op": "stop", "name": name, "grace": grace})

    def calls(self) -> dict[str, int]:
        """The calls each pod served so far."""
        calls: dict[str, int] = self._request({"op": "calls"})["calls"]
        return calls

    def close(self) -> None:
        """Stop the backends (their process, by PID) and delete the namespace. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            assert server.stdin is not None
            with contextlib.suppress(OSError):
                server.stdin.close()  # it exits on end of input
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
            if server.stdout is not None:
                server.stdout.close()
        with contextlib.suppress(ControlPlaneError):
            _ip("netns", "del", self.namespace)
