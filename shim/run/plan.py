"""The pure rewrite of `docker run|create`: argv + facts -> Plan. No I/O here.

Rules (each one a bug a peer shipped): every cache comes with the variables that make
the tool use it; nothing the user set is overridden (env vars, mount targets, parents
or children of them); what the image configured is respected (its cache location, its
"no cache" switch); applying the plan to its own output adds nothing (nested shims).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from shim.core.records import dataclass, field, replace

from shim.core.config import Config
from shim.run.detect import Detection
from shim.core.grammar import RunArgs, insert_before
from shim.core.managers import BY_NAME, SIZE_ENV, Manager, size_env_value
from shim.run.execplan import LABEL, label_value
from shim.run.mirrors import MirrorPlan, plan_mirrors
from shim.core.state import short_hash

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Facts:
    """What the impure layer learned for this command."""

    detections: tuple[Detection, ...] = ()
    project_dir: str | None = None
    image_env: tuple[tuple[str, str], ...] | None = None  # None: image not inspected
    image_user: str | None = None
    image_arch: str | None = None
    env_file_names: frozenset[str] = frozenset()
    volumes_from_targets: tuple[str, ...] | None = ()  # None: could not be inspected
    host_user: str = "0"
    unusable: frozenset[str] = frozenset()  # volumes the executor could not prepare
    local_engine: bool = True  # host paths can be bind-mounted (mirror files)
    state_root: str = ""  # where generated mirror files live on the host
    ca_pem: bytes | None = None  # [mirrors] ca_bundle, read by the executor
    mode: str = ""  # "bind" | "volume", decided by the executor (run.placement); "" = from config
    mode_reason: str = ""
    host_dirs: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # host_caches


@dataclass(frozen=True)
class CacheMount:
    manager: str
    source: str  # volume name, or host dir in bind mode
    target: str
    kind: str  # "volume" | "bind"
    owner: str | None  # non-root container user that must be able to write it
    env: tuple[tuple[str, str], ...]
    readonly: bool = False
    labels: tuple[str, ...] = ()  # a volume docker itself re-creates (removed behind our back) gets them too
    host_cache: bool = False  # the host's own cache dir of this tool (run.host_caches)


@dataclass(frozen=True)
class Plan:
    argv: tuple[str, ...]
    mounts: tuple[CacheMount, ...] = ()
    reasons: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    added: tuple[str, ...] = field(default=())
    mirror: MirrorPlan = field(default=MirrorPlan())


def plan_run(argv: Sequence[str], run: RunArgs, config: Config, facts: Facts) -> Plan:
    argv = tuple(argv)
    if run.image_index is None or run.help:
        return Plan(argv, reasons=("no image in this command: nothing to add",))
    if run.unknown:
        return Plan(argv, reasons=(f"unknown option {run.unknown[0]}: it may take a value, so the image "
                                   "is not certain; the command runs unchanged",))
    reasons = [f"detected {d.manager}: {d.reason}" for d in facts.detections]
    mounts, skipped = [], []
    for det in facts.detections:
        mgr = config.manager(det.manager)
        if mgr is None:
            continue
        why = _blocker(mgr, run, config, facts)
        if why:
            skipped.append((mgr.name, why))
            continue
        made, why = _mount_for(mgr, run, config, facts)
        if why:
            skipped.append((mgr.name, why))
        mounts += made
    mirror = _mirror_plan(run, config, facts, mounts)
    skipped += mirror.skipped
    added = _tokens(mounts) + _label(mounts, run, facts) + mirror.tokens()
    reasons += [f"skip {name}: {why}" for name, why in skipped]
    reasons += [f"caches: {facts.mode_reason}"] if mounts and facts.mode_reason else []
    reasons += [f"mount {m.source} at {m.target} for {m.manager}" + (" (your host's own cache)" if m.host_cache else "")
                for m in mounts]
    reasons += mirror.reasons
    return Plan(insert_before(argv, run.insert_at, added), tuple(mounts), tuple(reasons),
                tuple(skipped), added, mirror)


def _mirror_plan(run: RunArgs, config: Config, facts: Facts, mounts: list) -> MirrorPlan:
    urls = {key.split(".", 1)[1]: s.value for key, s in config.settings.items()
            if key.startswith("mirrors.") and key != "mirrors.ca_bundle" and s.value}
    if not urls:
        return MirrorPlan()
    taken = [m.target for m in run.mounts] + list(facts.volumes_from_targets or ()) + [m.target for m in mounts]
    return plan_mirrors([d.manager for d in facts.detections], urls,
                        user_env=user_env_names(run, facts), image_env=dict(facts.image_env or ()),
                        taken=taken, local_engine=facts.local_engine, state_root=facts.state_root,
                        ca_pem=facts.ca_pem)


def user_env_names(run: RunArgs, facts: Facts) -> set[str]:
    return {name for name, _ in run.env} | set(facts.env_file_names)


def _blocker(mgr: Manager, run: RunArgs, config: Config, facts: Facts) -> str | None:
    if not config.manager_enabled(mgr.name):
        return f"disabled in config ({config.source(f'managers.{mgr.name}.enabled')})"
    names = user_env_names(run, facts)
    fold = (lambda s: s.lower()) if mgr.case_insensitive_vars else (lambda s: s)
    mine = {fold(v) for v in mgr.all_user_vars()}
    clash = sorted(n for n in names if fold(n) in mine)
    if clash:
        return f"you set {clash[0]}: your cache settings win"
    image_env = dict(facts.image_env or ())
    own = _own_cache_mount(mgr, run, image_env)
    if own:
        return f"your mount at {own} is where {mgr.title} caches by default: yours is used"
    for var in mgr.disable_vars:
        value = _env_value(run, var) or image_env.get(var)
        if value and value.lower() not in ("0", "false", "no", "off"):
            return f"{var}={value} turns the cache off; respected"
    if facts.volumes_from_targets is None and run.volumes_from:
        return "--volumes-from could not be inspected: its mounts are unknown"
    return None


def _own_cache_mount(mgr: Manager, run: RunArgs, image_env: dict[str, str]) -> str | None:
    """A user mount at (or above) the tool's default cache dir: pointing the tool elsewhere
    by variable would bypass the cache the user gave it."""
    homes = {"/root", _env_value(run, "HOME") or image_env.get("HOME") or "/root"}
    for m in run.mounts:
        for d in mgr.default_dirs:
            places = [d] if d.startswith("/") else [f"{h.rstrip('/')}/{d}" for h in homes]
            if not d.startswith("/") and m.target.startswith("/home/") and m.target.count("/") >= 3:
                places.append("/".join(m.target.split("/")[:3]) + f"/{d}")
            if any(p == m.target or p.startswith(m.target.rstrip("/") + "/") for p in places):
                return m.target
    return None


def _env_value(run: RunArgs, var: str) -> str | None:
    return next((v for n, v in reversed(run.env) if n == var), None)


def _mount_for(mgr: Manager, run: RunArgs, config: Config, facts: Facts):
    if config["run.readonly"]:
        return _readonly_mount(mgr, run, config, facts)
    image_env = dict(facts.image_env or ())
    target, env = mgr.cache_path, list(mgr.env)
    host = _host_dirs(mgr, run, config, facts)
    if mgr.image_home and image_env.get(mgr.image_home):
        # The image owns this location (the rust image keeps cargo itself in CARGO_HOME):
        # mount inside it instead of moving it.
        home = image_env[mgr.image_home]
        if host:
            return _host_mounts(mgr, home, host, (), run, facts)
        return _first_mount(mgr, [posixpath.join(home, d) for d in mgr.home_subdirs], (), run, config, facts)
    primary = next((var for var, tmpl in env if tmpl == "{cache}"), None)
    if primary and image_env.get(primary, "").startswith("/"):
        target = posixpath.normpath(image_env[primary])
    pairs = tuple((var, _with_image_value(mgr, var, tmpl.replace("{cache}", target), image_env))
                  for var, tmpl in env if var not in image_env or var in mgr.option_vars)
    pairs = tuple((v, x) for v, x in pairs if x is not None) + _size_env(mgr, run, config, facts)
    if host:
        return _host_mounts(mgr, target, host, pairs, run, facts)
    return _first_mount(mgr, [target], pairs, run, config, facts)


def _with_image_value(mgr: Manager, var: str, ours: str, image_env: dict[str, str]) -> str | None:
    """An option-list variable the image set (MAVEN_OPTS=-Xmx1g) keeps its options and gets
    ours appended: dropping ours would leave the cache mounted and unread. None: the image
    already sets this option (its location is respected)."""
    theirs = image_env.get(var)
    if var not in mgr.option_vars or not theirs:
        return ours
    return None if ours.split("=", 1)[0] in theirs else f"{theirs} {ours}"


def _size_env(mgr: Manager, run: RunArgs, config: Config, facts: Facts) -> tuple[tuple[str, str], ...]:
    """managers.NAME.max_size through the tool's own limit (ccache, sccache evict by themselves);
    a limit you or the image set wins."""
    var, key = SIZE_ENV.get(mgr.name), f"managers.{mgr.name}.max_size"
    limit = config[key] if var and key in config.settings else 0
    if not limit or var in user_env_names(run, facts) or var in dict(facts.image_env or ()):
        return ()
    return ((var, size_env_value(mgr.name, limit)),)


def _host_dirs(mgr: Manager, run: RunArgs, config: Config, facts: Facts):
    """The host's own cache dirs for this tool, when asked for and usable: the engine sees
    host files, and the container writes as root or as the host user (whose files they are)."""
    dirs = facts.host_dirs.get(mgr.name)
    if not dirs or mode_of(config, facts) != "bind":
        return ()
    owner = _owner(run, facts)
    if owner is not None and owner.split(":")[0] != facts.host_user:
        return ()
    return () if any(d in facts.unusable for _, d in dirs) else dirs


def _host_mounts(mgr: Manager, root: str, dirs, env, run: RunArgs, facts: Facts):
    taken = [m.target for m in run.mounts] + list(facts.volumes_from_targets or ())
    mounts = []
    for i, (sub, host_dir) in enumerate(dirs):
        target = posixpath.join(root, sub) if sub else root
        hit = next((u for u in taken if _overlaps(u, target)), None)
        if hit:
            return [], f"your mount at {hit} overlaps {target}"
        mounts.append(CacheMount(mgr.name, host_dir, target, "bind", _owner(run, facts), env if i == 0 else (),
                                 host_cache=True))
    return mounts, None


def _readonly_mount(mgr: Manager, run: RunArgs, config: Config, facts: Facts):
    """Read-only mode: only tools made to read a read-only cache get one (Gradle);
    the others keep their private, writable default cache in the container."""
    if not mgr.ro_env:
        return [], f"read-only mode: {mgr.title} needs a writable cache, so it keeps a private one"
    env = tuple((v, t.replace("{cache}", mgr.cache_path)) for v, t in mgr.ro_env)
    made, why = _first_mount(mgr, [mgr.cache_path], env, run, config, facts)
    return [replace(m, readonly=True, owner=None) for m in made], why


def _first_mount(mgr, targets, env, run, config, facts):
    """One volume for a manager; extra targets (cargo's registry/ and git/) are sub-volumes."""
    taken = [m.target for m in run.mounts] + list(facts.volumes_from_targets or ())
    for t in targets:
        hit = next((u for u in taken if _overlaps(u, t)), None)
        if hit:
            return [], f"your mount at {hit} overlaps {t}"
    owner = _owner(run, facts)
    base = _volume_name(mgr.name, config, facts, owner)
    if base in facts.unusable:
        return [], f"volume {base} could not be prepared for user {owner}"
    mounts = []
    for i, t in enumerate(targets):
        name = base if len(targets) == 1 else f"{base}-{posixpath.basename(t)}"
        mounts.append(_cache_mount(mgr.name, name, t, owner, env if i == 0 else (), config, facts))
    return mounts, None


def _cache_mount(manager: str, name: str, target: str, owner: str | None, env, config: Config,
                 facts: Facts) -> CacheMount:
    mode = mode_of(config, facts)
    if mode == "bind":
        return CacheMount(manager, posixpath.join(config["run.bind_root"], name), target, mode, owner, env)
    labels = ("dockcache.managed=true", f"dockcache.manager={manager}", f"dockcache.owner={owner or 'root'}",
              f"dockcache.prefix={config['run.volume_prefix']}", f"dockcache.host_user={facts.host_user}")
    return CacheMount(manager, name, target, mode, owner, env, labels=labels)


def mode_of(config: Config, facts: Facts) -> str:
    """bind or volume: decided by the executor for `auto` (run.placement); volume until then."""
    return facts.mode or (config["run.mode"] if config["run.mode"] != "auto" else "volume")


def _overlaps(a: str, b: str) -> bool:
    a, b = posixpath.normpath(a), posixpath.normpath(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _owner(run: RunArgs, facts: Facts) -> str | None:
    user = run.user if run.user is not None else facts.image_user
    if not user or user.split(":")[0] in ("0", "root", ""):
        return None
    return user


def _volume_name(manager: str, config: Config, facts: Facts, owner: str | None) -> str:
    custom = config[f"managers.{manager}.volume"] if f"managers.{manager}.volume" in config.settings else ""
    parts = [custom or f"{config['run.volume_prefix']}-{manager}"]
    scope = config["run.scope"]
    if scope == "user":
        parts.append(f"u{_SAFE.sub('', facts.host_user)[:16]}")
    elif scope == "project" and facts.project_dir:
        parts.append(f"p{short_hash(facts.project_dir)}")
    mgr = BY_NAME.get(manager)
    if mgr and mgr.abi_sensitive and facts.image_arch not in (None, "", "amd64"):
        parts.append(_SAFE.sub("", facts.image_arch))
    if owner:
        uid = owner.split(":")[0]
        parts.append(f"c{uid}" if uid.isdigit() else f"c{short_hash(owner, 8)}")
    return "-".join(parts)


def _tokens(mounts: Sequence[CacheMount]) -> tuple[str, ...]:
    out: list[str] = []
    for m in mounts:
        if m.kind == "volume":  # --mount: a volume docker re-creates by itself still gets our labels
            fields = [f"type=volume,source={m.source},target={m.target}", *(["readonly"] if m.readonly else []),
                      *(f"volume-label={label}" for label in m.labels)]
            out += ["--mount", ",".join(fields)]
        else:
            out += ["-v", f"{m.source}:{m.target}" + (":ro" if m.readonly else "")]
    for m in mounts:
        for var, value in m.env:
            out += ["-e", f"{var}={value}"]
    return tuple(out)


def _label(mounts: Sequence[CacheMount], run: RunArgs, facts: Facts) -> tuple[str, ...]:
    """The container's writable caches and their owner (run.execplan): a `docker exec -u`
    of another user then gets a tree of its own in each."""
    value = cache_label(mounts, _owner(run, facts))
    return ("--label", f"{LABEL}={value}") if value else ()


def cache_label(mounts: Sequence[CacheMount], owner: str | None) -> str | None:
    """The label's value for these mounts (compose sets it too), None without any."""
    paths = [m.target for m in mounts if not m.readonly and not m.host_cache]
    return label_value(owner, paths) if paths else None


def env_of(plan: Plan) -> Mapping[str, str]:
    return {k: v for m in plan.mounts for k, v in m.env}
