"""The pure rewrite of a build command: which cache to import, whether to export.

The user's flags stay untouched; ours go right after the command words. A user's own
`--cache-to` means we add no export; their `--cache-from` is kept and ours added
beside it; `--no-cache` skips our import but still publishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from shim.core.records import dataclass

from shim.core.engine import BuildCaps
from shim.core.grammar import BuildArgs, Invocation, insert_before

OUR_MARK = "dockcache"  # appears in our src/dest paths: a shim behind a shim adds nothing twice


@dataclass(frozen=True)
class BuildPlan:
    argv: tuple[str, ...]
    key: str
    imports: tuple[str, ...] = ()
    export: bool = False
    reasons: tuple[str, ...] = ()
    load_check: bool = False  # build, compare image ids, then --load only if it changed
    registry_tag: str | None = None  # our registry export; the key tag is moved to it after the build


def plan_build(argv: Sequence[str], inv: Invocation, build: BuildArgs, caps: BuildCaps, *,
               key: str, available: Sequence[str], import_src: str | None,
               export_dest: str | None, registry: str | None = None,
               registry_keys: Sequence[str] = (), registry_tag: str | None = None,
               no_import: str = "no cached key to import yet") -> BuildPlan:
    argv = tuple(argv)
    if build.misread:
        return BuildPlan(argv, key, reasons=(build.misread, "build runs unchanged"))
    reasons = [f"cache key {key}", f"engine: {caps.mode} ({caps.reason})"]
    if caps.mode == "none" or build.help:
        return BuildPlan(argv, key, reasons=tuple(reasons + ["build runs unchanged"]))
    if _already_ours(build):
        return BuildPlan(argv, key, reasons=tuple(reasons + ["already rewritten by dockcache (nested shim)"]))
    added: list[str] = []
    imports: tuple[str, ...] = ()
    if build.no_cache:
        reasons.append("--no-cache: no import")
    elif import_src and available:
        imports = tuple(available)
        for k in imports:
            added += ["--cache-from", f"type=local,src={import_src},tag={k}"]
        reasons.append(f"import keys {', '.join(imports)}")
    else:
        reasons.append(no_import)
    export = False
    if build.cache_to:
        reasons.append("you set --cache-to: no export added")
    elif caps.mode != "full":
        reasons.append("engine cannot export: import only")
    elif export_dest:
        export = True
        # ignore-error: a full or unwritable store must cost the cache, not the build
        added += ["--cache-to", f"type=local,dest={export_dest},mode=max,tag={key},ignore-error=true"]
        reasons.append(f"export to a private dir, then publish as {key}")
    reg_flags = _registry(build, caps, key, registry, registry_keys, registry_tag or key, reasons)
    added += reg_flags
    exported_tag = (registry_tag or key) if any(f.startswith("type=registry") and "ignore-error" in f
                                               for f in reg_flags) else None
    load_check = needs_load(build, caps)
    if load_check:
        reasons.append(f"builder driver '{caps.driver}' keeps results in the builder: "
                       "build, then --load only if the image id changed")
    return BuildPlan(insert_before(argv, inv.args_start, added), key, imports, export, tuple(reasons),
                     load_check, exported_tag)


def _registry(build: BuildArgs, caps: BuildCaps, key: str, registry: str | None,
              keys: Sequence[str], tag: str, reasons: list[str]) -> list[str]:
    """Registry backend flags: import keys that exist, export (mode=max) to `tag`."""
    if not registry:
        return []
    if caps.mode != "full":
        reasons.append("registry backend: this engine imports only inline cache from registries; not used")
        return []
    out: list[str] = []
    if not build.no_cache:
        for k in keys:
            out += ["--cache-from", f"type=registry,ref={registry}:{k}"]
    if not build.cache_to:
        out += ["--cache-to", f"type=registry,ref={registry}:{tag},mode=max,ignore-error=true"]
    moved = f" as {tag}, then move {key} to it" if tag != key else ""
    reasons.append(f"registry backend {registry}: import {', '.join(keys) or 'nothing yet'}, "
                   f"export {key}{moved}")
    return out


def needs_load(build: BuildArgs, caps: BuildCaps) -> bool:
    """A tagged build on a remote/docker-container builder with no output of its own.

    Not when building twice would show: a context or Dockerfile read from stdin (read
    once only), `-q` (the id would print twice), a user `--iidfile` (ours would replace it)."""
    twice_visible = (build.context == "-" or build.file == "-" or build.iidfile
                     or any(k == "--quiet" for k, _v in build.options))
    return (caps.driver not in ("", "docker") and bool(build.tags)
            and not (build.outputs or build.load or build.push) and not twice_visible)


def load_steps(argv: Sequence[str], inv: Invocation, iidfile: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(first build: image kept in the builder, id written; second build: the same with --load).

    --load streams a tarball into the session's daemon even when nothing changed
    (docker/buildx#626, #107); the id comparison in between skips that when it can.
    """
    first = insert_before(argv, inv.args_start, ["--output", "type=image", "--iidfile", iidfile])
    return first, insert_before(argv, inv.args_start, ["--load"])


def _already_ours(build: BuildArgs) -> bool:
    return any(OUR_MARK in v for v in (*build.cache_from, *build.cache_to))
