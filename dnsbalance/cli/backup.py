"""Backups of ``convert-service --strategy replace``, proven on disk before any delete."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import yaml

from .manifests import dump_yaml
from .service_api import JSON

# -- namespace and backups ------------------------------------------------------------


def backup_name(namespace: str, name: str, when: datetime.datetime) -> str:
    stamp = when.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{namespace}.{name}.{stamp}.backup.yaml"


def write_backup(
    obj: JSON, directory: Path, *, namespace: str, name: str, when: datetime.datetime
) -> Path:
    """Write ``obj`` as YAML to a new file in ``directory`` (never overwriting one), flushed
    to disk and read back to prove it holds ``obj``. Raises OSError (or ValueError)."""
    directory.mkdir(parents=True, exist_ok=True)
    header = (
        f"# dnsbalance: backup of Service {namespace}/{name} as the API served it, "
        f"{when.astimezone(datetime.UTC).isoformat(timespec='seconds')}.\n"
        "# To restore it by hand: remove metadata.resourceVersion and metadata.uid, then\n"
        "# kubectl create -f THIS_FILE\n"
    )
    text = header + dump_yaml([obj])
    base = backup_name(namespace, name, when)
    for attempt in range(100):
        path = directory / (
            base if attempt == 0 else base.replace(".backup.yaml", f"-{attempt}.backup.yaml")
        )
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except FileExistsError:
            continue
        if yaml.safe_load(path.read_text(encoding="utf-8")) != json.loads(json.dumps(obj)):
            raise ValueError(f"{path} does not read back as the original")
        return path
    raise FileExistsError(f"no free backup file name like {directory / base}")


def write_headless(replacement: JSON, backup: Path) -> Path:
    """The headless Service, ready for ``kubectl create -f``, next to the backup."""
    base = backup.name.removesuffix(".backup.yaml")
    for attempt in range(100):
        path = backup.with_name(f"{base}{'' if attempt == 0 else f'-{attempt}'}.headless.yaml")
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(
                    "# dnsbalance: the headless replacement, not yet created (the old Service\n"
                    "# was still being deleted). Create it once the old one is gone:\n"
                    "# kubectl create -f THIS_FILE\n" + dump_yaml([replacement])
                )
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free file name like {backup.with_name(base)}.headless.yaml")


def write_endpoints(endpoints: JSON, backup: Path) -> Path:
    """A selector-less Service's Endpoints, ready for ``kubectl create -f``, next to the
    backup (server-set metadata dropped)."""
    meta = endpoints.get("metadata") or {}
    clean: JSON = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    for key in ("labels", "annotations"):
        value = {
            k: v
            for k, v in (meta.get(key) or {}).items()
            if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
        if value:
            clean[key] = value
    body = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": clean,
        "subsets": endpoints.get("subsets") or [],
    }
    base = backup.name.removesuffix(".backup.yaml")
    for attempt in range(100):
        path = backup.with_name(f"{base}{'' if attempt == 0 else f'-{attempt}'}.endpoints.yaml")
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(
                    "# dnsbalance: the Endpoints of a selector-less Service, which the endpoints\n"
                    "# controller deletes with the Service. Once it has (kubectl get endpoints\n"
                    "# says NotFound), create them again: kubectl create -f THIS_FILE\n"
                    + dump_yaml([body])
                )
                handle.flush()
                os.fsync(handle.fileno())
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free file name like {backup.with_name(base)}.endpoints.yaml")


def read_backup(path: Path, original: JSON) -> JSON:
    """The Service as the backup file holds it (a rollback restores what the user can
    see on disk); the copy in memory if the file cannot be read back."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return original
    return loaded if isinstance(loaded, dict) and loaded.get("metadata") else original


def can_write_into(directory: Path) -> bool:
    """Whether a backup could be written into ``directory`` (made if missing)."""
    candidate = directory.absolute()
    for _ in range(len(candidate.parts)):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
        candidate = candidate.parent
    return False
