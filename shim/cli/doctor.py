"""`dockcache doctor`: is the shim in place, what can this engine do, where are the caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shim.core import engine
from shim.build.mounts.store import read_index
from shim.build.store.cachestore import CacheStore
from shim.hot import DISABLE_VALUES
from shim.core.realdocker import first_on_path, is_launcher

from .about import version_line
from .context import Ctx
from .inventory import dir_size
from .output import CliError, emit, human_size


def _shared_builder_check(cfg, check) -> None:
    """The host's shared BuildKit: "auto" with none started is not a problem (builds stay here)."""
    from shim.build.shared.builder import unreachable
    from shim.build.shared.route import target_for

    target = target_for(cfg["build.builder"], cfg["build.builder_tls"])
    if target is None or not target.address:
        check("shared builder", "off" if target is None else f"buildx builder {target.name} (by name)")
        return
    problem = unreachable(target.address)
    if problem and cfg["build.builder"] == "auto":
        check("shared builder", "none on this host (builds use each session's own builder)")
        return
    check("shared builder", target.address + (" (unreachable: builds fall back to this engine)" if problem else " (up)"),
          None, "start it: `sudo dockcache builder up`, or `dockcache builder use off`",
          warning=problem and f"the shared builder does not answer ({problem})")


def _layouts_check(ctx: Ctx, check) -> None:
    """The images kept for thin loads from the shared builder (bounded in thinload.py)."""
    from shim.build.shared.thinload import KEEP_LAYOUTS, usage

    root = Path(f"{ctx.store_root}-load")
    if root.is_dir():
        count, size = usage(root)
        check("shared builder images", f"{root} ({count} of at most {KEEP_LAYOUTS}, {human_size(size)})")


def run_doctor(ctx: Ctx, *, as_json: bool) -> int:
    checks: list[dict] = []

    def check(name, value, problem=None, fix=None, warning=None):
        checks.append({"check": name, "value": value, "ok": problem is None, "problem": problem, "fix": fix,
                       **({"warning": warning} if warning else {})})

    check("dockcache", version_line())
    first = first_on_path("docker", ctx.environ)
    ours = bool(first and is_launcher(first))
    check("docker first on PATH", first or "(none)", None if ours else "the first docker on PATH is not dockcache's",
          "run install.sh, or put dockcache's bin directory first on PATH")
    _real_check(ctx, check)
    disabled = ctx.environ.get("DOCKCACHE_DISABLE", "").lower() in DISABLE_VALUES
    check("kill switch", "DOCKCACHE_DISABLE is set: dockcache is off" if disabled else "off (dockcache active)")
    ver = ctx.docker("version", "--format", "{{.Server.Version}}", timeout=20)
    reachable = ver.returncode == 0
    check("engine", ver.stdout.strip() if reachable else "unreachable",
          None if reachable else f"engine not reachable: {(ver.stderr.strip().splitlines() or ['?'])[-1]}",
          "start dockerd or check DOCKER_HOST / docker context")
    caps = _engine_checks(ctx, check) if reachable else None
    try:
        cfg = ctx.config
        named = ctx.environ.get("DOCKCACHE_CONFIG", "")
        check("config files", ", ".join(cfg.files) or "(defaults only)",
              f"DOCKCACHE_CONFIG names {named}, which does not exist" if named and not os.path.isfile(named) else None,
              "fix the path, or write the file with `dockcache config init`")
    except CliError as exc:
        check("config files", "invalid", str(exc), "fix the file and key named above")
        cfg = None
    check("state dir", str(ctx.state.root), None if _writable(ctx.state.root) else "state dir not writable",
          "set DOCKCACHE_STATE_DIR to a writable directory")
    if cfg is not None:
        store = CacheStore(ctx.store_root)
        unwritable = store.unwritable()  # builds then run without the shared cache
        check("build store", f"{ctx.store_root} ({human_size(store.size())}, {len(store.keys())} keys)",
              unwritable or "; ".join(store.check()) or None,
              "set DOCKCACHE_BUILD_STORE (build.store) to a writable directory" if unwritable
              else "run `dockcache cache prune`")
        _placement_checks(ctx, cfg, reachable, check)
        from .health import cache_checks  # every cache, its size, a cheap health check; the disk guard
        cache_checks(ctx, cfg, reachable, check)
        mounts = read_index(ctx.store_root)
        check("build cache mounts", f"{len(mounts)} saved, {human_size(sum(e.size for e in mounts.values()))}"
              " (RUN --mount=type=cache contents carried across sessions)")
        _backend_checks(cfg, caps, check)
        _shared_builder_check(cfg, check)
        _layouts_check(ctx, check)
        _mirror_checks(cfg, check)
        _images_check(ctx, cfg, check)
        _mounts_parser_check(check)
    healthy = all(c["ok"] for c in checks)
    emit({"healthy": healthy, "checks": checks}, as_json=as_json, human=_human(checks))
    return 0 if healthy else 1


def _images_check(ctx: Ctx, cfg, check) -> None:
    """Whether this engine's pulls go through the host's image caches, and why not."""
    from shim.images.caches import read_index, running
    from shim.images.command import Engine

    index = read_index(cfg["images.root"])
    up = sorted(reg for reg, e in index.items() if running(e))
    down = sorted(set(index) - set(up))
    engine = Engine(None, None, ctx.environ)
    if not (cfg["enabled"] and cfg["images.enabled"]):
        value = "off (images.enabled = false): the engine pulls directly"
    elif not index:
        value = f"no image cache under {cfg['images.root']}: the engine pulls directly (`dockcache images up`)"
    elif engine.socket is None:
        value = "the engine is not on this host's unix socket: it pulls directly"
    else:
        value = f"pulls of {', '.join(up) or 'no registry'} go through the host's cache"
    check("image caches", value, f"the cache for {', '.join(down)} is down: those pulls go directly" if down else None,
          "run `dockcache images up` (or `images down` to forget it)")


def _human(checks: list[dict]) -> str:
    """One line per check; a problem or warning with its fix under it; a last line that counts them."""
    lines = []
    for c in checks:
        mark = "BAD " if not c["ok"] else "warn" if c.get("warning") else "ok  "
        lines.append(f"{mark} {c['check']}: {c['value']}")
        if not c["ok"]:
            lines.append(f"     problem: {c['problem']}")
        if c.get("warning"):
            lines.append(f"     warning: {c['warning']}")
        if not c["ok"] or c.get("warning"):
            lines.append(f"     fix: {c['fix']}")
    bad = sum(not c["ok"] for c in checks)
    warned = sum(bool(c.get("warning")) for c in checks)
    if bad or warned:
        lines.append(f"{bad} problem(s), {warned} warning(s): each fix is under it; "
                     "more in dockcache's docs/troubleshooting.md; `DOCKCACHE_DISABLE=1` turns dockcache off meanwhile.")
    else:
        lines.append("all good. Something still odd? `dockcache explain -- docker run …` says what a command gets.")
    return "\n".join(lines)


def _real_check(ctx: Ctx, check) -> None:
    """The docker dockcache runs: DOCKCACHE_REAL_DOCKER when set (it must be runnable, and not
    one of our launchers, which would loop), else the next `docker` on PATH."""
    named = ctx.environ.get("DOCKCACHE_REAL_DOCKER", "")
    if named and is_launcher(named):
        problem = f"DOCKCACHE_REAL_DOCKER={named} names a dockcache launcher (ignored: it would loop)"
    elif named and not (os.path.isfile(named) and os.access(named, os.X_OK)):
        problem = f"DOCKCACHE_REAL_DOCKER={named} is not an executable file"
    else:
        problem = None if ctx.real else "no real docker found"
    fix = ("point DOCKCACHE_REAL_DOCKER at the docker CLI itself, or unset it" if named
           else "install the docker CLI or set DOCKCACHE_REAL_DOCKER")
    check("real docker", ctx.real or "(none)", problem, fix)


def _mounts_parser_check(check) -> None:
    """Cache mounts need BuildKit's Dockerfile parser (the `mounts` extra): without it they stay per session."""
    import importlib.util

    if importlib.util.find_spec("dockerfile") is not None:
        return
    check("cache mounts parser", "the `dockerfile` package is not installed", None,
          "re-run ./install.sh (it installs the `mounts` extra), or `pip install 'dockcache[mounts]'` "
          "in dockcache's environment",
          warning="RUN --mount=type=cache contents are not carried across sessions")


def _placement_checks(ctx: Ctx, cfg, reachable: bool, check) -> None:
    """Where run caches live on this engine (run.mode; auto probes once per daemon) and
    whether the bind root survives the session."""
    from shim.run.placement import resolve, session_local

    bind = Path(cfg["run.bind_root"])
    image = _any_image(ctx) if reachable else None
    placed = resolve(ctx.state, ctx.daemon, cfg["run.mode"], str(bind), ctx.docker, image)
    check("run caches", f"{placed.mode}: {placed.reason}")
    local = session_local(str(bind)) if placed.mode == "bind" or cfg["run.host_caches"] else None
    check("bind cache root", f"{bind} ({human_size(dir_size(bind)) if bind.exists() else 'not created'})",
          fix="set run.bind_root (or DOCKCACHE_BIND_ROOT) to a place every session shares",
          warning=local and f"{local}: the caches go with the session")


def _any_image(ctx: Ctx) -> str | None:
    """An image the daemon already has, for the placement probe (created, never started)."""
    res = ctx.docker("image", "ls", "--quiet", timeout=20)
    ids = res.stdout.split() if res.returncode == 0 else []
    return ids[0] if ids else None


def _engine_checks(ctx: Ctx, check) -> None:
    info = ctx.docker("info", "--format", "{{json .DriverStatus}}", timeout=20)
    check("containerd image store", "yes" if "io.containerd.snapshotter" in info.stdout else "no (classic store)")
    comp = ctx.docker("compose", "version", "--short", timeout=20)
    check("compose", comp.stdout.strip() if comp.returncode == 0 else "not installed")
    legacy = engine.legacy_reason(ctx.environ)
    caps = engine.BuildCaps("none", legacy) if legacy else engine.detect(
        lambda *a: ctx.docker(*a, timeout=30), ctx.environ.get("BUILDX_BUILDER"))
    check("buildx", caps.buildx or "not installed", None if caps.buildx else "buildx missing: builds are not cached",
          "install the docker-buildx plugin")
    labels = {"full": "publish+import", "import-only": "import-only", "none": "none"}
    check("build caching", f"{labels[caps.mode]}: {caps.reason}")
    return caps


def _backend_checks(cfg, caps, check) -> None:
    backend, spec = cfg["build.backend"], cfg["build.registry"]
    check("build cache backend", backend + (f" (registry {spec})" if backend != "local" else ""),
          "backend needs [build] registry = \"HOST:PORT/REPO\"" if backend != "local" and not spec else None,
          "set [build] registry or DOCKCACHE_BUILD_REGISTRY")
    if backend == "local" or not spec:
        return
    if caps is not None and caps.mode != "full":
        check("registry cache on this engine", "not supported",
              "this engine imports only inline cache from registries: builds run without the registry cache",
              "use backend = \"local\" with this engine, or an engine with BuildKit and buildx")
    from shim.build.store.registry import Registry, RegistryDenied, RegistryError, RegistryUnreachable

    registry = Registry(spec, timeout=3.0)
    try:
        infos = registry.inventory()
    except RegistryUnreachable as exc:
        check("build cache registry", "unreachable", str(exc), "start the registry or fix [build] registry")
        return
    except RegistryDenied as exc:
        check("build cache registry", "login needed", str(exc),
              f"docker login {spec.partition('/')[0]} (dockcache uses that login; it stores none)")
        return
    except RegistryError as exc:
        check("build cache registry", f"reachable, not listable ({exc})")
        return
    keys = [i for i in infos if i.built_at is None]
    size = sum({i.digest: i.size for i in infos if i.digest}.values())
    login = f", with the docker login for {registry.host}" if registry.authorization else ""
    check("build cache registry", f"reachable{login}, {len(keys)} keys, {len(infos) - len(keys)} build tags, "
          f"{human_size(size)} referenced")


def _mirror_checks(cfg, check) -> None:
    import urllib.error
    import urllib.request

    for key, setting in sorted(cfg.settings.items()):
        if not key.startswith("mirrors.") or key == "mirrors.ca_bundle" or not setting.value:
            continue
        url = setting.value.split(",")[0].split("|")[0].removeprefix("sparse+")
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=3).close()
            problem = None
        except urllib.error.HTTPError:
            problem = None  # it answered: reachable (an index root may well say 404)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = f"mirror unreachable ({getattr(exc, 'reason', exc)}): installs that use it will fail"
        check(f"mirror {key.split('.', 1)[1]}", url, problem, "start the mirror or fix [mirrors] in config")
    ca = cfg["mirrors.ca_bundle"]
    if ca:
        check("mirror CA bundle", ca, None if os.access(ca, os.R_OK) else "not readable",
              "point mirrors.ca_bundle at a readable PEM file")


def _writable(path: Path) -> bool:
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    # a file where the dir (or a parent to make) should be cannot hold one, however writable
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK) and shutil.disk_usage(probe).free > 0
