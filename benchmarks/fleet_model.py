"""The fleet cost model: per-client figures (measured by ``benchmarks/fleet.py``, or
taken from source code, or modelled) multiplied out to a fleet. Pure arithmetic.

The fleet: 1,000 client pods x 4 processes x 5 upstream Services of 1,000 pods each.
Assumed, and written in the table: each process holds ``CHANNELS`` channels per Service
(one per worker thread, say); with one channel per Service per process sharing saves
nothing, since it is per process and a pod's processes never share. ``NODES`` nodes run
kube-proxy. Subsetting (``subset_size=k``, being built elsewhere) is modelled as
min(k, M) connections per channel unless ``benchmarks/fleet.py`` measured it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CLIENT_PODS = 1_000
PROCESSES = 4
SERVICES = 5
SERVER_PODS = 1_000  # M, per Service
CHANNELS = 4  # c: channels per Service per process (assumed)
SUBSET = 10  # k
NODES = 200  # kube-proxy's nodes (assumed: 6,000 pods at 30 a node)
POLL = 5.0  # dnsbalance's default poll interval, s
SLICE_WRITES_PER_POD = 4  # modelled: a replaced pod's endpoint added, ready, terminating, gone

# From source code, not measured here:
OWN_WATCH_S = 300.0  # dnsbalance _kube/watch.py WATCH_SECONDS = (240, 360): mean timeoutSeconds
KR_RESYNC_PER_H = 2.0  # kuberesolver v6 builder.go: defaultFreq = 30 min, a list each time
KR_WATCH_S = 2_700.0  # its watch has no timeoutSeconds: kube-apiserver ends it after
# --min-request-timeout (1800 s) x [1, 2), 45 min on average, and the new watch (no
# resourceVersion) re-sends every slice as ADDED
PROXY_WATCH_S = 450.0  # client-go reflector (kube-proxy's informers): timeoutSeconds
# = minWatchTimeout (5 min) x [1, 2)


@dataclass
class Measured:
    """What ``benchmarks/fleet.py`` measured on this machine."""

    own_lists_per_channel: float = 1.0
    own_watches_per_channel: float = 1.0
    shared_lists: int = 1  # for N channels of one Service and identity
    shared_watches: int = 1
    event_bytes: int = 0  # one MODIFIED event of a 100-endpoint slice
    dns_per_poll_1000: float = 2.0  # messages per poll of a 1,000-pod Service
    dns_own_per_interval_per_channel: float = 2.0
    dns_shared_per_interval: float = 2.0  # for N channels of one Service
    rss_own_kib: float = 0.0  # per idle mode-auto channel
    rss_shared_kib: float = 0.0
    cpu_own_s_min: float = 0.0
    cpu_shared_s_min: float = 0.0
    conns_per_channel_per_pod: float = 1.0
    plain_conns: int = 1
    rss_per_conn_kib: float = 0.0
    subset_measured: float | None = None  # connections / k, when subset_size exists

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _n(value: float) -> str:
    """A count as the table shows it: 80,000; 1.2 M; 3.4 G."""
    for size, suffix in ((1e9, " G"), (1e6, " M")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _bytes(value: float) -> str:
    for size, suffix in ((2**40, " TiB"), (2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f} B"


def table(m: Measured) -> tuple[list[dict[str, Any]], list[str]]:
    """The fleet's rows (five columns each) and the notes that go with them."""
    procs = CLIENT_PODS * PROCESSES  # client processes
    channels = procs * SERVICES * CHANNELS
    shares = procs * SERVICES  # shared watches / pollers: one per Service per process
    subset = min(SUBSET, SERVER_PODS)
    if m.subset_measured is not None:
        subset = round(subset * m.subset_measured)
    rows: list[dict[str, Any]] = []

    def row(figure: str, values: list[str], how: str) -> None:
        rows.append({"figure": figure, "values": values, "how": how})

    own_w = channels * m.own_watches_per_channel
    shared_w = shares * m.shared_watches
    row(
        "watches open on the API server",
        [_n(own_w), _n(shared_w), _n(shared_w), _n(channels), _n(NODES)],
        "measured per channel / per share (fake API) x channels; kuberesolver: one per "
        "ClientConn (source); kube-proxy: one per node",
    )
    own_l = channels * m.own_lists_per_channel
    shared_l = shares * m.shared_lists
    row(
        "list calls per hour (steady state; + at start)",
        [
            f"0 (+{_n(own_l)})",
            f"0 (+{_n(shared_l)})",
            f"0 (+{_n(shared_l)})",
            _n(channels * KR_RESYNC_PER_H),
            f"0 (+{_n(NODES)})",
        ],
        "dnsbalance resumes its watch from its resourceVersion and lists again only after "
        "410 (source); lists at start measured; kuberesolver: a list every 30 min per "
        "ClientConn (source)",
    )
    row(
        "watch requests per hour",
        [
            _n(own_w * 3600 / OWN_WATCH_S),
            _n(shared_w * 3600 / OWN_WATCH_S),
            _n(shared_w * 3600 / OWN_WATCH_S),
            _n(channels * 3600 / KR_WATCH_S) + " (each re-sends every slice)",
            _n(NODES * 3600 / PROXY_WATCH_S),
        ],
        "watch timeouts from source: dnsbalance 240-360 s; kuberesolver none (the API "
        "server's 30-60 min); client-go 5-10 min",
    )
    writes = SLICE_WRITES_PER_POD * SERVER_PODS
    watchers = [procs * CHANNELS, procs, procs, procs * CHANNELS, NODES]
    row(
        "events delivered per rollout of one Service (bytes)",
        [f"{_n(writes * w)} ({_bytes(writes * w * m.event_bytes)})" for w in watchers],
        f"{writes:,} slice writes (modelled: {SLICE_WRITES_PER_POD} per pod replaced) x "
        f"watchers of the Service x {m.event_bytes:,} bytes per event (measured, 100-endpoint "
        "slice)",
    )
    own_q = channels * m.dns_per_poll_1000 / POLL
    shared_q = shares * m.dns_per_poll_1000 / POLL
    row(
        'DNS queries per second on CoreDNS (mode "dns")',
        [_n(own_q), _n(shared_q), _n(shared_q), "0", "~0 (resolved at connect)"],
        f"measured {m.dns_per_poll_1000:g} messages per poll of 1,000 pods x pollers / {POLL:g} s",
    )
    per_pod = procs * CHANNELS * m.conns_per_channel_per_pod
    row(
        "connections per server pod",
        [
            _n(per_pod),
            _n(per_pod),
            _n(procs * CHANNELS * subset / SERVER_PODS),
            _n(procs * CHANNELS),
            _n(procs * CHANNELS * m.plain_conns / SERVER_PODS) + " (uneven)",
        ],
        "measured: each channel connects to every pod; subsetting "
        + ("measured" if m.subset_measured is not None else f"modelled as min(k={SUBSET}, M)")
        + "; kube-proxy pins each channel's one connection to one pod",
    )
    conns = SERVER_PODS * m.conns_per_channel_per_pod
    per_client = SERVICES * CHANNELS * PROCESSES  # channels per client pod

    def memory(rss: float, connections: float) -> str:
        return _bytes(per_client * (rss + connections * m.rss_per_conn_kib) * 1024)

    row(
        "client memory per pod (channels + connections)",
        [
            memory(m.rss_own_kib, conns),
            memory(m.rss_shared_kib, conns),
            memory(m.rss_shared_kib, subset),
            "not measured (Go)",
            _bytes(per_client * m.plain_conns * m.rss_per_conn_kib * 1024) + " (connections)",
        ],
        f"measured RSS per idle channel and per connection x {per_client} channels per pod",
    )
    row(
        "client CPU per pod, idle (CPU s per minute)",
        [
            f"{per_client * m.cpu_own_s_min:.2f}",
            f"{per_client * m.cpu_shared_s_min:.2f}",
            f"{per_client * m.cpu_shared_s_min:.2f}",
            "not measured",
            "0",
        ],
        "measured CPU of the dnsbalance threads per idle channel x channels per pod",
    )
    notes = [
        f"Fleet: {CLIENT_PODS:,} client pods x {PROCESSES} processes x {SERVICES} upstream "
        f"Services of {SERVER_PODS:,} pods; {CHANNELS} channels per Service per process "
        f"(assumed), so {channels:,} channels, {shares:,} (process, Service) pairs; "
        f"{NODES} nodes (assumed); subsetting k = {SUBSET}.",
        "Sharing is per process: with one channel per Service per process, the "
        "'no sharing' column equals the 'sharing' one (a pod's processes never share).",
        'Memory and CPU are those of idle mode "auto" channels (a watch, a poller and a '
        "merge thread each; shared: the watch and poller once per Service); connections "
        "add their measured RSS each.",
        "kuberesolver v6 (github.com/sercand/kuberesolver/v6 builder.go, kubernetes.go): "
        "one EndpointSlice watch per ClientConn, started without a resourceVersion (every "
        "slice sent as ADDED), a list every 30 min, ResolveNow ignored, every ready "
        "address used.",
        "kube-proxy: one EndpointSlice watch per node for every Service; a ClusterIP "
        "client's one connection per channel lands on one pod (unevenly).",
    ]
    return rows, notes
