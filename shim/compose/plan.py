"""The compose plan: an override file, after exactly the files compose would load, that
gives each service with a `build:` its `cache_from`/`cache_to` and each service the
package caches and mirrors `docker run` would get.

Compose >= 2.37 builds through the buildx plugin binary directly, so a docker shim never
sees those builds (../shared/BUILDKIT.md); the compose file is the reliable hook. Adding
one more file keeps the project name, project directory and relative paths; lists such
as `cache_from` are appended when compose merges files, so the user's own entries stay.
Planning asks docker for facts (compose's resolved config, engine caps, registry tags)
and takes a store snapshot; it never runs the user's command (see command.py).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from shim.core.records import dataclass, field
from pathlib import Path

from shim.build.command import candidates_note, login_environ, mark_used, open_store, safe_snapshot
from shim.build.key import kin
from shim.build.store import baselayers, layout
from shim.build.store.local import LocalBuilds, for_engine
from shim.build.store.cachestore import CacheStore, Snapshot
from shim.compose.keys import named_project, service_keys
from shim.compose.files import ComposeCall, builder_of, env_files_kept, files_for, given, invocation, only_looks, reads_stdin, split, wants_build
from shim.compose.override import write_override
from shim.compose.services import forget_rebuilt, forget_vanished, named_services, names, service_caches
from shim.compose.resolved import resolved_config
from shim.compose.sharedbuild import build_limit, builds_on_another, compose_after, order_note, plan_builds
from shim.core import proc
from shim.core.notice import say
from shim.core.config import load
from shim.core.engine import BuildCaps, cached_caps, legacy_reason
from shim.core.state import State, endpoint_id, state_dir
from shim.run.execplan import LABEL
from shim.run.plan import cache_label


@dataclass
class ComposePlan:
    argv: list[str]  # args for the real binary (without the program)
    env: dict[str, str]
    exports: dict[str, Path] = field(default_factory=dict)  # key -> private export dir
    snapshot: Snapshot | None = None
    tmpdir: str | None = None
    override: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    registry: object = None  # the Registry that probed: its login answer serves every move
    moves: dict[str, str] = field(default_factory=dict)  # key -> build tag, moved after compose
    store: CacheStore | None = None  # where `exports` are published
    history: int = 1  # builds a key keeps in the registry
    local: LocalBuilds | None = None  # remembers what this daemon exported
    usage: dict = field(default_factory=dict)  # for the metrics record: keys, imports, caches
    inputs: dict = field(default_factory=dict)  # key -> what its build reads (build/inputs.py), kept after publish
    mounts: dict = field(default_factory=dict)  # key -> ServiceMounts: cache mounts to seed and save
    docker_globals: tuple[str, ...] = ()  # docker's own options (-H, --context) for the seed/save builds
    service_builds: list = field(default_factory=list)  # sharedbuild.ServiceBuild: built before compose runs
    build_limit: int = 0  # service builds at once (0: all), compose's own limit
    compose_runs: bool = True  # False: the service builds were the whole command (`compose build`)


@dataclass(frozen=True)
class ServiceMounts:
    plan: object  # build.mountplan.MountPlan
    generation: str | None
    image: str  # the image compose tags (the save is skipped while it is unchanged)


@dataclass
class Sources:
    """Where service builds import from and export to."""

    caps: BuildCaps
    store: CacheStore | None  # None: registry backend only
    snap: Snapshot | None = None
    registry: str | None = None
    in_registry: frozenset[str] = frozenset()
    tags: dict[str, str] = field(default_factory=dict)  # key -> registry export tag
    stored: frozenset[str] = frozenset()  # explain: keys the local store holds (no snapshot taken)
    client: object = None  # the Registry that probed (its login answer serves the moves)
    history: int = 1  # builds a key keeps (build.key_history)
    local: LocalBuilds | None = None  # what this daemon exported
    own: frozenset[str] = frozenset()  # keys whose every stored build this daemon made: no import
    imports: dict = field(default_factory=dict)  # own key -> its other candidates and fallbacks (keys.py)
    content: object = None  # the engine's content store (baselayers.py): base layers stay out of exports


def plan(real: str, name: str, args: Sequence[str], environ: Mapping[str, str], *, dry_run=False) -> ComposePlan | None:
    call = split(name, args)
    if reads_stdin(call) or only_looks(call):
        return None
    building = wants_build(call)
    if not building and call.sub not in ("up", "run", "create"):
        return None
    legacy = legacy_reason(environ)
    if legacy and building:
        return ComposePlan(list(args), {}, reasons=[f"build caching off: {legacy}"])
    too_old = _version_problem(real, call, environ) if building else None
    if too_old:
        return ComposePlan(list(args), {}, reasons=[f"build caching off: {too_old}"])
    cfg = selected_config(real, call, environ)
    if cfg is None:
        return None
    config = load(environ, os.getcwd())
    if not (config["enabled"] and config["compose.enabled"] and config["build.enabled"]):
        return ComposePlan(list(args), {}, reasons=["compose caching is disabled in config"])
    project = str(cfg.get("name") or "compose")
    if building and not dry_run:
        forget_rebuilt(call, cfg, project, environ)
    builds = {s: v for s, v in cfg["services"].items()
              if building and isinstance(v, dict) and isinstance(v.get("build"), dict)}
    per_service, shared_note = _shared(real, call, builds, cfg, project, config, environ, dry_run)
    if per_service:
        builds = {}  # BuildKit's own cache serves them: no store import or export
        after = compose_after(call)
        if after is None:  # `compose build`: the service builds are the whole command
            return ComposePlan([], {}, reasons=[shared_note], service_builds=per_service, compose_runs=False,
                               docker_globals=invocation(call).globals, build_limit=build_limit(call, environ))
        args = after
    run_caches = service_caches(real, call, cfg, project, environ, dry_run=dry_run)
    if run_caches and not dry_run and forget_vanished(real, call, run_caches, environ):
        run_caches = service_caches(real, call, cfg, project, environ)  # re-created, labelled and owned
    if not builds and not run_caches:
        if per_service:
            return ComposePlan(list(args), {}, reasons=[shared_note], service_builds=per_service,
                               docker_globals=invocation(call).globals, build_limit=build_limit(call, environ))
        return None
    chosen = service_keys(builds, project, os.getcwd(), config["build.key"], config["build.fallback_keys"],
                          named_project(project, _project_dirs(call, environ)))
    keys = {s: k.own for s, k in chosen.items()}
    imports = {k.own: k.imports for k in chosen.values()}
    src = (sources(real, call, config, environ, list(keys.values()), dry_run, imports,
                   _froms(call, environ, builds, chosen)) if builds
           else Sources(BuildCaps("none", "no service builds"), None))
    made: dict = {}
    inputs, same = _inputs(real, call, builds, keys, src, environ)
    for key in (same & src.own) if not dry_run else ():  # no import, no export: nothing else marks it used
        mark_used(src.store, key)
    pulled = None if dry_run else _pull_bases(real, call, environ, builds, keys, src, same)
    try:
        p = _with_override(call, args, environ, builds, keys, src, dry_run, run_caches, made, same)
        p.reasons += [pulled] if pulled else []
        p.reasons += [f"{svc}: {n}" for svc, n in _candidate_notes(chosen, src, p.override, dry_run)]
        p.inputs = inputs
        p.reasons[:0] = [shared_note] if shared_note else []
        p.service_builds, p.build_limit = per_service, build_limit(call, environ)
        p.docker_globals = invocation(call).globals
        p.mounts = service_mounts(call, environ, config, src.caps, builds, keys, project, builder_of(call, environ))
    except BaseException:  # the caller falls back to docker unchanged: leave nothing behind
        if src.snap:
            src.snap.release()
        for dest in made.values():
            shutil.rmtree(dest, ignore_errors=True)
        raise
    p.reasons += [f"{svc}: {r}" for svc, key in keys.items() if key in p.mounts for r in p.mounts[key].plan.reasons]
    return p


def service_mounts(call: ComposeCall, environ, config, caps: BuildCaps, builds: dict, keys: dict,
                   project: str, builder: str | None = None) -> dict[str, ServiceMounts]:
    """Each built service's cache mounts (build/mountsync.py reads its Dockerfile); none to
    carry on the shared builder, whose BuildKit keeps them for every session."""
    from shim.build.mounts.sync import plan_for, section_args

    out = {}
    for svc, spec in builds.items():
        b = spec["build"]
        context = str(b.get("context") or ".")
        if "dockerfile_inline" in b:
            continue  # not a file dockcache reads; its mounts stay in the daemon
        dockerfile = os.path.join(context, str(b.get("dockerfile") or "Dockerfile"))
        platforms = b.get("platforms") or []
        plan, generation = plan_for(invocation(call), environ, config, caps, key=keys[svc], context=context,
                                    dockerfile=dockerfile, target=b.get("target"),
                                    args=section_args(b),
                                    platform=platforms[0] if len(platforms) == 1 else None, builder=builder,
                                    no_cache=bool(b.get("no_cache")) or given(call, "--no-cache"))
        if plan.reasons or plan.mounts:
            out[keys[svc]] = ServiceMounts(plan, generation, str(spec.get("image") or f"{project}-{svc}"))
    return out


def _shared(real: str, call: ComposeCall, builds: dict, cfg: dict, project: str, config, environ,
            dry_run: bool) -> tuple[list, str | None]:
    """(one docker build per service on the host's shared BuildKit, the reason), or ([], why
    not): then the store path. Compose given BUILDX_BUILDER would load every image it builds
    in full (~8 s per 320 MB image, docs/benchmarks.md); a docker build each loads only what
    changed (sharedbuild.py). For `compose build` and `up|run|create --build`; `up` alone
    builds only missing images, which compose decides."""
    from shim.build.shared.builder import prepare_run, reachable_target

    if not builds or (call.sub != "build" and "--build" not in call.rest):
        return [], None
    if environ.get("BUILDX_BUILDER") or "--builder" in call.rest:
        return [], None  # the user chose a builder: left on it
    if not config["compose.shared_builder"]:
        return [], "compose.shared_builder is off: service builds take the store path"
    if _caps(real, call, environ).mode == "none":
        return [], None
    target, why = reachable_target(config)
    if target is None:
        if why and "unreachable" in why and not dry_run:
            say(why)
        return [], why
    planned, why = plan_builds(call, builds, cfg, project, compose_version(real, call, environ))
    why = why or builds_on_another(builds, project, _dockerfiles(builds))
    if why:
        return [], f"shared builder {target.address or target.name}: {why}; service builds take the store path"
    if prepare_run(real, invocation(call), target, environ, dry_run=dry_run) is None:
        return [], None
    return planned, (f"service builds on the shared builder {target.address or target.name}: one docker build "
                     f"each ({', '.join(b.service for b in planned)}), {order_note(planned, build_limit(call, environ))}, "
                     "loading only what changed; then compose with --no-build"
                     + (_engine_only(real, call, planned, target, environ) if dry_run else ""))


def _engine_only(real: str, call: ComposeCall, planned: list, target, environ) -> str:
    """explain: the service builds that will stay on the engine, each as its docker build decides
    (an image it reads that the shared builder does not resolve as the engine would)."""
    from shim.build.command import stays_on_engine
    from shim.core.grammar import parse_invocation

    said = []
    for b in planned:
        inv = parse_invocation([*invocation(call).globals, *b.argv])
        why = stays_on_engine(real, inv, target, environ)
        if why:
            said.append(f"; service {b.service} builds on this engine ({why})")
    return "".join(said)


def _dockerfiles(builds: dict) -> dict[str, str]:
    """Each service's Dockerfile text, where it is a local file dockcache can read."""
    out = {}
    for svc, spec in builds.items():
        b = spec.get("build") or {}
        context = str(b.get("context") or ".")
        path = os.path.join(context, str(b.get("dockerfile") or "Dockerfile"))
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                out[svc] = fh.read(1_000_000)
        except OSError:
            continue
    return out


def selected_config(real: str, call: ComposeCall, environ) -> dict | None:
    """compose's resolved project with only the services the command acts on."""
    cfg = resolved_config(real, call, environ)
    if cfg is None or not isinstance(cfg.get("services"), dict):
        return None
    named = names(call)
    if named and not all(n in cfg["services"] for n in named):
        # a service of a profile not enabled: naming it enables its profile, as compose does
        by_name = resolved_config(real, call, environ, services=named)
        if by_name is not None and isinstance(by_name.get("services"), dict):
            cfg = by_name
    return {**cfg, "services": named_services(call, cfg["services"])}


def compose_version(real: str, call: ComposeCall, environ) -> str:
    """`docker compose version --short`, asked once a day and remembered."""
    state = State(state_dir(environ))
    key = " ".join([real, *call.base])
    known = state.get("compose", key, key, max_age=24 * 3600)
    if known is None:
        res = proc.run_docker(real, [*call.base, "version", "--short"], timeout=30)
        known = {"version": res.stdout.strip().lstrip("v") if res.returncode == 0 else ""}
        state.put("compose", key, key, known)
    return str(known.get("version", ""))


def _version_problem(real: str, call: ComposeCall, environ) -> str | None:
    """Compose v1 (and v2 before 2.4) cannot take `type=` cache entries."""
    version = compose_version(real, call, environ)
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return f"compose version {version or 'unknown'} could not be read"
    if (major, minor) < (2, 4):
        return f"compose {version} cannot use BuildKit cache_from/cache_to entries (needs 2.4+)"
    return None


def sources(real: str, call: ComposeCall, config, environ, keys: list[str], dry_run: bool,
            imports: Mapping[str, Sequence[str]] | None = None, froms=None) -> Sources:
    """What this engine can do (an old engine cannot export: a cache_to would fail the
    build) and what each backend holds; `imports`: key -> the other keys it imports from;
    `froms`: keys -> (the FROM images of the services that import them, their platform)."""
    caps = _caps(real, call, environ)
    if caps.mode == "none":
        return Sources(caps, None)
    store = None
    if config["build.backend"] != "registry":
        store = open_store(config)
        unwritable = store.unwritable()
        if unwritable:  # one line, as for builds; the services build without the store
            if not dry_run:
                say(f"{unwritable}; building without the shared cache")
            store = None
    local = for_engine(invocation(call), caps.driver, builder_of(call, environ), environ)
    imports = {k: tuple((imports or {}).get(k, ())) for k in keys}
    if store:  # a service whose keys are not stored imports the same Dockerfile's other context
        used = store.recency()
        imports = {k: (*v, r) if (r := kin((k, *v), used)) else v for k, v in imports.items()}
    own = frozenset(k for k in keys if store and local and local.holds(k, store.lineage(k)))
    wanted = list(dict.fromkeys(x for k in keys if k not in own for x in (k, *imports[k])))
    content = baselayers.content_store(local) if store else None
    snap = (safe_snapshot(store, wanted, baselayers.holder(content))
            if store and wanted and not dry_run else None)
    if snap and snap.lacking and froms:  # a new session's daemon without the base: pulled first, as for builds
        images, platform = froms({layout.base(t) for t in snap.lacking})
        snap, _said = baselayers.pull_first(_docker(real, call, environ), invocation(call).globals, images, platform, environ, local, snap,
                                            lambda: safe_snapshot(store, wanted, baselayers.holder(content)))
    stored = frozenset(k for k in wanted if k in store.keys()) if store and dry_run else frozenset()
    spec = config["build.registry"] if config["build.backend"] != "local" else ""
    if not spec or caps.mode != "full":
        return Sources(caps, store, snap, stored=stored, local=local, own=own, imports=imports, content=content)
    from shim.build.store.registry import Registry, RegistryDenied, RegistryUnreachable, build_tag, lineage_tags
    client = Registry(spec, timeout=2.0, environ=login_environ(call.base[:-1], environ))
    history = config["build.key_history"]
    try:
        probe = client.probe([t for k in dict.fromkeys(x for k in keys for x in (k, *imports[k]))
                              for t in lineage_tags(k, history)])
    except (RegistryUnreachable, RegistryDenied) as exc:
        say(f"{exc}; building without it")
        return Sources(caps, store, snap, stored=stored, local=local, own=own, imports=imports, content=content)
    tags = {k: k if probe.needs_login or dry_run else build_tag(k, time.time(), os.urandom(3).hex()) for k in keys}
    return Sources(caps, store, snap, spec, frozenset(probe.existing), tags, stored, client, history, local, own,
                   imports, content)


def _caps(real: str, call: ComposeCall, environ) -> BuildCaps:
    inv = invocation(call)
    return cached_caps(State(state_dir(environ)), endpoint_id(inv.host, inv.context, environ),
                       builder_of(call, environ),
                       lambda *a: proc.run_docker(real, [*inv.globals, *a], timeout=30))


def _inputs(real: str, call: ComposeCall, builds: dict, keys: dict, src: Sources,
            environ: Mapping[str, str]) -> tuple[dict, frozenset]:
    """(key -> what each service's build reads, to remember after its publish; the keys whose
    inputs are those of this daemon's last export, still the newest: no store export)."""
    from shim.build import inputs as reads
    from shim.build.mounts.sync import section_args

    if not (src.local and src.store and src.caps.mode == "full"):
        return {}, frozenset()
    no_cache, pull = given(call, "--no-cache"), given(call, "--pull")
    cli = _cli_build_args(call, environ)
    if cli is None:
        return {}, frozenset()
    found, matched = {}, {}
    for svc, spec in builds.items():
        # besides its build section, compose gives the build the service's platform and
        # `compose build --build-arg` (over the section's args): both change what is built
        words = [*([f"platform={spec['platform']}"] if spec.get("platform") else []),
                 *(f"--build-arg={k}={v}" for k, v in cli.items())]
        got = reads.compose_service(spec["build"], str(spec.get("image") or ""), no_cache, pull, environ, words)
        images = reads.bases(got[1], {**section_args(spec["build"]), **cli}) if got else None
        if got is None or images is None:
            continue
        key = keys[svc]
        found[key] = {"fp": got[0], "images": images}
        remembered = src.local.state.get(reads.KIND, src.local.generation, key)
        if remembered and remembered.get("fp") == got[0]:
            matched[key] = remembered
    globals_ = invocation(call).globals
    sock = reads.socket_of(src.local)
    ids = (reads.base_ids(real, globals_, sorted({i for k in matched for i in found[k]["images"]}), sock)
           if matched else None)
    same = frozenset(k for k, remembered in matched.items() if ids is not None and reads.unchanged(
        remembered, found[k]["fp"], {i: ids[i] for i in found[k]["images"]}, (src.store.lineage(k) or (None,))[0]))
    changed = {k: v for k, v in found.items() if k not in same}
    for k, v in changed.items():
        reads.asking_bases(v, real, globals_, sock)
    return changed, same


def _cli_build_args(call: ComposeCall, environ: Mapping[str, str]) -> dict[str, str] | None:
    """`compose build --build-arg K=V` (every service's build gets them); None when a bare
    `--build-arg K` is not in the environment (compose may take it from .env: not known here)."""
    from shim.build.mounts.sync import build_args
    from shim.compose.services import BUILD_VALUE
    from shim.core.grammar import scan_options

    if call.sub != "build":
        return {}
    opts, _pos = scan_options(call.rest, 1, BUILD_VALUE, interspersed=True)
    if any(k == "--build-arg" and v and "=" not in v and v not in environ for k, v in opts):
        return None
    return build_args(opts, environ)


def _with_override(call, args, environ, builds, keys, src: Sources, dry_run, run_caches, exports,
                   same: frozenset = frozenset()) -> ComposePlan:
    services, moves, reasons = {}, {}, []
    if builds and src.caps.mode != "full":
        reasons.append(f"engine: {src.caps.mode} ({src.caps.reason})")
    for svc, spec in builds.items():
        key, entry = keys[svc], {"cache_from": [], "cache_to": []}
        every = (key, *src.imports.get(key, ())) if key not in src.own else (key,)
        for k in every:  # the service's own key, then every other candidate the store holds (keys.py)
            if src.snap and k in src.snap.keys:
                entry["cache_from"] += [f"type=local,src={src.snap.src},tag={t}" for t in src.snap.import_tags(k)]
            elif k in src.stored:
                entry["cache_from"].append(f"type=local,src={src.store.root / 'snapshots'},tag={k}")
        if src.registry:
            from shim.build.store.registry import lineage_tags
            entry["cache_from"] += [f"type=registry,ref={src.registry}:{t}"
                                    for k in every for t in lineage_tags(k, src.history) if t in src.in_registry]
        if spec["build"].get("cache_to"):
            reasons.append(f"{svc}: you set cache_to; import only")
        elif src.caps.mode == "full":
            if key in same:
                reasons.append(f"{svc}: nothing its build reads changed since this daemon exported {key}: "
                               "no store export")
            elif src.store:
                dest = (src.store.root / "tmp" if dry_run else
                        src.store.new_export_dir(src.snap, _bases(call, environ, spec["build"], src)))
                exports[key] = dest
                entry["cache_to"].append(f"type=local,dest={dest},mode=max,tag={key},ignore-error=true")
            if src.registry:
                tag = src.tags[key]
                entry["cache_to"].append(f"type=registry,ref={src.registry}:{tag},mode=max,ignore-error=true")
                if tag != key:
                    moves[key] = tag
        entry = {k: v for k, v in entry.items() if v}
        imported = "yes" if "cache_from" in entry else ("no, this daemon made every stored build"
                                                         if key in src.own else "nothing yet")
        reasons.append(f"{svc}: key {key}, import {imported}, "
                       f"export {'yes' if 'cache_to' in entry else 'no'}")
        if entry:
            services[svc] = {"build": entry}
    volumes = {}
    for svc, plan in run_caches.items():
        entry, mounts = services.setdefault(svc, {}), plan.mounts
        entry["volumes"] = [{"type": m.kind, "source": m.source, "target": m.target} for m in mounts]
        entry["volumes"] += [{"type": "bind", "source": src, "target": dst, "read_only": True}
                             for src, dst in plan.mirror.binds]
        entry["environment"] = {k: v for m in mounts for k, v in m.env}
        entry["environment"].update({var: value for _m, var, value in plan.mirror.env})
        label = cache_label(mounts, next((m.owner for m in mounts if not m.readonly), None))
        if label:  # the caches' owner: `compose exec -u` of another user gets its own tree (run/execplan.py)
            entry["labels"] = {LABEL: label}
        volumes.update({m.source: {"external": True} for m in mounts if m.kind == "volume"})
        if mounts:
            reasons.append(f"{svc}: package caches {', '.join(sorted({m.manager for m in mounts}))}")
        if plan.mirror.env:
            reasons.append(f"{svc}: mirrors for {', '.join(sorted({m for m, _v, _x in plan.mirror.env}))}")
    override = {"services": services, **({"volumes": volumes} if volumes else {})}
    tmpdir, path = write_override(override, environ, dry_run=dry_run)
    files, listed = files_for(call, environ, os.getcwd())
    argv, env = list(args), {}
    if listed is not None:
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        env["COMPOSE_FILE"] = sep.join([*files, path])
        kept = env_files_kept(call, environ, os.getcwd(), files)
        if kept:
            env["COMPOSE_ENV_FILES"] = kept
    else:
        extra = ["-f", path] if files is None else [x for f in [*files, path] for x in ("-f", f)]
        at = len(call.base) + len(call.globals)
        argv = argv[:at] + extra + argv[at:]
    usage = {"keys": sorted(set(keys[svc] for svc in builds)),
             "imports": sorted(keys[svc] for svc in builds if "cache_from" in services.get(svc, {}).get("build", {})),
             "own": sorted(keys[svc] for svc in builds if keys[svc] in src.own),
             "caches": sorted({m.source for plan in run_caches.values() for m in plan.mounts})}
    return ComposePlan(argv, env, exports, src.snap, tmpdir, override, reasons, src.client, moves, src.store,
                       src.history, src.local, usage)


def _bases(call: ComposeCall, environ: Mapping[str, str], build: Mapping, src: Sources) -> frozenset[str]:
    """The layers of the service's FROM images this engine holds: placeholders in its export
    dir, so the store never gets the base (baselayers.py); none when they cannot be told."""
    if src.content is None:
        return frozenset()
    return baselayers.of_images(_from_images(call, environ, build), src.local, src.content)


def _from_images(call: ComposeCall, environ: Mapping[str, str], build: Mapping) -> list[str]:
    """The FROM images of a service's Dockerfile (or dockerfile_inline), with the section's
    args and `compose build --build-arg`; none when they cannot be told."""
    from shim.build.mounts.sync import section_args

    cli = _cli_build_args(call, environ)
    text = build.get("dockerfile_inline")
    if not isinstance(text, str):
        name = str(build.get("dockerfile") or "Dockerfile")
        text = baselayers.read_dockerfile(os.path.join(str(build.get("context") or "."), name))
    if cli is None or not text:
        return []
    return baselayers.dockerfile_images(text, {**section_args(build), **cli})


def _pull_bases(real: str, call: ComposeCall, environ: Mapping[str, str], builds: Mapping, keys: Mapping,
                src: Sources, same: frozenset) -> str | None:
    """The FROM images the engine lacks of the services whose builds export to the store,
    pulled before the export dirs are seeded (baselayers.pull_absent): their layers stay out."""
    if src.store is None or src.content is None or src.caps.mode != "full":
        return None
    exporting = [s for s, spec in builds.items() if keys[s] not in same and not spec["build"].get("cache_to")]
    images = [i for s in exporting for i in _from_images(call, environ, builds[s]["build"])]
    platforms = {str(builds[s].get("platform") or "") for s in exporting}
    platform = (platforms.pop() or None) if len(platforms) == 1 else None
    quiet = any(a in ("-q", "--quiet", "--quiet-pull") for a in call.rest)
    return baselayers.pull_absent(_docker(real, call, environ), invocation(call).globals, images, platform, environ,
                                  src.local, src.content, quiet=quiet)


def _docker(real: str, call: ComposeCall, environ: Mapping[str, str]) -> str:
    """docker itself for a pull, also under a standalone docker-compose (`real` is then that)."""
    if call.base:  # `docker [globals] compose`: real is docker
        return real
    from shim.core.realdocker import find_real
    return find_real("docker", environ) or real


def _froms(call: ComposeCall, environ: Mapping[str, str], builds: Mapping, chosen: Mapping):
    """keys -> (the FROM images of the services that import any of them, their one platform)."""
    def froms(keys) -> tuple[list[str], str | None]:
        svcs = [s for s, k in chosen.items() if keys & {k.own, *k.imports}]
        images = [i for s in svcs for i in _from_images(call, environ, builds[s]["build"])]
        platforms = {str(builds[s].get("platform") or "") for s in svcs}
        return images, (platforms.pop() or None) if len(platforms) == 1 else None
    return froms


def _candidate_notes(chosen: Mapping, src: Sources, override: Mapping, dry_run: bool):
    """explain: each service's key candidates, which the store holds and which are imported."""
    if src.store is None:
        return []
    out = []
    for svc, keys in chosen.items():
        froms = ((override.get("services") or {}).get(svc) or {}).get("build", {}).get("cache_from", [])
        tags = [f.rsplit(",tag=", 1)[1] for f in froms if f.startswith("type=local,") and ",tag=" in f]
        note = candidates_note(keys, src.store, tags, dry_run)
        if note:
            out.append((svc, note))
    return out


def _project_dirs(call: ComposeCall, environ: Mapping[str, str]) -> list[str]:
    """The directories compose may name the project after: the working dir, the project dir,
    the dirs of the files it loads."""
    from shim.compose.files import GLOBAL_VALUE, project_dir
    from shim.core.grammar import scan_options

    cwd = os.getcwd()
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    files = [v for k, v in opts if k in ("-f", "--file") and v and v != "-"]
    if not files:
        try:
            files = files_for(call, environ, cwd)[0] or []
        except Exception:  # noqa: BLE001 - only the keys' order: the override's own call reports it
            files = []
    listed = files
    return [cwd, project_dir(opts, cwd), *(os.path.dirname(os.path.join(cwd, f)) for f in listed)]
