"""The kuberesolver contender: build the Go client in benchmarks/kuberesolver/ and run it.

The client (main.go) uses kuberesolver v3.1.1 as Debian ships it (byte for byte
upstream's v3.1.1) with Debian's grpc-go 1.33, built offline in GOPATH mode against
Debian's Go sources, which Go 1.26 still builds (``GO111MODULE=off``). Go is the
toolchain on PATH or at /usr/local/go; one apt-get line installs the sources::

    apt-get install -y golang-github-sercand-kuberesolver-dev golang-google-grpc-dev

(The Go module proxy serves kuberesolver v3.1.1's go.mod but not its source, and the
checksum database has no entry for it, so a module-mode build cannot use v3.1.1.)

:func:`build` returns the binary, built once into a cache folder per (main.go, Go
version, Debian sources), or None with the reason when go or the sources are missing
(the suites then say so and leave the column out; the tests fail under CI=true).
``python -m benchmarks._kuberesolver`` builds it (scripts/check does, as a step).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ._common import Call, Recorder

__all__ = ["APT_LINE", "GoClient", "build"]

SOURCE = Path(__file__).resolve().parent / "kuberesolver" / "main.go"
GOCODE = Path("/usr/share/gocode")
PACKAGES = ("golang-github-sercand-kuberesolver-dev", "golang-google-grpc-dev")
APT_LINE = "apt-get install -y " + " ".join(PACKAGES)
GO_HINT = "Go at /usr/local/go or on PATH"
_GO_PLACES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go", "/usr/bin/go")
_NEEDED = ("github.com/sercand/kuberesolver", "google.golang.org/grpc")


def cache_dir() -> Path:
    """Where built clients are kept: ``$XDG_CACHE_HOME`` (else ~/.cache)/dnsbalance/kuberesolver."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dnsbalance" / "kuberesolver"


def find_go() -> str | None:
    """The go command: on PATH, else where Go's and Debian's installs put it."""
    return shutil.which("go") or next((p for p in _GO_PLACES if os.access(p, os.X_OK)), None)


def build(cache: Path | None = None) -> tuple[Path | None, str]:
    """The client, built unless ``cache`` (default :func:`cache_dir`) has it already for
    this main.go, Go version and Debian sources: (binary, "") or (None, why not)."""
    go = find_go()
    if go is None:
        return None, f"go not found ({GO_HINT})"
    missing = [p for p in _NEEDED if not (GOCODE / "src" / p).is_dir()]
    if missing:
        return None, f"Go sources missing under {GOCODE}/src: {', '.join(missing)} ({APT_LINE})"
    root = cache or cache_dir()
    try:
        version = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        key = hashlib.sha256(
            b"\0".join([SOURCE.read_bytes(), version.encode(), _sources_fingerprint()])
        ).hexdigest()[:16]
        binary = root / key / "kuberesolver-client"
        if os.access(binary, os.X_OK):
            return binary, ""
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="build-", dir=root) as tmp:
            why = _go_build(go, Path(tmp), root / "go-build", binary)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"go build failed: {exc}"
    return (binary, "") if why == "" else (None, why)


def _go_build(go: str, tmp: Path, gocache: Path, binary: Path) -> str:
    """Build in GOPATH mode (``tmp`` + Debian's tree), then move the binary into place
    at once (another process may be building the same one); "" or why it failed."""
    package = tmp / "src" / "kuberesolver-client"
    package.mkdir(parents=True)
    shutil.copy(SOURCE, package / "main.go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{tmp}:{GOCODE}",
        "GOCACHE": str(gocache),  # kept: a changed main.go rebuilds in seconds
        "GOFLAGS": "",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    done = subprocess.run(
        [go, "build", "-o", str(tmp / "client"), "."],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return f"go build failed: {done.stderr.strip()[-2000:]}"
    os.replace(tmp / "client", binary)
    return ""


def _sources_fingerprint() -> bytes:
    """What identifies the Go sources: the versions of Debian's golang-*-dev packages,
    else (no dpkg) the size and time of every file under GOCODE/src."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is not None:
        done = subprocess.run(
            [dpkg, "-W", "-f", "${Package} ${Version}\\n", "golang-*-dev"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout.encode()
    stats = []
    for folder, _, files in os.walk(GOCODE / "src"):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            stats.append(f"{folder}/{name} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(sorted(stats)).encode()


class GoClient:
    """One run of a Go client (v3 here, v6 from benchmarks/kuberesolver6/, which speaks
    the same protocol): its per-call lines go into ``recorder`` (times on this
    process's time.monotonic() clock). ``flags`` are added to its command line (v6's
    ``-ca-file``, ``-token-file``, ``-events``); the v6 client's watch-event lines are
    kept in ``events`` as (time.monotonic(), type, ready addresses). Stopped by closing
    its stdin. The dnsbalance client of :mod:`benchmarks._pyclient` speaks the same
    protocol (``binary`` the Python interpreter, ``prefix`` ``-m benchmarks._pyclient``);
    its ``change`` lines are kept in ``changes`` as (time.monotonic(), addresses)."""

    def __init__(
        self,
        binary: Path,
        api_url: str,
        target: str,
        recorder: Recorder,
        *,
        callers: int = 1,
        interval_ms: int = 10,
        limit: float = 300.0,
        timeout: float = 5.0,
        flags: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> None:
        self.recorder = recorder
        self.events: list[tuple[float, str, int]] = []
        self.changes: list[tuple[float, set[str]]] = []
        self._argv = [
            str(binary),
            *prefix,
            f"-api={api_url}",
            f"-target={target}",
            f"-callers={callers}",
            f"-interval={interval_ms}ms",
            f"-duration={limit}s",
            f"-timeout={timeout}s",
            *flags,
        ]
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self.lines = 0

    def start(self, timeout: float = 10.0) -> GoClient:
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[1],  # python -m benchmarks._pyclient
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._proc,), name="bench-go-reader", daemon=True
        )
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("the kuberesolver client did not start")
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        offset = time.time() - time.monotonic()
        for line in proc.stdout:
            words = line.split()
            if words[:1] == ["ready"]:
                self._ready.set()
            elif words[:1] == ["call"] and len(words) >= 6:
                end = int(words[2]) / 1e9 - offset
                seconds = int(words[3]) / 1e6
                ok = words[4] == "OK"
                self.recorder.add(
                    Call(end - seconds, seconds, words[5] if ok else "", "" if ok else words[4])
                )
                self.lines += 1
            elif words[:1] == ["event"] and len(words) >= 4:
                self.events.append((int(words[1]) / 1e9 - offset, words[2], int(words[3])))
            elif words[:1] == ["change"] and len(words) >= 3:
                addresses = set(words[2].split(",")) - {"-"}
                self.changes.append((int(words[1]) / 1e9 - offset, addresses))

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> GoClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    found, reason = build()
    print(found if found is not None else f"kuberesolver client not built: {reason}")
    sys.exit(0 if found is not None else 1)
