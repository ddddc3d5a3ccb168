"""Find the real docker: DOCKCACHE_REAL_DOCKER wins, else PATH minus dockcache launchers.

Mirrors bin/docker (which does the same in sh on the hot path) for `doctor` and for
direct `python -m shim` use. A launcher is recognised by its marker line, symlinks
resolved, so two installs on PATH can never exec each other in a loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

MARKER = "# dockcache-launcher"


def is_launcher(path: str) -> bool:
    try:
        with open(os.path.realpath(path), "rb") as fh:
            head = fh.read(256).split(b"\n")
    except OSError:
        return False
    return len(head) > 1 and head[1].decode("latin-1").strip() == MARKER


def find_real(name: str, environ: Mapping[str, str]) -> str | None:
    pinned = environ.get("DOCKCACHE_REAL_DOCKER")
    if name == "docker" and pinned and not is_launcher(pinned):
        return environ["DOCKCACHE_REAL_DOCKER"]
    for d in environ.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK) and not is_launcher(cand):
            return cand
    return None


def first_on_path(name: str, environ: Mapping[str, str]) -> str | None:
    for d in environ.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None
