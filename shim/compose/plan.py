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

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shim.build.command import login_environ, open_store, safe_snapshot
from shim.build.key import sanitize
from shim.build.local import LocalBuilds, daemon_generation
from shim.build.store import CacheStore, Snapshot
from shim.compose.files import ComposeCall, files_for, only_looks, reads_stdin, split, wants_build
from shim.compose.resolved import resolved_config
from shim.core import proc
from shim.core.notice import say
from shim.core.config import load
from shim.core.engine import BuildCaps, cached_caps, legacy_reason
from shim.core.state import State, endpoint_id, state_dir

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
    cfg = resolved_config(real, call, environ)
    if cfg is None or not isinstance(cfg.get("services"), dict):
        return None
    config = load(environ, os.getcwd())
    if not (config["enabled"] and config["compose.enabled"] and config["build.enabled"]):
        return ComposePlan(list(args), {}, reasons=["compose caching is disabled in config"])
    project = str(cfg.get("name") or "compose")
    cfg = {**cfg, "services": named_services(call, cfg["services"])}
    builds = {s: v for s, v in cfg["services"].items()
              if building and isinstance(v, dict) and isinstance(v.get("build"), dict)}
    run_caches = service_caches(real, call, cfg, project, environ, dry_run=dry_run)
    if run_caches and not dry_run and _forget_vanished(real, call, run_caches, environ):
        run_caches = service_caches(real, call, cfg, project, environ)  # re-created, labelled and owned
    if not builds and not run_caches:
        return None
    keys = {s: sanitize(f"{project}-{s}") for s in builds}
    src = (sources(real, call, config, environ, list(keys.values()), dry_run) if builds
           else Sources(BuildCaps("none", "no service builds"), None))
    made: dict = {}
    try:
        return _with_override(call, args, environ, builds, keys, src, dry_run, run_caches, made)
    except BaseException:  # the caller falls back to docker unchanged: leave nothing behind
        if src.snap:
            src.snap.release()
        for dest in made.values():
            shutil.rmtree(dest, ignore_errors=True)
        raise


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
    from shim.build.registry import Registry, RegistryDenied, RegistryUnreachable, build_tag, lineage_tags
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
    from shim.core.grammar import parse_invocation

    return parse_invocation([*call.base[:-1], "compose"] if call.base else ["compose"])


def _caps(real: str, call: ComposeCall, environ) -> BuildCaps:
    inv = _invocation(call)
    return cached_caps(State(state_dir(environ)), endpoint_id(inv.host, inv.context, environ),
                       environ.get("BUILDX_BUILDER"),
                       lambda *a: proc.run_docker(real, [*inv.globals, *a], timeout=30))


def service_caches(real: str, call: ComposeCall, cfg: dict, project: str, environ, *, dry_run=False) -> dict:
    """Package caches for each service, planned exactly as for `docker run` (see runcmd)."""
    from shim.core.grammar import parse_invocation
    from shim.run.command import build_plan

    out: dict = {}
    docker_globals = call.base[:-1]
    one_off = run_options(call)
    for name, svc in cfg["services"].items():
        argv = _as_run_argv(name, svc, project, one_off.get(name, ()))
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


SUB_VALUE = frozenset("--build-arg --builder --ssh -m --memory --progress --scale -t --timeout --exit-code-from "
                      "--pull --wait-timeout --attach --no-attach --attach-dependencies-of".split())


def named_services(call: ComposeCall, services: dict) -> dict:
    """The services `compose build|up|run|create SERVICE...` acts on (for up/run/create with
    what they depend on); all of them when none is named (or a name is not a service: then the
    arguments were misread, and more is safer than less)."""
    from shim.core.grammar import scan_options

    values = SUB_VALUE | RUN_VALUE if call.sub == "run" else SUB_VALUE
    _opts, pos = scan_options(call.rest, 1, values, interspersed=call.sub != "run")
    names = [call.rest[i] for i in pos[:1 if call.sub == "run" else None]]
    if not names or any(n not in services for n in names):
        return services
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        if call.sub != "build":  # `build X` builds X alone; up/run/create start what X depends on
            deps = (services.get(name) or {}).get("depends_on") or {}
            todo += [d for d in deps if d in services]
    return {k: v for k, v in services.items() if k in wanted}


def _forget_vanished(real: str, call: ComposeCall, run_caches: dict, environ) -> bool:
    """Volumes the state dir remembers but the daemon lost (`docker volume rm`, a prune, a
    new daemon with an old state dir): compose would refuse the `external` volume and fail
    the whole command. One inspect of all of them; the missing ones are forgotten so that
    planning again creates them. True when any was missing."""
    names = sorted({m.source for plan in run_caches.values() for m in plan.mounts if m.kind == "volume"})
    if not names:
        return False
    inv = _invocation(call)
    res = proc.run_docker(real, [*inv.globals, "volume", "inspect", "--format", "{{.Name}}", *names], timeout=30)
    present = set(res.stdout.split())
    missing = [n for n in names if n not in present]
    if not missing or (res.returncode != 0 and not present and "no such volume" not in res.stderr.lower()):
        return False  # nothing lost, or the daemon did not answer (compose will say so itself)
    state = State(state_dir(environ))
    endpoint = endpoint_id(inv.host, inv.context, environ)
    for name in missing:
        state.forget("volumes", endpoint, name)
    say(f"cache volume{'s' if len(missing) > 1 else ''} {', '.join(missing)} vanished outside dockcache: created again")
    return True


RUN_VALUE = frozenset("-e --env -u --user -w --workdir -v --volume -p --publish --name --entrypoint -l "
                      "--label --cap-add --cap-drop --pull --env-from-file".split())


def run_options(call: ComposeCall) -> dict[str, tuple[str, ...]]:
    """`compose run|create SERVICE` options that change what the container is: the user
    and variables given on the command line (`-u 1000`, `-e A=1`), as docker run flags
    for that service (they come after its own, so they win as they do for compose)."""
    if call.sub != "run":
        return {}
    from shim.core.grammar import scan_options

    opts, pos = scan_options(call.rest, 1, RUN_VALUE, interspersed=False)
    if not pos:
        return {}
    flags: list[str] = []
    for k, v in opts:
        if k in ("-u", "--user") and v:
            flags += ["--user", v]
        elif k in ("-e", "--env") and v:
            flags += ["-e", v]
    return {call.rest[pos[0]]: tuple(flags)}


def _as_run_argv(name: str, svc: dict, project: str, extra: tuple[str, ...] = ()) -> list[str]:
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
    argv += extra
    command = svc.get("command") or []
    command = command.split() if isinstance(command, str) else [str(c) for c in command]
    return [*argv, str(svc.get("image") or f"{project}-{name}"), *command]


OVERRIDE_DAYS = 7  # compose records the file in the project's labels (`compose ls`): keep it a while


def write_override(override: dict, environ, *, dry_run: bool) -> tuple[str | None, str]:
    """(dir to remove afterwards, override path). The real thing lives in the state dir,
    named by its content, so the project's config_files label names a file that exists;
    files not used for OVERRIDE_DAYS go. A dry run (explain) writes a throwaway copy."""
    text = json.dumps(override, indent=2, sort_keys=True) + "\n"  # JSON is valid YAML
    if dry_run:
        tmpdir = tempfile.mkdtemp(prefix="dockcache-compose-")
        base = tmpdir
    else:
        import hashlib

        tmpdir, base = None, str(state_dir(environ) / "compose-overrides")
        try:
            os.makedirs(base, exist_ok=True)
            _forget_old(base)
        except OSError:  # no state dir to write: a temp file, removed after compose (as before)
            tmpdir = base = tempfile.mkdtemp(prefix="dockcache-compose-")
    name = "dockcache.override.json" if dry_run else \
        f"override-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    path = os.path.join(base, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)  # a concurrent compose run reading the same name sees it whole
    return tmpdir, path


def _forget_old(base: str) -> None:
    cutoff = time.time() - OVERRIDE_DAYS * 86400
    for entry in os.scandir(base):
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass


def _with_override(call, args, environ, builds, keys, src: Sources, dry_run, run_caches, exports) -> ComposePlan:
    services, moves, reasons = {}, {}, []
    if builds and src.caps.mode != "full":
        reasons.append(f"engine: {src.caps.mode} ({src.caps.reason})")
    for svc, spec in builds.items():
        key, entry = keys[svc], {"cache_from": [], "cache_to": []}
        if src.snap and key in src.snap.keys:
            entry["cache_from"] += [f"type=local,src={src.snap.src},tag={t}" for t in src.snap.import_tags(key)]
        elif key in src.stored:
            entry["cache_from"].append(f"type=local,src={src.store.root / 'snapshots'},tag={key}")
        if src.registry:
            from shim.build.registry import lineage_tags
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
    tmpdir, path = write_override(override, environ, dry_run=dry_run)
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
