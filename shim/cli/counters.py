"""The tools' own hit counters where they keep them in the cache (ccache): read by the tool
itself in a throwaway container, in the image the cache was last mounted into, never pulled."""

from __future__ import annotations

import re

from shim.core.managers import BY_NAME, TOOL_COUNTERS

from .context import Ctx
from .rows import CacheRow


def tool_counters(ctx: Ctx, row: CacheRow) -> dict | None:
    spec, mgr = TOOL_COUNTERS.get(row.manager), BY_NAME.get(row.manager)
    image = (ctx.state.get("cacheimage", "run", row.name) or {}).get("image", "")
    if spec is None or mgr is None or not image or row.kind not in ("volume", "bind"):
        return None
    argv, hit_names, miss_names = spec
    primary = next((var for var, tmpl in mgr.env if tmpl == "{cache}"), None)
    env = ["-e", f"{primary}={mgr.cache_path}"] if primary else []
    res = ctx.docker("run", "--rm", "--network", "none", "--pull", "never", "-v",
                     f"{row.name}:{mgr.cache_path}:ro", *env, "--entrypoint", argv[0], image, *argv[1:],
                     timeout=120)
    if res.returncode != 0:
        return None
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\t(\d+)$", res.stdout, re.M)}
    if not counts:
        return None
    return {"source": f"{' '.join(argv)} (in {image})", "hits": sum(counts.get(n, 0) for n in hit_names),
            "misses": sum(counts.get(n, 0) for n in miss_names)}
