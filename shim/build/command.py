"""`docker build` / `buildx build`: import from and publish to the shared store.

Docker runs as our child here (not exec) because the publish happens after the build;
signals are forwarded, the TTY stays docker's and its exit code is returned unchanged.
A store problem (lock held too long, corrupt index, full disk) costs the cache, never
the build: one stderr line and the build runs as the user wrote it.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from shim.core.records import dataclass, replace
from pathlib import Path

from shim.core import proc
from shim.core.notice import after_docker, say
from shim.build.store import baselayers
from shim.build.key import Keys, choose, kin
from shim.build.plan import BuildPlan, load_steps, plan_build
from shim.build.store.cachestore import CacheStore, Published, Snapshot, StoreError
from shim.core.config import Config, load
from shim.core.engine import BuildCaps, cached_caps, legacy_reason
from shim.core.grammar import BuildArgs, Invocation, parse_build
from shim.build.store.local import LocalBuilds, for_engine
from shim.build.mounts.plan import MountPlan
from shim.core.state import State, endpoint_id, state_dir


@dataclass
class Prepared:
    plan: BuildPlan
    store: CacheStore | None
    snapshot: Snapshot | None
    export_dir: Path | None
    config: Config
    caps: BuildCaps
    registry: object = None  # the Registry that probed: its login answer serves the tag move
    local: LocalBuilds | None = None  # remembers what this daemon exported
    published: Published | None = None
    shared: object = None  # builder.SharedRun: the build goes to the host's shared BuildKit
    mounts: MountPlan = MountPlan()  # cache mounts to seed before and save after the build
    generation: str | None = None  # the daemon they are seeded into (local.daemon_generation)
    seeded: tuple[int, float] = (0, 0.0)  # mounts seeded, seconds it took
    inputs: dict | None = None  # what this build reads (inputs.py): remembered once its export is published
    unchanged: bool = False  # ... the same as at this daemon's last export: the image it tags is the same
    retried: str | None = None  # why this engine builds what failed on the shared builder (fallback.py)


@dataclass
class RegistryFacts:
    spec: str | None = None  # None: the build does not use the registry
    keys: tuple[str, ...] = ()  # key tags that exist
    tag: str | None = None  # what BuildKit exports to
    client: object = None
    note: str | None = None  # why the registry is left out (explain shows it)


def caps_for(real: str, inv: Invocation, build: BuildArgs, environ: Mapping[str, str]) -> BuildCaps:
    legacy = legacy_reason(environ)
    if legacy:
        return BuildCaps("none", legacy)
    state = State(state_dir(environ))
    endpoint = endpoint_id(inv.host, inv.context, environ)
    builder = build.builder or environ.get("BUILDX_BUILDER")
    return cached_caps(state, endpoint, builder,
                       lambda *a: proc.run_docker(real, [*inv.globals, *a], timeout=30))


def prepare(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
            *, dry_run: bool = False, here: str | None = None) -> Prepared:
    """The rewritten build and what to do around it (explain: with dry_run, nothing made).
    `here`: why it runs on the session's engine, not the shared builder (a retry)."""
    prep = _prepare(real, args, inv, environ, dry_run=dry_run, here=here)
    if prep.plan.key:
        prep.mounts, prep.generation = _mount_plan(inv, environ, prep)
        for reason in prep.mounts.reasons:
            prep.plan = _noted(prep.plan, reason)
    return prep


def _mount_plan(inv: Invocation, environ: Mapping[str, str], prep: Prepared) -> tuple[MountPlan, str | None]:
    """Which cache mounts to seed and save (build/mountsync.py); only files and state are read."""
    from shim.build.mounts import sync as mountsync

    build = parse_build(inv)
    opts = build.options
    return mountsync.plan_for(inv, environ, prep.config, prep.caps, key=prep.plan.key, context=build.context,
                              dockerfile=build.file, target=mountsync.option(opts, "--target"),
                              args=mountsync.build_args(opts, environ), platform=mountsync.option(opts, "--platform"),
                              builder=build.builder, no_cache=build.no_cache)


def _prepare(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
             *, dry_run: bool = False, here: str | None = None) -> Prepared:
    build = parse_build(inv)
    cwd = os.getcwd()
    ctx_dir = os.path.join(cwd, build.context or ".")
    config = load(environ, ctx_dir if os.path.isdir(ctx_dir) else cwd)
    if build.help or build.misread:  # help only, or an argv not read for sure: probe nothing, create nothing
        caps = BuildCaps("none", build.misread or "--help: docker only prints help")
        return Prepared(plan_build(args, inv, build, caps, key="", available=(), import_src=None,
                                   export_dest=None), None, None, None, config, caps)
    from shim.build.mounts.sync import option
    keys = choose(build.tags, build.context, build.file, cwd, config["build.key"], config["build.fallback_keys"],
                  option(build.options, "--target"))
    key, fallbacks = keys.own, list(keys.imports)
    caps = caps_for(real, inv, build, environ)
    if not _enabled(config):
        caps = BuildCaps("none", "build caching is disabled in config")
    if caps.mode == "none" or build.help:
        return Prepared(plan_build(args, inv, build, caps, key=key, available=(), import_src=None,
                                   export_dest=None), None, None, None, config, caps)
    shared, stay_note = (None, here) if here else _shared(real, args, inv, build, config, caps, key, environ, dry_run)
    if shared:
        return shared
    if not dry_run:  # before the export dir is seeded: a base pulled now is left out of the store
        _bases_first(inv, environ)
    reg = _registry_facts(config, caps, key, fallbacks, build.no_cache, dry_run, login_environ(inv.globals, environ))
    registry_args = {"registry": reg.spec, "registry_keys": reg.keys, "registry_tag": reg.tag}
    if config["build.backend"] == "registry":
        plan = plan_build(args, inv, build, caps, key=key, available=(), import_src=None, export_dest=None,
                          **registry_args)
        return Prepared(_noted(_noted(plan, reg.note), stay_note), None, None, None, config, caps, reg.client)
    store = open_store(config)
    unwritable = store.unwritable()
    if unwritable:  # one line for it, not one per step that would write there (snapshot, export dir)
        if not dry_run:
            say(f"{unwritable}; building without the shared cache")
        plan = plan_build(args, inv, build, caps, key=key, available=(), import_src=None, export_dest=None,
                          **registry_args)
        return Prepared(_noted(_noted(_noted(plan, unwritable), reg.note), stay_note), None, None, None, config,
                        caps, reg.client)
    related = None if build.no_cache else kin([key, *fallbacks], store.recency())
    fallbacks = [*fallbacks, related] if related else fallbacks
    wanted = [] if build.no_cache else [key, *fallbacks]
    local = for_engine(inv, caps.driver, build.builder, environ)
    own_note = None
    lineage = store.lineage(key) if local else ()
    if wanted and local and local.holds(key, lineage):
        wanted, own_note = [], f"this daemon made every stored build of {key}: its own cache serves them, no import"
    inputs, same_note = _inputs(real, args, inv, build, caps, local, key, lineage, environ)
    if own_note and same_note and not dry_run:  # no import, no export: nothing else marks the key used
        mark_used(store, key)
    if dry_run:  # explain: say what would be imported, touch nothing
        snap, export_dir = None, None
        available = tuple(k for k in wanted if k in store.keys())
        src, dest = str(store.root / "snapshots"), (None if same_note else str(store.root / "tmp"))
        content = baselayers.content_store(local)  # read-only: the FROM layers that would stay out
        lacking = baselayers.absent(baselayers.reached(build, environ), local) if dest and content else []
        base_note = baselayers.note(baselayers.of_build(build, environ, local, content) if dest else frozenset(),
                                    None, f"would pull {', '.join(lacking)} first: its layers stay out of the "
                                          "store" if lacking else None)
    else:
        content = baselayers.content_store(local)
        snap = safe_snapshot(store, wanted, baselayers.holder(content)) if wanted else None
        snap, pulled = baselayers.pull_missing(real, inv.globals, build, environ, local, content, snap,
                                               lambda: safe_snapshot(store, wanted, baselayers.holder(content)))
        export = (caps.mode == "full" and not build.cache_to and not same_note
                  and _room_for(store, key, config, environ))
        if export:  # a first build on an engine without its base: pulled now, not exported with the build
            from shim.build.shared.route import prints_id
            pulled = baselayers.pull_absent(real, inv.globals, baselayers.reached(build, environ),
                                            option(build.options, "--platform"), environ, local, content,
                                            quiet=prints_id(build)) or pulled
        bases = baselayers.of_build(build, environ, local, content) if export else frozenset()
        export_dir = store.new_export_dir(snap, bases) if export else None
        base_note = baselayers.note(bases, snap, pulled)
        available = tuple(t for k in snap.keys for t in snap.import_tags(k)) if snap else ()
        src = str(snap.src) if snap and snap.src else None
        dest = str(export_dir) if export_dir else None
    try:
        plan = plan_build(args, inv, build, caps, key=key, available=available, import_src=src, export_dest=dest,
                          **registry_args, **({"no_import": own_note} if own_note else {}))
    except BaseException:  # the caller falls back to docker unchanged: leave nothing behind
        _cleanup(Prepared(None, store, snap, export_dir, config, caps))
        raise
    plan = _noted(_noted(_noted(_noted(plan, candidates_note(keys, store, available, dry_run)), same_note),
                         reg.note), stay_note)
    plan = _noted(plan, base_note)
    return Prepared(plan, store, snap, export_dir, config, caps, reg.client, local, inputs=inputs,
                    unchanged=bool(same_note))


def candidates_note(keys: Keys, store: CacheStore, imported, dry_run: bool) -> str | None:
    """explain: the keys this build's project may be stored under, which the store holds and
    which are imported (key.py has the rules)."""
    if len(keys.candidates) < 2 and not dry_run:
        return None
    held = store.keys() if dry_run else {}
    marks = []
    for c in keys.candidates:
        base = {t.split("~", 1)[0] for t in imported}
        state = ("imported" if c.key in base else "stored" if c.key in held
                 else "not stored" if dry_run else "not imported")
        marks.append(f"{c.kind} {c.key} ({'export, ' if c.key == keys.own else ''}{state})")
    listed = {c.key for c in keys.candidates} | set(keys.imports)
    marks += [f"the same Dockerfile in a context with other top names {k} (imported)"  # key.kin
              for k in dict.fromkeys(t.split("~", 1)[0] for t in imported) if k not in listed]
    return "key candidates: " + "; ".join(marks)


def _inputs(real: str, args: Sequence[str], inv: Invocation, build: BuildArgs, caps: BuildCaps, local,
            key: str, lineage: Sequence[str], environ: Mapping[str, str]) -> tuple[dict | None, str | None]:
    """(this build's inputs, to remember after its export; why its export is left out, or None).

    Only on a daemon whose own cache dockcache can tell (`local`) and that exports."""
    from shim.build import inputs as reads

    if local is None or caps.mode != "full" or build.cache_to:
        return None, None
    got = reads.build_inputs(args, inv.args_start, build, os.getcwd(), environ)
    from shim.build.mounts.sync import build_args
    images = reads.bases(got[1], build_args(build.options, environ)) if got else None
    if got is None or images is None:
        return None, None
    fp = got[0]
    remembered = local.state.get(reads.KIND, local.generation, key)
    if not remembered or remembered.get("fp") != fp:  # changed: export; the FROM ids are asked beside the build
        return reads.asking_bases({"fp": fp, "images": images}, real, inv.globals, reads.socket_of(local)), None
    ids = reads.base_ids(real, inv.globals, images, reads.socket_of(local))
    if reads.unchanged(remembered, fp, ids, lineage[0] if lineage else None):
        return None, (f"nothing this build reads changed since this daemon exported {key} "
                      "(context, Dockerfile, arguments, FROM images): no --cache-to")
    return {"fp": fp, "images": images, "bases": ids}, None


def _shared(real: str, args: Sequence[str], inv: Invocation, build: BuildArgs, config: Config, caps: BuildCaps,
            key: str, environ: Mapping[str, str], dry_run: bool) -> tuple[Prepared | None, str | None]:
    """The build routed to the host's shared BuildKit (builder.py), or (None, why it stays here)."""
    from shim.build.shared import builder
    from shim.build.shared.route import NAME_PREFIX, plan_shared, prints_id

    if (build.builder or "").startswith(NAME_PREFIX):  # a shim behind a shim: routed already
        return Prepared(BuildPlan(tuple(args), key, reasons=("already on dockcache's shared builder (nested shim)",)),
                        None, None, None, config, caps), None
    target, why = builder.choose(config, build, environ)
    if target is None:
        if why and "unreachable" in why and not dry_run:
            say(why)
        return None, why
    run = builder.prepare_run(real, inv, target, environ, dry_run=dry_run)
    if run is None:
        return None, "the shared builder's buildx builder could not be made: this engine builds"
    base = builder.session_base(build, run, os.getcwd())
    if base:
        return None, f"FROM {base}: an image of this session's engine, which the shared builder cannot see"
    from shim.build.shared.resolvable import failed_before

    images = _images(build, environ)
    # explain, too, asks the shared builder about the images the engine holds: it needs the
    # buildx builder a build would make first (a file in the docker config dir)
    ask = not (dry_run and images) or builder.ensure_builder(real, inv, target, environ) is None
    here = failed_before(run, key) or (_engine_only(real, inv, run, images, ask) if images else None)
    if here:
        return None, f"{here}: built on this engine"
    if caps.mode == "full" and caps.driver == "docker":  # the containerd image store loads OCI layouts
        run.layouts = Path(f"{config['build.store']}-load")
        run.key, run.prints_id, run.iidfile = key, prints_id(build), build.iidfile
        run.fingerprint = functools.partial(_fingerprint, args, inv, build, environ)  # in the build's shadow
    caps = BuildCaps("full", "the host's shared BuildKit (buildx remote driver)", "remote", caps.buildx)
    plan = plan_shared(args, inv, build, target, key, caps, thin=run.layouts is not None)
    if images:
        plan = _noted(plan, f"images it reads ({', '.join(images)}): "
                            + ("the shared builder resolves each as this engine would (not held here, or the same image)"
                               if ask else "those this engine holds are compared with the shared builder's at the build"))
    if run.layouts and plan.load_check:
        plan = _noted(plan, "containerd image store: the build exports an OCI layout (only blobs it lacks) "
                            "and the load sends only layers this engine lacks")
    return Prepared(plan, None, None, None, config, caps, shared=run), None


def stays_on_engine(real: str, inv: Invocation, target, environ: Mapping[str, str]) -> str | None:
    """For explain of a build another flow runs as a docker build (a compose service): why it
    would stay on the session's engine rather than the shared builder `target`, or None."""
    from shim.build.shared import builder
    from shim.build.shared.resolvable import failed_before

    build = parse_build(inv)
    run = builder.prepare_run(real, inv, target, environ, dry_run=True)
    from shim.build.mounts.sync import option

    config = load(environ, os.getcwd())
    key = choose(build.tags, build.context, build.file, os.getcwd(), config["build.key"],
                 config["build.fallback_keys"], option(build.options, "--target")).own
    images = _images(build, environ)
    ask = not images or builder.ensure_builder(real, inv, target, environ) is None
    return failed_before(run, key) or (_engine_only(real, inv, run, images, ask) if images else None)


def _images(build: BuildArgs, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The images this build reads from outside (baserefs.py). None count under `--pull`:
    the engine would pull them too, whatever it holds."""
    from shim.build.shared import builder
    from shim.build.shared.baserefs import build_refs, contexts_of
    from shim.build.mounts.sync import build_args, option

    if any(k == "--pull" and (v is None or v.lower() in ("true", "1")) for k, v in build.options):
        return ()
    text = builder.dockerfile_text(build, os.getcwd())
    return build_refs(text or "", build_args=build_args(build.options, environ), contexts=contexts_of(build.options),
                      target=option(build.options, "--target")).images


def _engine_only(real: str, inv: Invocation, run, images: Sequence[str], ask: bool) -> str | None:
    """Why an image this build reads keeps it on the session's engine (resolvable.py), or None.
    A check that fails keeps it there too: the engine builds it as plain docker would."""
    from shim.build.shared import resolvable

    try:
        return resolvable.why_here(real, inv, run, images, ask=ask)
    except Exception as exc:  # noqa: BLE001 - a dockcache bug must not route a build it cannot vouch for
        return f"the images it reads could not be checked ({type(exc).__name__}: {exc})"


def _fingerprint(args: Sequence[str], inv: Invocation, build: BuildArgs, environ: Mapping[str, str]) -> str | None:
    """What the build reads (inputs.py, files by mtime and size too: a guess that misses
    costs a load, so only a tree as it was is guessed to build the same), else None."""
    from shim.build.inputs import build_inputs

    got = build_inputs(args, inv.args_start, build, os.getcwd(), environ)
    return got[0] if got else None


def mark_used(store: CacheStore, key: str) -> None:
    try:
        store.used(key)
    except (StoreError, OSError):
        pass  # only the prune's order suffers


def _enabled(config: Config) -> bool:
    """Build caching on: a user who turned it off hears nothing from dockcache."""
    return bool(config["enabled"] and config["build.enabled"])


def _room_for(store: CacheStore, key: str, config: Config, environ: Mapping[str, str]) -> bool:
    """On a nearly full disk the store takes no new keys (keys it holds are still updated);
    one line says so, once (core.diskspace)."""
    from shim.core.diskspace import verdict

    why, line = verdict(State(state_dir(environ)), config, str(store.root))
    if line:
        say(line)
    return why is None or key in store.keys()


def open_store(config: Config) -> CacheStore:
    return CacheStore(Path(config["build.store"]), lock_timeout=config["build.lock_timeout"],
                      history=config["build.key_history"])


def _noted(plan: BuildPlan, note: str | None) -> BuildPlan:
    return replace(plan, reasons=(*plan.reasons, note)) if note else plan


def login_environ(docker_globals: Sequence[str], environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment whose docker login BuildKit will use: `docker --config DIR` wins."""
    from shim.core.grammar import config_dir

    found = config_dir(docker_globals)
    return {**environ, "DOCKER_CONFIG": found} if found else environ


def _registry_facts(config: Config, caps: BuildCaps, key: str, fallbacks: Sequence[str],
                    no_cache: bool, dry_run: bool, environ: Mapping[str, str]) -> RegistryFacts:
    """What the registry/both backends add to this build.

    The existence check runs even with --no-cache: it also says whether the registry
    answers and whether dockcache can log in (else BuildKit exports straight to the key)."""
    spec = config["build.registry"]
    if config["build.backend"] not in ("registry", "both") or not spec:
        return RegistryFacts()
    if caps.mode != "full":
        return RegistryFacts(spec)  # plan_build says why the engine cannot use it
    from shim.build.store.registry import Registry, RegistryDenied, RegistryUnreachable, build_tag, lineage_tags
    client = Registry(spec, timeout=2.0, environ=environ)
    try:
        probe = client.probe([*lineage_tags(key, config["build.key_history"]), *fallbacks])
    except (RegistryUnreachable, RegistryDenied) as exc:
        if not dry_run:
            say(f"{exc}; building without it")
        return RegistryFacts(note=f"{exc}: the build would run without the registry")
    tag = key if probe.needs_login or dry_run else build_tag(key, time.time(), os.urandom(3).hex())
    return RegistryFacts(spec, () if no_cache else probe.existing, tag, client)


def safe_snapshot(store: CacheStore, keys: Sequence[str], holds=None) -> Snapshot | None:
    """A snapshot of the keys that exist, or None (one line said) when the store fails us;
    `holds`: which base layers this engine has (baselayers.holder)."""
    from shim.build.store.handoff import SNAPSHOT_WAIT

    try:
        with store.waiting_at_most(SNAPSHOT_WAIT):
            snap = store.snapshot(keys, holds)
    except (StoreError, OSError) as exc:
        say(f"{exc}; building without the shared cache import")
        return None
    for problem in snap.problems:
        say(problem)
    return snap


def execute(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
            *, on_error: Callable) -> None:
    started = time.monotonic()
    try:
        prep = prepare(real, args, inv, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        _forget_tags(inv, environ)
        on_error(real, list(args), exc)
        return
    if not prep.shared and prep.store is None:  # the store path pulled them in _prepare
        _bases_first(inv, environ)
    if not prep.unchanged:  # an unchanged rebuild tags the same image: `docker run` of it keeps its plan
        _forget_tags(inv, environ)
    if prep.plan.argv == tuple(args) and not prep.mounts.mounts:
        if prep.caps.mode == "none" and parse_build(inv).misread and _enabled(prep.config):
            say(f"{prep.caps.reason}; the build runs unchanged")
        if prep.store:  # its own daemon's cache serves it: metrics count the build (docker says how it ended)
            after_docker(_record, environ, prep, None, time.monotonic() - started)
        return  # nothing to add: the caller execs docker unchanged
    if prep.caps.mode == "import-only" and not prep.plan.export:
        _say_daily(environ, inv, "import-only",
                   f"this engine imports the shared build cache but cannot publish to it: {prep.caps.reason}")
    rc = 1
    try:
        _seed_mounts(real, inv, prep, environ)
        rc = _build(real, inv, prep)
        prep, rc = _fallback(real, args, inv, environ, prep, rc)
        if rc == 0 and prep.plan.export and prep.export_dir:
            after_docker(_publish, prep)
        if rc == 0 and prep.mounts.saves:
            after_docker(_save_mounts, real, inv, prep, environ)
        if rc == 0 and prep.plan.registry_tag and prep.plan.registry_tag != prep.plan.key:
            after_docker(_move_key_tag, prep)
    finally:
        after_docker(_cleanup, prep)
        after_docker(_record, environ, prep, rc, time.monotonic() - started)
    sys.exit(rc)


def _bases_first(inv: Invocation, environ: Mapping[str, str]) -> None:
    """FROM images the engine lacks (all of them with `--pull`) through the host's image cache
    (shim/images): the engine's BuildKit then finds them in its own image store."""
    from shim.build.inputs import bases
    from shim.build.shared.route import from_images
    from shim.images.command import caches_up, ensure

    try:
        build = parse_build(inv)
        if build.help or build.misread or build.file == "-" or build.context in (None, "-") or "://" in build.context:
            return
        if not caches_up(environ):
            return
        here = os.path.join(os.getcwd(), build.context)
        with open(os.path.join(os.getcwd(), build.file) if build.file else os.path.join(here, "Dockerfile"),
                  encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        given = dict(v.split("=", 1) for k, v in build.options if k == "--build-arg" and v and "=" in v)
        images = bases(text, given) or from_images(text)
        platform = next((v for k, v in reversed(build.options) if k == "--platform" and v and "," not in v), None)
        pull = any(k == "--pull" and (v is None or v.lower() in ("true", "1")) for k, v in build.options)
        ensure(inv.host, inv.context, images, environ, asked=images if pull else (), platform=platform)
    except Exception:  # noqa: BLE001 - the build pulls its FROM images as it always did
        return


def _fallback(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str], prep: Prepared,
              rc: int) -> tuple[Prepared, int]:
    """A build the shared builder failed for a reason the session's engine would not have
    (an image it could not resolve or pull, an entitlement: fallback.py) runs once more on
    the engine, the way dockcache builds there, after one line. A build's own failure (a
    RUN that exited non-zero) and a ^C keep BuildKit's output and exit code."""
    from shim.build.shared.fallback import failed_ref, last_error, retry_reason

    build = parse_build(inv)
    if rc == 0 or not prep.shared or proc.interrupted() is not None or "-" in (build.context, build.file):
        return prep, rc  # (stdin was read by the first build: there is nothing to build again)
    why = retry_reason(prep.shared.tail)
    if why is None:
        return prep, rc
    say(f"{why}; building on this engine")
    after_docker(_remember_failed, prep.shared, failed_ref(last_error(prep.shared.tail) or ""), prep.plan.key, why)
    after_docker(_cleanup, prep)
    try:
        local = prepare(real, args, inv, environ, here=f"{why}: retried on this engine")
    except Exception as exc:  # noqa: BLE001 - fail open: the user's build as typed
        say(f"internal error ({type(exc).__name__}: {exc}); running docker unchanged")
        return replace(prep, retried=why), proc.run_child(real, inv.argv)
    local.retried = why
    _bases_first(inv, environ)
    _seed_mounts(real, inv, local, environ)
    return local, _build(real, inv, local)


def _remember_failed(run, ref: str | None, key: str, why: str) -> None:
    from shim.build.shared.resolvable import remember_failed

    remember_failed(run, ref, key, why)


def _forget_tags(inv: Invocation, environ: Mapping[str, str]) -> None:
    """The image this build tags replaces what was remembered of that name (its USER owns
    the caches of `docker run` of it: a Dockerfile that gained `USER node` got the old root
    cache, which node cannot write, for a day)."""
    from shim.core.state import forget_images

    try:
        forget_images(State(state_dir(environ)), endpoint_id(inv.host, inv.context, environ), parse_build(inv).tags)
    except Exception:  # noqa: BLE001 - never the build's concern (an unreadable state dir remembers nothing new)
        pass


def _say_daily(environ: Mapping[str, str], inv: Invocation, what: str, line: str) -> None:
    """A fact of the engine, not of this build: said once a day per engine, not on every build."""
    state = State(state_dir(environ))
    engine = endpoint_id(inv.host, inv.context, environ)
    if state.get("said", engine, what, max_age=24 * 3600.0) is None:
        say(line)
        state.put("said", engine, what, {})


def _build(real: str, inv: Invocation, prep: Prepared) -> int:
    if prep.shared and prep.plan.load_check:
        from shim.build.shared import builder
        try:
            return builder.build(real, inv, prep.plan.argv, parse_build(inv).tags, prep.shared)
        except Exception as exc:  # noqa: BLE001 - a dockcache bug: the user's command, unchanged
            say(f"shared builder: internal error ({type(exc).__name__}: {exc}); running docker unchanged")
            prep.shared.loaded = None
            return proc.run_child(real, inv.argv)
    if not prep.plan.load_check:
        if prep.shared:  # one build with --load: its stderr's last lines say whether to retry here
            rc, prep.shared.tail = proc.run_watched(real, prep.plan.argv)
            return rc
        return proc.run_child(real, prep.plan.argv)
    tag = parse_build(inv).tags[0]
    with tempfile.TemporaryDirectory(prefix="dockcache-iid-") as tmp:
        iidfile = os.path.join(tmp, "iid")
        first, second = load_steps(prep.plan.argv, inv, iidfile)
        rc = proc.run_child(real, first)
        if rc != 0:
            return rc
        try:
            built = open(iidfile, encoding="utf-8").read().strip()
        except OSError:
            built = ""
    local = proc.run_docker(real, [*inv.globals, "image", "inspect", "--format", "{{.Id}}", tag], timeout=30)
    if built and local.returncode == 0 and local.stdout.strip() == built:
        say(f"{tag} is unchanged ({built[:19]}): load skipped")
        return 0
    return proc.run_child(real, second)


def _seed_mounts(real: str, inv: Invocation, prep: Prepared, environ: Mapping[str, str]) -> None:
    """Before docker: a failed seed costs the warm mount, never the build."""
    if not prep.mounts.mounts:
        return
    from shim.build.mounts import sync as mountsync
    started = time.monotonic()
    try:
        mountsync.say_failed_save(State(state_dir(environ)), prep.plan.key)
        if not prep.mounts.seeds:
            return
        n = mountsync.seed(real, inv.globals, prep.mounts, open_store(prep.config), State(state_dir(environ)),
                           prep.generation)
        prep.seeded = (n, time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - fail open: the build runs with what the daemon has
        say(f"cache mounts not seeded: {type(exc).__name__}: {exc}")


def _save_mounts(real: str, inv: Invocation, prep: Prepared, environ: Mapping[str, str]) -> None:
    from shim.build.mounts import sync as mountsync
    tags = parse_build(inv).tags
    mountsync.save_later(real, inv.globals, prep.mounts, key=prep.plan.key, config=prep.config,
                         environ=environ, generation=prep.generation, tag=tags[0] if tags else None)


def _publish(prep: Prepared) -> None:
    from shim.build.store import handoff

    try:
        done = handoff.publish(prep.store, prep.export_dir, prep.plan.key, max_size=prep.config["build.max_size"])
        if done is None:  # the store stays locked: a detached worker publishes it
            prep.export_dir = None
            return
        prep.published = done
        if prep.local:
            prep.local.remember(prep.plan.key, done.digest)
            from shim.build.inputs import remember
            remember(prep.local, prep.plan.key, prep.inputs, done.digest)
    except Exception as exc:  # noqa: BLE001 - the build succeeded; only the cache is lost
        say(f"build cache not published: {exc}")


def _move_key_tag(prep: Prepared) -> None:
    from shim.build.store.registry import RegistryError, RegistryUnreachable
    try:
        prep.registry.move(prep.plan.registry_tag, prep.plan.key, history=prep.config["build.key_history"])
    except (RegistryError, RegistryUnreachable) as exc:  # e.g. the export itself was ignored
        say(f"registry key {prep.plan.key} not updated: {exc}")


def _cleanup(prep: Prepared) -> None:
    if prep.snapshot:
        prep.snapshot.release()
    if prep.export_dir:
        shutil.rmtree(prep.export_dir, ignore_errors=True)


def _record(environ: Mapping[str, str], prep: Prepared, rc: int | None, seconds: float) -> None:
    """One metrics line; rc None: docker ran as typed (exec), dockcache spent `seconds` before it."""
    State(state_dir(environ)).append_log("metrics", {
        "kind": "build", "key": prep.plan.key, "imports": list(prep.plan.imports),
        "export": prep.plan.export, "engine": prep.caps.mode, "rc": rc, "ms": round(seconds * 1000, 2),
        **({"as_typed": True} if rc is None else {}),
        **_published_fields(prep.published), **_mount_fields(prep),
        **({"builder": "shared", "loaded": prep.shared.loaded, "thin": prep.shared.thin,
            "early": prep.shared.early} if prep.shared else {}),
        **({"retried": prep.retried} if prep.retried else {})})


def _mount_fields(prep: Prepared) -> dict:
    if not prep.mounts.mounts:
        return {}
    return {"mounts": len(prep.mounts.mounts), "mounts_seeded": prep.seeded[0],
            "mounts_seed_ms": round(prep.seeded[1] * 1000, 2), "mounts_saved": len(prep.mounts.saves)}


def _published_fields(done: Published | None) -> dict:
    if done is None:
        return {}
    return {"export_written": done.written, "store_added": done.added, "store_changed": done.changed}
