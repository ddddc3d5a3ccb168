"""`dockcache metrics show`: what dockcache did, from its append-only local log."""

from __future__ import annotations

import time
from collections import Counter

from .context import Ctx
from .inventory import read_log
from .output import emit, iso_utc, table


def metrics_show(ctx: Ctx, *, since: float | None, as_json: bool) -> None:
    floor = time.time() - since if since else 0.0
    recs = [r for r in read_log(ctx, "metrics") if r.get("ts", 0) >= floor]
    kinds = Counter(r.get("kind", "?") for r in recs)
    mounted = Counter(c for r in recs for c in r.get("caches", []))
    builds = [r for r in recs if r.get("kind") == "build"]
    saves = [r for r in recs if r.get("kind") == "mount-save"]
    data = {
        "since": iso_utc(floor) if floor else None, "commands": dict(kinds),
        "caches_mounted": dict(mounted),
        # detached cache-mount saves run after the command returned: nobody waited for them
        "time_spent_ms": round(sum(r.get("ms", 0) for r in recs if r.get("kind") != "mount-save"), 1),
        "builds": {"with_import": sum(1 for r in builds if r.get("imports")),
                   "published": sum(1 for r in builds if r.get("export") and r.get("rc") == 0),
                   "failed": sum(1 for r in builds if r.get("rc")),
                   "observed_cached_steps": None, "observed_executed_steps": None},
        "cache_mounts": {"seeded": sum(r.get("mounts_seeded", 0) for r in builds),
                         "seed_ms": round(sum(r.get("mounts_seed_ms", 0) for r in builds), 1),
                         "saves": sum(1 for r in saves if r.get("ok") and not r.get("skipped")),
                         "saves_skipped_unchanged": sum(1 for r in saves if r.get("skipped")),
                         "saves_failed": sum(1 for r in saves if not r.get("ok")),
                         "saved_bytes": sum(r.get("bytes", 0) for r in saves)},
    }
    human = table([[k, str(v)] for k, v in sorted(kinds.items())], ["KIND", "COMMANDS"])
    human += "\n\n" + table([[k, str(v)] for k, v in mounted.most_common()], ["CACHE", "MOUNTS"])
    b = data["builds"]
    human += (f"\n\nbuilds: {b['with_import']} imported from the shared store, {b['published']} published, "
              f"{b['failed']} failed\ntime spent in dockcache: {data['time_spent_ms']} ms")
    m = data["cache_mounts"]
    if m["seeded"] or saves:
        human += (f"\ncache mounts: {m['seeded']} seeded ({m['seed_ms']} ms), {m['saves']} saved after builds "
                  f"({m['saved_bytes']} bytes, detached), {m['saves_skipped_unchanged']} skipped (image layers unchanged), "
                  f"{m['saves_failed']} failed")
    emit(data, as_json=as_json, human=human)
