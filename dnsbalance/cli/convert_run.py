"""What one ``convert-service`` run in a cluster shares: its options, its result, and the
:class:`Run` that collects the steps both flows (:mod:`.convert_cluster`'s twin,
:mod:`.convert_replace`) tell."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dnsbalance._exceptions import ConfigError

from .convert import Strategy
from .convert_access import VERBS, Access
from .service_api import JSON, ServiceAPI

__all__ = ["ConvertOptions", "ConvertResult", "DryRun", "Progress", "Run", "target_hint"]

DryRun = Literal["none", "client", "server"]
Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    """How to convert (validated; see the CLI's ``convert-service --help``)."""

    strategy: Strategy = "twin"
    dry_run: DryRun = "none"
    force: bool = False
    twin_name: str | None = None
    backup_dir: Path = Path()
    delete_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.strategy not in VERBS:
            raise ConfigError(f"strategy must be twin or replace, got {self.strategy!r}")
        if self.dry_run not in ("none", "client", "server"):
            raise ConfigError(f"dry_run must be none, client or server, got {self.dry_run!r}")
        if self.twin_name is not None and self.strategy != "twin":
            raise ConfigError("--twin-name goes with --strategy twin")
        if not self.delete_timeout > 0:
            raise ConfigError("delete_timeout must be positive")

    @property
    def preview(self) -> bool:
        """A dry run of either kind: nothing is stored, nothing is refused for --force."""
        return self.dry_run != "none"


@dataclass(frozen=True, kw_only=True)
class ConvertResult:
    """What happened. ``ok`` is False when the conversion failed (after a rollback, or
    with no backup); ``objects`` are the resulting objects (as the API answered, or as
    planned in a client dry run) and ``before`` what they replace, for a diff."""

    namespace: str
    name: str
    strategy: Strategy
    dry_run: DryRun
    action: str
    ok: bool
    steps: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    objects: tuple[JSON, ...] = ()
    before: tuple[JSON, ...] = ()
    backup: Path | None = None
    target: str | None = None


@dataclass
class Run:
    """One conversion's API, options and the steps told so far."""

    services: ServiceAPI
    options: ConvertOptions
    tell: Progress
    clock: Callable[[], datetime.datetime]
    access: Access
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.services.namespace

    def step(self, text: str, *, loud: bool = False) -> None:
        self.steps.append(text)
        if loud:
            self.tell(text)

    def warn(self, warnings: tuple[str, ...] | list[str]) -> None:
        """Warnings are heard before anything is written (and kept in the result)."""
        for warning in warnings:
            if warning not in self.warnings:
                self.warnings.append(warning)
                self.tell(f"warning: {warning}")

    def result(self, original: JSON, action: str, **kwargs: Any) -> ConvertResult:
        return ConvertResult(
            namespace=self.namespace,
            name=str(original["metadata"]["name"]),
            strategy=self.options.strategy,
            dry_run=self.options.dry_run,
            action=action,
            ok=kwargs.pop("ok", True),
            steps=tuple(self.steps),
            warnings=tuple(self.warnings),
            **kwargs,
        )


def target_hint(name: str, namespace: str, service: JSON) -> str:
    """The dnsbalance target for the headless Service: its first named port, else the
    pods' port number (``targetPort``, which defaults to ``port``); when that is a
    container port's name the number is the pods' to say, so the target names no port
    (the Service's first port, which modes "auto" and "api" read from the API)."""
    ports = (service.get("spec") or {}).get("ports") or []
    named = next((p["name"] for p in ports if p.get("name")), None)
    if named is not None:
        return f"{name}.{namespace}:{named}"
    if not ports:
        return f"{name}.{namespace}:PORT"
    target = ports[0].get("targetPort")
    if target is None or isinstance(target, int):
        return f"{name}.{namespace}:{target or ports[0].get('port')}"
    return f"kubernetes:///{name}.{namespace}"
