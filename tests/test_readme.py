"""The README's promises about itself: every Python snippet compiles, its imports import,
every name it uses is imported or defined in the snippet, and the ``resolve_channel``
signature it shows is the real one with a table row per argument."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

import dnsbalance

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_compiles_imports_and_names_what_it_uses(
    snippet: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = ast.parse(snippet)
    compile(tree, "README.md", "exec")
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "demo"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
    known = bound_names(tree) | set(dir(builtins))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used <= known, f"used but never imported or defined: {sorted(used - known)}"


def test_the_signature_shown_is_the_real_one() -> None:
    shown = re.search(r"`resolve_channel\((target, \*,.*?)\)`", README, flags=re.DOTALL)
    assert shown is not None
    real = inspect.signature(dnsbalance.resolve_channel)
    keywords = [p for p in real.parameters.values() if p.name != "target"]
    assert [part.strip() for part in " ".join(shown.group(1).split()).split(",")] == [
        "target",
        "*",
        *(f"{p.name}={p.default!r}".replace("'", '"') for p in keywords),
    ]
    for name in real.parameters:
        assert re.search(rf"^\| `[^|]*\b{name}\b", README, flags=re.MULTILINE), name


def test_supported_python_and_license_are_stated() -> None:
    assert "Requires Python 3.11 or newer" in README
    assert "grpcio >= 1.63" in README
    assert "[LICENSE](LICENSE)" in README
    assert (ROOT / "CHANGELOG.md").is_file()
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert sys.version_info >= (3, 11)


def test_the_namespace_rule_is_written_down() -> None:
    assert "The namespace, one rule for the library and every CLI command" in README
    # issue 22 item 8e: the target's namespace wins over namespace= and -n
    # (parse_target; tests/cli/test_main.py::test_the_targets_namespace_wins_over_n)
    assert (
        "the namespace the target names (`svc.ns`, `kubernetes://ns/svc`), which wins over "
        "`namespace=` / `-n`" in " ".join(README.split())
    )


def test_the_readme_says_what_check_needs_beyond_rbac_yaml() -> None:
    """Issue 22 item 8f: check's service and ports lines need get on services, which
    manifests/rbac.yaml does not grant (tests/cli/test_manifests.py pins its rules)."""
    text = " ".join(README.split())
    assert (
        "The `service` and `ports` lines read the Service, which takes `get` on `services`." in text
    )
    assert "`manifests/rbac.yaml` does not grant it" in text
    assert "come out `warn ... not checked`" in text
