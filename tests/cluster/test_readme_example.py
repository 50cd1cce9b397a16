"""The README's ControlPlane example runs as written (with root: its pod serves)."""

from __future__ import annotations

import re
from pathlib import Path

from dnsbalance.testing import ControlPlane

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_example_runs_and_its_pod_answers(cluster: ControlPlane) -> None:
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", README, re.DOTALL)
                   if "ControlPlane()" in s)  # fmt: skip
    placeholder = re.search(r"^( +)\.\.\.  # calls reach.*$", snippet, re.MULTILINE)
    assert placeholder is not None
    indent = placeholder.group(1)
    check = (
        f"{indent}from tests.kits.backends import demo_pb2, demo_pb2_grpc\n"
        f"{indent}stub = demo_pb2_grpc.DemoServiceStub(channel)\n"
        f"{indent}reply = stub.Demo(demo_pb2.Empty(), timeout=10)\n"
        f"{indent}answers.append(reply.value)"
    )
    answers: list[str] = []
    namespace: dict[str, object] = {"answers": answers}
    exec(snippet.replace(placeholder.group(0), check), namespace)
    assert answers == [f"greeter-1.{namespace['ns']}"]
