"""dnsbalance: client-side load balancing for Python gRPC clients in Kubernetes.

A gRPC client that dials a ClusterIP Service opens one HTTP/2 connection to one
virtual IP, and every call lands on one pod. dnsbalance discovers the pods of a
headless Service through cluster DNS (and, when allowed, the Kubernetes API) and
keeps a round_robin gRPC channel up to date with them.
"""

from ._channel import BalancedChannel
from ._discovery import discover
from ._endpoints import Change, Endpoint
from ._exceptions import (
    ClosedError,
    ConfigError,
    ConversionError,
    DnsBalanceError,
    KubernetesError,
    ResolutionError,
    TargetError,
)
from ._policy import PollPolicy
from ._poller import DnsPoller
from ._resolve import resolve_channel
from ._target import Target, parse_target
from ._version import __version__

__all__ = [
    "BalancedChannel",
    "Change",
    "ClosedError",
    "ConfigError",
    "ConversionError",
    "DnsBalanceError",
    "DnsPoller",
    "Endpoint",
    "KubernetesError",
    "PollPolicy",
    "ResolutionError",
    "Target",
    "TargetError",
    "__version__",
    "discover",
    "parse_target",
    "resolve_channel",
]
