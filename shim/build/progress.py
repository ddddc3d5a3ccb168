"""Read BuildKit's plain progress output: which steps ran and which were CACHED.

This is the only hit/miss evidence a build gives, so metrics and tests both use it.
Lines look like `#5 [2/2] RUN make`, `#5 CACHED`, `#5 DONE 0.5s`. A step whose result
BuildKit fetches from an imported (registry) cache may instead show only the blob
transfer, `#5 sha256:<digest> 178B / 178B done`: a step that ran prints its own output
as `#5 0.123 …` (a timestamp first), so a bare digest transfer means a cache hit.
"""

from __future__ import annotations

import re
from shim.core.records import dataclass

_LINE = re.compile(r"^#(\d+) (.*)$")
_FETCH = re.compile(r"^(extracting )?sha256:[0-9a-f]{64}\b")


@dataclass
class Step:
    id: int
    name: str = ""
    cached: bool = False
    done: bool = False


def parse_steps(text: str) -> dict[int, Step]:
    steps: dict[int, Step] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        step = steps.setdefault(int(m.group(1)), Step(int(m.group(1))))
        rest = m.group(2)
        if rest == "CACHED" or _FETCH.match(rest):
            step.cached = True
        elif rest.startswith("DONE"):
            step.done = True
        elif not step.name and rest.startswith("["):
            step.name = rest
    return steps


def build_steps(text: str) -> list[Step]:
    """Dockerfile instructions that do work (RUN/COPY/ADD), internal steps left out."""
    keep = ("RUN ", "COPY ", "ADD ")
    out = []
    for step in parse_steps(text).values():
        instr = step.name.split("] ", 1)[-1]
        if not step.name.startswith("[internal]") and instr.startswith(keep):
            out.append(step)
    return out


def counts(text: str) -> tuple[int, int]:
    """(cached, executed) among work steps."""
    steps = build_steps(text)
    cached = sum(1 for s in steps if s.cached)
    return cached, len(steps) - cached


def step_named(text: str, needle: str) -> Step | None:
    return next((s for s in parse_steps(text).values() if needle in s.name), None)
