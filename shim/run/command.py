"""`docker run|create`: gather facts, plan, prepare volumes, exec the real docker.

The only docker calls made here are for facts nobody remembered yet (an image's
config, a volume that does not exist yet); both are kept in the state dir, so the
steady state execs docker without any extra round-trip.

About 300 lines: all of the run flow's I/O (facts, volumes, bind dirs, the exec) in one
place, so the planner beside it stays pure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from shim.core import proc
from shim.core.config import Config, load
from shim.run.detect import always_on, combine, marker_dirs, projects, scan_command, scan_dir
from shim.core.grammar import Invocation, RunArgs, parse_run
from shim.run.plan import CacheMount, Facts, Plan, plan_run
from shim.core.state import IMAGES, State, docker_config_dir, endpoint_id, state_dir

IMAGE_TTL = 24 * 3600.0
INIT_TARGET = "/dockcache-init"


def build_plan(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
               *, dry_run: bool = False, pull: bool = True,
               need_image: bool = False, unbuilt: Callable | None = None,
               rebuilt: bool = False) -> tuple[Plan, Config | None, list[str]]:
    """Everything `explain` shows; with dry_run no docker call changes anything.

    need_image: an image that is not there yet (compose builds it later) might run as a
    non-root USER that a root-owned volume would lock out, so without its facts we add nothing;
    `unbuilt(base_config)` tells them from the Dockerfile that will build it (imageconfig.py).
    rebuilt: compose builds the image again before this container starts, so the image there
    now says nothing for sure (its Dockerfile may have changed its USER): only `unbuilt` counts.
    """
    run = parse_run(inv)
    cwd = os.getcwd()
    if run.image_index is None or run.help or run.unknown:  # nothing to add: ask docker nothing
        plan = plan_run(args, run, None, Facts())
        say_it = run.unknown and run.image_index is not None and not run.help and _enabled(load(environ, cwd))
        return plan, None, list(plan.reasons[:1]) if say_it else []
    found = projects(run.mounts, run.workdir, cwd)
    project = found[0].host_dir if found else None
    config = load(environ, project or cwd)
    if not _enabled(config):
        return Plan(tuple(args), reasons=("run caching is disabled in config",)), config, []
    table = config.table()
    marked = [d for here in (marker_dirs(found[0], run.workdir) if found else []) for d in scan_dir(here, table)]
    detections = tuple(combine(marked + scan_command(run.command, table) + always_on(table)))
    if not detections:
        return Plan(tuple(args), reasons=("no package manager detected",)), config, []
    ctx = _Context(real, inv, run, environ)
    image = {} if rebuilt else ctx.image_facts(pull=pull and not dry_run)
    if need_image and not image and unbuilt:
        predicted = unbuilt(ctx.config_of)
        image = _as_facts(predicted)
        # a volume's chown cannot run in an image not built yet (docker run would pull that
        # name): it runs in the base the Dockerfile starts from, which the engine has
        ctx.init_image = predicted.get("base") if predicted else None
    if need_image and not image and run.user is None:
        why = ("image is built again now and its USER cannot be told from its Dockerfile" if rebuilt
               else "image not built yet")
        return Plan(tuple(args), reasons=(f"{why}: its caches start with the next run",)), config, []
    notes: list[str] = []
    placed = ctx.placement(config, image_ok=bool(image))
    facts = Facts(detections=detections, project_dir=project,
                  mode=placed.mode, mode_reason=placed.reason, host_dirs=_host_dirs(detections, config, environ),
                  env_file_names=_env_file_names(run.env_files, cwd),
                  volumes_from_targets=ctx.volumes_from_targets(),
                  host_user=str(os.getuid()), local_engine=ctx.local_engine(),
                  state_root=str(ctx.state.root), ca_pem=_read_ca(config, notes), **image)
    plan = plan_run(args, run, config, facts)
    if not dry_run:
        failed = ctx.prepare(plan.mounts, notes, config)
        if not _write_mirror_files(plan, notes):
            facts = _replace(facts, local_engine=False)
        if failed or not facts.local_engine:
            plan = plan_run(args, run, config, _replace(facts, unusable=frozenset(failed)))
    notes += ctx.state.write_errors[:1]
    return plan, config, notes


def _enabled(config: Config) -> bool:
    """Run caching on: a user who turned it off hears nothing from dockcache."""
    return bool(config["enabled"] and config["run.enabled"])


def execute(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
            *, on_error: Callable) -> None:
    started = time.monotonic()
    try:
        plan, config, notes = build_plan(real, args, inv, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        on_error(real, list(args), exc)
        return
    for note in notes:
        sys.stderr.write(f"dockcache: {note}\n")
    if not notes and not inv.argv.count("--volumes-from"):
        _remember(inv, args, environ, plan, config)
    _record(environ, plan, time.monotonic() - started)
    _upkeep(inv, environ, plan, config)
    proc.exec_docker(real, plan.argv)


def _upkeep(inv: Invocation, environ: Mapping[str, str], plan: Plan, config: Config | None) -> None:
    """Size limits crossed: a detached prune, started now and never waited for (run.upkeep)."""
    if config is None or not plan.mounts:
        return
    from shim.core.daemon import daemon_key
    from shim.run import upkeep

    try:
        if upkeep.due(State(state_dir(environ)), daemon_key(inv.host, inv.context, environ), config):
            upkeep.start_prune(environ, inv.host, inv.context)
    except Exception:  # noqa: BLE001 - housekeeping never costs the user's command
        pass


def _remember(inv: Invocation, args: Sequence[str], environ: Mapping[str, str], plan: Plan,
              config: Config | None) -> None:
    from shim.run import plancache

    from shim.core.daemon import daemon_key, socket_path

    state = State(state_dir(environ))
    daemon = daemon_key(inv.host, inv.context, environ)
    # A volume record removed by `cache clear` must force a new plan (re-create, re-own).
    volumes = [str(state._path("volumes", daemon, m.source)) for m in plan.mounts if m.kind == "volume"]
    # The image's remembered config (its USER owns the caches): a build of that name through
    # dockcache forgets it (state.forget_images), and the plan with it.
    image = parse_run(inv).image
    volumes += [str(state._path(IMAGES, endpoint_id(inv.host, inv.context, environ), image))] if image else []
    # A new daemon on the same socket (a new session) makes a new socket file: plan again
    # (its volumes, and what it can see of this host, are its own).
    volumes += [p for p in [socket_path(inv.host, inv.context, environ)] if p]
    # A removed bind dir must be re-made by us (owner, ACL), not by docker as root: existence only.
    volumes += [(os.path.dirname(m.source), os.path.basename(m.source)) for m in plan.mounts if m.kind == "bind"]
    volumes += [os.path.join(plan.mirror.host_dir, n) for n, _ in plan.mirror.files] if plan.mirror.host_dir else []
    volumes += [config["mirrors.ca_bundle"]] if config is not None and config["mirrors.ca_bundle"] else []
    bind_dirs = [m.source for m in plan.mounts if m.kind == "bind" and not m.host_cache]
    plancache.touch(bind_dirs)
    try:
        plancache.store("docker", args, environ, os.getcwd(), plan.argv,
                        plan_inputs(parse_run(inv), environ, config) + volumes, _metrics_line(plan), bind_dirs,
                        ttl=_plan_ttl(config))
    except Exception:  # noqa: BLE001 - remembering is an optimisation only
        pass


def _plan_ttl(config: Config | None) -> float | None:
    """With size limits set, plan again hourly: planning is where the limit check runs
    (a remembered plan is exec'd without it, and the hot path stays a few stats)."""
    from shim.run.upkeep import PLAN_TTL, limits_of

    total, per = limits_of(config) if config is not None else (0, {})
    return PLAN_TTL if total or per else None


def plan_inputs(run: RunArgs, environ: Mapping[str, str], config: Config | None = None) -> list:
    """What the plan was derived from, for plancache: marker files (by name, not dir
    mtime: `rm -rf node_modules` must not invalidate), marker globs, env-files, config
    files, where a project file could appear, and docker's own config (`docker context
    use` switches the engine, and volumes are per engine)."""
    from shim.core.config import PROJECT_FILE, user_config_path
    from shim.core.managers import MANAGERS

    table = config.table() if config is not None else MANAGERS
    cwd = os.getcwd()
    dirs = [os.path.normpath(os.path.join(cwd, os.path.expanduser(m.source)))
            for m in run.mounts if m.type == "bind" and m.source]
    found = projects(run.mounts, run.workdir, cwd)
    below = marker_dirs(found[0], run.workdir)[:-1] if found else []  # the workdir's own dirs
    marker_at = dirs + below
    literal = {mk.glob for mgr in table for mk in mgr.markers if "*" not in mk.glob}
    globs = tuple(sorted({mk.glob for mgr in table for mk in mgr.markers if "*" in mk.glob}))
    docker_cfg = docker_config_dir(environ)
    deps: list = [os.path.join(cwd, f) for f in run.env_files] + [str(user_config_path(environ)),
                                                                  os.path.join(docker_cfg, "config.json")]
    for d in marker_at:
        deps += [d] if not os.path.isdir(d) else []  # a bind source (or workdir) that appears later
        deps += [os.path.join(d, name) for name in sorted(literal)] + [(d, *globs)]
    for start in dirs or [cwd]:
        here = start
        while True:
            deps.append(os.path.join(here, PROJECT_FILE))
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    return deps


def _host_dirs(detections, config: Config, environ: Mapping[str, str]) -> dict:
    """run.host_caches: the host's own cache dirs of the tools found (from the host's settings)."""
    from shim.core.managers import host_dirs

    names = {d.manager for d in detections}
    custom = {n: (("", config.custom_host_dir(n)),) for n in names if config.custom_host_dir(n)}
    return {n: custom.get(n) or host_dirs(n, environ) for n in sorted(names) if config.host_cache(n)}


def _read_ca(config: Config, notes: list[str]) -> bytes | None:
    path = config["mirrors.ca_bundle"]
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        notes.append(f"mirrors.ca_bundle {path}: {exc.strerror}; mirrors used without it")
        return None


def _write_mirror_files(plan: Plan, notes: list[str]) -> bool:
    """Generated mirror files, written once per content (the directory name is its hash)."""
    if not plan.mirror.host_dir:
        return True
    from shim.core.state import atomic_write

    try:
        for name, content in plan.mirror.files:
            path = os.path.join(plan.mirror.host_dir, name)
            if not os.path.isfile(path):
                os.makedirs(plan.mirror.host_dir, exist_ok=True)
                os.chmod(plan.mirror.host_dir, 0o755)  # a strict umask must not hide it from container users
                atomic_write(path, content, mode=0o644)
        return True
    except OSError as exc:
        notes.append(f"cannot write mirror files in {plan.mirror.host_dir}: {exc.strerror}; "
                     "mirrors that need them are not used")
        return False


def _metrics(plan: Plan) -> dict:
    return {"kind": "run", "caches": [m.source for m in plan.mounts],
            "managers": sorted({m.manager for m in plan.mounts}), "skipped": [n for n, _ in plan.skipped]}


def _metrics_line(plan: Plan) -> str:
    """The metrics record a remembered plan appends on every use (plancache)."""
    return json.dumps({**_metrics(plan), "remembered": True}, separators=(",", ":"))


def _record(environ: Mapping[str, str], plan: Plan, seconds: float) -> None:
    state = State(state_dir(environ))
    state.append_log("metrics", {**_metrics(plan), "ms": round(seconds * 1000, 2)})


def _replace(facts: Facts, **kw) -> Facts:
    from shim.core.records import replace
    return replace(facts, **kw)


def _env_file_names(paths: Sequence[str], cwd: str) -> frozenset[str]:
    names = set()
    for path in paths:
        try:
            with open(os.path.join(cwd, path), encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue  # docker itself will report the missing file
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                names.add(line.split("=", 1)[0].strip())
    return frozenset(names)


def _as_facts(config: dict | None) -> dict:
    if config is None:
        return {}
    return {"image_env": tuple(tuple(p) for p in config["env"]), "image_user": config["user"] or None,
            "image_arch": config["arch"] or None}


class _Context:
    """Docker calls for facts, made with the user's own global options."""

    def __init__(self, real: str, inv: Invocation, run: RunArgs, environ: Mapping[str, str]):
        self.real, self.inv, self.run = real, inv, run
        from shim.core.daemon import daemon_key

        self.endpoint = endpoint_id(inv.host, inv.context, environ)
        self.daemon = daemon_key(inv.host, inv.context, environ)  # volumes belong to one daemon
        self.state = State(state_dir(environ))
        self.why = ""  # the last failed docker call's own words, for prepare's note
        self.init_image: str | None = None  # where a volume's chown runs instead of the image (not built yet)

    def docker(self, *args: str, timeout: float = 60.0, progress: bool = False) -> proc.Result:
        return proc.run_docker(self.real, [*self.inv.globals, *args], timeout=timeout,
                               **({"progress": True} if progress else {}))

    def placement(self, config: Config, *, image_ok: bool):
        """run.mode, with `auto` decided once per daemon by a probe (run.placement)."""
        from shim.run.placement import resolve

        return resolve(self.state, self.daemon, config["run.mode"], config["run.bind_root"], self.docker,
                       self.run.image if image_ok else None)

    def local_engine(self) -> bool:
        """Whether host paths exist for the engine (a unix socket or the default context)."""
        return self.endpoint.startswith("unix://") or self.endpoint == "context:default"

    def volumes_from_targets(self) -> tuple[str, ...] | None:
        if not self.run.volumes_from:
            return ()
        names = [v.split(":")[0] for v in self.run.volumes_from]
        res = self.docker("container", "inspect", "--format", "{{json .Mounts}}", *names)
        if res.returncode != 0:
            return None
        targets = []
        for line in res.stdout.splitlines():
            targets += [m.get("Destination", "") for m in json.loads(line or "[]")]
        return tuple(t for t in targets if t)

    def image_facts(self, *, pull: bool) -> dict:
        image = self.run.image or ""
        cached = self.config_of(image)
        if cached is None and pull and self._pull_allowed():
            # the user would have watched `docker run` pull it: its progress on stderr, as there
            self.docker("pull", *self._platform(), image, timeout=1800, progress=True)
            cached = self.config_of(image)
        return _as_facts(cached)

    def config_of(self, image: str) -> dict | None:
        """An image's env, user, arch and id: remembered for a day (or until dockcache sees
        it built again), else asked."""
        cached = self.state.get(IMAGES, self.endpoint, image, max_age=IMAGE_TTL)
        if cached is None:
            cached = self._inspect(image)
            if cached is not None:
                self.state.put(IMAGES, self.endpoint, image, cached)
        return cached

    def _inspect(self, image: str) -> dict | None:
        fmt = "{{json .Config.Env}}\t{{json .Config.User}}\t{{.Architecture}}\t{{.Id}}"
        res = self.docker("image", "inspect", "--format", fmt, image)
        if res.returncode != 0:
            return None
        try:
            env_json, user_json, arch, image_id = res.stdout.strip().split("\t")
            env = [e.split("=", 1) for e in (json.loads(env_json) or []) if "=" in e]
            return {"env": env, "user": json.loads(user_json) or "", "arch": arch, "id": image_id}
        except ValueError:
            return None  # not inspected (missing image, odd output): no image facts

    def _pull_allowed(self) -> bool:
        pull = next((v for k, v in self.run.options if k == "--pull"), "missing")
        return pull != "never"

    def _platform(self) -> list[str]:
        plat = next((v for k, v in self.run.options if k == "--platform"), None)
        return ["--platform", plat] if plat else []

    def prepare(self, mounts: Sequence[CacheMount], notes: list[str], config: Config | None = None) -> list[str]:
        """Create missing volumes/dirs (labelled) and give non-root owners write access;
        on a nearly full disk, no new ones (run.diskguard), said once."""
        from shim.run.diskguard import Guard
        from shim.run.upkeep import remember_image

        failed = []
        guard = Guard(self.state, self.daemon, config, self.docker) if config is not None else None
        for m in mounts:
            if guard is not None and self._is_new(m) and guard.blocks(m.kind, notes):
                failed.append(m.source if m.host_cache else os.path.basename(m.source))
                continue
            ok = self._prepare_bind(m) if m.kind == "bind" else self._prepare_volume(m)
            if ok:
                remember_image(self.state, m, self.run.image)
            if not ok:
                failed.append(m.source if m.host_cache else os.path.basename(m.source))
                whose = f" for user {m.owner}" if m.owner else ""
                why = f" ({self.why})" if self.why else ""
                notes.append(f"could not prepare cache {m.source}{whose}{why}; {m.manager} runs without it")
                self.why = ""
        return failed

    def _is_new(self, m: CacheMount) -> bool:
        """A cache this run would create (the host's own caches are the user's: never new)."""
        if m.kind == "bind":
            return not m.host_cache and not os.path.isdir(m.source)
        return not self.state.get("volumes", self.daemon, m.source)

    def _prepare_volume(self, m: CacheMount) -> bool:
        known = self.state.get("volumes", self.daemon, m.source) or {}
        if not known:
            # prefix and host user say whose installation made it: management touches only its own
            labels = [x for label in m.labels for x in ("--label", label)]
            res = self.docker("volume", "create", *labels, m.source)
            if res.returncode != 0:
                self.why = _last_line(res.stderr)
                return False
            known = {"owners": [], "created": True}
        if m.owner and m.owner not in known.get("owners", []):
            image = ["--pull", "never", self.init_image] if self.init_image else [self.run.image or ""]
            res = self.docker("run", "--rm", "--network", "none", "--user", "0:0",
                              "--entrypoint", "chown", "-v", f"{m.source}:{INIT_TARGET}",
                              *image, m.owner, INIT_TARGET)
            if res.returncode != 0:
                self.why = _last_line(res.stderr)
                return False
            known = {**known, "owners": [*known.get("owners", []), m.owner]}
        self.state.put("volumes", self.daemon, m.source, {**known, "manager": m.manager})
        return True

    def _prepare_bind(self, m: CacheMount) -> bool:
        if m.host_cache:
            return self._prepare_host_cache(m)
        try:
            os.makedirs(m.source, exist_ok=True)
            if m.owner:
                os.chmod(m.source, 0o1777)  # a container uid that is not ours must write here
        except OSError as exc:
            self.why = exc.strerror or type(exc).__name__
            return False
        if os.getuid() != 0:
            from shim.run.hostacl import grant_host_user
            grant_host_user(m.source, os.getuid())  # root containers' files stay ours to clear
        return True

    def _prepare_host_cache(self, m: CacheMount) -> bool:
        """The host user's own cache: never opened to others; what a root container writes
        into it stays the user's to change and clear (a default ACL on every dir, set once)."""
        try:
            os.makedirs(m.source, exist_ok=True)
        except OSError:
            return False
        if os.getuid() != 0 and not self.state.get("hostacl", "host", m.source):
            from shim.run.hostacl import grant_tree

            if grant_tree(m.source, os.getuid()):
                self.state.put("hostacl", "host", m.source, {"uid": os.getuid()})
        return True


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
