"""The host's image caches as `dockcache images up` left them: one index file under the
images root, read on the hot path (one open; nothing when the root has no index).

`ROOT/caches.json` maps each upstream registry to its cache: address, pid, config file.
A cache counts as up while its pid runs with that config on its command line (a stat and
one read in /proc: no network on the hot path; a cache that stopped answering costs the
pull one failed request, then the engine pulls directly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

INDEX = "caches.json"


def index_path(root: str) -> str:
    return os.path.join(root, INDEX)


def read_index(root: str) -> dict[str, dict]:
    """registry -> entry, as written by `images up`; {} when there is none."""
    try:
        with open(index_path(root), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    caches = data.get("caches") if isinstance(data, dict) else None
    return {k: v for k, v in caches.items() if isinstance(v, dict)} if isinstance(caches, dict) else {}


def write_index(root: str, caches: Mapping[str, dict]) -> None:
    from shim.core.state import atomic_write

    atomic_write(index_path(root), json.dumps({"caches": dict(caches)}, indent=1).encode(), mode=0o644)


def running(entry: Mapping) -> bool:
    """The entry's registry process still runs on its own config."""
    try:
        pid = int(entry.get("pid") or 0)
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except (OSError, ValueError, TypeError):
        return False
    return pid > 0 and str(entry.get("config", "")).encode() in cmdline


def up(root: str) -> dict[str, dict]:
    """registry -> entry (its `address` HOST:PORT, its `dir`) of each cache that is up."""
    return {reg: e for reg, e in read_index(root).items() if e.get("address") and running(e)}
