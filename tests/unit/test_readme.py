"""The README a newcomer reads first: short, the two commands first, CI runs its test
command, and every page it or docs/ links to exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

def commands(text: str) -> list[str]:
    """The README's commands, in order: indented code lines, comments dropped."""
    lines = [ln[4:].split("  #")[0].strip() for ln in text.splitlines() if ln.startswith("    ")]
    return [ln for ln in lines if ln and not ln.startswith(("$", "dockcache: ", '"'))]


def test_the_readme_is_short_and_starts_with_install_and_test():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert commands(text)[:2] == ["./install.sh", "tests/run"]


def test_ci_runs_the_readmes_test_command():
    test_command = commands(README.read_text(encoding="utf-8"))[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    runs = [ln for ln in ci.splitlines() if not ln.lstrip().startswith("#") and re.search(r"\btests/run\b", ln)]
    assert len(runs) == 1 and runs[0].rstrip().endswith(f" {test_command}"), runs


def _links(path: Path) -> list[tuple[str, str]]:
    return re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    heads = [ln.lstrip("#").strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_every_relative_link_in_the_readme_and_docs_exists():
    broken = []
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for link, anchor in _links(page):
            if "://" in link or link.startswith("mailto:"):
                continue
            target = (page.parent / link).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(REPO)} -> {link}")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                broken.append(f"{page.relative_to(REPO)} -> {link}#{anchor}")
    assert broken == []
