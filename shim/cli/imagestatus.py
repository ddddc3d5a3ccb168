"""`dockcache images status|prune`: what each host image cache holds and did.

Hits and misses are the registry's own counters (Distribution's proxy metrics on its
debug server's expvar page, since that registry started): blobs and manifests served from
the host's disk against those fetched for a client. A blob the shim's fill stored first
(shim/images/prefetch.py) counts as a hit when the engine then pulls it; what the cache
fetched from its upstream is its size on disk. Sizes are the
cache's storage on disk. `prune` keeps all caches together under images.max_size by
deleting the least recently used blobs: a proxy that finds a blob gone fetches it again.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

from shim.core.config import parse_size
from shim.images.caches import read_index, running

from .context import Ctx
from .imagescmd import answers, root_of
from .output import UsageError, emit

BLOBS = "docker/registry/v2/blobs"


def proxy_counters(debug_address: str | None) -> dict | None:
    """{"blobs": {...}, "manifests": {...}} from the registry's expvar page, or None."""
    if not debug_address:
        return None
    try:
        with urllib.request.urlopen(f"http://{debug_address}/debug/vars", timeout=2) as r:
            data = json.load(r)
        return data["registry"]["proxy"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def blob_dirs(data_dir: str) -> list[tuple[float, int, str]]:
    """(last use, bytes, dir) of each blob a cache holds."""
    out = []
    for dirpath, _dirs, files in os.walk(os.path.join(data_dir, BLOBS)):
        if "data" in files:
            try:
                st = os.stat(os.path.join(dirpath, "data"))
            except OSError:
                continue
            out.append((max(st.st_atime, st.st_mtime), st.st_size, dirpath))
    return out


def cache_rows(base: str) -> list[dict]:
    rows = []
    for reg, entry in sorted(read_index(base).items()):
        up = running(entry) and answers(str(entry.get("address")))
        blobs = blob_dirs(os.path.join(str(entry.get("dir", "")), "data"))
        counters = proxy_counters(entry.get("debug")) if up else None
        b = (counters or {}).get("blobs") or {}
        rows.append({"upstream": reg, "state": "up" if up else "down", "address": entry.get("address"),
                     "pid": entry.get("pid") if up else None, "url": entry.get("url"),
                     "size": sum(s for _t, s, _d in blobs), "blobs": len(blobs),
                     "hits": b.get("Hits"), "misses": b.get("Misses"),
                     "bytes_from_upstream": b.get("BytesPulled"), "bytes_served": b.get("BytesPushed"),
                     "credentials": bool(entry.get("credentials"))})
    return rows


def status(ctx: Ctx, *, root: str | None, as_json: bool) -> int:
    base = root_of(ctx, root)
    rows = cache_rows(base)
    max_size = ctx.config["images.max_size"]
    data = {"root": base, "routing": bool(ctx.config["enabled"] and ctx.config["images.enabled"]),
            "max_size": max_size, "size": sum(r["size"] for r in rows), "caches": rows}
    human = [f"images root: {base} ({_mib(data['size'])} of {_mib(max_size)})"
             + ("" if data["routing"] else "; routing is off (images.enabled = false)")]
    for r in rows:
        counts = (f", {r['hits']} hits / {r['misses']} misses, {_mib(r['bytes_served'] or 0)} served"
                  if r["hits"] is not None else "")
        human.append(f"{r['upstream']}: {r['state']}" + (f" at {r['address']}" if r["address"] else "")
                     + f", {_mib(r['size'])} in {r['blobs']} blobs{counts}"
                     + (", with configured credentials" if r["credentials"] else ""))
    if not rows:
        human.append("no image caches: `dockcache images up` starts them")
    emit(data, as_json=as_json, human="\n".join(human))
    return 0 if rows and all(r["state"] == "up" for r in rows) else 1


def prune(ctx: Ctx, *, root: str | None, max_size: str | None, dry_run: bool, as_json: bool) -> int:
    base = root_of(ctx, root)
    try:
        limit = parse_size(max_size) if max_size else ctx.config["images.max_size"]
    except ValueError:
        raise UsageError(f"--max-size {max_size!r}: expected a size like 50GiB") from None
    removed, freed = trim(base, limit, dry_run=dry_run)
    ctx.audit("images prune", base, removed=removed, freed=freed, dry_run=dry_run)
    emit({"root": base, "max_size": limit, "removed": removed, "freed": freed, "dry_run": dry_run},
         as_json=as_json, human=f"{'would free' if dry_run else 'freed'} {_mib(freed)} ({removed} blobs)")
    return 0


def trim(base: str, limit: int, *, dry_run: bool = False) -> tuple[int, int]:
    """Least recently used blobs of every cache go until all of them fit in 90% of `limit`."""
    blobs = sorted(b for e in read_index(base).values() for b in blob_dirs(os.path.join(str(e.get("dir", "")), "data")))
    total = sum(s for _t, s, _d in blobs)
    removed = freed = 0
    for _t, size, path in blobs:
        if not limit or total - freed <= limit * 0.9:
            break
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
        removed, freed = removed + 1, freed + size
    return removed, freed


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"
