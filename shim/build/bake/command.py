"""`docker buildx bake`: every target it builds imports from and publishes to the shared
store (and registry), as `docker build` does.

Bake resolves its own files (bakefiles.py: `bake --print`, remembered by content); each
target gets the key a `docker build` of it would (key.py), `--set T.cache-from` for what
the store holds of that key (from one snapshot for the whole bake) and `--set T.cache-to`
into a private export dir of its own, published under the store lock after bake as a
build's is (handoff.py). Bake runs as our child, its exit code returned unchanged; a
problem in dockcache costs the cache, never the bake.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from shim.core.records import dataclass, field

from shim.build.bake import files as bakefiles
from shim.build.bake.plan import BakePlan, BakeTarget, already_ours, plan_bake, user_sets
from shim.build.command import _room_for, login_environ, mark_used, open_store, safe_snapshot
from shim.build.key import choose
from shim.build.shared.route import NAME_PREFIX
from shim.build.store import baselayers, layout
from shim.build.store.local import LocalBuilds, for_engine
from shim.build.store.cachestore import CacheStore, Snapshot
from shim.core import proc
from shim.core.config import Config, load
from shim.core.engine import BuildCaps, cached_caps
from shim.core.grammar import BakeArgs, Invocation, parse_bake
from shim.core.notice import after_docker, say
from shim.core.state import State, endpoint_id, state_dir


@dataclass
class Prepared:
    plan: BakePlan
    config: Config | None = None
    caps: BuildCaps | None = None
    store: CacheStore | None = None
    snapshot: Snapshot | None = None
    dirs: list = field(default_factory=list)  # private export dirs made (removed after bake)
    registry: object = None  # the Registry that probed: its login answer serves the tag moves
    local: LocalBuilds | None = None
    inputs: dict = field(default_factory=dict)  # key -> what its target reads (bakeinputs.py), kept after publish
    note: str | None = None  # one line to say when the bake runs unchanged
    published: list = field(default_factory=list)
    builds: list = field(default_factory=list)  # bakeshared.TargetBuild: on the shared builder, instead of bake


def _unchanged(args: Sequence[str], why: str, note: str | None = None, config=None) -> Prepared:
    return Prepared(BakePlan(tuple(args), reasons=(why, "bake runs unchanged")), config, note=note)


def prepare(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
            *, dry_run: bool = False) -> Prepared:
    """The rewritten bake and what to do around it (with dry_run: nothing made, for explain)."""
    bake = parse_bake(inv)
    cwd = os.getcwd()
    config = load(environ, cwd)
    if bake.looks:
        return _unchanged(args, bake.looks)
    if not (config["enabled"] and config["build.enabled"]):
        return _unchanged(args, "build caching is disabled in config")
    if bake.misread:
        return _unchanged(args, bake.misread, f"{bake.misread}; bake runs unchanged", config)
    if already_ours(bake) or (bake.builder or "").startswith(NAME_PREFIX):
        return _unchanged(args, "already rewritten by dockcache (nested shim)")
    caps = _caps(real, inv, bake, environ)
    if caps.mode == "none":
        return _unchanged(args, f"engine: {caps.reason}", f"{caps.reason}; bake runs unchanged", config)
    try:
        resolved = bakefiles.resolve(real, inv, bake, environ, cwd)
    except bakefiles.Unresolved as exc:
        return _unchanged(args, f"bake --print failed ({exc})",
                          f"bake's targets could not be read ({exc}); bake runs unchanged", config)
    from shim.build.bake.route import route
    builds, stay = route(real, inv, bake, config, resolved, environ, dry_run)
    if builds:
        return Prepared(BakePlan(tuple(args), reasons=(stay,)), config, builds=builds)
    targets = [_target(name, t, bake, cwd, config) for name, t in sorted(resolved.items())]
    prep = _with_store(real, args, inv, bake, environ, config, caps, targets, dry_run, resolved)
    prep.plan = _noted(prep.plan, stay)
    return prep


def _caps(real: str, inv: Invocation, bake: BakeArgs, environ: Mapping[str, str]) -> BuildCaps:
    """What the builder can do; bake always builds through buildx (DOCKER_BUILDKIT=0 does not apply)."""
    builder = bake.builder or environ.get("BUILDX_BUILDER")
    return cached_caps(State(state_dir(environ)), endpoint_id(inv.host, inv.context, environ), builder,
                       lambda *a: proc.run_docker(real, [*inv.globals, *a], timeout=30))


def _target(name: str, t: Mapping, bake: BakeArgs, cwd: str, config: Config) -> BakeTarget:
    stage = t.get("target") if isinstance(t.get("target"), str) else None
    keys = choose(bakefiles.tags_of(t), str(t.get("context") or "."), bakefiles.dockerfile_of(t), cwd,
                  config["build.key"], config["build.fallback_keys"], stage)
    return BakeTarget(name, keys.own, keys.imports,
                      own_from=bakefiles.has(t, "cache-from") or user_sets(bake, name, "cache-from"),
                      own_to=bakefiles.has(t, "cache-to") or user_sets(bake, name, "cache-to"),
                      no_cache=bake.no_cache or t.get("no-cache") is True)


def _with_store(real, args, inv, bake, environ, config, caps, targets, dry_run, resolved) -> Prepared:
    prep = Prepared(BakePlan(tuple(args)), config, caps)
    reg = _registry(config, caps, targets, dry_run, login_environ(inv.globals, environ))
    if config["build.backend"] != "registry":
        store = open_store(config)
        unwritable = store.unwritable()
        if unwritable and not dry_run:
            say(f"{unwritable}; building without the shared cache")
        prep.store = None if unwritable else store
    prep.local = for_engine(inv, caps.driver, bake.builder, environ) if prep.store else None
    same = frozenset()
    if prep.local and caps.mode == "full":
        from shim.build.bake.inputs import split
        prep.inputs, same = split(real, inv.globals, prep.local, prep.store, targets, resolved, os.getcwd(),
                                  no_cache=bake.no_cache, pull=bake.pull, environ=environ)
    try:
        src, tags, dests, own = _local(prep, targets, environ, dry_run, same, resolved, (real, inv.globals))
        prep.plan = plan_bake(args, inv, bake, caps, targets, import_src=src, import_tags=tags, export_dests=dests,
                              registry=reg.get("spec"), registry_imports=reg.get("imports"),
                              registry_tags=reg.get("tags"), own=own, unchanged=same)
    except BaseException:  # the caller falls back to bake unchanged: leave nothing behind
        _cleanup(prep)
        raise
    prep.registry = reg.get("client")
    prep.plan = _noted(prep.plan, reg.get("note"))
    return prep


def _local(prep: Prepared, targets: Sequence[BakeTarget], environ, dry_run: bool, same: frozenset,
           resolved: Mapping[str, Mapping] | None = None, docker: tuple | None = None):
    """(snapshot dir, key -> tags to import, target -> private export dir, keys this daemon
    made every stored build of) from the local store. As for a build (baselayers.py): a stored
    build that reaches base-layer placeholders is imported only where this engine holds those
    layers (the FROM images this engine lacks are pulled first, `docker`: (real, its globals)),
    and each export dir gets placeholders for the target's FROM layers."""
    store = prep.store
    if store is None:
        return None, {}, {}, frozenset()
    own = frozenset(t.key for t in targets if prep.local and prep.local.holds(t.key, store.lineage(t.key)))
    wanted = list(dict.fromkeys(k for t in targets if not (t.own_from or t.no_cache)
                                for k in (t.key, *t.fallbacks) if k not in own))
    exporting = [t for t in targets if not t.own_to and prep.caps.mode == "full" and t.key not in same]
    for key in (own & same) if not dry_run else ():  # no import, no export: nothing else marks it used
        mark_used(store, key)
    if dry_run:
        held = store.keys()
        return (str(store.root / "snapshots"), {k: (k,) for k in wanted if k in held},
                {t.name: str(store.root / "tmp") for t in exporting}, own)
    content = baselayers.content_store(prep.local)
    snap = safe_snapshot(store, wanted, baselayers.holder(content)) if wanted else None
    if snap and snap.lacking and docker and content is not None:  # a new session's daemon without the base
        images, platform = _froms(targets, resolved or {}, {layout.base(t) for t in snap.lacking})
        snap, _said = baselayers.pull_first(docker[0], docker[1], images, platform, environ, prep.local, snap,
                                            lambda: safe_snapshot(store, wanted, baselayers.holder(content)))
    prep.snapshot = snap
    if docker and content is not None:  # a first build without the bases: pulled now, not exported
        room = [t for t in exporting if _room_for(store, t.key, prep.config, environ)]
        images, platform = _images_of([t.name for t in room], resolved or {})
        baselayers.pull_absent(docker[0], docker[1], images, platform, environ, prep.local, content)
    dests = {}
    for t in exporting:
        if _room_for(store, t.key, prep.config, environ):
            dest = store.new_export_dir(snap, _bases((resolved or {}).get(t.name) or {}, prep.local, content))
            prep.dirs.append(dest)
            dests[t.name] = str(dest)
    tags = {k: snap.import_tags(k) for k in snap.keys} if snap else {}
    return (str(snap.src) if snap and snap.src else None), tags, dests, own


def _bases(target: Mapping, local, content) -> frozenset[str]:
    """The layers of a target's FROM images this engine holds (its args as bake resolved them)."""
    if content is None:
        return frozenset()
    return baselayers.of_images(_from_images(target), local, content)


def _from_images(target: Mapping) -> list[str]:
    text = target.get("dockerfile-inline")
    if not isinstance(text, str):
        context = str(target.get("context") or ".")
        if "://" in context:
            return []
        text = baselayers.read_dockerfile(bakefiles.dockerfile_of(target) or os.path.join(context, "Dockerfile"))
    args = target.get("args") if isinstance(target.get("args"), dict) else {}
    return baselayers.dockerfile_images(text, {str(k): str(v) for k, v in args.items() if v is not None})


def _froms(targets: Sequence[BakeTarget], resolved: Mapping[str, Mapping], keys) -> tuple[list[str], str | None]:
    """(the FROM images of the targets that import any of these keys, their one platform)."""
    return _images_of([t.name for t in targets if keys & {t.key, *t.fallbacks}], resolved)


def _images_of(chosen: Sequence[str], resolved: Mapping[str, Mapping]) -> tuple[list[str], str | None]:
    """(the FROM images of these targets, their one platform)."""
    images = [i for n in chosen for i in _from_images(resolved.get(n) or {})]
    platforms = {tuple((resolved.get(n) or {}).get("platforms") or ()) for n in chosen}
    one = platforms.pop() if len(platforms) == 1 else ()
    return images, (one[0] if len(one) == 1 else None)


def _registry(config: Config, caps: BuildCaps, targets: Sequence[BakeTarget], dry_run: bool,
              environ: Mapping[str, str]) -> dict:
    """The registry backend's part: which key tags exist, the tag each key exports to."""
    spec = config["build.registry"]
    if config["build.backend"] not in ("registry", "both") or not spec or caps.mode != "full":
        return {}
    from shim.build.store.registry import Registry, RegistryDenied, RegistryUnreachable, build_tag, lineage_tags

    history = config["build.key_history"]
    keys = list(dict.fromkeys(k for t in targets for k in (t.key, *t.fallbacks)))
    client = Registry(spec, timeout=2.0, environ=environ)
    try:
        probe = client.probe([tag for k in keys for tag in lineage_tags(k, history)])
    except (RegistryUnreachable, RegistryDenied) as exc:
        if not dry_run:
            say(f"{exc}; building without it")
        return {"note": f"{exc}: the bake would run without the registry"}
    existing = set(probe.existing)
    imports = {k: tuple(t for t in lineage_tags(k, history) if t in existing) for k in keys}
    tags = {t.key: t.key if probe.needs_login or dry_run else build_tag(t.key, time.time(), os.urandom(3).hex())
            for t in targets}
    return {"spec": spec, "imports": imports, "tags": tags, "client": client}


def _noted(plan: BakePlan, note: str | None) -> BakePlan:
    from shim.core.records import replace
    return replace(plan, reasons=(*plan.reasons, note)) if note else plan


def execute(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
            *, on_error: Callable) -> None:
    started = time.monotonic()
    try:
        prep = prepare(real, args, inv, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        on_error(real, list(args), exc)
        return
    if prep.builds:
        _target_builds(real, inv, prep, environ)
    if prep.plan.argv == tuple(args):
        if prep.note:
            say(prep.note)
        _cleanup(prep)
        return  # the caller execs bake unchanged
    rc = 1
    try:
        rc = proc.run_child(real, prep.plan.argv)
        if rc == 0:
            after_docker(_publish, prep)
            after_docker(_move_keys, prep)
    finally:
        after_docker(_cleanup, prep)
        after_docker(_record, environ, prep, rc, time.monotonic() - started)
    sys.exit(rc)


def _target_builds(real: str, inv: Invocation, prep: Prepared, environ: Mapping[str, str]) -> None:
    """Each target's docker build on the shared builder (bakeroute.py); exits with the first
    failure's code."""
    from shim.build.bake.route import run_builds

    rc, started = 1, time.monotonic()
    try:
        rc = run_builds(real, inv, prep.builds, environ)
    finally:
        after_docker(_record, environ, prep, rc, time.monotonic() - started)
    sys.exit(rc)


def _publish(prep: Prepared) -> None:
    """Each target's export into the store, one after another under its lock; a target
    bake did not export (a failed export is ignored: ignore-error) publishes nothing."""
    from shim.build.store import handoff

    for name, key, dest in prep.plan.exports:
        path = Path(dest)
        if not (path / "index.json").exists():
            continue
        try:
            done = handoff.publish(prep.store, path, key, max_size=prep.config["build.max_size"])
        except Exception as exc:  # noqa: BLE001 - the bake succeeded; only this target's cache is lost
            say(f"build cache of {name} not published: {exc}")
            continue
        if done is None:  # the store stays locked: a detached worker publishes it
            continue
        prep.published.append(key)
        if prep.local:
            from shim.build.inputs import remember
            prep.local.remember(key, done.digest)
            remember(prep.local, key, prep.inputs.get(key), done.digest)


def _move_keys(prep: Prepared) -> None:
    from shim.build.store.registry import RegistryError, RegistryUnreachable

    for key, tag in prep.plan.moves:
        try:
            prep.registry.move(tag, key, history=prep.config["build.key_history"])
        except (RegistryError, RegistryUnreachable) as exc:
            say(f"registry key {key} not updated: {exc}")


def _cleanup(prep: Prepared) -> None:
    if prep.snapshot:
        prep.snapshot.release()
    for dest in prep.dirs:
        shutil.rmtree(dest, ignore_errors=True)  # a dir handed to the publish worker was renamed away


def _record(environ: Mapping[str, str], prep: Prepared, rc: int, seconds: float) -> None:
    State(state_dir(environ)).append_log("metrics", {
        "kind": "bake", "keys": list(prep.plan.keys), "imports": list(prep.plan.imports),
        "published": prep.published, "engine": prep.caps.mode if prep.caps else None,
        **({"builder": "shared", "target_builds": [b.target for b in prep.builds]} if prep.builds else {}),
        "rc": rc, "ms": round(seconds * 1000, 2)})
