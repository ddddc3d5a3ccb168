"""docs/run.md's managers table is the generated one, and every manager has an engine proof entry."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from shim.core.managers import MANAGERS

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("manager_table", REPO / "scripts" / "manager_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TOOL = _tool()
PROOFS = TOOL.load_proofs()


def test_the_pages_table_is_the_generated_one():
    page = (REPO / "docs" / "run.md").read_text(encoding="utf-8")
    assert TOOL.START in page and TOOL.END in page
    assert TOOL.replaced(page, TOOL.table()) == page, "re-run: python3 scripts/manager_table.py --write (docs/run.md)"


def test_every_manager_has_a_proof_entry_and_no_other():
    assert set(PROOFS) == {m.name for m in MANAGERS}


def _tests_in(rel: str) -> set[str]:
    tree = ast.parse((REPO / rel).read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


@pytest.mark.parametrize("name", sorted(PROOFS))
def test_named_engine_tests_exist(name):
    for ref in PROOFS[name].get("tests", ()):
        path, _, func = ref.partition("::")
        assert func in _tests_in(path), f"{name}: {ref} not found"


def test_proven_rows_name_a_test_and_unproven_rows_say_why():
    for name, proof in PROOFS.items():
        assert proof.get("tests") or "no client" in proof["how"], name


def test_table_row_uses_the_managers_own_variables():
    row = TOOL.row(next(m for m in MANAGERS if m.name == "go"), {"how": "x", "tests": []})
    assert "`GOMODCACHE=/dockcache/go/mod`" in row and "`GOCACHE=/dockcache/go/build`" in row
