"""Where the control plane's binaries are, and the versions they are pinned to.

``versions.env`` (beside this file) pins them; ``scripts/build-controlplane`` builds
them from those Go modules into ``$DNSBALANCE_CONTROLPLANE_ASSETS``, by default
``~/.cache/dnsbalance/controlplane/<kubernetes version>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from dnsbalance._exceptions import DnsBalanceError

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "coredns")
BUILD_HINT = "build them with `bash scripts/build-controlplane` (from a dnsbalance checkout)"


class ControlPlaneError(DnsBalanceError):
    """The control plane could not be started, or one of its components died.

    ``component`` names it (``"kube-apiserver"``, ``"etcd"``, ...; ``None`` when the
    error is not one component's); the message carries the tail of its log.
    """

    def __init__(self, message: str, *, component: str | None = None) -> None:
        super().__init__(message)
        self.component = component


def versions() -> dict[str, str]:
    """The pinned versions, ``{"KUBERNETES_VERSION": "v1.37.2", ...}``."""
    pins: dict[str, str] = {}
    for line in (Path(__file__).with_name("versions.env")).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


def default_assets() -> Path:
    """``$DNSBALANCE_CONTROLPLANE_ASSETS``, else ``~/.cache/dnsbalance/controlplane/<k8s>``."""
    chosen = os.environ.get("DNSBALANCE_CONTROLPLANE_ASSETS")
    if chosen:
        return Path(chosen)
    return Path.home() / ".cache/dnsbalance/controlplane" / versions()["KUBERNETES_VERSION"]


def find_assets(assets: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Each binary's path in ``assets`` (default :func:`default_assets`); a missing one
    raises :class:`ControlPlaneError` naming it and the build script."""
    where = Path(assets) if assets is not None else default_assets()
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in BINARIES:
        path = where / name
        if path.is_file() and os.access(path, os.X_OK):
            found[name] = path
        else:
            missing.append(name)
    if missing:
        raise ControlPlaneError(
            f"control plane binaries missing in {where}: {', '.join(missing)}; {BUILD_HINT}"
        )
    return found
