"""One control-plane component: a child process with its own log file, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .assets import ControlPlaneError

_TAIL_LINES = 30
_STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the component binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Component:
    """``argv`` started in its own session, stdout and stderr to ``log``.

    :meth:`check` raises :class:`ControlPlaneError` with the log's tail once the
    process has exited; :meth:`stop` sends SIGTERM, then SIGKILL after 5 s, to this
    process's PID only.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        try:
            self._process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only the tests
            )
        except OSError as exc:
            self._log_file.close()
            raise ControlPlaneError(f"cannot start {name}: {exc}", component=name) from exc

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def tail(self, lines: int = _TAIL_LINES) -> str:
        """The last ``lines`` lines of the log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        """Raise when the process has exited."""
        code = self._process.poll()
        if code is not None:
            raise ControlPlaneError(
                f"{self.name} exited with status {code}; the end of its log ({self.log}):\n"
                f"{self.tail()}",
                component=self.name,
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; idempotent."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._process.pid, signal.SIGKILL)
                self._process.wait(_STOP_GRACE)
        self._log_file.close()


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    components: Sequence[Component] = (),
    interval: float = 0.05,
) -> float:
    """Call ``ready`` until it is true (returns the seconds it took); each round first
    checks that ``components`` still run. Raises :class:`ControlPlaneError` after
    ``timeout`` seconds, with the logs' tails."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        for component in components:
            component.check()
        if ready():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {c.name} ({c.log}):\n{c.tail()}" for c in components)
            raise ControlPlaneError(f"{what}: not ready after {timeout:.0f} s{tails}")
        time.sleep(interval)
