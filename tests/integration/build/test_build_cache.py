"""Through bin/docker: builds on isolated daemons share one BuildKit cache store."""

import json
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shim.build.store.cachestore import CacheStore
from shim.build.progress import step_named
from tests.integration.helpers import keep_previous, shim

pytestmark = pytest.mark.engine


def project(tmp_path, name="p", base="dockcache-test/busybox", loops=300000):
    """A Dockerfile whose RUN step costs CPU; a fresh token so no daemon has it yet."""
    d = tmp_path / name
    d.mkdir()
    token = uuid.uuid4().hex
    if base == "scratch":
        shutil.copy("/bin/busybox", d / "busybox")
        d.joinpath("Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            f'RUN ["/bin/busybox", "sh", "-c", "echo {token} > /t; i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done"]\n')
    else:
        d.joinpath("Dockerfile").write_text(
            f"FROM {base}\nRUN echo {token} > /t && i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done\n")
    return d, token


def build(env, engine, ctx, tag, *extra):
    keep_previous(engine, tag)
    engine.images.append(tag)
    return shim(env, "build", "--network", "none", "--progress", "plain", "-t", tag, *extra, str(ctx),
                extra={"DOCKER_HOST": engine.host})


def run_step(cp, token):
    assert cp.returncode == 0, cp.stderr[-2000:]
    return step_named(cp.stderr, token)


def no_strays(store: Path, wait: float = 0.0):
    """Nothing left in tmp/ or snapshots/ (after `wait` s at most: a publish handed to a
    worker by a held lock finishes on its own)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        left = [p for kind in ("tmp", "snapshots") if (store / kind).exists() for p in (store / kind).glob("*")]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert left == []


def test_session_b_reuses_what_session_a_built(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, token = project(tmp_path)
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    tag = f"{a.prefix}/app:1"
    assert not run_step(build(shim_env, a, ctx, tag), token).cached
    assert f"{a.prefix}-app" in CacheStore(store).keys()
    assert run_step(build(shim_env, b, ctx, tag), token).cached
    no_strays(store)


def test_old_engine_imports_but_does_not_publish(shim_env, engines, tmp_path):
    a, old = engines["a"], engines["old"]
    ctx, token = project(tmp_path, base="scratch")
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    tag = f"{a.prefix}/scr:1"
    run_step(build(shim_env, a, ctx, tag), token)
    before = (store / "oci" / "index.json").read_text()
    cp = build(shim_env, old, ctx, tag)
    assert cp.returncode == 0
    assert "cannot publish" in cp.stderr and cp.stderr.count("dockcache:") == 1
    copy = step_named(cp.stderr, "COPY busybox")
    assert copy and copy.cached  # imported from the store written by daemon A
    assert (store / "oci" / "index.json").read_text() == before
    again = build(shim_env, old, ctx, tag)
    assert again.returncode == 0 and "dockcache:" not in again.stderr  # the engine's limit is said once a day


def test_user_cache_to_and_no_cache(shim_env, engines, tmp_path):
    a = engines["a"]
    ctx, token = project(tmp_path)
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    mine = tmp_path / "mine"
    cp = build(shim_env, a, ctx, f"{a.prefix}/own:1", "--cache-to", f"type=local,dest={mine}")
    assert cp.returncode == 0 and (mine / "index.json").exists()
    assert f"{a.prefix}-own" not in CacheStore(store).keys()  # no export added beside theirs
    cp = build(shim_env, a, ctx, f"{a.prefix}/own:1", "--no-cache")
    assert not run_step(cp, token).cached  # no import with --no-cache ...
    assert f"{a.prefix}-own" in CacheStore(store).keys()  # ... but it still publishes


def test_concurrent_builds_across_daemons(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    ctxs = [project(tmp_path, f"c{i}", loops=100000) for i in range(4)]
    # same key from two tags of one repository: concurrent builds of one tag on one daemon
    # clash in the image store itself ("already exists"), with or without dockcache
    jobs = [(a if i % 2 == 0 else b, ctxs[i % 4], f"{a.prefix}/k{i % 4}:{i}") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda j: build(shim_env, j[0], j[1][0], j[2]), jobs))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr[-500:] for r in results if r.returncode]
    index = json.loads((store / "oci" / "index.json").read_text())
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == \
        {f"{a.prefix}-k{i}" for i in range(4)}
    assert CacheStore(store).check() == []
    no_strays(store)
    for i, (ctx, token) in enumerate(ctxs):  # every key imports cleanly on a daemon
        fresh = engines["b"] if i % 2 == 0 else engines["a"]
        assert run_step(build(shim_env, fresh, ctx, f"{a.prefix}/k{i}:1"), token).cached


def test_repeated_sessions_keep_store_bounded(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, _ = project(tmp_path)
    store = CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"]))
    tag = f"{a.prefix}/rep:1"
    assert build(shim_env, a, ctx, tag).returncode == 0
    first = store.size()
    for eng in (a, a, b, b, b):
        assert build(shim_env, eng, ctx, tag).returncode == 0
    assert store.size() <= 1.1 * first


def test_prune_during_builds_never_fails_one(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    store = CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"]))
    ctxs = [project(tmp_path, f"q{i}", loops=100000) for i in range(3)]
    for i, (ctx, _t) in enumerate(ctxs):
        assert build(shim_env, a, ctx, f"{a.prefix}/q{i}:1").returncode == 0
    stop = threading.Event()
    pruned = []

    def pruner():
        while not stop.is_set():
            pruned.append(store.prune(max_size=1))  # evicts everything it may, repeatedly

    t = threading.Thread(target=pruner)
    t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: build(shim_env, b, ctxs[i % 3][0], f"{a.prefix}/q{i % 3}:{i}"), range(6)))
    finally:
        stop.set()
        t.join()
    assert [r.returncode for r in results] == [0] * 6
    assert pruned and any(p.removed_keys for p in pruned)
    assert store.check() == []


def reachable(store: Path) -> list[Path]:
    """The blobs the store's index reaches."""
    from shim.build.store import layout

    blobs, seen = store / "oci" / "blobs" / "sha256", set()
    for desc in json.loads((store / "oci" / "index.json").read_text())["manifests"]:
        layout.reach(desc, blobs, seen)
    return [blobs / h for h in seen]


def test_corrupt_store_never_fails_a_build(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    ctx, token = project(tmp_path)
    tag = f"{a.prefix}/bad:1"
    assert build(shim_env, a, ctx, tag).returncode == 0
    (store / "oci" / "index.json").write_text("{not json")
    cp = build(shim_env, b, ctx, tag)
    assert cp.returncode == 0 and cp.stderr.count("dockcache:") == 1 and "reset" in cp.stderr
    assert not step_named(cp.stderr, token).cached  # ran without the import ...
    assert CacheStore(store).check() == [] and f"{a.prefix}-bad" in CacheStore(store).keys()  # ... and republished
    blob = max(reachable(store), key=lambda p: p.stat().st_size)
    blob.unlink()  # a missing blob (the base's layer is a placeholder: the biggest is the build's own)
    cp = build(shim_env, a, ctx, tag)
    assert cp.returncode == 0 and "missing blobs" in cp.stderr
    assert CacheStore(store).check() == []


def test_held_lock_means_uncached_not_stuck(shim_env, engines, tmp_path):
    from filelock import FileLock

    a = engines["a"]
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    store.mkdir(parents=True, exist_ok=True)
    ctx, token = project(tmp_path)
    with FileLock(str(store / ".lock")):
        cp = build({**shim_env, "DOCKCACHE_BUILD_LOCK_TIMEOUT": "1"}, a, ctx, f"{a.prefix}/lock:1")
    assert cp.returncode == 0
    assert "locked by another process" in cp.stderr
    no_strays(store, wait=60)



def test_an_untagged_build_in_a_fresh_clone_elsewhere_finds_the_cache(shim_env, engines, tmp_path):
    """Session A builds `docker build .` in its clone; session B clones the same origin to
    another path: its untagged build finds A's steps (it keyed on the absolute path)."""
    import subprocess

    a, b = engines["a"], engines["b"]
    src, token = project(tmp_path, "origin-src")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "-C", str(src), "init", "-q"], check=True)
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-qm", "x"], check=True)
    clones = []
    for where in ("session-a/work/app", "session-b/elsewhere/checkout"):
        dest = tmp_path / where
        subprocess.run(["git", "clone", "-q", str(src), str(dest)], check=True)
        clones.append(dest)
    done = []
    for engine, ctx in zip((a, b), clones):
        iid = tmp_path / f"iid-{len(done)}"
        cp = shim(shim_env, "build", "--network", "none", "--progress", "plain", "--iidfile", str(iid), str(ctx),
                  extra={"DOCKER_HOST": engine.host})
        engine.images.append(iid.read_text().strip() if iid.exists() else "")
        done.append(run_step(cp, token).cached)
    assert done == [False, True]  # B's clone elsewhere: the step came from A's build


def metrics_of(env) -> list[dict]:
    path = Path(env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if '"build"' in x] if path.exists() else []


def test_an_unchanged_rebuild_exports_nothing_and_an_edit_or_a_new_base_exports_again(shim_env, engines, tmp_path):
    """The export's preparation is BuildKit's cost on every build (~0.15-0.3 s on a fully
    cached 320 MB image); while nothing the build reads changed since this daemon's
    export, the build runs as typed. An edit or a re-tagged FROM image exports again, and
    session B finds every step in the store either way."""
    a, b = engines["a"], engines["b"]
    base = f"{a.prefix}/inputs-base:1"
    for engine in (a, b):  # one digest on every daemon, as a pulled base would be
        engine.docker("tag", "dockcache-test/busybox", base)
        engine.images.append(base)
    ctx, token = project(tmp_path, base=base)
    store = CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"]))
    tag = f"{a.prefix}/inputs:1"
    assert not run_step(build(shim_env, a, ctx, tag), token).cached
    key = f"{a.prefix}-inputs"
    first = store.lineage(key)
    keys_json = store.root / "keys.json"
    aged = json.loads(keys_json.read_text())
    aged[key]["last_used"] -= 7200  # two hours ago: the next build that runs as typed marks it used
    keys_json.write_text(json.dumps(aged))
    cp = build(shim_env, a, ctx, tag)
    assert run_step(cp, token).cached and "--cache-to" not in cp.stderr
    recorded = metrics_of(shim_env)
    assert len(recorded) == 2 and recorded[-1]["as_typed"] and not recorded[-1]["export"]  # docker's own build, counted
    assert store.keys()[key].last_used > aged[key]["last_used"] + 3600
    assert store.lineage(key) == first
    session_b = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    assert run_step(build(session_b, b, ctx, tag), token).cached  # B: from the store
    ctx.joinpath("Dockerfile").write_text(ctx.joinpath("Dockerfile").read_text() + "RUN echo edited > /e\n")
    cp = build(shim_env, a, ctx, tag)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert metrics_of(shim_env)[-1]["export"] and store.lineage(key)[0] != first[0], cp.stderr[-2000:]
    edited = store.lineage(key)
    cp = build(shim_env, a, ctx, tag)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert store.lineage(key) == edited and len([m for m in metrics_of(shim_env) if m["export"]]) == 2
    a.docker("build", "--network", "none", "-q", "-t", base, "-", input=f"FROM dockcache-test/busybox\nRUN echo {token} > /new-base\n")
    cp = build(shim_env, a, ctx, tag)  # same files, a new FROM image: export again
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert len([m for m in metrics_of(shim_env) if m["export"]]) == 3


def test_a_from_named_by_an_arg_with_a_default_runs_as_typed_when_unchanged(shim_env, engines, tmp_path):
    """`ARG BASE=...` / `FROM ${BASE}`, the usual way to pin a base: an unchanged rebuild runs
    as typed (it exported every time), and a --build-arg naming another base exports again."""
    a = engines["a"]
    other = f"{a.prefix}/arg-base:1"
    a.docker("build", "--network", "none", "-q", "-t", other, "-", input="FROM dockcache-test/busybox\nRUN echo other > /o\n")
    a.images.append(other)
    ctx, token = project(tmp_path)
    ctx.joinpath("Dockerfile").write_text(
        "ARG BASE=dockcache-test/busybox\n" + ctx.joinpath("Dockerfile").read_text().replace(
            "FROM dockcache-test/busybox", "FROM ${BASE}"))
    tag = f"{a.prefix}/arg:1"
    assert not run_step(build(shim_env, a, ctx, tag), token).cached
    cp = build(shim_env, a, ctx, tag)
    assert run_step(cp, token).cached and "--cache-to" not in cp.stderr
    assert [m.get("as_typed", False) for m in metrics_of(shim_env)] == [False, True]
    cp = build(shim_env, a, ctx, tag, "--build-arg", f"BASE={other}")
    assert not run_step(cp, token).cached and metrics_of(shim_env)[-1]["export"]


def test_a_store_locked_past_the_build_is_published_by_a_worker_once_free(shim_env, engines, tmp_path):
    """With the default 30 s lock timeout the command no longer waits it out: the build
    runs without the import, returns, and a detached worker publishes when the lock frees."""
    import time

    from filelock import FileLock

    a = engines["a"]
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    store.mkdir(parents=True, exist_ok=True)
    ctx, token = project(tmp_path)
    lock = FileLock(str(store / ".lock"))
    with lock:
        cp = build(shim_env, a, ctx, f"{a.prefix}/handoff:1")
        assert cp.returncode == 0 and "locked by another process" in cp.stderr
        assert f"{a.prefix}-handoff" not in CacheStore(store).keys()  # not yet: the lock is held
    deadline = time.monotonic() + 120
    while f"{a.prefix}-handoff" not in CacheStore(store).keys() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"{a.prefix}-handoff" in CacheStore(store).keys()
    no_strays(store, wait=60)
    assert run_step(build(shim_env, engines["b"], ctx, f"{a.prefix}/handoff:1"), token).cached


def test_a_build_then_run_loop_keeps_the_runs_plan_until_the_image_may_change(shim_env, engines, tmp_path):
    """`docker build -t app . && docker run app`: the run's plan (caches owned by the image's
    USER) is remembered; an unchanged rebuild tags the same image and keeps it (no image
    inspect, no replan), an edited one makes the next run ask the engine again."""
    a = engines["a"]
    ctx, token = project(tmp_path)
    ctx.joinpath("package.json").write_text('{"name": "p", "version": "1.0.0"}')
    tag = f"{a.prefix}/loop:1"
    run = ["run", "--rm", "--network", "none", "-v", f"{ctx}:/app", "-w", "/app", tag, "true"]

    def runs() -> list[dict]:
        path = Path(shim_env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines() if '"run"' in x]

    def build_then_run() -> dict:
        assert run_step(build(shim_env, a, ctx, tag), token)
        cp = shim(shim_env, *run, extra={"DOCKER_HOST": a.host})
        assert cp.returncode == 0, cp.stderr[-2000:]
        assert any("npm" in c for c in runs()[-1]["caches"]), runs()[-1]
        return runs()[-1]

    assert not build_then_run().get("remembered")
    assert build_then_run().get("remembered")  # unchanged rebuild (as typed): the run's plan holds
    assert build_then_run().get("remembered")
    ctx.joinpath("edit.txt").write_text(token)
    assert not build_then_run().get("remembered")  # the image may have changed: asked again
