"""The disk-space guard: a nearly full filesystem gets no new caches.

When the filesystem that would hold a new cache (the bind root, or the daemon's data root
where this host can see it) has less than `run.min_free` bytes or `run.min_free_percent`
of its size free, the run flow creates no new cache dir or volume; caches that exist are
still mounted (they only grow as the tools use them). It says so in one line, once: the
fact is remembered in the state dir until space is back.
"""

from __future__ import annotations

import os

from shim.core.diskspace import verdict

REMEMBER_ROOT = 7 * 24 * 3600.0  # the daemon's data root, asked once (one `docker info`)


class Guard:
    """Asked once per new cache of one run; decides lazily (no statvfs when nothing is new)."""

    def __init__(self, state, daemon: str, config, docker):
        self.state, self.daemon, self.config, self.docker = state, daemon, config, docker
        self._verdict: dict[str, str | None] = {}

    def blocks(self, kind: str, notes: list[str]) -> bool:
        """True when a new cache of this kind ("bind" | "volume") must not be made now."""
        where = self.config["run.bind_root"] if kind == "bind" else self._data_root()
        if not where:
            return False  # the daemon's disk is not visible from here: nothing to judge
        if where not in self._verdict:
            why, line = verdict(self.state, self.config, where)
            self._verdict[where] = why
            notes += [line] if line else []
        return self._verdict[where] is not None

    def _data_root(self) -> str:
        known = self.state.get("dataroot", self.daemon, "root", max_age=REMEMBER_ROOT)
        if known is None:
            res = self.docker("info", "--format", "{{.DockerRootDir}}", timeout=20)
            root = res.stdout.strip() if res.returncode == 0 else ""
            known = {"root": root if root.startswith("/") and os.path.isdir(root) else ""}
            self.state.put("dataroot", self.daemon, "root", known)
        return known.get("root", "")
