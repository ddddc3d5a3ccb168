"""`doctor`'s view of the caches: every cache with its size, flagged when a cheap check
fails (an unreadable directory, a zero-length file in a content-addressed store: a write
that never finished), plus the disk-space guard. The full check is `cache verify`.
"""

from __future__ import annotations

import os
from pathlib import Path

from shim.core.managers import VERIFY

from .context import Ctx
from .inventory import all_rows
from .output import human_size

SCAN_LIMIT = 50_000  # files looked at per cache: doctor stays quick on big caches


def cache_checks(ctx: Ctx, cfg, reachable: bool, check) -> None:
    try:
        rows = all_rows(ctx, include_missing=False, need_engine=reachable)
    except RuntimeError as exc:
        check("caches", "not listed", str(exc), "see the engine check above")
        return
    places = _mountpoints(ctx, [r.name for r in rows if r.kind == "volume"]) if reachable else {}
    for r in rows:
        if r.kind in ("build-key", "registry-key"):
            check(f"cache {r.name}", f"{r.kind}, {human_size(r.size)}")
            continue
        path = r.name if r.kind == "bind" else places.get(r.name, "")
        problem = cheap_problem(path, r.manager) if path and os.path.isdir(path) else None
        seen = "" if path and os.path.isdir(path) else "; contents not visible here"
        check(f"cache {r.name}", f"{r.manager}, {human_size(r.size)}{seen}", problem,
              f"dockcache cache verify --{r.manager} --repair")
    _disk_check(ctx, cfg, check)


def cheap_problem(path: str, manager: str) -> str | None:
    """Why a cache looks broken without running its tool, or None."""
    if not os.access(path, os.R_OK | os.X_OK):
        return f"{path} is not readable by this user"
    spec = VERIFY.get(manager)
    seen = 0
    for pattern in spec.store_globs if spec else ():
        try:
            for f in Path(path).glob(pattern):
                seen += 1
                if seen > SCAN_LIMIT:
                    return None
                if f.is_file() and f.stat().st_size == 0:
                    return f"zero-length {f.relative_to(path)} in its content store (an interrupted write)"
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
    return None


def _mountpoints(ctx: Ctx, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    res = ctx.docker("volume", "inspect", "--format", "{{.Name}}\t{{.Mountpoint}}", *names)
    return dict(ln.split("\t", 1) for ln in res.stdout.splitlines() if "\t" in ln)


def _disk_check(ctx: Ctx, cfg, check) -> None:
    from shim.core.diskspace import low_space

    where = [cfg["run.bind_root"], str(ctx.store_root)]
    root = (ctx.state.get("dataroot", ctx.daemon, "root") or {}).get("root")
    where += [root] if root else []
    low = [w for w in (low_space(p, cfg["run.min_free"], cfg["run.min_free_percent"]) for p in where) if w]
    check("disk space for caches", "; ".join(low) or "enough (run.min_free, run.min_free_percent)",
          f"nearly full: no new caches are made ({low[0]})" if low else None,
          "free space or run `dockcache cache prune` (with run.max_size set)")
