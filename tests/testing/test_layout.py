"""The package's layout rules, checked from the source (ast): what a module may import
from another, and that the production DNS server carries no test knobs."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import dnsbalance
from dnsbalance._channel.zone_server import ZoneResponder

PACKAGE = Path(dnsbalance.__file__).parent
FAULT_KNOBS = ("fail_rcode", "delay", "drop", "additional", "queries")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path) -> Iterator[tuple[str, str, int]]:
    """(module imported from, name imported, line) for every ``from X import a`` in the
    module, at any depth (lazy imports in functions too)."""
    package = _package_of(name, path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        if source == "dnsbalance" or source.startswith("dnsbalance."):
            for alias in node.names:
                yield source, alias.name, node.lineno


def _declared_all(path: Path) -> list[str] | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = ast.literal_eval(node.value)  # type: ignore[union-attr]
            return list(value)
    return None


def test_private_modules_are_imported_only_inside_their_package() -> None:
    """``dnsbalance.testing._backend`` is private to ``dnsbalance.testing``: the CLI may
    not import from it (a private module is visible in the package that holds it and in
    that package's subpackages)."""
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        importer = _package_of(name, path)
        for source, imported, line in _imports(name, path):
            parts = source.split(".")
            for depth, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:depth])
                    if not (importer == owner or importer.startswith(owner + ".")):
                        wrong.append(f"{path.relative_to(PACKAGE)}:{line}: {source}.{imported}")
                    break
    assert wrong == []


def test_all_lists_every_name_siblings_import() -> None:
    """A module that keeps ``__all__`` lists every name another dnsbalance module imports
    from it (``__all__`` says what the module offers; an import of an unlisted name means
    the list is wrong or the import reaches into internals)."""
    modules = _modules()
    declared = {name: _declared_all(path) for name, path in modules.items()}
    missing = []
    for name, path in modules.items():
        for source, imported, line in _imports(name, path):
            offered = declared.get(source)
            if offered is None or source not in modules or imported == "*":
                continue
            if f"{source}.{imported}" in modules:  # a submodule, not a name
                continue
            if imported not in offered:
                missing.append(f"{path.relative_to(PACKAGE)}:{line}: {source}.{imported}")
    assert missing == []


def test_the_production_zone_server_has_no_fault_knobs() -> None:
    server = ZoneResponder("cluster.local")
    assert [k for k in FAULT_KNOBS if hasattr(server, k)] == []
    assert [k for k in FAULT_KNOBS if k in ZoneResponder.__dict__] == []
