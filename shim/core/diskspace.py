"""Is the filesystem that would hold a new cache nearly full? (`run.min_free`,
`run.min_free_percent`). Used by the run flow (no new cache dirs or volumes) and the build
flow (no new keys in the store); the line saying so is said once, until space is back.
"""

from __future__ import annotations

import os


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
        return f"{probe or '/'} has {size_text(free)} free of {size_text(size)} ({percent:.1f} %)"
    return None


def gib(n: int) -> str:
    return f"{n / 1024 ** 3:.1f} GiB"


def size_text(n: int) -> str:
    """GiB, or MiB below one (a small filesystem's "0.0 GiB" said nothing)."""
    return gib(n) if n >= 1024 ** 3 else f"{n / 1024 ** 2:.0f} MiB"


def verdict(state, config, where: str) -> tuple[str | None, str | None]:
    """(why it is low or None, the one line to say now or None): the line only the first time
    (remembered in the state dir); space back forgets it, so a new shortage is said again."""
    why = low_space(where, config["run.min_free"], config["run.min_free_percent"])
    said = state.get("diskguard", "host", where)
    if why is None:
        if said:
            state.forget("diskguard", "host", where)
        return None, None
    if said:
        return why, None
    state.put("diskguard", "host", where, {"why": why})
    return why, (f"disk nearly full ({why}; run.min_free {gib(config['run.min_free'])}, "
                 f"{config['run.min_free_percent']:g} %): no new caches until space is freed "
                 "(existing ones are still used; `dockcache cache prune`)")
