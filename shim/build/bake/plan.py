"""The pure rewrite of `docker buildx bake`: one `--set TARGET.cache-from/cache-to` per
target it builds, as `build` gets `--cache-from`/`--cache-to`. No I/O.

Bake's `--set T.cache-from=…` *replaces* the target's list from its file (repeated sets
append to one another), so a target that has cache entries of its own (from its file or
the user's `--set`) keeps them and gets none of ours for that attribute. Our sets go right
after the `bake` word: a value flag followed by its value, they never take a user token
as theirs, and every user token keeps its place and order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from shim.core.records import dataclass

from shim.build.plan import OUR_MARK
from shim.core.engine import BuildCaps
from shim.core.grammar import BakeArgs, Invocation, insert_before

CACHE_ATTRS = ("cache-from", "cache-to")


@dataclass(frozen=True)
class BakeTarget:
    """One target bake will build, as its resolved definition (`bake --print`) says."""

    name: str
    key: str
    fallbacks: tuple[str, ...] = ()
    own_from: bool = False  # it has cache-from entries of its own: ours would replace them
    own_to: bool = False
    no_cache: bool = False  # its own `no-cache`, or `bake --no-cache`


@dataclass(frozen=True)
class BakePlan:
    argv: tuple[str, ...]
    keys: tuple[str, ...] = ()  # the built targets' keys, each once
    imports: tuple[str, ...] = ()  # keys some target imports
    exports: tuple[tuple[str, str, str], ...] = ()  # (target, key, private dir), published after bake
    moves: tuple[tuple[str, str], ...] = ()  # (key, registry build tag): the key tag moves there after bake
    reasons: tuple[str, ...] = ()


def user_sets(bake: BakeArgs, name: str, attr: str) -> bool:
    """Whether a user `--set PATTERN.attr=…` reaches target `name` (bake matches the pattern
    against target names as a glob)."""
    for value in bake.sets:
        lhs = value.split("=", 1)[0]
        pattern, _, key = lhs.partition(".")
        if key == attr and fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def already_ours(bake: BakeArgs) -> bool:
    """A shim behind a shim: the cache sets in the argv are dockcache's own."""
    return any(OUR_MARK in v for v in bake.sets if v.split("=", 1)[0].rpartition(".")[2] in CACHE_ATTRS)


def plan_bake(argv: Sequence[str], inv: Invocation, bake: BakeArgs, caps: BuildCaps,
              targets: Sequence[BakeTarget], *, import_src: str | None,
              import_tags: Mapping[str, Sequence[str]], export_dests: Mapping[str, str],
              registry: str | None = None, registry_imports: Mapping[str, Sequence[str]] | None = None,
              registry_tags: Mapping[str, str] | None = None, own: frozenset = frozenset(),
              unchanged: frozenset = frozenset()) -> BakePlan:
    """The bake argv with our sets; `import_tags` key -> store tags (the snapshot's),
    `export_dests` target -> private export dir, `registry_imports` key -> existing tags,
    `registry_tags` key -> the tag this build exports to, `own` keys whose every stored build
    this daemon made (its own cache serves them: no import), `unchanged` keys whose target reads
    what this daemon's last export of them did (no store export)."""
    argv = tuple(argv)
    if bake.looks or bake.misread:
        return BakePlan(argv, reasons=(bake.looks or bake.misread, "bake runs unchanged"))
    if already_ours(bake):
        return BakePlan(argv, reasons=("already rewritten by dockcache (nested shim)",))
    reasons = [f"engine: {caps.mode} ({caps.reason})"]
    if caps.mode == "none":
        return BakePlan(argv, reasons=(*reasons, "bake runs unchanged"))
    added: list[str] = []
    imports: list[str] = []
    exports: list[tuple[str, str, str]] = []
    moves: dict[str, str] = {}
    for t in targets:
        sets, said = _imports(t, import_src, import_tags, registry, registry_imports or {})
        imports += [k for k in said if k not in imports]
        to, note = _exports(t, caps, export_dests, registry, registry_tags or {})
        if t.key in unchanged and not t.own_to and caps.mode == "full":
            note += f" (to the store: none, nothing it reads changed since this daemon exported {t.key})"
        sets += to
        if t.name in export_dests and not t.own_to and caps.mode == "full":
            exports.append((t.name, t.key, export_dests[t.name]))
        tag = (registry_tags or {}).get(t.key, t.key)
        if registry and to and tag != t.key:  # exported under its own tag: the key tag moves to it after bake
            moves[t.key] = tag
        added += [x for v in sets for x in ("--set", v)]
        imported = ", ".join(said) if said else _no_import(t, own)
        reasons.append(f"{t.name}: key {t.key}, import {imported}, export {note}")
    keys = tuple(dict.fromkeys(t.key for t in targets))
    return BakePlan(insert_before(argv, inv.args_start, added), keys, tuple(imports), tuple(exports),
                    tuple(moves.items()), tuple(reasons))


def _imports(t: BakeTarget, src: str | None, tags: Mapping[str, Sequence[str]], registry: str | None,
             registry_imports: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    """(`--set` values importing what the store and registry hold of the key and its fallbacks,
    the keys imported)."""
    if t.own_from or t.no_cache:
        return [], []
    sets, keys = [], []
    for k in (t.key, *t.fallbacks):
        local = [f"{t.name}.cache-from=type=local,src={src},tag={tag}" for tag in tags.get(k, ()) if src]
        remote = [f"{t.name}.cache-from=type=registry,ref={registry}:{tag}"
                  for tag in registry_imports.get(k, ()) if registry]
        sets += local + remote
        if local or remote:
            keys.append(k)
    return sets, keys


def _no_import(t: BakeTarget, own: frozenset) -> str:
    if t.key in own:
        return "none (this daemon made every stored build: its own cache serves them)"
    if t.own_from:
        return "none (it has cache-from of its own)"
    if t.no_cache:
        return "none (no-cache)"
    return "nothing yet"


def _exports(t: BakeTarget, caps: BuildCaps, dests: Mapping[str, str], registry: str | None,
             registry_tags: Mapping[str, str]) -> tuple[list[str], str]:
    if t.own_to:
        return [], "no (it has cache-to of its own)"
    if caps.mode != "full":
        return [], "no (this engine cannot export)"
    sets = []
    if t.name in dests:
        # ignore-error: a full or unwritable store must cost the cache, not the build
        sets.append(f"{t.name}.cache-to=type=local,dest={dests[t.name]},mode=max,tag={t.key},ignore-error=true")
    if registry:
        tag = registry_tags.get(t.key, t.key)
        sets.append(f"{t.name}.cache-to=type=registry,ref={registry}:{tag},mode=max,ignore-error=true")
    return sets, ("yes" if sets else "no")
