"""Backups of ``convert-service --strategy replace``, proven on disk before any delete."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import yaml

from dnsbalance._kube.watch import SERVICE_ACCOUNT_DIR, _kubernetes

from .manifests import dump_yaml
from .service_api import JSON

# -- namespace and backups ------------------------------------------------------------


def current_namespace(
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Any = None,
) -> str:
    """The namespace kubectl would use: the kubeconfig context's, or in a pod the service
    account's, else ``default`` (same configuration order as ``load_api_client``)."""
    env = os.environ if environ is None else environ
    _, config, _ = _kubernetes()
    path: str | None = os.fspath(kubeconfig) if kubeconfig else None
    if path is None and context is None:
        namespace_file = service_account_dir / "namespace"
        if env.get("KUBERNETES_SERVICE_HOST") and namespace_file.is_file():
            return namespace_file.read_text(encoding="utf-8").strip() or "default"
        candidates = (env.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")).split(
            os.pathsep
        )
        path = next((p for p in candidates if p and Path(p).is_file()), None)
        if path is None:
            return "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError, yaml.YAMLError):
        return "default"
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts or () if c.get("name") == context), None)
    details = (chosen or {}).get("context") or {}
    return str(details.get("namespace") or "default")


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


def _write_headless(replacement: JSON, backup: Path) -> Path:
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


def _read_backup(path: Path, original: JSON) -> JSON:
    """The Service as the backup file holds it (a rollback restores what the user can
    see on disk); the copy in memory if the file cannot be read back."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return original
    return loaded if isinstance(loaded, dict) and loaded.get("metadata") else original


def _can_write_into(directory: Path) -> bool:
    """Whether a backup could be written into ``directory`` (made if missing)."""
    candidate = directory.absolute()
    for _ in range(len(candidate.parts)):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
        candidate = candidate.parent
    return False
