"""docs/configuration.md's key table is the generated one, and every key says what it does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shim.core.config import ENV_KEYS, SCHEMA

REPO = Path(__file__).resolve().parents[2]
RERUN = "re-run: python3 scripts/config_table.py --write (it regenerates docs/configuration.md's key table)"


def _tool():
    spec = importlib.util.spec_from_file_location("config_table", REPO / "scripts" / "config_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TOOL = _tool()


def test_every_key_has_a_description():
    missing = TOOL.undescribed()
    assert missing == [], f"add a line to HELP in shim/core/config.py for {', '.join(missing)}, then {RERUN}"


def test_the_page_holds_the_generated_table():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert TOOL.START in page and TOOL.END in page, f"the table's markers are gone from docs/configuration.md; {RERUN}"
    assert TOOL.replaced(page, TOOL.table()) == page, f"docs/configuration.md's key table drifted from the code; {RERUN}"


def test_every_key_and_variable_is_on_the_page():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    shown = {TOOL.pattern(k) if k.startswith("managers.") else k for k in SCHEMA}
    assert all(f"`{k}`" in page for k in shown)
    assert all(f"`{var}`" in page for var in ENV_KEYS)


def test_a_new_key_without_a_description_is_named(monkeypatch):
    monkeypatch.setitem(SCHEMA, "images.nonesuch", (int, 5000))
    assert TOOL.undescribed() == ["images.nonesuch"]
