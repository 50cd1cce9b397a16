"""Converting a Service in a cluster (I/O): fetch, check permissions, then the twin flow
(here) or the replace flow (:mod:`.convert_replace`).

The decisions are :mod:`dnsbalance.cli.convert`'s; the shared options, result and step
log are :mod:`.convert_run`'s. I/O helpers: :mod:`.service_api` (Service calls, field
manager ``dnsbalance``), :mod:`.convert_access` (the access reviews), :mod:`.backup`.

Twins are created, or updated with the fetched resourceVersion (a conflict changes
nothing).

Previews (``dry_run`` other than ``"none"``; ``--diff`` is a client-side one):

- ``"client"`` reads only: GETs and access reviews, never a write request, so it needs
  only ``get`` on services. A verb the real run needs and this identity lacks is a
  warning, not a refusal.
- ``"server"`` sends every write as a dry run, where the server reads it: the query of a
  create or update, the DeleteOptions body of a delete (a DELETE with a body takes its
  options from the body alone). Each step says what the API answered.
- Neither refuses for want of ``--force``: they show what a forced run would do and
  warn that the real run needs it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from dnsbalance._exceptions import KubernetesError

from .convert import plan_twin
from .convert_access import preflight, with_hint
from .convert_replace import replace
from .convert_run import ConvertOptions, ConvertResult, DryRun, Progress, Run, target_hint
from .service_api import JSON, ServiceAPI, Writes
from .service_edits import check_twin_owner, twin_differences, updated_twin

__all__ = [
    "ConvertOptions",
    "ConvertResult",
    "DryRun",
    "convert_service",
]

_WRITES: dict[DryRun, Writes] = {"none": "real", "client": "none", "server": "dry-run"}


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
    NodePort without force, a foreign ``<name>-headless``, a replacement the API would
    not accept), ConfigError when this identity lacks a verb (not in a client-side
    preview), and KubernetesError when the API fails before anything changed (404
    included). Failures after a change (create failed and rolled back) come back as a
    result with ``ok=False``. ``progress`` hears important steps as they happen (the backup
    path before the delete).
    """
    tell = progress or (lambda _message: None)
    services = ServiceAPI(api_client, namespace, writes=_WRITES[options.dry_run])
    access = preflight(api_client, namespace, options.strategy, refuse=options.dry_run != "client")
    try:
        original = services.get(name)
    except KubernetesError as exc:
        raise with_hint(exc, options.strategy, namespace) from exc
    run = Run(
        services,
        options,
        tell,
        clock or (lambda: datetime.datetime.now(datetime.UTC)),
        access,
    )
    if access.denied:  # only a client-side preview gets here with a verb denied
        run.warn([f"the real run would be refused: {access.missing(options.strategy, namespace)}"])
    try:
        if options.strategy == "twin":
            return twin(run, original)
        return replace(run, original)
    except KubernetesError as exc:
        raise with_hint(exc, options.strategy, namespace) from exc


def twin(run: Run, original: JSON) -> ConvertResult:
    """Create ``<name>-headless``, or bring it up to date, or say it is."""
    plan = plan_twin(original, twin_name=run.options.twin_name)
    if plan.result is None:
        run.step(plan.message)
        return run.result(original, "unchanged", objects=(original,), before=(original,))
    run.warn(plan.warnings)
    desired = plan.result
    twin_name = str(desired["metadata"]["name"])
    desired["metadata"]["namespace"] = run.namespace
    target = target_hint(twin_name, run.namespace, desired)
    existing = run.services.find(twin_name)
    dry = run.options.dry_run
    if existing is None:
        created = desired if dry == "client" else run.services.create(desired)
        outcome = {
            "none": "created",
            "client": "would be created (dry run)",
            "server": "would be created (server dry run: the API accepted it)",
        }[dry]
        run.step(
            f"service/{twin_name} {outcome}: headless twin of service/{plan.name} in "
            f'namespace "{run.namespace}"'
        )
        return run.result(original, "created", objects=(created,), target=target)
    check_twin_owner(existing, plan.name)
    differences = twin_differences(existing, desired)
    if not differences:
        run.step(f"service/{twin_name} is up to date: nothing to do")
        return run.result(
            original, "unchanged", objects=(existing,), before=(existing,), target=target
        )
    body = updated_twin(existing, desired)
    updated = body if dry == "client" else run.services.replace(twin_name, body)
    outcome = {
        "none": "updated",
        "client": "would be updated (dry run)",
        "server": "would be updated (server dry run: the API accepted it)",
    }[dry]
    run.step(
        f"service/{twin_name} {outcome} ({', '.join(differences)} changed on service/{plan.name})"
    )
    return run.result(original, "updated", objects=(updated,), before=(existing,), target=target)
