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


# ---- layers: which package may import Ray, torch, and which layer ---------------------
# (package prefix, may import ray, may import torch (True, False, or the modules that may),
#  layers of clul_ray it must not import)
LAYERS = [
    ("clul_ray.storage", False, False, ("clul_ray.sisa",)),
    ("clul_ray.sisa.decisions", False, False, ("clul_ray.sisa.compute", "clul_ray.sisa.driver")),
    ("clul_ray.sisa.records", False, ("clul_ray.sisa.records.checkpoint",),
     ("clul_ray.sisa.compute", "clul_ray.sisa.driver")),
    ("clul_ray.sisa.compute", True, True, ("clul_ray.sisa.driver",)),
    ("clul_ray.sisa.driver", False, False, ()),
    ("clul_ray.audit.epsilon", False, False, ()),
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(
        ".__init__")


def layer_violations(path: Path, names: set[str]) -> list[str]:
    """What ``path``'s imports (``names``, absolute) break of :data:`LAYERS`."""
    me = module_name(path)
    out = []
    for prefix, ray_ok, torch_ok, below in LAYERS:
        if me != prefix and not me.startswith(prefix + "."):
            continue
        for n in sorted(names):
            top = n.split(".")[0]
            if top == "ray" and not ray_ok:
                out.append(f"{me} imports {n} (no Ray in {prefix})")
            if top == "torch" and not (torch_ok is True or me in (torch_ok or ())):
                out.append(f"{me} imports {n} (no torch in {prefix})")
            if any(n == b or n.startswith(b + ".") for b in below):
                out.append(f"{me} imports {n} (a layer above {prefix})")
    return out


def test_each_layer_imports_only_what_it_may():
    """storage knows nothing of SISA; the pure decisions, the records and the request path
    import no Ray (the compute layer is the edge), and only the compute layer and the
    checkpoint records import torch; no layer imports one above it."""
    bad = [v for f in sorted(PKG.rglob("*.py")) for v in layer_violations(f, imports(f))]
    assert bad == []


def test_the_layer_check_finds_a_violation(tmp_path):
    fake = PKG / "sisa" / "decisions" / "plan.py"
    assert layer_violations(fake, {"ray", "numpy"}) == [
        "clul_ray.sisa.decisions.plan imports ray (no Ray in clul_ray.sisa.decisions)"]
    assert layer_violations(PKG / "storage" / "store.py", {"clul_ray.sisa.records.version"})
    assert not layer_violations(PKG / "sisa" / "records" / "checkpoint.py", {"torch"})
    assert layer_violations(PKG / "sisa" / "records" / "ledger.py", {"torch"})


def test_sisa_is_split_into_its_layers():
    flat = sorted(p.name for p in (PKG / "sisa").glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"modules outside the layers: {flat}"
