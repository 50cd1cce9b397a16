"""convert-service -f with bad files: unreadable, binary, empty, huge, and a Service with
100 ports. A clear message and the documented exit code (0 ok, 1 failed, 2 refused or
bad usage), never a traceback."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.kits.reliability import measured, validate

REPO = Path(__file__).resolve().parents[2]


def convert_file(path: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsbalance", "convert-service", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


SERVICE_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: app
spec:
  selector:
    app: web
  ports:
"""


def assert_clear_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-1000:])
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("dnsbalance: error: "), result.stderr[-1000:]
    for word in words:
        assert word in result.stderr, result.stderr


def test_cli_unreadable_files(tmp_path: Path) -> None:
    missing = convert_file(tmp_path / "missing.yaml")
    assert_clear_error(missing, 2, "cannot read", "missing.yaml")
    directory = convert_file(tmp_path)
    assert_clear_error(directory, 2, "cannot read", "Is a directory")
    invalid_utf8 = tmp_path / "latin1.yaml"
    invalid_utf8.write_bytes(b"kind: Service\nname: caf\xe9\n")
    assert_clear_error(convert_file(invalid_utf8), 2, "cannot read", "utf-8")
    unreadable = tmp_path / "secret.yaml"
    unreadable.write_text(SERVICE_YAML)
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        assert_clear_error(convert_file(unreadable), 2, "cannot read", "Permission denied")


def test_cli_binary_file(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(random.Random(1).randbytes(4096))
    assert_clear_error(convert_file(noise), 2, "cannot read")
    elf = tmp_path / "program"
    elf.write_bytes(Path(sys.executable).read_bytes()[:8192])
    assert_clear_error(convert_file(elf), 2, "cannot read")


def test_cli_binary_file_that_is_valid_utf8(tmp_path: Path) -> None:
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"\x00\x01\x02 binary but valid UTF-8")
    assert_clear_error(convert_file(nul), 2, "nul.yaml")


def test_cli_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = convert_file(empty)
    assert result.returncode in (0, 2)
    assert "Traceback" not in result.stderr
    assert "empty.yaml" in result.stderr  # says what it made of the file


def test_cli_huge_file(tmp_path: Path) -> None:
    """10 MB: a Service followed by 10 MB of comments. Converted, in bounded time."""
    huge = tmp_path / "huge.yaml"
    service = SERVICE_YAML + "  - {name: grpc, port: 80, targetPort: 8000}\n"
    with huge.open("w") as out:
        out.write(service)
        line = "# " + "x" * 1022 + "\n"
        for _ in range(10 * 1024):
            out.write(line)
    assert huge.stat().st_size >= 10 * 1024 * 1024
    started = time.monotonic()
    result = convert_file(huge)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-1000:]
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in documents] == ["web", "web-headless"]
    validate(documents[1])
    measured("CLI: 10 MB file", f"converted, exit 0, {elapsed:.1f} s", "n/a")


def test_cli_service_with_100_ports(tmp_path: Path) -> None:
    manifest = tmp_path / "ports.yaml"
    lines = [f"  - {{name: p{i}, port: {1000 + i}, targetPort: {2000 + i}}}" for i in range(100)]
    manifest.write_text(SERVICE_YAML + "\n".join(lines) + "\n")
    result = convert_file(manifest)
    assert result.returncode == 0, result.stderr[-1000:]
    twin = list(yaml.safe_load_all(result.stdout))[1]
    assert len(twin["spec"]["ports"]) == 100
    validate(twin)
    # Two ports with one name: refused with the field named, exit 2.
    lines.append("  - {name: p0, port: 9999}")
    manifest.write_text(SERVICE_YAML + "\n".join(lines) + "\n")
    assert_clear_error(convert_file(manifest), 2, "ports")
