"""Fakes for testing code that uses dnsbalance, without a Kubernetes cluster.

- :class:`DNSResponder`: a real DNS server on loopback, in this process, that
  publishes headless Services exactly as cluster DNS (CoreDNS) does: A/AAAA per
  ready pod, SRV per named port with the targets' addresses, NXDOMAIN once no pod
  is left. It has fault knobs (``fail_rcode``, ``delay``, ``drop``) and counts
  ``queries``. Point dnsbalance (or any resolver) at its ``address``.
- :class:`ServiceRegistry` and :func:`service_rrsets`: the same records as plain
  data (dnspython RRsets), to feed another DNS server or to assert on.
- :class:`Pod`: one ready endpoint, an IP and an optional hostname.
- :class:`BindServer`: the same publishing API on a real BIND9 ``named`` (when it is
  installed), changed through RFC 2136 dynamic updates.
- :class:`Backend`: a real gRPC server of the demo service (``examples/demo/demo.proto``)
  on a loopback address, answering with its name and counting the connections it
  served; start several on 127.0.0.x with one port to play a Service's pods.
"""

from ._backend import Backend
from ._bind import BindServer
from ._dns import DNSResponder
from ._records import Pod, ServiceRegistry, service_rrsets

__all__ = [
    "Backend",
    "BindServer",
    "DNSResponder",
    "Pod",
    "ServiceRegistry",
    "service_rrsets",
]
