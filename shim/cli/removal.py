"""Removing one cache, for `cache clear`, `cache prune` (size limits) and `cache verify --repair`."""

from __future__ import annotations

from shim.build.store.cachestore import CacheStore

from .context import Ctx
from .output import CliError
from .rows import CacheRow


def remove(ctx: Ctx, row: CacheRow) -> bool:
    """Remove one cache (volume, bind dir, build key or mount); False when docker refused."""
    if row.kind == "bind":
        return _remove_dir(ctx, row)
    if row.kind == "build-mount":
        from shim.build.mounts.store import MountStore
        MountStore(CacheStore(ctx.store_root)).drop([row.name.split(":", 1)[1]])
        ctx.audit("clear", f"build:{row.name}", bytes=row.size)
        return True
    if row.kind == "build-key":
        CacheStore(ctx.store_root).drop_keys([row.name])
        ctx.audit("clear", f"build:{row.name}", bytes=row.size)
        return True
    res = ctx.docker("volume", "rm", row.name)
    if res.returncode == 0:
        ctx.state.forget("volumes", ctx.daemon, row.name)
        ctx.audit("clear", row.name, bytes=row.size)
    return res.returncode == 0


def _remove_dir(ctx: Ctx, row: CacheRow) -> bool:
    import shutil

    problems: list[str] = []
    shutil.rmtree(row.name, onerror=lambda _f, path, exc: problems.append(f"{path}: {exc[1]}"))
    if problems:
        raise CliError(f"could not remove all of {row.name} ({problems[0]}); files a root container "
                       "wrote need `sudo rm -rf` on the host")
    ctx.audit("clear", row.name, bytes=row.size)
    return True
