"""Which bake targets read exactly what this daemon last exported for their key: those run
without `--cache-to` (BuildKit walks the whole cache chain for an export even when nothing
is new: ~0.15-0.3 s per target), as unchanged builds and compose services do (inputs.py).

A target is read as compose's service builds are (its resolved definition stands in for
the build section: context made absolute, every attribute but its cache entries hashed,
the Dockerfile, its ignore file and every context entry by path, mode, size and mtime,
the FROM images' ids). A key two targets share is left out: one remembered export per key.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence

from shim.build import inputs as reads

SKIPPED = ("cache-from", "cache-to")


def as_build_section(target: Mapping, cwd: str) -> dict | None:
    """A bake target's definition in compose's build-section words (what inputs.py reads)."""
    ctx = str(target.get("context") or ".")
    if "://" in ctx or ctx.startswith("git@"):
        return None
    section = {k: v for k, v in target.items() if k not in SKIPPED}
    section["context"] = os.path.abspath(os.path.join(cwd, ctx))
    renamed = {"no-cache": "no_cache", "dockerfile-inline": "dockerfile_inline", "contexts": "additional_contexts"}
    for ours, theirs in renamed.items():
        if ours in section:
            section[theirs] = section.pop(ours)
    return section


def split(real: str, docker_globals: Sequence[str], local, store, targets: Sequence, resolved: Mapping[str, Mapping],
          cwd: str, *, no_cache: bool, pull: bool, environ: Mapping[str, str]) -> tuple[dict, frozenset]:
    """(key -> what its target reads, to remember after its publish; the keys whose targets
    read what this daemon's last export of them did, still the key's newest: no export)."""
    shared = {k for k, n in Counter(t.key for t in targets).items() if n > 1}
    found, matched = {}, {}
    for t in targets:
        if t.key in shared or t.own_to:
            continue
        section = as_build_section(resolved.get(t.name) or {}, cwd)
        got = section and reads.compose_service(section, ",".join(section.get("tags") or ()), no_cache, pull, environ)
        args = section.get("args") if section else None
        images = reads.bases(got[1], {str(k): str(v) for k, v in (args or {}).items() if v is not None}) if got else None
        if images is None:
            continue
        found[t.key] = {"fp": got[0], "images": images}
        remembered = local.state.get(reads.KIND, local.generation, t.key)
        if remembered and remembered.get("fp") == got[0]:
            matched[t.key] = remembered
    sock = reads.socket_of(local)
    ids = (reads.base_ids(real, docker_globals, sorted({i for k in matched for i in found[k]["images"]}), sock)
           if matched else None)
    same = frozenset(k for k, remembered in matched.items() if ids is not None and reads.unchanged(
        remembered, found[k]["fp"], {i: ids[i] for i in found[k]["images"]}, (store.lineage(k) or (None,))[0]))
    changed = {k: v for k, v in found.items() if k not in same}
    for v in changed.values():
        reads.asking_bases(v, real, docker_globals, sock)  # the FROM ids, asked beside the build
    return changed, same
