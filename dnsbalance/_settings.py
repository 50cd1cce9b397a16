"""What the sync and asyncio ``resolve_channel`` share before any channel exists:
validated settings, grpc options, the Kubernetes side, and the channel plan."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypedDict, TypeVar

import grpc
import grpc.aio

from dnsbalance._channel.base import OnChange
from dnsbalance._dns.servers import servers_for
from dnsbalance._kube.client import namespace_for
from dnsbalance._kube.nodes import ZoneSource, zone_source

from ._channel.config import (
    ChannelPlan,
    GrpcOptions,
    grpc_dns_resolver,
    native_resolver_warning,
    plan_channel,
    service_config_json,
)
from ._channel.local_dns import LocalName
from ._channel.outlier import outlier_config
from ._channel.subset import Subsetting
from ._endpoints import Endpoint
from ._exceptions import ConfigError, TargetError
from ._poll.policy import PollPolicy
from ._poll.share import PollKey, poll_key
from ._target import Target, parse_target

log = logging.getLogger(__name__)

Mode = Literal["auto", "dns", "api"]
C = TypeVar("C", grpc.Channel, grpc.aio.Channel)
MODES = ("auto", "dns", "api")


class ChannelArgs(TypedDict):
    """The BalancedChannel arguments (either driver) that come straight from settings."""

    name: str
    drain_timeout: float | None
    on_change: OnChange | None
    subsetting: Subsetting | None


class PollerOptions(TypedDict):
    """The DNS poller arguments (either driver) that come straight from settings."""

    policy: PollPolicy
    name: str


def check_port_for_mode(target: Target, mode: str) -> None:
    """The rule for a target without a port, one for the library and every CLI command:
    its port is the Service's first, which only the Kubernetes API can tell, so mode
    "dns" refuses it (TargetError) and modes "auto" and "api" read the API alone."""
    if target.port is None and mode == "dns":
        raise TargetError(
            'a target without a port needs the Kubernetes API (its first port); mode="dns"'
            " cannot learn a port from A records: add a port or a port name"
            ' (svc.ns:8000, svc.ns:grpc), or use mode="auto" or "api"',
            target=str(target),
            part="port",
        )


def api_only(target: Target, mode: str) -> bool:
    """Whether the API alone gives the endpoints: mode "api", or a target without a port
    (see :func:`check_port_for_mode`)."""
    return mode == "api" or target.port is None


@dataclass(frozen=True, kw_only=True)
class ChannelSettings:
    """Validated settings of one balanced channel (see ``resolve_channel``)."""

    target: Target
    mode: Mode = "auto"
    poll_interval: float = 5.0
    dns_timeout: float = 2.0
    drain_timeout: float | None = 30.0
    nameservers: tuple[str, ...] | None = None
    grpc_options: GrpcOptions = ()
    resolver_kind: str = "ares"
    credentials: grpc.ChannelCredentials | None = None
    on_change: OnChange | None = None
    api_client: Any = None
    kubeconfig: str | os.PathLike[str] | None = None
    context: str | None = None
    include_terminating: bool = False
    poll_policy: PollPolicy | None = None
    panic_mode: bool = True
    topology: bool = True
    placement: ZoneSource = field(default_factory=lambda: ZoneSource(None, None, "none"))
    """The client's zone, or the Node to read it from (see ``dnsbalance._kube.nodes``)."""
    subsetting: Subsetting | None = None
    """Dial only a subset of the endpoints (``subset_size``, ``subset_key``)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.drain_timeout is not None and not self.drain_timeout >= 0:
            raise ConfigError(f"drain_timeout must be >= 0 or None, got {self.drain_timeout}")
        check_port_for_mode(self.target, self.mode)
        if not self.dns_timeout > 0:
            raise ConfigError(f"dns_timeout must be positive, got {self.dns_timeout}")
        PollPolicy(interval=self.poll_interval)  # validates the interval

    @property
    def api_only(self) -> bool:
        """Mode "api", or a target without a port (only the API knows the port): the
        API's view is the membership, DNS is not polled, and no API access is an error."""
        return api_only(self.target, self.mode)

    @property
    def name(self) -> str:
        return str(self.target)

    @property
    def thread_suffix(self) -> str:
        return f"{self.target.service}.{self.target.namespace}"

    @property
    def policy(self) -> PollPolicy:
        return self.poll_policy or PollPolicy(interval=self.poll_interval)

    @property
    def servers(self) -> tuple[str, ...] | None:
        """The DNS servers to poll: given, else the target's, else resolv.conf's (None)."""
        return servers_for(self.target, self.nameservers)

    def channel_factory(
        self, insecure: Callable[..., C], secure: Callable[..., C]
    ) -> Callable[[ChannelPlan], C]:
        """Underlying channels, from grpc's (or grpc.aio's) two constructors."""
        credentials = self.credentials

        def factory(plan: ChannelPlan) -> C:
            if credentials is None:
                return insecure(plan.target, options=plan.options)
            return secure(plan.target, credentials, options=plan.options)

        return factory

    def channel_args(self) -> ChannelArgs:
        """The BalancedChannel arguments that come straight from the settings."""
        return {
            "name": self.name,
            "drain_timeout": self.drain_timeout,
            "on_change": self.on_change,
            "subsetting": self.subsetting,
        }

    def poller_options(self) -> PollerOptions:
        """The DNS poller arguments that come straight from the settings (either driver)."""
        return {"policy": self.policy, "name": f"dnsbalance-poll-{self.thread_suffix}"}

    def poll_key(self, driver: object) -> PollKey:
        """What channels share a DNS poller by (see :mod:`dnsbalance._poll.share`):
        ``driver`` is ``"thread"`` or the asyncio event loop."""
        return poll_key(
            self.target,
            servers=self.servers,
            timeout=self.dns_timeout,
            policy=self.policy,
            driver=driver,
        )

    def local_plan(self, local: LocalName) -> Callable[[Sequence[Endpoint]], ChannelPlan]:
        """Every mode: grpc resolves the channel's name on the local DNS."""
        if self.resolver_kind == "native":
            log.warning(native_resolver_warning(self.target))
        return partial(
            plan_channel,
            self.target,
            dns_authority=local.authority,
            options=self.grpc_options,
            resolver=self.resolver_kind,
            name=local.name,
        )


def settings_for(
    target: str | Target,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    service_config: Mapping[str, Any] | str | None = None,
    health_check: bool = False,
    mode: Mode = "auto",
    poll_interval: float = 5.0,
    nameservers: Sequence[str] | None = None,
    cluster_domain: str | None = None,
    drain_timeout: float | None = 30.0,
    on_change: OnChange | None = None,
    namespace: str | None = None,
    dns_timeout: float = 2.0,
    api_client: Any = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    include_terminating: bool = False,
    poll_policy: PollPolicy | None = None,
    panic_mode: bool = True,
    zone: str | None = None,
    topology: bool = True,
    subset_size: int | None = None,
    subset_key: str | None = None,
    outlier_detection: bool | Mapping[str, Any] = False,
) -> ChannelSettings:
    """The arguments of ``resolve_channel`` (sync and asyncio), parsed and validated;
    the one place they are written down. Raises TargetError, ConfigError (also for a
    wrong type: every message names the argument)."""
    _check_arguments(
        target=target,
        credentials=credentials,
        options=options,
        poll_interval=poll_interval,
        dns_timeout=dns_timeout,
        drain_timeout=drain_timeout,
        on_change=on_change,
        namespace=namespace,
        cluster_domain=cluster_domain,
        context=context,
        include_terminating=include_terminating,
        topology=topology,
        subset_size=subset_size,
        subset_key=subset_key,
    )
    if isinstance(nameservers, str):
        nameservers = (nameservers,)  # one server given as a string
    elif nameservers is not None:
        if not isinstance(nameservers, Sequence) or not all(
            isinstance(n, str) for n in nameservers
        ):
            raise ConfigError(
                "nameservers must be a string or a list of strings like '10.96.0.10' or "
                f"'127.0.0.1:5353', got {nameservers!r}"
            )
        if not nameservers:
            raise ConfigError(
                "nameservers=[] names no DNS server: pass None to use resolv.conf's servers"
            )
    if kubeconfig is not None:
        _check_kubeconfig(kubeconfig)
    if isinstance(target, str):
        if namespace is None:  # the one namespace rule: see namespace_for
            namespace = namespace_for(kubeconfig=kubeconfig, context=context)
        target = parse_target(target, namespace=namespace, cluster_domain=cluster_domain)
    config = service_config_json(
        service_config,
        health_check=health_check,
        outlier_detection=outlier_config(outlier_detection),
    )
    return ChannelSettings(
        target=target,
        mode=mode,
        poll_interval=poll_interval if poll_policy is None else poll_policy.interval,
        poll_policy=poll_policy,
        dns_timeout=dns_timeout,
        drain_timeout=drain_timeout,
        nameservers=tuple(nameservers) if nameservers is not None else None,
        grpc_options=(*((str(k), v) for k, v in options), ("grpc.service_config", config)),
        resolver_kind=grpc_dns_resolver(),
        credentials=credentials,
        on_change=on_change,
        api_client=api_client,
        kubeconfig=kubeconfig,
        context=context,
        include_terminating=include_terminating,
        panic_mode=panic_mode,
        topology=topology,
        # mode "dns" has no zones to choose from: zone= is checked, the environment unread
        placement=zone_source(zone, {} if mode == "dns" else None),
        subsetting=None if subset_size is None else Subsetting.keyed(subset_size, subset_key),
    )


def _check_arguments(
    *,
    target: object,
    credentials: object,
    options: object,
    poll_interval: object,
    dns_timeout: object,
    drain_timeout: object,
    on_change: object,
    namespace: object,
    cluster_domain: object,
    context: object,
    include_terminating: object,
    topology: object,
    subset_size: object,
    subset_key: object,
) -> None:
    """Types at the door, so a typo fails here naming the argument, not deep inside."""
    if not isinstance(target, str | Target):
        raise ConfigError(
            f"target must be a string like 'svc.ns:grpc', got {type(target).__name__}"
        )
    if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
        raise ConfigError(
            "credentials must be grpc.ChannelCredentials (e.g. grpc.ssl_channel_credentials()) "
            f"or None, got {type(credentials).__name__}"
        )
    if (
        isinstance(options, str | bytes | Mapping)
        or not isinstance(options, Sequence)
        or not all(isinstance(o, tuple) and len(o) == 2 for o in options)
    ):
        raise ConfigError(
            "options must be a sequence of (key, value) pairs like "
            f"[('grpc.keepalive_time_ms', 30000)], got {options!r}"
        )
    for name, value, optional in (
        ("poll_interval", poll_interval, False),
        ("dns_timeout", dns_timeout, False),
        ("drain_timeout", drain_timeout, True),
    ):
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if on_change is not None and not callable(on_change):
        raise ConfigError(f"on_change must be a callable or None, got {on_change!r}")
    for name, value in (
        ("namespace", namespace),
        ("cluster_domain", cluster_domain),
        ("context", context),
    ):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string or None, got {value!r}")
    if not isinstance(include_terminating, bool):
        raise ConfigError(f"include_terminating must be True or False, got {include_terminating!r}")
    if not isinstance(topology, bool):
        raise ConfigError(
            f"topology must be True (follow the slices' zone hints) or False, got {topology!r}"
        )
    if subset_size is not None and (
        isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 1
    ):
        raise ConfigError(
            "subset_size must be a whole number >= 1 (how many endpoints this client dials) "
            f"or None (every endpoint), got {subset_size!r}"
        )
    if subset_key is not None:
        if not isinstance(subset_key, str) or not subset_key:
            raise ConfigError(
                "subset_key must be a non-empty string (e.g. the pod's name) or None (a random "
                f"salt), got {subset_key!r}"
            )
        if subset_size is None:
            raise ConfigError(
                "subset_key needs subset_size: without it the channel dials every endpoint"
            )


def _check_kubeconfig(kubeconfig: object) -> None:
    """An explicit kubeconfig is not a fallback: one that cannot be read is an error."""
    if not isinstance(kubeconfig, str | os.PathLike):
        raise ConfigError(f"kubeconfig must be a path, got {kubeconfig!r}")
    path = os.fspath(kubeconfig)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"kubeconfig={path!r} cannot be read: {exc.strerror or exc}") from exc
