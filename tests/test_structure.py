"""The package's shape: no import cycle between its sub-packages and top-level modules,
and no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.pure

PKG = Path(__file__).resolve().parents[1] / "clul_ray"
MAX_LINES = 400


def unit_of(module: str) -> str | None:
    """``clul_ray.sisa.plan`` -> ``sisa``; the package's own ``__init__`` has none."""
    parts = module.split(".")
    return parts[1] if parts[0] == "clul_ray" and len(parts) > 1 else None


def imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    module = ".".join(rel.parts).removesuffix(".__init__")
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                out.add(stem)
                out.update(f"{stem}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
    return out


def graph() -> dict[str, set[str]]:
    units = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    edges: dict[str, set[str]] = {u: set() for u in units}
    for f in PKG.rglob("*.py"):
        me = unit_of(".".join(f.relative_to(PKG.parent).with_suffix("").parts))
        if me is None or me == "__init__":
            continue
        for name in imports(f):
            u = unit_of(name)
            if u in units and u != me:
                edges[me].add(u)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_subpackages():
    edges = graph()
    assert "lineage" not in edges["sisa"] and "cli" not in edges["sisa"]
    assert cycles(edges) == []


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_400_lines():
    big = {str(f.relative_to(PKG.parent)): n for f in PKG.rglob("*.py")
           if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert big == {}
