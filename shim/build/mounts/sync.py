"""Carry a build's cache mounts across sessions: the I/O around mountplan's pure plan.

Before the build, `seed` fills the mounts this daemon lacks from the store (one small
build on the same daemon, remembered per daemon generation in the state dir, so the
steady state runs nothing). After it, `save_later` starts a detached worker (`save_main`)
that copies the mounts out with `--output type=local` and publishes them under the
store's lock: measured on the engine pair a save costs 0.4 s for a small mount and
seconds for a Go cache, which the user should not wait for. Every step is fail-open:
one stderr line (or, detached, a metrics record), never the build's exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from shim.build.mounts import plan as mountplan
from shim.build.mounts.plan import MountPlan
from shim.build.mounts.parse import CacheMount, Found, find
from shim.build.mounts.store import PACKED_NAME, MountStore, unpack
from shim.core import proc
from shim.core.notice import say
from shim.core.state import State, state_dir

TRUST = 24 * 3600.0  # BuildKit's GC may drop an unused mount: after a day, seed again
HELD = "mountseeds"  # state kind: (daemon generation, store name) -> generation it holds
SAVE_TIMEOUT = 600.0  # a save build on a full disk hangs (buildx's local export): never for long
FAILED = "mountsavefailed"  # state kind: key -> why its last detached save failed (said once, next build)
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def native_platform() -> str:
    machine = os.uname().machine
    return f"linux/{_ARCH.get(machine, machine)}"


def option(options: Sequence[tuple[str, str | None]], name: str) -> str | None:
    vals = [v for k, v in options if k == name and v is not None]
    return vals[-1] if vals else None


def build_args(options: Sequence[tuple[str, str | None]], environ: Mapping[str, str]) -> dict[str, str]:
    """`--build-arg K=V`, and `--build-arg K` taking K from the environment as docker does."""
    out = {}
    for k, v in options:
        if k == "--build-arg" and v:
            key, has, val = v.partition("=")
            if has:
                out[key] = val
            elif key in environ:
                out[key] = environ[key]
    return out


def section_args(build: Mapping) -> dict[str, str]:
    """A compose build section's `args` as compose resolved them (a mapping; an arg without
    a value is not passed to the build)."""
    args = build.get("args")
    return {str(k): str(v) for k, v in args.items() if v is not None} if isinstance(args, Mapping) else {}


def read_found(context: str | None, dockerfile: str | None, cwd: str, *, target: str | None,
               args: Mapping[str, str], platform: str) -> Found:
    """The cache mounts of the Dockerfile this build really reads (or why none are looked for)."""
    if context in (None, "-") or dockerfile == "-":
        return Found(reason="the Dockerfile comes from stdin")
    if "://" in context or context.startswith("git@") or context.endswith(".git"):
        return Found(reason="remote build context")
    ctx = os.path.join(cwd, context)
    path = os.path.join(cwd, dockerfile) if dockerfile else os.path.join(ctx, "Dockerfile")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        return Found(reason=f"Dockerfile {path} unreadable ({type(exc).__name__})")
    try:
        return find(text, target=target, build_args=args, platform=platform)
    except ImportError:
        return Found(reason="the optional `dockerfile` package (pip install 'dockcache[mounts]') is missing")
    except Exception as exc:  # noqa: BLE001 - BuildKit's parser refused it: docker will say why
        return Found(reason=f"the Dockerfile did not parse ({exc})")


def plan_for(inv, environ: Mapping[str, str], config, caps, *, key: str, context: str | None,
             dockerfile: str | None, target: str | None, args: Mapping[str, str], platform: str | None,
             builder: str | None, no_cache: bool) -> tuple[MountPlan, str | None]:
    """(what to seed and save, the daemon generation they go to) for one build of `key`;
    reads the Dockerfile, the store's mount index and the state dir, runs nothing."""
    from shim.build.store.local import daemon_generation, for_engine
    from shim.build.store.cachestore import CacheStore

    found = read_found(context, dockerfile, os.getcwd(), target=target, args=args,
                       platform=platform or native_platform())
    if not (found.mounts or found.skipped or found.reason):
        return MountPlan(), None
    local = for_engine(inv, caps.driver, builder, environ) if caps.mode == "full" else None
    generation = daemon_generation(inv.host, inv.context, environ) if local else None
    why_not = mountplan.unusable(caps_mode=caps.mode, generation=generation, no_cache=no_cache,
                                 enabled=config["build.cache_mounts"])
    store = CacheStore(Path(config["build.store"]), lock_timeout=config["build.lock_timeout"])
    unwritable = None if why_not else store.unwritable()
    if unwritable:  # the save would fail in the detached worker, and say so at the next build
        why_not = f"cache mounts: {unwritable}; they stay in this daemon"
    plan = make_plan(found, key=key, platform=platform or native_platform(), user_platform=platform,
                     store=store, state=State(state_dir(environ)), generation=generation, why_not=why_not)
    return plan, generation


def held(state: State, generation: str, names: Sequence[str]) -> dict[str, str]:
    out = {}
    for n in names:
        got = state.get(HELD, generation, n, max_age=TRUST)
        if got and got.get("gen"):
            out[n] = got["gen"]
    return out


def make_plan(found: Found, *, key: str, platform: str, user_platform: str | None, store, state: State,
              generation: str | None, why_not: str | None) -> MountPlan:
    from shim.build.mounts.store import mount_name, read_index

    stored = {n: e.gen for n, e in read_index(store.root).items()} if found.mounts and not why_not else {}
    names = [mount_name(key, m.id, platform) for m in found.mounts]
    have = held(state, generation, names) if generation and not why_not else {}
    return mountplan.plan_mounts(found, key=key, platform=platform, user_platform=user_platform,
                                 stored=stored, held=have, why_not=why_not)


def seed(real: str, docker_globals: Sequence[str], plan: MountPlan, store, state: State,
         generation: str) -> int:
    """Fill the mounts this daemon lacks; returns how many were seeded."""
    todo = plan.seeds
    if not todo:
        return 0
    ms = MountStore(store)
    top, got = ms.snapshot([p.name for p in todo])
    todo = tuple(p for p in todo if p.name in got)
    try:
        if not todo:
            return 0
        sources = [got[p.name][0] for p in todo]
        res = _seed_build(real, docker_globals, plan, todo, sources)
        if res.returncode != 0 and f"exit code: {mountplan.NO_UNPACK}" in res.stderr:
            res = _seed_build(real, docker_globals, plan, todo, [_unpacked(s) for s in sources])
        if res.returncode != 0:
            say(f"cache mounts not seeded ({_last_line(res.stderr)}); the build starts with them as they are")
            return 0
        for p in todo:
            state.put(HELD, generation, p.name, {"gen": got[p.name][1]})
        return len(todo)
    finally:
        if top:
            shutil.rmtree(top, ignore_errors=True)


def _seed_build(real: str, docker_globals: Sequence[str], plan: MountPlan, todo, sources: Sequence[Path]):
    """The seed step: a packed generation goes as the one file in its context, a tree as itself."""
    packed = [s.name == PACKED_NAME for s in sources]
    with tempfile.TemporaryDirectory(prefix="dockcache-seed-") as tmp:
        df = Path(tmp) / "Dockerfile"
        df.write_text(mountplan.seed_dockerfile([p.mount for p in todo], packed))
        contexts = [x for i, (s, pk) in enumerate(zip(sources, packed))
                    for x in ("--build-context", f"{mountplan.seed_context(i)}={s.parent if pk else s}")]
        return proc.run_docker(real, [*docker_globals, "buildx", "build", *_common(plan), *contexts,
                                      "--output", "type=cacheonly", "-f", str(df), tmp], timeout=900)


def _unpacked(source: Path) -> Path:
    """A packed generation unpacked beside it, for a base image without tar or gzip."""
    if source.name != PACKED_NAME:
        return source
    tree = source.parent / "tree"
    if not tree.exists():
        unpack(source, tree)
    return tree


def _common(plan: MountPlan) -> list[str]:
    platform = ["--platform", plan.platform] if plan.platform else []
    return ["--progress", "quiet", "--network", "none", "--build-arg", f"DOCKCACHE_BUST={os.urandom(8).hex()}",
            *platform]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def save_later(real: str, docker_globals: Sequence[str], plan: MountPlan, *, key: str, config,
               environ: Mapping[str, str], generation: str, tag: str | None) -> None:
    """Start the save worker detached (or run it here when build.cache_mounts_save = "wait")."""
    if not plan.saves:
        return
    payload = {"real": real, "globals": list(docker_globals), "platform": plan.platform, "key": key,
               "mounts": [{**p.mount.__dict__, "name": p.name} for p in plan.saves],
               "store": str(config["build.store"]), "lock_timeout": config["build.lock_timeout"],
               "max_size": config["build.max_size"], "state": str(state_dir(environ)),
               "min_free": config["run.min_free"], "min_free_percent": config["run.min_free_percent"],
               "generation": generation, "tag": tag, "key_platform": plan.mounts[0].name.rsplit("--", 1)[-1]}
    if config["build.cache_mounts_save"] == "wait":
        save(payload)
        return
    root = str(Path(__file__).resolve().parents[3])
    proc.spawn_job([sys.executable, "-S", "-c",
                    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                    "from shim.build.mounts.sync import save_main; save_main()", root, json.dumps(payload)])


def save_main() -> None:
    """The detached worker: `python -S -c … ROOT PAYLOAD`."""
    payload = json.loads(sys.argv[1])
    try:
        save(payload)
    except Exception as exc:  # noqa: BLE001 - nobody is waiting: the next build says it
        _failed(State(Path(payload["state"])), payload["key"], f"{type(exc).__name__}: {exc}")


def _failed(state: State, key: str, why: str) -> None:
    state.append_log("metrics", {"kind": "mount-save", "key": key, "ok": False, "error": why})
    state.put(FAILED, "local", key, {"error": why})


def say_failed_save(state: State, key: str) -> None:
    """One line about a detached save that failed since the last build of this key."""
    got = state.get(FAILED, "local", key)
    if got:
        state.forget(FAILED, "local", key)
        say(f"the cache mounts of {key} were not saved after its last build ({got.get('error')})")


def save(p: dict) -> None:
    """Copy the mounts out of the daemon and publish each as its newest generation; not on
    a nearly full disk (the disk guard: no new caches), and not while another save of the
    same key runs (saves of a busy project would pile up behind a slow one)."""
    from shim.core.diskspace import low_space

    state = State(Path(p["state"]))
    low = low_space(p["store"], p.get("min_free", 0), p.get("min_free_percent", 0.0))
    if low:
        state.append_log("metrics", {"kind": "mount-save", "key": p["key"], "ok": True,
                                     "skipped": f"disk nearly full ({low})"})
        return
    with _only_save_of(p) as alone:
        if not alone:
            state.append_log("metrics", {"kind": "mount-save", "key": p["key"], "ok": True,
                                         "skipped": "another save of this key is running"})
            return
        _save(p, state)


@contextlib.contextmanager
def _only_save_of(p: dict):
    """True while this process holds the key's save lock; False when another does."""
    import fcntl
    from hashlib import sha256

    folder = Path(p["store"]) / "mounts"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".save-{sha256(p['key'].encode()).hexdigest()[:16]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _save(p: dict, state: State) -> None:
    from shim.build.store.cachestore import CacheStore

    started = time.monotonic()
    image = _image_id(p) if p.get("tag") else None
    if image and _unchanged(state, p, image):
        state.append_log("metrics", {"kind": "mount-save", "key": p["key"], "ok": True, "skipped": "layers unchanged"})
        return
    store = CacheStore(Path(p["store"]), lock_timeout=p["lock_timeout"])
    ms = MountStore(store)
    mounts = [CacheMount(**{k: v for k, v in m.items() if k != "name"}) for m in p["mounts"]]
    out = ms.private_dir()
    try:
        res = _save_build(p, mounts, out)
        ok = res.returncode == 0
        published = []
        for i, m in enumerate(p["mounts"] if ok else []):
            entry = ms.publish(m["name"], out / str(i), key=p["key"], mount_id=m["id"], platform=p["key_platform"])
            state.put(HELD, p["generation"], m["name"], {"gen": entry.gen})
            published.append(entry.size)
        if ok and image:
            state.put("mountsaved", p["generation"], p["key"], {"image": image})
        if ok and store.size() > p["max_size"]:
            store.prune(max_size=p["max_size"])
        if not ok:
            _failed(state, p["key"], _last_line(res.stderr))
            return
        state.append_log("metrics", {"kind": "mount-save", "key": p["key"], "ok": True, "bytes": sum(published),
                                     "mounts": len(published), "ms": round((time.monotonic() - started) * 1000, 2)})
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _save_build(p: dict, mounts: Sequence[CacheMount], out: Path):
    plan = MountPlan(platform=p.get("platform"))
    with tempfile.TemporaryDirectory(prefix="dockcache-save-") as tmp:
        df = Path(tmp) / "Dockerfile"
        df.write_text(mountplan.save_dockerfile(mounts))
        return proc.run_docker(p["real"], [*p["globals"], "buildx", "build", *_common(plan),
                                           "--output", f"type=local,dest={out}", "-f", str(df), tmp], timeout=SAVE_TIMEOUT)


def _image_id(p: dict) -> str | None:
    """The built image's layers: its id changes with every build on the containerd image
    store (a new creation time), its layers only when a step ran again."""
    res = proc.run_docker(p["real"], [*p["globals"], "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                      p["tag"]])
    return (res.stdout.strip() or None) if res.returncode == 0 else None


def _unchanged(state: State, p: dict, image: str) -> bool:
    """The same layers as at this daemon's last save, and every mount still in the store:
    no step that uses a mount ran, so this daemon holds what it already published or was
    seeded with. A newer generation another session published since is kept, not replaced
    by this daemon's older contents (two sessions building alternately each re-saved and
    dropped the other's additions)."""
    from shim.build.mounts.store import read_index

    last = state.get("mountsaved", p["generation"], p["key"], max_age=TRUST)
    if not last or last.get("image") != image:
        return False
    index = read_index(Path(p["store"]))
    have = held(state, p["generation"], [m["name"] for m in p["mounts"]])
    return all(m["name"] in index and m["name"] in have for m in p["mounts"])
