"""``convert-service --strategy replace`` in a cluster: delete and create again headless,
since clusterIP is immutable.

Safety rules:

1. Permissions first: a SelfSubjectAccessReview per verb (get, create, delete). A missing
   verb refuses before anything is touched; being able to delete but not create would
   leave no Service at all.
2. The replacement is sent as a dry-run create before anything else: the expected answer
   is 409 AlreadyExists, which the API gives only once authorization, validation and
   admission passed. Anything else (an admission policy refusing the headless Service,
   a 403) refuses before anything is deleted.
3. The full original, as fetched, is written to the backup folder (exclusive create,
   fsync, read back and compared) before the delete. No backup, no delete.
4. The delete carries preconditions (uid and resourceVersion): a Service changed since it
   was read is not deleted. A delete held by finalizers is waited for (bounded).
5. If the create fails, the original is created again from the backup, with its cluster
   IP and node ports when they are still free, else with new ones (the result says which).

A server dry run takes the same steps with ``dryRun: [All]`` and tells what the API
answered to each. After the dry-run delete it reads the Service again: a server that
deleted it anyway (one that ignored the dry run) gets it back at once, from the copy
just read, and the run fails saying so.
"""

from __future__ import annotations

import time
from typing import Any

from dnsbalance._exceptions import ConfigError, ConversionError, KubernetesError

from .backup import (
    backup_name,
    can_write_into,
    read_backup,
    write_backup,
    write_endpoints,
    write_headless,
)
from .convert import plan_replace
from .convert_access import rbac_hint
from .convert_run import ConvertResult, Run, target_hint
from .service_api import JSON
from .service_edits import restore_copy
from .service_spec import describe, selector_of

__all__ = ["replace"]

WAIT_PROGRESS = 2.0  # seconds between progress lines while a delete is held


def replace(run: Run, original: JSON) -> ConvertResult:
    options = run.options
    plan = plan_replace(original, force=options.force, preview=options.preview)
    name = plan.name
    if plan.result is None:
        run.step(plan.message)
        return run.result(original, "unchanged", objects=(original,), before=(original,))
    run.warn(plan.warnings)
    endpoints = _endpoints_at_stake(run, original) if not selector_of(original) else None
    replacement = plan.result
    replacement["metadata"]["namespace"] = run.namespace
    target = target_hint(name, run.namespace, replacement)
    common: dict[str, Any] = {"before": (original,)}
    if options.dry_run == "client":
        return _client_preview(run, original, replacement, target, common)
    _check_create(run, replacement)
    if options.dry_run == "server":
        return _server_preview(run, original, replacement, target, common)
    try:
        backup = write_backup(
            original,
            options.backup_dir,
            namespace=run.namespace,
            name=name,
            when=run.clock(),
        )
    except (OSError, ValueError) as exc:
        run.step(f"cannot write the backup to {options.backup_dir}: {exc}")
        run.step(f"nothing was changed: service/{name} is as it was")
        return run.result(original, "failed", ok=False, objects=(original,), **common)
    run.step(f"backup of service/{name} written to {backup}", loud=True)
    restore_endpoints = None
    if endpoints is not None:
        try:
            saved = write_endpoints(endpoints, backup)
        except OSError as exc:
            run.step(f"cannot save Endpoints/{name} next to the backup: {exc}")
            run.step(f"nothing was changed: service/{name} is as it was")
            return run.result(original, "failed", ok=False, objects=(original,), **common)
        run.step(f"Endpoints/{name} saved to {saved}", loud=True)
        restore_endpoints = (
            f"Endpoints/{name}: the endpoints controller deletes it once it sees the old "
            f"Service gone; when `kubectl get endpoints {name} -n {run.namespace}` says "
            f"NotFound, create it again: kubectl create -f {saved}"
        )
    run.step(
        f"warning: {name}.{run.namespace} does not resolve between the delete and the "
        "create (a short NXDOMAIN window), and clients keep the old cluster IP until "
        "their cached DNS TTL runs out",
        loud=True,
    )
    run.services.delete(original)
    run.step(f"service/{name} deleted", loud=True)
    if not _wait_gone(run, name):
        held = run.services.find(name) or original
        finalizers = ", ".join((held.get("metadata") or {}).get("finalizers") or []) or "?"
        headless = write_headless(replacement, backup)
        run.step(
            f"service/{name} is still being deleted after {options.delete_timeout:g} s "
            f"(finalizers: {finalizers}); nothing was created. The headless Service is "
            f"ready in {headless}; once the finalizers are done, finish with:",
            loud=True,
        )
        run.step(
            f"kubectl wait --for=delete service/{name} -n {run.namespace} --timeout=10m "
            f"&& kubectl create -f {headless}",
            loud=True,
        )
        if restore_endpoints is not None:
            run.step(restore_endpoints, loud=True)
        return run.result(original, "failed", ok=False, backup=backup, **common)
    try:
        created = run.services.create(replacement)
    except KubernetesError as exc:
        run.step(f"creating the headless service/{name} failed: {exc}", loud=True)
        restored, how = _rollback(run, read_backup(backup, original))
        run.step(how, loud=True)
        if restore_endpoints is not None:
            run.step(restore_endpoints, loud=True)
        return run.result(
            original,
            "rolled back" if restored is not None else "failed",
            ok=False,
            backup=backup,
            objects=(restored,) if restored is not None else (),
            **common,
        )
    run.step(
        f'service/{name} replaced by a headless Service (clusterIP: None) in namespace "'
        f'{run.namespace}"'
    )
    if restore_endpoints is not None:
        run.step(restore_endpoints)
    return run.result(
        original, "replaced", objects=(created,), backup=backup, target=target, **common
    )


def _endpoints_at_stake(run: Run, original: JSON) -> JSON | None:
    """The hand-written Endpoints a selector-less Service would lose, or None.

    Deleting a Service makes the endpoints controller delete ``Endpoints/<name>``
    (syncService: the Service is gone), whoever wrote it, and the mirroring controller
    the slices it copied from it. Restoring them after the create is not reliable (the
    controller may delete the restored copy if it acts late, and whoever writes them may
    write them again), so a real run refuses without ``--force``; with it, they are
    saved next to the backup. A preview warns."""
    name = str(original["metadata"]["name"])
    options = run.options
    try:
        endpoints = run.services.find_endpoints(name)
    except KubernetesError as exc:
        problem = (
            f"{describe(original)} has no selector, and Endpoints/{name} cannot be read "
            f"({exc}): deleting the Service makes the endpoints controller delete it, and "
            "what it holds cannot be told"
        )
        if options.force or options.preview:
            run.warn([f"{problem}; {'going on (--force)' if options.force else _REFUSES}"])
            return None
        raise ConversionError(
            f"{problem}. Grant get on endpoints (manifests/rbac-convert.yaml does), or pass "
            "--force to go on"
        ) from exc
    if endpoints is None:
        return None
    addresses = [
        str(address.get("ip"))
        for subset in endpoints.get("subsets") or []
        for key in ("addresses", "notReadyAddresses")
        for address in subset.get(key) or []
        if isinstance(address, dict)
    ]
    shown = ", ".join(addresses[:3]) + (
        f" and {len(addresses) - 3} more" if len(addresses) > 3 else ""
    )
    what = (
        f"{describe(original)} has no selector, and Endpoints/{name} holds {len(addresses)} "
        f"addresses ({shown or 'none'}) that the cluster did not make from pods: deleting the "
        f"Service makes the endpoints controller delete Endpoints/{name} (and the mirroring "
        "controller the EndpointSlices it copied from it), so the headless Service has no "
        "endpoints until they are written again"
    )
    if options.force:
        run.warn(
            [
                f"{what}; --force: they are saved next to the backup, with the command "
                "that creates them again"
            ]
        )
        return endpoints
    if options.preview:
        run.warn([f"{what}; {_REFUSES}"])
        return endpoints
    raise ConversionError(
        f"{what}. Pass --force to accept (dnsbalance saves them next to the backup, with the "
        "command that creates them again); nothing changed"
    )


_REFUSES = "the real run refuses this without --force"


def _check_create(run: Run, replacement: JSON) -> None:
    """Rule 2: a dry-run create must get as far as AlreadyExists (authorized, valid and
    admitted) before anything is deleted."""
    name = replacement["metadata"]["name"]
    try:
        run.services.create(replacement, dry_run=True)
    except KubernetesError as exc:
        if exc.status == 409:
            if run.options.dry_run == "server":
                run.step(
                    f"service/{name} would be created headless (server dry run: the API "
                    "validated it and answered AlreadyExists, as it must while the original "
                    "exists)"
                )
            return
        if exc.status == 401 or (exc.status == 403 and "cannot create resource" in str(exc)):
            raise ConfigError(f"{exc}; {rbac_hint('replace', run.namespace)}") from exc
        raise ConversionError(
            f"the API would not accept the headless replacement ({exc}); nothing changed"
        ) from exc
    raise ConversionError(
        f"a dry-run create of the headless service/{name} succeeded although the Service "
        "exists; refusing to delete it; nothing changed"
    )


def _backup_step(run: Run, name: str) -> bool:
    """Say where the backup would go; False when that folder is not writable."""
    directory = run.options.backup_dir
    where = directory / backup_name(run.namespace, name, run.clock())
    run.step(f"would write a backup of service/{name} to {where}")
    if can_write_into(directory):
        return True
    run.step(f"... but {directory} is not writable: the real run would stop there")
    return False


def _client_preview(
    run: Run, original: JSON, replacement: JSON, target: str, common: dict[str, Any]
) -> ConvertResult:
    name = str(original["metadata"]["name"])
    writable = _backup_step(run, name)
    run.step(f"service/{name} would be deleted and created again headless (dry run)")
    return run.result(
        original, "replaced", ok=writable, objects=(replacement,), target=target, **common
    )


def _server_preview(
    run: Run, original: JSON, replacement: JSON, target: str, common: dict[str, Any]
) -> ConvertResult:
    name = str(original["metadata"]["name"])
    writable = _backup_step(run, name)
    answer = run.services.delete(original)
    held = (answer.get("metadata") or {}).get("finalizers") or []
    if held and (answer.get("metadata") or {}).get("deletionTimestamp"):
        run.step(
            f"service/{name} would be deleted once its finalizers are removed "
            f"({', '.join(held)}); the real run waits up to {run.options.delete_timeout:g} s "
            "(--delete-timeout)"
        )
    else:
        run.step(f"service/{name} would be deleted (server dry run: the API accepted the delete)")
    failed = _dry_run_honoured(run, original)
    if failed is not None:
        return run.result(original, "failed", ok=False, objects=failed, **common)
    return run.result(
        original, "replaced", ok=writable, objects=(replacement,), target=target, **common
    )


def _dry_run_honoured(run: Run, original: JSON) -> tuple[JSON, ...] | None:
    """None when the Service is as it was after the dry-run delete; else what was done
    about it (put back from ``original`` when the server deleted it), as the objects."""
    name = str(original["metadata"]["name"])
    now = run.services.find(name)
    meta = (now or {}).get("metadata") or {}
    if now is not None and meta.get("uid") == original["metadata"].get("uid"):
        if meta.get("deletionTimestamp") == original["metadata"].get("deletionTimestamp"):
            return None
        run.step(
            f"THE API SERVER DID NOT HONOUR THE DRY RUN: service/{name} is now being deleted "
            f"(finalizers: {', '.join(meta.get('finalizers') or []) or 'none'}); a deletion "
            "cannot be undone. Keep a copy: kubectl get service "
            f"{name} -n {run.namespace} -o yaml > {name}.yaml",
            loud=True,
        )
        return (now,)
    run.step(
        f"THE API SERVER DID NOT HONOUR THE DRY RUN: service/{name} was deleted; creating it "
        "again from the copy read just before",
        loud=True,
    )
    restored, how = _rollback(run, original, source="the copy read before the dry run")
    run.step(how, loud=True)
    return (restored,) if restored is not None else ()


def _wait_gone(run: Run, name: str) -> bool:
    """Wait (up to ``delete_timeout``) until the deleted Service is gone; a delete held
    by finalizers (a LoadBalancer's ``service.kubernetes.io/load-balancer-cleanup``,
    removed by the cloud controller after the load balancer: seconds to minutes) shows
    progress every ``WAIT_PROGRESS`` seconds."""
    started = time.monotonic()
    deadline = started + run.options.delete_timeout
    next_note = started + WAIT_PROGRESS
    delay = 0.05
    for _ in range(1_000_000):  # bounded by the deadline; the count only bounds a bug
        held = run.services.find(name)
        if held is None:
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_note:
            next_note = now + WAIT_PROGRESS
            finalizers = ", ".join((held.get("metadata") or {}).get("finalizers") or [])
            run.step(
                f"waiting for service/{name} to go ({now - started:.0f} s of "
                f"{run.options.delete_timeout:g} s; finalizers: {finalizers or 'none'})",
                loud=True,
            )
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)
    return False


def _rollback(run: Run, original: JSON, *, source: str = "the backup") -> tuple[JSON | None, str]:
    """Create ``original`` again (a real write, whatever the run): with its cluster IP,
    else with a new one."""
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
            restored = run.services.create(
                restore_copy(original, keep_allocations=keep), dry_run=False
            )
        except KubernetesError as exc:
            errors.append(str(exc))
            status = exc.status
            continue
        new_ip = (restored.get("spec") or {}).get("clusterIP")
        if keep:
            return restored, (
                f"rolled back: service/{name} was created again from {source} with its "
                f"cluster IP {new_ip}; the conversion did not happen"
            )
        return restored, (
            f"rolled back: service/{name} was created again from {source}, but its "
            f"cluster IP {old_ip} could not be kept ({errors[0]}); the API allocated "
            f"{new_ip} (and new node ports, if any): clients that cached {old_ip} fail "
            "until their DNS TTL runs out"
        )
    return None, (
        f"ROLLBACK FAILED: service/{name} does not exist now ({'; '.join(errors)}). "
        "Create it from the backup file (see its header)"
    )
