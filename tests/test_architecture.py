"""The layout ARCHITECTURE.md describes, held true: the stages import each other
without cycles, the library never imports the CLI or the test kits, and no module
grows past what one reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dnsbalance"
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(path: Path) -> str:
    """The unit a module belongs to: its folder under dnsbalance/, or the module."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _runtime_imports(path: Path) -> set[str]:
    """dnsbalance modules ``path`` imports when it runs (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = ["dnsbalance", *path.relative_to(PACKAGE).with_suffix("").parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        if module == "dnsbalance" or module.startswith("dnsbalance."):
            names = [f"{module}.{a.name}" for a in node.names] if node.module is None else []
            found.update(names or [module])
    return found


def _unit_of_module(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        unit = _unit(path)
        if unit in ("__init__", "__main__"):
            continue
        for module in _runtime_imports(path):
            other = _unit_of_module(module)
            if other is not None and other != unit:
                graph.setdefault(unit, set()).add(other)
    return graph


def test_stages_import_each_other_without_cycles() -> None:
    graph = _graph()
    state: dict[str, str] = {}

    def visit(unit: str, path: list[str]) -> None:
        if state.get(unit) == "done":
            return
        assert state.get(unit) != "open", "import cycle: " + " -> ".join([*path, unit])
        state[unit] = "open"
        for other in sorted(graph.get(unit, ())):
            visit(other, [*path, unit])
        state[unit] = "done"

    for unit in sorted(graph):
        visit(unit, [])


def test_the_library_never_imports_the_cli_or_the_test_kits() -> None:
    graph = _graph()
    library = {u for u in graph if u not in ("cli", "testing")}
    for unit in library:
        assert not graph[unit] & {"cli", "testing"}, unit
    assert "cli" not in graph.get("testing", set())


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_500_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_architecture_md_names_every_module() -> None:
    """A module ARCHITECTURE.md does not mention is a room missing from the map."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    named = {word.strip("`").removesuffix(".py").split("/")[-1] for word in text.split("`")}
    missing = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if path.stem not in ("__init__", "__main__", "_version") and path.stem not in named
    ]
    assert missing == []
