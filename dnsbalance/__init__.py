"""dnsbalance: client-side load balancing for Python gRPC clients in Kubernetes.

A gRPC client that dials a ClusterIP Service opens one HTTP/2 connection to one
virtual IP, and every call lands on one pod. dnsbalance discovers the pods of a
headless Service through cluster DNS (and, when allowed, the Kubernetes API) and
keeps a round_robin gRPC channel up to date with them.
"""

from ._channel.sync import BalancedChannel
from ._dns.sync import discover
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
from ._poll.policy import PollPolicy
from ._poll.sync import DnsPoller
from ._target import Target, parse_target
from ._version import __version__
from ._wiring import resolve_channel

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
