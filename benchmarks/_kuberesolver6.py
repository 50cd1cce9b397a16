"""The kuberesolver v6 contender: build the Go client in benchmarks/kuberesolver6/.

The client (main.go) uses ``github.com/sercand/kuberesolver/v6`` v6.0.1 with the
grpc-go its go.mod names (v1.71.0), pinned by the committed go.mod and go.sum and
fetched by the Go toolchain from the module proxy. It speaks the same stdout
protocol as the v3 client, so :class:`~benchmarks._kuberesolver.GoClient` runs
either; give it ``flags=api_flags(...)`` for an https API server with a token.

:func:`build` returns the binary, or None with the reason when Go is missing or the
build fails (the suites then say so and leave the column out). The binary is cached
under ``~/.cache/dnsbalance/kuberesolver6/<hash of the sources and Go version>/``:
a warm call returns at once, a build with warm Go caches takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["SOURCE", "api_flags", "build"]

SOURCE = Path(__file__).resolve().parent / "kuberesolver6"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnsbalance"
_FILES = ("go.mod", "go.sum", "main.go")


def _go() -> str | None:
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)), None
    )


def build(cache: Path | None = None) -> tuple[Path | None, str]:
    """The client's binary, built once per source and Go version: (binary, "") or
    (None, why not)."""
    go = _go()
    if go is None:
        return None, "go not installed (Go 1.22 or newer, with the module proxy reachable)"
    try:
        version = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"go env failed: {exc}"
    digest = hashlib.sha256(version.encode())
    for name in _FILES:
        digest.update((SOURCE / name).read_bytes())
    folder = (cache or CACHE / "kuberesolver6") / digest.hexdigest()[:16]
    binary = folder / "kuberesolver6-client"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary, ""
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly -buildvcs=false -trimpath",
        "GO111MODULE": "on",
        "CGO_ENABLED": "0",
    }
    partial = Path(tempfile.mkdtemp(prefix=".build-", dir=folder)) / binary.name
    try:
        done = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            return None, f"go build failed: {done.stderr.strip()[-2000:]}"
        partial.replace(binary)  # atomic: a concurrent build finds a whole binary or none
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"go build failed: {exc}"
    finally:
        shutil.rmtree(partial.parent, ignore_errors=True)
    return binary, ""


def api_flags(
    *, ca_file: str | Path | None = None, token_file: str | Path | None = None, events: bool = False
) -> list[str]:
    """The client's flags for an https API server: its CA bundle, a file holding a
    bearer token, and ``events`` to have each watch event reported as it arrives."""
    flags = []
    if ca_file is not None:
        flags.append(f"-ca-file={ca_file}")
    if token_file is not None:
        flags.append(f"-token-file={token_file}")
    if events:
        flags.append("-events")
    return flags


def token_file(kubeconfig: str | Path, folder: str | Path) -> Path:
    """The bearer token of ``kubeconfig``'s current user, written to ``folder/token``
    (mode 0600) for the client's ``-token-file`` (v6 reads no kubeconfig)."""
    import yaml  # the kubernetes client's dependency; reads JSON kubeconfigs too

    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    path = Path(folder) / "token"
    path.touch(mode=0o600)
    path.write_text(user["user"]["token"])
    return path
