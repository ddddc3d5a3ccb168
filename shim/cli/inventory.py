"""Every cache dockcache manages: package volumes on this engine and build store keys.

Sizes come from the engine (`docker system df -v`) and the store; "last used" and
"uses" come from dockcache's own metrics log (it records every cache it mounted or
imported), so they are observed, never guessed.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

from shim.build.store.cachestore import CacheStore

from .context import Ctx
from .rows import CacheRow

_SIZE = re.compile(r"^([\d.]+)\s*([kMGT]?)B$")


def parse_df_size(text: str) -> int | None:
    m = _SIZE.match(text.strip())
    if not m:
        return None
    return int(float(m.group(1)) * 1000 ** " kMGT".index(m.group(2) or " "))


def _usage(ctx: Ctx) -> dict[str, list[float]]:
    """cache name -> when each recorded use started (the metrics log). A build uses its key
    whether it imported it or its own daemon's cache served it; compose records count too."""
    out: dict[str, list[float]] = {}
    for rec in read_log(ctx, "metrics"):
        keys = [rec["key"]] if rec.get("kind") == "build" and rec.get("key") else []
        keys += rec.get("keys", []) + rec.get("imports", [])
        names = set(rec.get("caches", [])) | {f"build:{k.split('~')[0]}" for k in keys}
        for name in names:
            out.setdefault(name, []).append(rec.get("ts", 0.0))
    return out


def _uses(usage: dict[str, list[float]], name: str) -> tuple[int, float | None]:
    times = usage.get(name, [])
    return len(times), (max(times) if times else None)


def image_usage(records: list[dict]) -> dict:
    """Pulls routed through the host's image caches (shim/images), from the metrics log: the
    images' size in the engine is what the host served instead of a registry on the internet."""
    pulls = [r for r in records if r.get("kind") == "images"]
    return {"pulled": sum(len(r.get("pulled", [])) for r in pulls), "bytes": sum(r.get("bytes", 0) for r in pulls),
            "fell_back": sum(len(r.get("failed", [])) for r in pulls)}


def read_log(ctx: Ctx, name: str) -> list[dict]:
    out = []
    for suffix in (".jsonl.1", ".jsonl"):
        try:
            lines = (ctx.state.root / f"{name}{suffix}").read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def volume_rows(ctx: Ctx, usage) -> list[CacheRow]:
    res = ctx.docker("system", "df", "-v", "--format", "{{json .Volumes}}")
    if res.returncode == 0:
        listed = json.loads(res.stdout or "[]") or []
    else:  # `system df` also sizes every image, and one broken image fails it: list without sizes
        listed = _volumes_without_df(ctx, res)
    ours = []
    for vol in listed:
        labels = dict(p.split("=", 1) for p in vol.get("Labels", "").split(",") if "=" in p)
        if labels.get("dockcache.managed") == "true" and (ctx.everyone or mine(ctx, vol["Name"], labels)):
            ours.append((vol, labels))
    created, places = _created(ctx, [v["Name"] for v, _ in ours])
    rows = []
    for vol, labels in ours:
        name = vol["Name"]
        uses, last = _uses(usage, name)
        last = _latest(last, touched(places.get(name)))
        size = parse_df_size(vol.get("Size", ""))
        if size is None and places.get(name) and os.access(places[name], os.R_OK):
            size = dir_size(Path(places[name]))
        rows.append(CacheRow(name, "volume", labels.get("dockcache.manager", "?"),
                             size, created.get(name), last, uses,
                             in_use_by=_users(ctx, name) if vol.get("Links", "0") not in ("0", "N/A") else [],
                             path=places.get(name)))
    return rows


def _volumes_without_df(ctx: Ctx, failed) -> list[dict]:
    res = ctx.docker("volume", "ls", "--filter", "label=dockcache.managed=true", "--format", "{{json .}}")
    if res.returncode != 0:
        raise RuntimeError(f"engine not reachable: {(failed.stderr.strip().splitlines() or ['?'])[-1]}")
    out = []
    for line in res.stdout.splitlines():
        try:
            vol = json.loads(line)
        except ValueError:
            continue
        out.append({"Name": vol.get("Name", ""), "Labels": vol.get("Labels", ""), "Size": "", "Links": "N/A"})
    return out


def mine(ctx: Ctx, name: str, labels: dict[str, str]) -> bool:
    """This installation's volume: its prefix (labelled, or by name for volumes made
    before the label) and, where recorded, this host user. Another user's or another
    prefix's caches on a shared daemon are theirs (`--all-installations` reaches them)."""
    prefix = ctx.config["run.volume_prefix"]
    if labels.get("dockcache.prefix", prefix) != prefix or not name.startswith(prefix + "-"):
        return False
    return labels.get("dockcache.host_user", str(os.getuid())) == str(os.getuid())


def _created(ctx: Ctx, names: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Creation times and mountpoints of many volumes in one docker call."""
    if not names:
        return {}, {}
    res = ctx.docker("volume", "inspect", "--format", "{{.Name}}\t{{.CreatedAt}}\t{{.Mountpoint}}", *names)
    out, places = {}, {}
    for line in res.stdout.splitlines():
        name, _, rest = line.partition("\t")
        when, _, place = rest.partition("\t")
        places[name] = place.strip()
        try:
            out[name] = datetime.fromisoformat(when.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return out, places


def touched(path: str | Path | None, *, limit: int = 2000) -> float | None:
    """When the tools last wrote to a cache: the newest mtime of the dir and its entries.

    Evidence every session leaves, whichever state dir it has (this host's metrics log
    only knows its own runs): prune must not take a cache another session uses daily for
    an unused one. None where the path is not visible here (a remote or VM engine)."""
    if not path:
        return None
    try:
        newest = os.stat(path).st_mtime
        with os.scandir(path) as entries:
            for i, entry in enumerate(entries):
                if i >= limit:
                    break
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
        return newest
    except OSError:
        return None


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t]
    return max(known) if known else None


def _users(ctx: Ctx, name: str) -> list[str]:
    res = ctx.docker("ps", "--filter", f"volume={name}", "--format", "{{.Names}}")
    return res.stdout.split()


def bind_rows(ctx: Ctx, usage) -> list[CacheRow]:
    """Host dirs of bind mode (`run.bind_root`): named like volumes, identified by path."""
    root = Path(ctx.config["run.bind_root"])
    try:
        dirs = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    busy = _bind_users(ctx) if dirs else {}
    rows = []
    for d in dirs:
        uses, last = _uses(usage, str(d))
        last = _latest(last, touched(d))
        rows.append(CacheRow(str(d), "bind", _manager_of(d.name, ctx), dir_size(d), None, last, uses,
                             in_use_by=sorted(n for n, srcs in busy.items() if any(
                                 s == str(d) or s.startswith(str(d) + "/") for s in srcs)), path=str(d)))
    return rows


def _manager_of(name: str, ctx: Ctx) -> str:
    prefix = ctx.config["run.volume_prefix"] + "-"
    rest = name[len(prefix):] if name.startswith(prefix) else name
    names = [m.name for m in ctx.config.table()]  # [caches.NAME] are managers like the built-in ones
    return max((m for m in names if rest == m or rest.startswith(m + "-")), key=len, default="?")


def _bind_users(ctx: Ctx) -> dict[str, list[str]]:
    """Running containers -> their bind-mount sources (one ps, one inspect)."""
    names = ctx.docker("ps", "--format", "{{.Names}}").stdout.split()
    if not names:
        return {}
    res = ctx.docker("container", "inspect", "--format", "{{.Name}}\t{{json .Mounts}}", *names)
    out = {}
    for line in res.stdout.splitlines():
        name, _, mounts = line.partition("\t")
        try:
            out[name.lstrip("/")] = [m.get("Source", "") for m in json.loads(mounts or "[]")]
        except ValueError:
            continue
    return out


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def build_rows(ctx: Ctx, usage) -> list[CacheRow]:
    store = CacheStore(ctx.store_root)
    rows = []
    for key, info in sorted(store.keys().items()):
        uses, _ = _uses(usage, f"build:{key}")
        rows.append(CacheRow(key, "build-key", "buildkit", info.size, info.created or None,
                             info.last_used or None, uses))
    return rows + mount_rows(ctx)


def mount_rows(ctx: Ctx) -> list[CacheRow]:
    """Saved `RUN --mount=type=cache` contents (build/mountstore.py), named `mount:NAME`."""
    from shim.build.mounts.store import read_index
    from shim.build.store.cachestore import MOUNT

    return [CacheRow(f"{MOUNT}{name}", "build-mount", "buildkit", e.size, e.created or None, e.last_used or None,
                     entries=e.files) for name, e in sorted(read_index(Path(ctx.store_root)).items())]


def registry_rows(ctx: Ctx) -> list[CacheRow]:
    """Key tags of the build cache registry (backend registry/both); last built = the
    newest build tag on the same manifest."""
    spec = ctx.config["build.registry"]
    if ctx.config["build.backend"] == "local" or not spec:
        return []
    from shim.build.store.registry import Registry, RegistryError, RegistryUnreachable

    try:
        infos = Registry(spec, timeout=3.0).inventory()
    except (RegistryError, RegistryUnreachable) as exc:
        import sys
        sys.stderr.write(f"dockcache: {exc}; its keys are not listed\n")
        return []
    rows = []
    for key in (i for i in infos if i.built_at is None):
        built = [i.built_at for i in infos if i.built_at and i.digest == key.digest]
        rows.append(CacheRow(f"{spec}:{key.tag}", "registry-key", "buildkit", key.size, None,
                             float(max(built)) if built else None))
    return sorted(rows, key=lambda r: r.name)


def missing_rows(ctx: Ctx, present: set[str]) -> list[CacheRow]:
    prefix = ctx.config["run.volume_prefix"]
    rows = []
    for name in (m.name for m in ctx.config.table()):
        vol = ctx.config.settings.get(f"managers.{name}.volume", None)
        vol = (vol.value if vol else "") or f"{prefix}-{name}"
        if ctx.config.manager_enabled(name) and not any(p == vol or p.startswith(vol + "-") for p in present):
            rows.append(CacheRow(vol, "volume", name, None, None, None, exists=False))
    return rows


def run_evidence(ctx: Ctx, rows: list[CacheRow]) -> list[tuple[CacheRow, object]]:
    """(row, shim.cli.evidence.Evidence) for every run cache whose files this host sees.
    Each scan keeps the hits it saw and sets read entries' access times back (evidence)."""
    import time

    from .evidence import ledger, of_cache, set_back

    usage, now, out = _usage(ctx), time.time(), []
    for r in rows:
        if r.kind in ("volume", "bind") and r.path and r.exists:
            before = ctx.state.get("evidence", "cache", r.name)
            found = of_cache(r.path, r.manager, usage.get(r.name, []), now, before)
            if found:
                out.append((r, found))
                ctx.state.put("evidence", "cache", r.name, ledger(found.runs, now))
                set_back(found.read)
    return out


def with_evidence(ctx: Ctx, rows: list[CacheRow]) -> list[CacheRow]:
    """What each run cache's own files show (shim.cli.evidence); None where not visible here."""
    from .counters import tool_counters

    for r, found in run_evidence(ctx, rows):
        r.evidence, r.entries = found.totals(), found.entries
    for r in rows:
        r.tool_counters = tool_counters(ctx, r) if r.exists else None
    return rows


def all_rows(ctx: Ctx, *, include_missing: bool = True, need_engine: bool = True) -> list[CacheRow]:
    """Every cache. Without an engine, what lives on the host (bind caches, the build
    store) is still listed when need_engine is off, after one line saying volumes are not."""
    usage = _usage(ctx)
    try:
        vols = volume_rows(ctx, usage)
    except RuntimeError as exc:
        if need_engine:
            raise
        import sys
        sys.stderr.write(f"dockcache: {exc}; volumes not listed, host-side caches are\n")
        vols, include_missing = [], False
    rows = vols + bind_rows(ctx, usage) + build_rows(ctx, usage) + registry_rows(ctx)
    if include_missing and _volume_mode(ctx):
        rows += missing_rows(ctx, {r.name for r in vols})
    return rows


def _volume_mode(ctx: Ctx) -> bool:
    """Caches are volumes here: configured so, or `auto` did not find the engine seeing host dirs."""
    mode = ctx.config["run.mode"]
    if mode != "auto":
        return mode == "volume"
    known = ctx.state.get("placement", ctx.daemon, ctx.config["run.bind_root"])
    return not known or known.get("verdict") != "seen"
