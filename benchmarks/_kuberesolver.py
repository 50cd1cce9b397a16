"""The kuberesolver contender: build the Go client in benchmarks/kuberesolver/ and run it.

The client (main.go) uses kuberesolver v3.1.1 as Debian ships it, built offline in
GOPATH mode against Debian's Go sources. One apt-get line installs what it needs::

    apt-get install -y golang-go golang-github-sercand-kuberesolver-dev golang-google-grpc-dev

:func:`build` returns the binary, or None with the reason when go or the sources are
missing (the suites then say so and leave the column out).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ._common import Call, Recorder

__all__ = ["APT_LINE", "GoClient", "build"]

SOURCE = Path(__file__).resolve().parent / "kuberesolver" / "main.go"
GOCODE = Path("/usr/share/gocode")
PACKAGES = ("golang-go", "golang-github-sercand-kuberesolver-dev", "golang-google-grpc-dev")
APT_LINE = "apt-get install -y " + " ".join(PACKAGES)
_NEEDED = ("github.com/sercand/kuberesolver", "google.golang.org/grpc")


def build(out_dir: Path | None = None) -> tuple[Path | None, str]:
    """Build the client once (into ``out_dir``, else a temporary folder): (binary, "")
    or (None, why not)."""
    go = shutil.which("go") or next(
        (p for p in ("/usr/lib/go/bin/go", "/usr/bin/go") if os.access(p, os.X_OK)), None
    )
    if go is None:
        return None, f"go not installed ({APT_LINE})"
    missing = [p for p in _NEEDED if not (GOCODE / "src" / p).is_dir()]
    if missing:
        return None, f"Go sources missing under {GOCODE}/src: {', '.join(missing)} ({APT_LINE})"
    root = Path(tempfile.mkdtemp(prefix="dnsbalance-kuberesolver-"))
    package = root / "src" / "kuberesolver-client"
    package.mkdir(parents=True)
    shutil.copy(SOURCE, package / "main.go")
    binary = (out_dir or root) / "kuberesolver-client"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{root}:{GOCODE}",
        "GOCACHE": str(root / "cache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    try:
        done = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=package,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"go build failed: {exc}"
    finally:
        shutil.rmtree(root / "cache", ignore_errors=True)
    if done.returncode != 0:
        return None, f"go build failed: {done.stderr.strip()[-2000:]}"
    return binary, ""


class GoClient:
    """One run of a Go client (v3 here, v6 from benchmarks/kuberesolver6/, which speaks
    the same protocol): its per-call lines go into ``recorder`` (times on this
    process's time.monotonic() clock). ``flags`` are added to its command line (v6's
    ``-ca-file``, ``-token-file``, ``-events``); the v6 client's watch-event lines are
    kept in ``events`` as (time.monotonic(), type, ready addresses). Stopped by closing
    its stdin."""

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
    ) -> None:
        self.recorder = recorder
        self.events: list[tuple[float, str, int]] = []
        self._argv = [
            str(binary),
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
