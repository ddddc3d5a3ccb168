"""The layers of docs/ARCHITECTURE.md, kept: who may import whom, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

SHIM = Path(__file__).resolve().parents[2] / "shim"
FLOWS = ("run", "build", "compose", "images")
# layer -> layers it may import (function-level imports count too). A package not named
# here (a new one: shim/images/, ...) is checked as a flow: it may import core and itself,
# and cli and hot may import it.
ALLOWED = {
    "core": {"core"},
    "run": {"core", "run", "images"},  # images: its public pulls through the host's caches
    "build": {"core", "build", "images"},
    "compose": {"core", "run", "build", "compose", "images"},
    "images": {"core", "images"},
    "cli": {"core", "run", "build", "compose", "images", "cli", "hot"},
    "hot": {"core", "run", "build", "compose", "images"},  # the entry: a flow only when its command is seen
}


def packages(root: Path) -> set[str]:
    return {p.parent.name for p in root.glob("*/__init__.py")}


def allowed(root: Path) -> dict[str, set[str]]:
    new = packages(root) - set(ALLOWED)
    rules = {k: set(v) | (new if k in ("cli", "hot") else set()) for k, v in ALLOWED.items()}
    return {**rules, **{pkg: {"core", pkg} for pkg in new}}


def flows(root: Path) -> set[str]:
    return set(FLOWS) | (packages(root) - set(ALLOWED))


def layer_of(rel: Path) -> str:
    if rel.parts == ("__main__.py",):
        return "cli"  # `python -m shim` is the management CLI
    return rel.parts[0] if len(rel.parts) > 1 else "hot"  # hot.py, __init__.py


def module_name(rel: Path) -> str:
    return ".".join(("shim", *rel.with_suffix("").parts)).removesuffix(".__init__")


def imports(path: Path, rel: Path | None = None) -> list[tuple[str, tuple[str, ...], bool]]:
    """(module, names, at module level) for every `shim.*` import in a file, relative ones
    (`from .limits import x`, `from . import x`) resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    package = module_name(rel).split(".") if rel is not None else ["shim"]
    if rel is not None and rel.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module.split(".")[0] != "shim":
                continue
            names = tuple(a.name for a in node.names)
            if module == "shim":  # `from shim import x`: x is a module
                out += [(f"shim.{n}", (), id(node) in top) for n in names]
            else:  # `from . import x` names modules too: module_graph keeps module.x where it is one
                out.append((module, names, id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, (), id(node) in top) for a in node.names if a.name.split(".")[0] == "shim"]
    return out


def violations(root: Path) -> list[str]:
    found = []
    rules, flow = allowed(root), flows(root)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        mine = layer_of(rel)
        for module, names, _top in imports(path, rel):
            parts = module.split(".")
            target = parts[1] if len(parts) > 2 or (len(parts) == 2 and (root / parts[1]).is_dir()) else "hot"
            if target not in rules[mine]:
                found.append(f"{rel}: {mine} imports {module}")
            elif target in flow and target != mine and mine in flow:
                private = [n for n in names if n.startswith("_")]
                if private:
                    found.append(f"{rel}: {mine} imports private {module}.{', '.join(private)}")
    return found


def module_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules it imports, at module level or inside a function: a lazy import
    still ties the two modules into one (it only moves the failure to a later call)."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        name = module_name(rel)
        graph[name] = set()
        for module, names, _top in imports(path, rel):
            graph[name].add(module)
            graph[name] |= {f"{module}.{n}" for n in names}
    return {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, one per strongly connected group of modules (Tarjan), each shown
    as one path around it (first module repeated at the end)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_around(graph, g) for g in sorted(groups)]


def _around(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A path from the group's first module back to it, through the group only (breadth first)."""
    start, members = group[0], set(group)
    came: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return [*group, start]


def test_every_package_imports_only_the_layers_below_it():
    assert violations(SHIM) == []


def test_there_are_no_import_circles_between_modules():
    """Module-level and function-level imports alike, in every package (a new one included)."""
    found = [" -> ".join(c) for c in cycles(module_graph(SHIM))]
    assert found == [], "import circles:\n" + "\n".join(found)


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
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("from shim.core import b\n")
    (tmp_path / "core" / "b.py").write_text("from shim.core.a import x\n")
    assert cycles(module_graph(tmp_path)) == [["shim.core.a", "shim.core.b", "shim.core.a"]]


def test_the_cycle_check_finds_lazy_and_relative_circles_in_a_new_package(tmp_path):
    """cli's old cachecmd<->limits shape: `from .x import y` inside a function, in a package
    the layer table does not name (as shim/images/ was when it came)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "__init__.py").write_text("")
    (tmp_path / "images" / "cmd.py").write_text("from .limits import trim\ndef _remove():\n    pass\n")
    (tmp_path / "images" / "limits.py").write_text("def trim():\n    from .cmd import _remove\n")
    (tmp_path / "images" / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "images" / "b.py").write_text("def g():\n    import shim.images.c\n")
    (tmp_path / "images" / "c.py").write_text("from shim.images.a import f\n")
    assert cycles(module_graph(tmp_path)) == [["shim.images.a", "shim.images.b", "shim.images.c", "shim.images.a"],
                                              ["shim.images.cmd", "shim.images.limits", "shim.images.cmd"]]


def test_a_new_package_is_held_to_the_flow_rules(tmp_path):
    for pkg in ("core", "run", "images"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "images" / "pull.py").write_text("from ..run import plan\nfrom shim.core import proc\n")
    (tmp_path / "core" / "x.py").write_text("def f():\n    from shim.images import pull\n")
    found = violations(tmp_path)
    assert "images/pull.py: images imports shim.run" in found or any("images imports shim.run" in v for v in found)
    assert any("core/x.py: core imports shim.images" in v for v in found)
    assert not any("shim.core" in v and "images/pull.py" in v for v in found)
