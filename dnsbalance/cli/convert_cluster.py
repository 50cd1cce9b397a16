"""Converting a Service in a cluster (I/O): fetch, check permissions, back up, write, roll back.

The decisions are :mod:`dnsbalance.cli.convert`'s; this module runs the twin and replace
flows and returns a :class:`ConvertResult` for the CLI to print. Its I/O helpers:
:mod:`.service_api` (Service calls), :mod:`.convert_access` (the permission checks of
rule 1), :mod:`.backup` (the files of rule 2).

Safety rules of ``--strategy replace`` (delete + create, since clusterIP is immutable):

1. Permissions first: a SelfSubjectAccessReview per verb (get, create, delete). A missing
   verb refuses before anything is touched; being able to delete but not create would
   leave no Service at all. When the review API cannot answer, a server-side dry-run
   create stands in (403 refuses; the expected answer is 409 AlreadyExists, which the
   API gives only after authorization and validation passed).
2. The full original, as fetched, is written to the backup folder (exclusive create,
   fsync, read back and compared) before the delete. No backup, no delete.
3. The delete carries preconditions (uid and resourceVersion): a Service changed since it
   was read is not deleted. A delete held by finalizers is waited for (bounded).
4. If the create fails, the original is created again from the backup, with its cluster
   IP and node ports when they are still free, else with new ones (the result says which).

Twins are created, or updated with the fetched resourceVersion (a conflict changes
nothing). ``dry_run="server"`` sends every write with ``dryRun=All``; ``"client"``
sends none (reads and access reviews only).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dnsbalance._exceptions import ConfigError, ConversionError, KubernetesError

from .backup import (
    backup_name,
    can_write_into,
    read_backup,
    write_backup,
    write_headless,
)
from .convert import Strategy, plan_replace, plan_twin
from .convert_access import (
    VERBS,
    preflight,
    rbac_hint,
    with_hint,
)
from .service_api import JSON, ServiceAPI
from .service_edits import check_twin_owner, restore_copy, twin_differences, updated_twin

__all__ = [
    "ConvertOptions",
    "ConvertResult",
    "DryRun",
    "convert_service",
]


DryRun = Literal["none", "client", "server"]
Progress = Callable[[str], None]


WAIT_PROGRESS = 2.0  # seconds between progress lines while a delete is held
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


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


# -- converting -----------------------------------------------------------------------


def convert_service(
    api_client: Any,
    *,
    namespace: str,
    name: str,
    options: ConvertOptions,
    progress: Progress | None = None,
    clock: Callable[[], datetime.datetime] | None = None,
) -> ConvertResult:
    """Convert Service ``namespace/name`` to headless as ``options`` say.

    Raises ConversionError when the Service cannot or must not be converted (ExternalName,
    NodePort without force, a foreign ``<name>-headless``), ConfigError when this identity
    lacks a verb, and KubernetesError when the API fails before anything changed (404
    included). Failures after a change (create failed and rolled back) come back as a
    result with ``ok=False``. ``progress`` hears important steps as they happen (the backup
    path before the delete).
    """
    tell = progress or (lambda _message: None)
    services = ServiceAPI(api_client, namespace, dry_run=options.dry_run == "server")
    reviews_answered = preflight(api_client, namespace, options.strategy)
    try:
        original = services.get(name)
    except KubernetesError as exc:
        raise with_hint(exc, options.strategy, namespace) from exc
    run = _Run(services, options, tell, clock or (lambda: datetime.datetime.now(datetime.UTC)))
    try:
        if options.strategy == "twin":
            return run.twin(original)
        return run.replace(original, reviews_answered=reviews_answered)
    except KubernetesError as exc:
        raise with_hint(exc, options.strategy, namespace) from exc


@dataclass
class _Run:
    services: ServiceAPI
    options: ConvertOptions
    tell: Progress
    clock: Callable[[], datetime.datetime]
    steps: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.services.namespace

    def step(self, text: str, *, loud: bool = False) -> None:
        self.steps.append(text)
        if loud:
            self.tell(text)

    def warn(self, warnings: tuple[str, ...]) -> None:
        """Warnings are heard before anything is written (and kept in the result)."""
        for warning in warnings:
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
            **kwargs,
        )

    def _would(self) -> str:
        return {"none": "", "client": " (dry run)", "server": " (server dry run)"}[
            self.options.dry_run
        ]

    # -- twin ---------------------------------------------------------------------

    def twin(self, original: JSON) -> ConvertResult:
        plan = plan_twin(original, twin_name=self.options.twin_name)
        if plan.result is None:
            self.step(plan.message)
            return self.result(original, "unchanged", objects=(original,), before=(original,))
        self.warn(plan.warnings)
        desired = plan.result
        twin_name = str(desired["metadata"]["name"])
        desired["metadata"]["namespace"] = self.namespace
        target = _target_hint(twin_name, self.namespace, desired)
        existing = self.services.find(twin_name)
        dry = self.options.dry_run
        if existing is None:
            created = desired if dry == "client" else self.services.create(desired)
            verb = "would be created" if dry != "none" else "created"
            self.step(
                f"service/{twin_name} {verb}{self._would()}: headless twin of "
                f'service/{plan.name} in namespace "{self.namespace}"'
            )
            return self.result(
                original,
                "created",
                warnings=plan.warnings,
                objects=(created,),
                target=target,
            )
        check_twin_owner(existing, plan.name)
        differences = twin_differences(existing, desired)
        if not differences:
            self.step(f"service/{twin_name} is up to date: nothing to do")
            return self.result(
                original,
                "unchanged",
                warnings=plan.warnings,
                objects=(existing,),
                before=(existing,),
                target=target,
            )
        body = updated_twin(existing, desired)
        updated = body if dry == "client" else self.services.replace(twin_name, body)
        verb = "would be updated" if dry != "none" else "updated"
        self.step(
            f"service/{twin_name} {verb}{self._would()} ({', '.join(differences)} changed "
            f"on service/{plan.name})"
        )
        return self.result(
            original,
            "updated",
            warnings=plan.warnings,
            objects=(updated,),
            before=(existing,),
            target=target,
        )

    # -- replace ------------------------------------------------------------------

    def replace(self, original: JSON, *, reviews_answered: bool) -> ConvertResult:
        plan = plan_replace(original, force=self.options.force)
        name = plan.name
        if plan.result is None:
            self.step(plan.message)
            return self.result(original, "unchanged", objects=(original,), before=(original,))
        self.warn(plan.warnings)
        replacement = plan.result
        replacement["metadata"]["namespace"] = self.namespace
        _drop_lb_finalizer(replacement)
        target = _target_hint(name, self.namespace, replacement)
        common: dict[str, Any] = {"warnings": plan.warnings, "before": (original,)}
        if not reviews_answered:
            self._dry_create_preflight(replacement)
        if self.options.dry_run != "none":
            return self._replace_dry_run(original, replacement, target, common)
        when = self.clock()
        try:
            backup = write_backup(
                original,
                self.options.backup_dir,
                namespace=self.namespace,
                name=name,
                when=when,
            )
        except (OSError, ValueError) as exc:
            self.step(f"cannot write the backup to {self.options.backup_dir}: {exc}")
            self.step(f"nothing was changed: service/{name} is as it was")
            return self.result(original, "failed", ok=False, objects=(original,), **common)
        self.step(f"backup of service/{name} written to {backup}", loud=True)
        self.step(
            f"warning: {name}.{self.namespace} does not resolve between the delete and the "
            "create (a short NXDOMAIN window), and clients keep the old cluster IP until "
            "their cached DNS TTL runs out",
            loud=True,
        )
        self.services.delete(original)
        self.step(f"service/{name} deleted", loud=True)
        gone = self._wait_gone(name)
        if not gone:
            held = self.services.find(name) or original
            finalizers = ", ".join((held.get("metadata") or {}).get("finalizers") or []) or "?"
            headless = write_headless(replacement, backup)
            self.step(
                f"service/{name} is still being deleted after {self.options.delete_timeout:g} s "
                f"(finalizers: {finalizers}); nothing was created. The headless Service is "
                f"ready in {headless}; once the finalizers are done, finish with:",
                loud=True,
            )
            self.step(
                f"kubectl wait --for=delete service/{name} -n {self.namespace} --timeout=10m "
                f"&& kubectl create -f {headless}",
                loud=True,
            )
            return self.result(original, "failed", ok=False, backup=backup, **common)
        try:
            created = self.services.create(replacement)
        except KubernetesError as exc:
            self.step(f"creating the headless service/{name} failed: {exc}", loud=True)
            restored, how = self._rollback(read_backup(backup, original))
            self.step(how, loud=True)
            return self.result(
                original,
                "rolled back" if restored is not None else "failed",
                ok=False,
                backup=backup,
                objects=(restored,) if restored is not None else (),
                **common,
            )
        self.step(
            f'service/{name} replaced by a headless Service (clusterIP: None) in namespace "'
            f'{self.namespace}"'
        )
        return self.result(
            original, "replaced", objects=(created,), backup=backup, target=target, **common
        )

    def _dry_create_preflight(self, replacement: JSON) -> None:
        """Access reviews could not be asked: a dry-run create must get as far as
        AlreadyExists (authorized and valid) before anything is deleted."""
        try:
            self.services.create(replacement, dry_run=True)
        except KubernetesError as exc:
            if exc.status == 409:
                return
            if exc.status in (401, 403):
                raise ConfigError(f"{exc}; {rbac_hint('replace', self.namespace)}") from exc
            raise ConversionError(
                f"the API would not accept the headless replacement ({exc}); nothing changed"
            ) from exc
        raise ConversionError(
            "a dry-run create of the replacement succeeded although the Service exists; "
            "refusing to delete it"
        )

    def _replace_dry_run(
        self, original: JSON, replacement: JSON, target: str, common: dict[str, Any]
    ) -> ConvertResult:
        name = str(original["metadata"]["name"])
        directory = self.options.backup_dir
        writable = can_write_into(directory)
        where = directory / backup_name(self.namespace, name, self.clock())
        self.step(f"would write a backup of service/{name} to {where}")
        if not writable:
            self.step(f"... but {directory} is not writable: the real run would stop there")
        if self.options.dry_run == "server":
            self.services.delete(original)
            self.step(f"service/{name} would be deleted (server dry run: accepted)")
            try:
                self.services.create(replacement)
            except KubernetesError as exc:
                if exc.status != 409:
                    raise
            self.step(
                f"service/{name} would be created headless (server dry run: validated; the "
                "API answered AlreadyExists because in a dry run the original stays)"
            )
        else:
            self.step(f"service/{name} would be deleted and created again headless (dry run)")
        return self.result(
            original,
            "replaced",
            ok=writable,
            objects=(replacement,),
            target=target,
            **common,
        )

    def _wait_gone(self, name: str) -> bool:
        """Wait (up to ``delete_timeout``) until the deleted Service is gone; a delete held
        by finalizers (a LoadBalancer's ``service.kubernetes.io/load-balancer-cleanup``,
        removed by the cloud controller after the load balancer: seconds to minutes)
        shows progress every ``WAIT_PROGRESS`` seconds."""
        started = time.monotonic()
        deadline = started + self.options.delete_timeout
        next_note = started + WAIT_PROGRESS
        delay = 0.05
        for _ in range(1_000_000):  # bounded by the deadline; the count only bounds a bug
            held = self.services.find(name)
            if held is None:
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_note:
                next_note = now + WAIT_PROGRESS
                finalizers = ", ".join((held.get("metadata") or {}).get("finalizers") or [])
                self.step(
                    f"waiting for service/{name} to go ({now - started:.0f} s of "
                    f"{self.options.delete_timeout:g} s; finalizers: {finalizers or 'none'})",
                    loud=True,
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
        return False

    def _rollback(self, original: JSON) -> tuple[JSON | None, str]:
        """Create ``original`` again: with its cluster IP, else with a new one."""
        name = str(original["metadata"]["name"])
        spec = original.get("spec") or {}
        old_ip = spec.get("clusterIP") or "?"
        errors: list[str] = []
        status: int | None = None
        # Keep the IP; once more after a pause unless the API said it is taken (422);
        # then let the API allocate a new one.
        for number, keep in enumerate((True, True, False)):
            if number == 1:
                if status == 422:
                    continue
                time.sleep(0.5)
            try:
                restored = self.services.create(restore_copy(original, keep_allocations=keep))
            except KubernetesError as exc:
                errors.append(str(exc))
                status = exc.status
                continue
            new_ip = (restored.get("spec") or {}).get("clusterIP")
            if keep:
                return restored, (
                    f"rolled back: service/{name} was created again from the backup with its "
                    f"cluster IP {new_ip}; the conversion did not happen"
                )
            return restored, (
                f"rolled back: service/{name} was created again from the backup, but its "
                f"cluster IP {old_ip} could not be kept ({errors[0]}); the API allocated "
                f"{new_ip} (and new node ports, if any): clients that cached {old_ip} fail "
                "until their DNS TTL runs out"
            )
        return None, (
            f"ROLLBACK FAILED: service/{name} does not exist now ({'; '.join(errors)}). "
            "Create it from the backup file (see its header)"
        )


def _drop_lb_finalizer(service: JSON) -> None:
    """The cloud controller's finalizer belongs to a load balancer; a headless Service
    has none, and nothing would ever remove it."""
    meta = service.get("metadata") or {}
    finalizers = [f for f in meta.get("finalizers") or [] if f != LB_FINALIZER]
    if finalizers:
        meta["finalizers"] = finalizers
    else:
        meta.pop("finalizers", None)


def _target_hint(name: str, namespace: str, service: JSON) -> str:
    """The dnsbalance target for the headless Service: its first named port, else number."""
    ports = (service.get("spec") or {}).get("ports") or []
    named = next((p["name"] for p in ports if p.get("name")), None)
    if named is not None:
        return f"{name}.{namespace}:{named}"
    if ports:
        target = ports[0].get("targetPort")
        number = target if isinstance(target, int) else ports[0].get("port")
        return f"{name}.{namespace}:{number}"
    return f"{name}.{namespace}:PORT"
