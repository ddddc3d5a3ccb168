"""`dockcache cache list|stats|clear|prune`."""

from __future__ import annotations

import sys
import time

from shim.build.store.cachestore import CacheStore, StoreError

from .context import Ctx
from .inventory import CacheRow, all_rows
from .output import CliError, emit, human_size, local_time, table
from .removal import remove

STATS_SCHEMA = "docs/cache-stats.schema.json (JSON Schema 2020-12)"


def _rows(ctx: Ctx, **kw) -> list[CacheRow]:
    try:
        return all_rows(ctx, **kw)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None


def cache_list(ctx: Ctx, *, as_json: bool) -> None:
    rows = _rows(ctx, need_engine=False)
    human = table([[r.name, f"{r.kind}/{r.manager}", human_size(r.size) if r.exists else "(not created)",
                    local_time(r.created), local_time(r.last_used)] for r in rows],
                  ["NAME", "KIND", "SIZE", "CREATED", "LAST USED"])
    emit({"caches": [r.to_json() for r in rows]}, as_json=as_json, human=human)


def cache_stats(ctx: Ctx, *, as_json: bool) -> None:
    from .inventory import image_usage, read_log, with_evidence

    rows = with_evidence(ctx, _rows(ctx, include_missing=False, need_engine=False))
    runs = [r for r in rows if r.kind in ("volume", "bind")]
    seen = [r.evidence for r in runs if r.evidence]
    store_size = CacheStore(ctx.store_root).size()  # a blob shared by keys is on disk once
    run_size = sum(r.size or 0 for r in runs)
    hits = [e["hits"] for e in seen]
    totals = {"size": run_size + store_size, "run_cache_size": run_size, "build_store_size": store_size,
              "caches": len(rows), "uses": sum(r.uses for r in rows),
              "entries": sum(e["entries"] for e in seen), "misses": sum(e["misses"] for e in seen),
              "hits": None if not seen or None in hits else sum(hits),
              "saved_bytes": None if not seen or None in hits else sum(e["savings"]["bytes"] for e in seen)}
    records = read_log(ctx, "metrics")
    data = {"caches": [r.to_json() for r in rows], "totals": totals, "build": _build_usage(records),
            "images": image_usage(records), "schema": STATS_SCHEMA}
    emit(data, as_json=as_json, human=_stats_human(rows, totals, data["build"], data["images"]))


def _build_usage(records: list[dict]) -> dict:
    builds = [r for r in records if r.get("kind") == "build"]
    compose = [r for r in records if r.get("kind") in ("compose", "bake")]  # imports listed per service / target
    return {"builds": len(builds), "compose_runs": sum(1 for r in compose if r.get("kind") == "compose"),
            "with_import": sum(1 for r in builds if r.get("imports")) + sum(len(r.get("imports", [])) for r in compose),
            "served_by_own_daemon": sum(len(r.get("own", [])) for r in compose),
            "observed_cached_steps": None, "observed_executed_steps": None,
            "reason": "steps CACHED vs run are in docker's own output, which dockcache leaves to you unread"}


def _stats_human(rows: list[CacheRow], totals: dict, build: dict, images: dict | None = None) -> str:
    biggest = max((r.size or 0 for r in rows), default=0) or 1
    body = []
    for r in rows:
        ev = r.evidence or {}
        rate = ev.get("hit_rate")
        body.append([r.name, r.manager, human_size(r.size), bar((r.size or 0) / biggest),
                     "-" if r.entries is None else str(r.entries), _num(ev.get("hits")), _num(ev.get("misses")),
                     "-" if rate is None else f"{bar(rate)} {rate:.0%}", local_time(r.last_used), str(r.uses)])
    human = table(body, ["NAME", "MANAGER", "SIZE", "", "ENTRIES", "HITS", "MISSES", "HIT RATE", "LAST USED", "USES"])
    human += (f"\n\ntotal {human_size(totals['size'])} on disk (run caches {human_size(totals['run_cache_size'])}, "
              f"build store {human_size(totals['build_store_size'])}, shared blobs once) in {totals['caches']} caches, "
              f"{totals['uses']} recorded uses")
    for r in rows:
        if r.tool_counters:
            c = r.tool_counters
            human += f"\n{r.name}: {c['hits']} hits, {c['misses']} misses by the tool's own count ({c['source']})"
    if totals["saved_bytes"] is not None:
        human += (f"\nestimated savings: {human_size(totals['saved_bytes'])} read from caches instead of downloaded "
                  "(basis: sizes of entries runs read, by file access time; a lower bound)")
    human += ("\nhits/misses: from each cache's files (new entries = downloads, older entries read = hits); "
              "'-' where this host cannot see the cache")
    human += (f"\nbuilds: {build['builds']} builds, {build['compose_runs']} compose runs, "
              f"{build['with_import']} imports from the shared store")
    if images and (images["pulled"] or images["fell_back"]):
        human += (f"\nimages: {images['pulled']} pulled through the host's image cache "
                  f"({human_size(images['bytes'])} in the engine, not downloaded), {images['fell_back']} pulled directly")
    return human


def _num(value) -> str:
    return "-" if value is None else str(value)


def bar(fraction: float, width: int = 10) -> str:
    """A bar of `width` cells, eighths for the last one; '#' where the terminal is not UTF-8."""
    fraction = min(max(fraction, 0.0), 1.0)
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        return ("#" * round(fraction * width)).ljust(width, ".")
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")).ljust(width, "·")


def select(rows: list[CacheRow], managers: list[str], *, build: bool, everything: bool) -> list[CacheRow]:
    return [r for r in rows if r.exists and (everything or r.manager in managers
                                              or (build and r.kind in ("build-key", "build-mount")))]


def cache_clear(ctx: Ctx, managers: list[str], *, build: bool, everything: bool, force: bool,
                dry_run: bool, as_json: bool) -> int:
    if not (managers or build or everything):
        raise CliError("say what to clear: --npm, --pip, … , --build or --all")
    targets = select(_rows(ctx, include_missing=False), managers, build=build, everything=everything)
    busy = [r for r in targets if r.in_use_by]
    todo = [r for r in targets if not r.in_use_by]
    lines = [f"would remove {r.name} ({human_size(r.size)})" for r in todo]
    lines += [f"skip {r.name}: in use by {', '.join(r.in_use_by)}" for r in busy]
    if dry_run:
        emit({"would_remove": [r.name for r in todo], "skipped": {r.name: r.in_use_by for r in busy},
              "bytes": sum(r.size or 0 for r in todo)}, as_json=as_json, human="\n".join(lines) or "nothing to clear")
        return 0
    if todo and not force:
        if not sys.stdin.isatty():
            raise CliError("refusing to clear caches without a terminal to confirm; add --force")
        sys.stdout.write("\n".join(lines) + "\n")
        if input("Remove these caches? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CliError("nothing cleared")
    freed, removed = 0, []
    for r in todo:
        if remove(ctx, r):
            freed += r.size or 0
            removed.append(r.name)
    out = [f"removed {n}" for n in removed] + [ln for ln in lines if ln.startswith("skip")]
    emit({"removed": removed, "skipped": {r.name: r.in_use_by for r in busy}, "freed_bytes": freed},
         as_json=as_json, human="\n".join(out + [f"freed {human_size(freed)}"]))
    return 0


def cache_prune(ctx: Ctx, *, older_than: float | None, max_size: int | None, backend: str = "local",
                dry_run: bool = False, as_json: bool) -> None:
    data, human = {}, []
    if backend in ("local", "all"):
        if dry_run:
            raise CliError("--dry-run is available with --backend registry (local pruning is cheap to redo)")
        data.update(_prune_local(ctx, older_than, max_size, human))
    if backend == "registry" or (backend == "all" and ctx.config["build.registry"]):
        data["registry"] = _prune_registry(ctx, older_than, max_size, dry_run, human)
    emit(data, as_json=as_json, human="\n".join(human))


def _prune_local(ctx: Ctx, older_than: float | None, max_size: int | None, human: list[str]) -> dict:
    store = CacheStore(ctx.store_root, lock_timeout=ctx.config["build.lock_timeout"])
    try:
        res = store.prune(max_size=max_size if max_size is not None else ctx.config["build.max_size"],
                          older_than=older_than)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    ctx.audit("prune", "build-store", removed_keys=list(res.removed_keys), freed=res.freed_bytes)
    old_rows = _prune_volumes(ctx, older_than) if older_than is not None else []
    removed_vols, vol_freed = [r.name for r in old_rows], sum(r.size or 0 for r in old_rows)
    human.append(f"build store: {human_size(res.size_before)} -> {human_size(res.size_after)}, "
                 f"{len(res.removed_keys)} keys/cache mounts and {res.removed_blobs} blobs removed, "
                 f"{human_size(res.freed_bytes)} freed")
    if removed_vols:
        human.append(f"caches removed: {', '.join(removed_vols)} ({human_size(vol_freed)} freed)")
    from .limits import configured, trim_run_caches  # run.max_size, managers.NAME.max_size
    limits = (trim_run_caches(ctx, _rows(ctx, include_missing=False, need_engine=False), human)
              if configured(ctx.config) else None)
    return {"build": {"removed_keys": list(res.removed_keys), "removed_blobs": res.removed_blobs,
                      "freed_bytes": res.freed_bytes, "size_before": res.size_before, "size_after": res.size_after},
            "volumes_removed": removed_vols, "volumes_freed_bytes": vol_freed, "run_limits": limits,
            "freed_bytes": res.freed_bytes + vol_freed + (limits["freed_bytes"] if limits else 0)}


REGISTRY_GC_NOTE = ("tags are deleted now; blob space returns only after the registry's own garbage "
                    "collection (e.g. `registry garbage-collect`)")


def _prune_registry(ctx: Ctx, older_than: float | None, max_size: int | None, dry_run: bool,
                    human: list[str]) -> dict:
    from shim.build.store.registry import Registry, RegistryError, RegistryUnreachable, plan_prune

    spec = ctx.config["build.registry"]
    if not spec:
        raise CliError("no build cache registry configured ([build] registry or DOCKCACHE_BUILD_REGISTRY)")
    reg = Registry(spec)
    age = older_than if older_than is not None else ctx.config["build.registry_max_age"]
    size = max_size if max_size is not None else ctx.config["build.registry_max_size"]
    try:
        infos = reg.inventory()
        todo = plan_prune(infos, now=time.time(), max_age=age, max_size=size)
        for d in ([] if dry_run else todo):
            reg.delete(d.digest)
    except (RegistryError, RegistryUnreachable) as exc:
        raise CliError(str(exc)) from None
    if not dry_run:
        ctx.audit("prune", f"registry:{spec}", deleted=[t for d in todo for t in d.tags])
    deleted = [{"digest": d.digest, "tags": list(d.tags), "reason": d.reason, "bytes": d.size} for d in todo]
    verb = "would delete" if dry_run else "deleted"
    human += [f"registry {spec}: {verb} {', '.join(d.tags)} ({d.reason})" for d in todo]
    human.append(f"registry {spec}: {len(infos)} tags, {verb} {sum(len(d.tags) for d in todo)}; {REGISTRY_GC_NOTE}")
    return {"repository": spec, "dry_run": dry_run, "tags_before": len(infos), "deleted": deleted,
            "max_age_seconds": age, "max_size": size, "note": REGISTRY_GC_NOTE}


def _prune_volumes(ctx: Ctx, older_than: float) -> list[CacheRow]:
    now, out = time.time(), []
    for r in _rows(ctx, include_missing=False):
        last = r.last_used or r.created or now
        if r.kind in ("volume", "bind") and not r.in_use_by and now - last > older_than and remove(ctx, r):
            out.append(r)
    return out
