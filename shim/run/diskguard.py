"""The disk-space guard: a nearly full filesystem gets no new caches.

When the filesystem that would hold a new cache (the bind root, or the daemon's data root
where this host can see it) has less than `run.min_free` bytes or `run.min_free_percent`
of its size free, the run flow creates no new cache dir or volume; caches that exist are
still mounted (they only grow as the tools use them). It says so in one line, once: the
fact is remembered in the state dir until space is back.
"""

from __future__ import annotations

import os

REMEMBER_ROOT = 7 * 24 * 3600.0  # the daemon's data root, asked once (one `docker info`)


def low_space(path: str, min_free: int, min_percent: float) -> str | None:
    """Why the filesystem holding `path` (or its nearest existing parent) is nearly full."""
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        probe = "" if parent == probe else parent
    try:
        st = os.statvfs(probe or "/")
    except OSError:
        return None  # cannot tell: fail open
    free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    if size <= 0:
        return None
    percent = 100.0 * free / size
    if free < min_free or percent < min_percent:
        return f"{probe or '/'} has {_gib(free)} free ({percent:.1f} %)"
    return None


def _gib(n: int) -> str:
    return f"{n / 1024 ** 3:.1f} GiB"


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
            self._verdict[where] = low_space(where, self.config["run.min_free"], self.config["run.min_free_percent"])
            self._say_once(where, self._verdict[where], notes)
        return self._verdict[where] is not None

    def _say_once(self, where: str, why: str | None, notes: list[str]) -> None:
        said = self.state.get("diskguard", "host", where)
        if why is None:
            if said:
                self.state.forget("diskguard", "host", where)  # space is back: say it again next time
            return
        if not said:
            notes.append(f"disk nearly full ({why}; run.min_free {_gib(self.config['run.min_free'])}, "
                         f"{self.config['run.min_free_percent']:g} %): no new caches until space is freed "
                         "(existing ones are still used; `dockcache cache prune`)")
            self.state.put("diskguard", "host", where, {"why": why})

    def _data_root(self) -> str:
        known = self.state.get("dataroot", self.daemon, "root", max_age=REMEMBER_ROOT)
        if known is None:
            res = self.docker("info", "--format", "{{.DockerRootDir}}", timeout=20)
            root = res.stdout.strip() if res.returncode == 0 else ""
            known = {"root": root if root.startswith("/") and os.path.isdir(root) else ""}
            self.state.put("dataroot", self.daemon, "root", known)
        return known.get("root", "")
