"""`docker compose build|up|run --build|create --build` and `docker-compose`.

Compose >= 2.37 builds through the buildx plugin binary directly, so a docker shim never
sees those builds (../shared/BUILDKIT.md); the compose file is the reliable hook. We add
one more file, an override listing `cache_from`/`cache_to` per service with a `build:`
section, after exactly the files compose would load anyway (so the project name,
project directory and relative paths stay the same), and publish each service's private
export into the shared store after compose exits. Lists such as `cache_from` are
appended when compose merges files, so the user's own entries stay.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shim import proc
from shim.buildcmd import after_docker, login_environ, open_store, safe_snapshot, say
from shim.buildkey import sanitize
from shim.cachestore import CacheStore, Snapshot
from shim.config import load
from shim.engine import BuildCaps, cached_caps, legacy_reason
from shim.grammar import scan_options
from shim.localbuilds import LocalBuilds, daemon_generation
from shim.state import State, endpoint_id, state_dir

GLOBAL_VALUE = frozenset("-f --file -p --project-name --project-directory --env-file --profile "
                         "--ansi --progress --parallel -H --host -c --context".split())
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")


@dataclass
class ComposeCall:
    base: list[str]  # how to run compose: [real] or [real, *docker globals, "compose"]
    globals: list[str]  # compose's own global options, verbatim
    rest: list[str]  # subcommand and its args, verbatim
    sub: str | None


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


def split(name: str, args: Sequence[str]) -> ComposeCall:
    """Separate docker's globals, `compose`, compose's globals and the subcommand."""
    args = list(args)
    if name == "docker-compose":
        start, base = 0, []
    else:
        idx = args.index("compose")
        start, base = idx + 1, args[:idx + 1]
    opts, pos = scan_options(args, start, GLOBAL_VALUE, interspersed=False)
    sub_at = pos[0] if pos else len(args)
    return ComposeCall(base, args[start:sub_at], args[sub_at:], args[sub_at] if pos else None)


def wants_build(call: ComposeCall) -> bool:
    flags = set(call.rest[1:])
    if call.sub == "build":
        return True
    if call.sub == "up":
        return "--no-build" not in flags
    return call.sub in ("run", "create") and "--build" in flags


def files_for(call: ComposeCall, environ: Mapping[str, str], cwd: str) -> tuple[list[str] | None, str | None]:
    """(files compose would load, or None when -f is given; COMPOSE_FILE value if it decides)."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    if any(k in ("-f", "--file") for k, _ in opts):
        return None, None
    proj = next((v for k, v in opts if k == "--project-directory"), None) or cwd
    listed = environ.get("COMPOSE_FILE") or _dotenv(os.path.join(proj, ".env")).get("COMPOSE_FILE")
    if listed:
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [os.path.join(proj, f) for f in listed.split(sep) if f], listed
    here = Path(proj).resolve()
    for d in (here, *here.parents):
        main = next((d / f for f in DEFAULT_FILES if (d / f).is_file()), None)
        if main:
            extra = next((d / f for f in OVERRIDE_FILES if (d / f).is_file()), None)
            return [str(main)] + ([str(extra)] if extra else []), None
    return [], None


def _dotenv(path: str) -> dict[str, str]:
    out = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    out[k.strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


def _version_problem(real: str, call: ComposeCall, environ) -> str | None:
    """Compose v1 (and v2 before 2.4) cannot take `type=` cache entries; asked once, remembered."""

    state = State(state_dir(environ))
    key = " ".join([real, *call.base])
    known = state.get("compose", key, key, max_age=24 * 3600)
    if known is None:
        res = proc.run_docker(real, [*call.base, "version", "--short"], timeout=30)
        known = {"version": res.stdout.strip().lstrip("v") if res.returncode == 0 else ""}
        state.put("compose", key, key, known)
    version = known.get("version", "")
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return f"compose version {version or 'unknown'} could not be read"
    if (major, minor) < (2, 4):
        return f"compose {version} cannot use BuildKit cache_from/cache_to entries (needs 2.4+)"
    return None


def resolved_config(real: str, call: ComposeCall, environ: Mapping[str, str]) -> dict | None:
    """compose's own view of the project (remembered while its files are unchanged)."""
    from shim import composeconfig

    def ask() -> dict | None:
        res = proc.run_docker(real, [*call.base, *call.globals, "config", "--format", "json"], timeout=60)
        if res.returncode != 0:
            return None  # compose will report its own error when it runs for real
        try:
            return json.loads(res.stdout)
        except ValueError:
            return None

    cwd = os.getcwd()
    key = composeconfig.cache_key([*call.base, *call.globals], cwd, environ, real)
    return composeconfig.resolved(State(state_dir(environ)), key, config_sources(call, environ, cwd), ask)


def reads_stdin(call: ComposeCall) -> bool:
    """`-f -`: compose reads the project from stdin, which only the real command may read."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    return any(k in ("-f", "--file") and v == "-" for k, v in opts)


def config_sources(call: ComposeCall, environ: Mapping[str, str], cwd: str) -> list[str]:
    """Every file compose's answer depends on, absent candidates included (a new
    compose.override.yaml must count as a change)."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    proj = next((v for k, v in opts if k == "--project-directory"), None) or cwd
    env_files = [os.path.join(cwd, v) for k, v in opts if k == "--env-file"] or [os.path.join(proj, ".env")]
    given = [os.path.join(cwd, v) for k, v in opts if k in ("-f", "--file")]
    if given:
        return [*given, *env_files]
    files, _listed = files_for(call, environ, cwd)
    here = Path(proj).resolve()
    top = Path(files[0]).parent if files else Path(here.anchor)
    candidates = []
    for d in (here, *here.parents):
        candidates += [str(d / f) for f in (*DEFAULT_FILES, *OVERRIDE_FILES)]
        if d == top:
            break
    return [*dict.fromkeys([*(files or []), *candidates, *env_files])]


def plan(real: str, name: str, args: Sequence[str], environ: Mapping[str, str], *, dry_run=False) -> ComposePlan | None:
    call = split(name, args)
    if reads_stdin(call):
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
    cfg = resolved_config(real, call, environ)
    if cfg is None or not isinstance(cfg.get("services"), dict):
        return None
    config = load(environ, os.getcwd())
    if not (config["enabled"] and config["compose.enabled"] and config["build.enabled"]):
        return ComposePlan(list(args), {}, reasons=["compose caching is disabled in config"])
    project = str(cfg.get("name") or "compose")
    builds = {s: v for s, v in cfg["services"].items()
              if building and isinstance(v, dict) and isinstance(v.get("build"), dict)}
    run_caches = service_caches(real, call, cfg, project, environ, dry_run=dry_run)
    if not builds and not run_caches:
        return None
    keys = {s: sanitize(f"{project}-{s}") for s in builds}
    src = (sources(real, call, config, environ, list(keys.values()), dry_run) if builds
           else Sources(BuildCaps("none", "no service builds"), None))
    return _with_override(call, args, environ, builds, keys, src, dry_run, run_caches)


def sources(real: str, call: ComposeCall, config, environ, keys: list[str], dry_run: bool) -> Sources:
    """What this engine can do (an old engine cannot export: a cache_to would fail the
    build) and what each backend holds."""
    caps = _caps(real, call, environ)
    if caps.mode == "none":
        return Sources(caps, None)
    store = None
    if config["build.backend"] != "registry":
        store = open_store(config)
    local = _local_builds(call, caps, environ)
    own = frozenset(k for k in keys if store and local and local.holds(k, store.lineage(k)))
    wanted = [k for k in keys if k not in own]
    snap = safe_snapshot(store, wanted) if store and wanted and not dry_run else None
    stored = frozenset(k for k in wanted if k in store.keys()) if store and dry_run else frozenset()
    spec = config["build.registry"] if config["build.backend"] != "local" else ""
    if not spec or caps.mode != "full":
        return Sources(caps, store, snap, stored=stored, local=local, own=own)
    from shim.registrycache import Registry, RegistryDenied, RegistryUnreachable, build_tag, lineage_tags
    client = Registry(spec, timeout=2.0, environ=login_environ(call.base[:-1], environ))
    history = config["build.key_history"]
    try:
        probe = client.probe([t for k in keys for t in lineage_tags(k, history)])
    except (RegistryUnreachable, RegistryDenied) as exc:
        say(f"{exc}; building without it")
        return Sources(caps, store, snap, stored=stored, local=local, own=own)
    tags = {k: k if probe.needs_login or dry_run else build_tag(k, time.time(), os.urandom(3).hex()) for k in keys}
    return Sources(caps, store, snap, spec, frozenset(probe.existing), tags, stored, client, history, local, own)


def _local_builds(call: ComposeCall, caps: BuildCaps, environ) -> LocalBuilds | None:
    if caps.driver != "docker" or environ.get("BUILDX_BUILDER"):
        return None
    inv = _invocation(call)
    generation = daemon_generation(inv.host, inv.context, environ)
    return LocalBuilds(State(state_dir(environ)), generation) if generation else None


def _invocation(call: ComposeCall):
    from shim.grammar import parse_invocation

    return parse_invocation([*call.base[:-1], "compose"] if call.base else ["compose"])


def _caps(real: str, call: ComposeCall, environ) -> BuildCaps:
    inv = _invocation(call)
    return cached_caps(State(state_dir(environ)), endpoint_id(inv.host, inv.context, environ),
                       environ.get("BUILDX_BUILDER"),
                       lambda *a: proc.run_docker(real, [*inv.globals, *a], timeout=30))


def service_caches(real: str, call: ComposeCall, cfg: dict, project: str, environ, *, dry_run=False) -> dict:
    """Package caches for each service, planned exactly as for `docker run` (see runcmd)."""
    from shim.grammar import parse_invocation
    from shim.runcmd import build_plan

    out: dict = {}
    docker_globals = call.base[:-1]
    for name, svc in cfg["services"].items():
        argv = _as_run_argv(name, svc, project)
        inv = parse_invocation([*docker_globals, *argv])
        try:
            plan, _c, notes = build_plan(real, inv.argv, inv, environ, pull=False, need_image=True,
                                         dry_run=dry_run)
        except Exception as exc:  # noqa: BLE001 - one service's caches never block the stack
            say(f"{name}: package caches skipped ({type(exc).__name__}: {exc})")
            continue
        for note in notes:
            say(f"{name}: {note}")
        if plan.mounts or plan.mirror.tokens():
            out[name] = plan
    return out


def _as_run_argv(name: str, svc: dict, project: str) -> list[str]:
    """The `docker run` a compose service amounts to, for the run planner."""
    argv = ["run"]
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict) and vol.get("target"):
            src = vol.get("source") or ""
            argv += ["--mount", f"type={vol.get('type', 'volume')},src={src},dst={vol['target']}"]
    env = svc.get("environment") or {}
    for key in (env if isinstance(env, dict) else {}):
        argv += ["-e", f"{key}=x"]
    if svc.get("user"):
        argv += ["--user", str(svc["user"])]
    if svc.get("working_dir"):
        argv += ["--workdir", str(svc["working_dir"])]
    command = svc.get("command") or []
    command = command.split() if isinstance(command, str) else [str(c) for c in command]
    return [*argv, str(svc.get("image") or f"{project}-{name}"), *command]


def _with_override(call, args, environ, builds, keys, src: Sources, dry_run, run_caches) -> ComposePlan:
    tmpdir = tempfile.mkdtemp(prefix="dockcache-compose-")
    services, exports, moves, reasons = {}, {}, {}, []
    if builds and src.caps.mode != "full":
        reasons.append(f"engine: {src.caps.mode} ({src.caps.reason})")
    for svc, spec in builds.items():
        key, entry = keys[svc], {"cache_from": [], "cache_to": []}
        if src.snap and key in src.snap.keys:
            entry["cache_from"] += [f"type=local,src={src.snap.src},tag={t}" for t in src.snap.import_tags(key)]
        elif key in src.stored:
            entry["cache_from"].append(f"type=local,src={src.store.root / 'snapshots'},tag={key}")
        if src.registry:
            from shim.registrycache import lineage_tags
            entry["cache_from"] += [f"type=registry,ref={src.registry}:{t}"
                                    for t in lineage_tags(key, src.history) if t in src.in_registry]
        if spec["build"].get("cache_to"):
            reasons.append(f"{svc}: you set cache_to; import only")
        elif src.caps.mode == "full":
            if src.store:
                dest = src.store.root / "tmp" if dry_run else src.store.new_export_dir(src.snap)
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
        volumes.update({m.source: {"external": True} for m in mounts if m.kind == "volume"})
        if mounts:
            reasons.append(f"{svc}: package caches {', '.join(sorted({m.manager for m in mounts}))}")
        if plan.mirror.env:
            reasons.append(f"{svc}: mirrors for {', '.join(sorted({m for m, _v, _x in plan.mirror.env}))}")
    override = {"services": services, **({"volumes": volumes} if volumes else {})}
    path = os.path.join(tmpdir, "dockcache.override.json")  # JSON is valid YAML
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(override, fh)
    files, listed = files_for(call, environ, os.getcwd())
    argv, env = list(args), {}
    if listed is not None:
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        env["COMPOSE_FILE"] = sep.join([*files, path])
    else:
        extra = ["-f", path] if files is None else [x for f in [*files, path] for x in ("-f", f)]
        at = len(call.base) + len(call.globals)
        argv = argv[:at] + extra + argv[at:]
    return ComposePlan(argv, env, exports, src.snap, tmpdir, override, reasons, src.client, moves, src.store,
                       src.history, src.local)


def execute(real: str, name: str, args: Sequence[str], environ: Mapping[str, str], *, on_error) -> None:
    try:
        p = plan(real, name, args, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        on_error(real, list(args), exc)
        return
    if p is None:
        return
    if p.argv == list(args) and not p.env:
        for r in p.reasons:
            say(r)
        return
    rc = 1
    try:
        rc = proc.run_child(real, p.argv, env={**environ, **p.env})
        if rc == 0:
            after_docker(_publish, p)
            after_docker(_move_keys, p)
    finally:
        after_docker(cleanup, p)
    sys.exit(rc)


def _publish(p: ComposePlan) -> None:
    for key, dest in p.exports.items():
        if not (dest / "index.json").exists():
            continue  # compose did not build this service (image already present)
        try:
            done = p.store.publish(dest, key)
            if p.local:
                p.local.remember(key, done.digest)
        except Exception as exc:  # noqa: BLE001 - the stack is up; only the cache is lost
            say(f"build cache for {key} not published: {exc}")


def _move_keys(p: ComposePlan) -> None:
    if not p.moves or not p.registry:
        return
    from shim.registrycache import RegistryError, RegistryUnreachable

    for key, tag in p.moves.items():
        try:
            p.registry.move(tag, key, history=p.history)
        except RegistryError as exc:
            if exc.code != 404:  # 404: compose did not build this service
                say(f"registry key {key} not updated: {exc}")
        except RegistryUnreachable as exc:
            say(f"registry key {key} not updated: {exc}")


def cleanup(p: ComposePlan) -> None:
    if p.snapshot:
        p.snapshot.release()
    for dest in p.exports.values():
        if dest.name.startswith("dockcache-export"):
            shutil.rmtree(dest, ignore_errors=True)
    if p.tmpdir:
        shutil.rmtree(p.tmpdir, ignore_errors=True)
