"""`dockcache metrics show`: what dockcache did, from its append-only local log."""

from __future__ import annotations

import time
from collections import Counter

from .context import Ctx
from .inventory import image_usage, read_log
from .output import emit, iso_utc, table


def metrics_show(ctx: Ctx, *, since: float | None, as_json: bool) -> None:
    floor = time.time() - since if since else 0.0
    recs = [r for r in read_log(ctx, "metrics") if r.get("ts", 0) >= floor]
    kinds = Counter(r.get("kind", "?") for r in recs)
    mounted = Counter(c for r in recs for c in r.get("caches", []))
    builds = [r for r in recs if r.get("kind") == "build"]
    compose = [r for r in recs if r.get("kind") in ("compose", "bake")]  # per-service / per-target lists
    saves = [r for r in recs if r.get("kind") == "mount-save"]
    data = {
        "since": iso_utc(floor) if floor else None, "commands": dict(kinds),
        "caches_mounted": dict(mounted),
        # detached cache-mount saves run after the command returned: nobody waited for them
        "time_spent_ms": round(sum(r.get("ms", 0) for r in recs if r.get("kind") != "mount-save"), 1),
        "builds": {"with_import": sum(1 for r in builds if r.get("imports"))
                   + sum(len(r.get("imports", [])) for r in compose),
                   "published": sum(1 for r in builds if r.get("export") and r.get("rc") == 0)
                   + sum(len(r.get("published", [])) for r in compose),
                   "failed": sum(1 for r in builds + compose if r.get("rc")),
                   # nothing changed since this daemon's export: docker ran as typed, its own cache served it
                   "as_typed": sum(1 for r in builds if r.get("as_typed")),
                   "compose_runs": sum(1 for r in compose if r.get("kind") == "compose"),
                   "bake_runs": sum(1 for r in compose if r.get("kind") == "bake"),
                   "observed_cached_steps": None, "observed_executed_steps": None},
        "cache_mounts": {"seeded": sum(r.get("mounts_seeded", 0) for r in builds),
                         "seed_ms": round(sum(r.get("mounts_seed_ms", 0) for r in builds), 1),
                         "saves": sum(1 for r in saves if r.get("ok") and not r.get("skipped")),
                         "saves_skipped_unchanged": sum(1 for r in saves if r.get("skipped")),
                         "saves_failed": sum(1 for r in saves if not r.get("ok")),
                         "saved_bytes": sum(r.get("bytes", 0) for r in saves)},
        "days": _days(ctx, floor),
        "images": image_usage(recs),
    }
    human = table([[k, str(v)] for k, v in sorted(kinds.items())], ["KIND", "COMMANDS"])
    human += "\n\n" + table([[k, str(v)] for k, v in mounted.most_common()], ["CACHE", "MOUNTS"])
    b = data["builds"]
    human += (f"\n\nbuilds: {b['with_import']} imported from the shared store, {b['published']} published, "
              f"{b['as_typed']} ran as typed (unchanged), "
              f"{b['failed']} failed ({b['compose_runs']} compose runs)\ntime spent in dockcache: {data['time_spent_ms']} ms")
    m = data["cache_mounts"]
    if m["seeded"] or saves:
        human += (f"\ncache mounts: {m['seeded']} seeded ({m['seed_ms']} ms), {m['saves']} saved after builds "
                  f"({m['saved_bytes']} bytes, detached), {m['saves_skipped_unchanged']} skipped (image layers unchanged), "
                  f"{m['saves_failed']} failed")
    i = data["images"]
    if i["pulled"] or i["fell_back"]:
        human += (f"\nimages: {i['pulled']} pulled through the host's image cache ({i['bytes']} bytes, the images' "
                  f"size in the engine), {i['fell_back']} pulled directly after the cache could not serve them")
    human += "\n\n" + _days_chart(data["days"])
    emit(data, as_json=as_json, human=human)


def _days(ctx: Ctx, floor: float) -> list[dict]:
    """Per day: bytes read from caches instead of downloaded (estimate) and bytes downloaded,
    from the caches' own files (shim.cli.evidence), for the runs this host recorded."""
    from .inventory import all_rows, run_evidence

    try:
        rows = all_rows(ctx, include_missing=False, need_engine=False)
    except RuntimeError:
        return []
    days: dict[str, dict] = {}
    for _row, found in run_evidence(ctx, rows):
        for run in found.runs:
            if run.ts < floor:
                continue
            day = days.setdefault(time.strftime("%Y-%m-%d", time.localtime(run.ts)),
                                  {"saved_bytes": 0, "downloaded_bytes": 0, "hits": 0, "misses": 0})
            day["saved_bytes"] += run.hit_bytes if found.atime_seen else 0
            day["downloaded_bytes"] += run.miss_bytes
            day["hits"] += run.hits
            day["misses"] += run.misses
    return [{"day": d, **v, "estimate": True} for d, v in sorted(days.items())]


def _days_chart(days: list[dict]) -> str:
    from .cachecmd import bar
    from .output import human_size

    if not days:
        return "savings per day: no run cache with evidence this host can read"
    top = max(max(d["saved_bytes"], d["downloaded_bytes"]) for d in days) or 1
    lines = ["savings per day (estimate: bytes read from caches instead of downloaded; lower bound)"]
    for d in days:
        lines.append(f"{d['day']}  saved {bar(d['saved_bytes'] / top, 20)} {human_size(d['saved_bytes']):>10}"
                     f"   downloaded {bar(d['downloaded_bytes'] / top, 20)} {human_size(d['downloaded_bytes']):>10}")
    return "\n".join(lines)
