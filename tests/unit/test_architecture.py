"""The layers of docs/ARCHITECTURE.md, kept: who may import whom, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

SHIM = Path(__file__).resolve().parents[2] / "shim"
FLOWS = ("run", "build", "compose")
# layer -> layers it may import (function-level imports count too)
ALLOWED = {
    "core": {"core"},
    "run": {"core", "run"},
    "build": {"core", "build"},
    "compose": {"core", "run", "build", "compose"},
    "cli": {"core", "run", "build", "compose", "cli", "hot"},
    "hot": {"core", "run", "build", "compose"},  # the entry: a flow only when its command is seen
}


def layer_of(rel: Path) -> str:
    if rel.parts == ("__main__.py",):
        return "cli"  # `python -m shim` is the management CLI
    return rel.parts[0] if len(rel.parts) > 1 else "hot"  # hot.py, __init__.py


def imports(path: Path) -> list[tuple[str, tuple[str, ...], bool]]:
    """(module, names, at module level) for every `shim.*` import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "shim":
            names = tuple(a.name for a in node.names)
            if node.module == "shim":  # `from shim import x`: x is a module
                out += [(f"shim.{n}", (), id(node) in top) for n in names]
            else:
                out.append((node.module, names, id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, (), id(node) in top) for a in node.names if a.name.split(".")[0] == "shim"]
    return out


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        mine = layer_of(rel)
        for module, names, _top in imports(path):
            parts = module.split(".")
            target = parts[1] if len(parts) > 2 or (len(parts) == 2 and (root / parts[1]).is_dir()) else "hot"
            if target not in ALLOWED[mine]:
                found.append(f"{rel}: {mine} imports {module}")
            elif target in FLOWS and target != mine and mine in FLOWS:
                private = [n for n in names if n.startswith("_")]
                if private:
                    found.append(f"{rel}: {mine} imports private {module}.{', '.join(private)}")
    return found


def module_graph(root: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = ".".join(("shim", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        graph[name] = set()
        for module, names, top in imports(path):
            if not top:
                continue  # a function-level import runs after every module is loaded
            graph[name].add(module)
            graph[name] |= {f"{module}.{n}" for n in names}
    return {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_package_imports_only_the_layers_below_it():
    assert violations(SHIM) == []


def test_there_are_no_module_level_import_cycles():
    assert cycles(module_graph(SHIM)) == []


def test_the_check_fails_on_a_planted_violation(tmp_path):
    """core importing a flow, a flow importing another flow, a private name across flows."""
    for pkg in ("core", "run", "build", "compose"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "core" / "config.py").write_text("from shim.run.plan import plan_run\n")
    (tmp_path / "build" / "key.py").write_text("def f():\n    from shim.run import detect\n")
    (tmp_path / "compose" / "plan.py").write_text("from shim.build.command import _build\n")
    found = violations(tmp_path)
    assert any("core/config.py: core imports shim.run.plan" in v for v in found)
    assert any("build/key.py: build imports shim.run" in v for v in found)
    assert any("imports private shim.build.command._build" in v for v in found)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text("from shim.core import b\n")
    (tmp_path / "core" / "b.py").write_text("from shim.core.a import x\n")
    assert cycles(module_graph(tmp_path))
