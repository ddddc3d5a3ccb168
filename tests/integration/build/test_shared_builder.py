"""The host's shared BuildKit (issue 17), live: daemons A and B are two sessions that
build on one buildkitd (tests/engine/provision.sh builder-up) through dockcache.

Each session has its own HOME (so its own buildx builder, made once) and state dir. The
shared builder pulls FROM images from the loopback registry (provisioning mirrors the
test images there), never from a session's engine. Skips when no shared builder is
provisioned here; under CI=true that fails instead, like every engine test.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.ptyread import drain

from shim.build.progress import step_named
from tests.conftest import BUSYBOX, DEVTOOLS
from tests.integration.helpers import REPO, shim

pytestmark = pytest.mark.engine

ADDRESS = os.environ.get("DOCKCACHE_TEST_BUILDER", "unix:///run/dockcache-engine/buildkitd.sock")
BUILDKIT_BIN = Path(os.environ.get("DOCKCACHE_ENGINE_CACHE", "/var/cache/dockcache-engine")) / "buildkit-v0.14.1/bin"
REGISTRY = os.environ.get("DOCKCACHE_TEST_REGISTRY", "localhost:5000").replace("localhost", "127.0.0.1")


def _answers(address: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(address[len("unix://"):])
        return True
    except OSError:
        return False


@pytest.fixture
def sessions(shim_env, engines, tmp_path):
    """Two sessions, A and B, each with its own HOME and state, both on the shared builder."""
    if not _answers(ADDRESS):
        why = f"no shared builder answers at {ADDRESS}; run tests/engine/provision.sh builder-up"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    out = {}
    for name in ("a", "b"):
        home = tmp_path / f"home-{name}"
        home.mkdir()
        out[name] = {**shim_env, "HOME": str(home), "DOCKER_HOST": engines[name].host,
                     "DOCKCACHE_STATE_DIR": str(tmp_path / f"state-{name}"),
                     "DOCKCACHE_BUILD_BUILDER": ADDRESS}
    return out


def project(tmp_path: Path, body: str, name: str = "p") -> tuple[Path, str]:
    d = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    token = uuid.uuid4().hex
    d.joinpath("Dockerfile").write_text(body.replace("TOKEN", token))
    d.joinpath("app.txt").write_text(uuid.uuid4().hex)
    return d, token


SLOW = f"FROM {BUSYBOX}\nRUN echo TOKEN > /slow && sleep 3\nCOPY app.txt /app.txt\n"


def build(env: dict, engine, ctx: Path, tag: str, *extra: str, ok: bool = True) -> subprocess.CompletedProcess:
    engine.images.append(tag)
    cp = shim(env, "build", "--network", "none", "--progress", "plain", *extra, "-t", tag, str(ctx))
    if ok:
        assert cp.returncode == 0, cp.stderr[-3000:]
    return cp


def metrics(env: dict) -> list[dict]:
    path = Path(env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if '"build"' in x]


def image_id(engine, tag: str) -> str:
    return engine.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


def test_a_build_on_a_is_fully_cached_on_b(sessions, engines, tmp_path):
    ctx, token = project(tmp_path, SLOW)
    tag = f"{engines['a'].prefix}/shared:1"
    cold = build(sessions["a"], engines["a"], ctx, tag)
    assert "using remote driver" in cold.stderr and not step_named(cold.stderr, token).cached
    warm = build(sessions["b"], engines["b"], ctx, tag)
    assert step_named(warm.stderr, token).cached and step_named(warm.stderr, "COPY app.txt").cached
    assert engines["b"].docker("run", "--rm", "--network", "none", tag, "cat", "/slow").stdout.strip() == token
    for name in ("a", "b"):  # no export, no import: BuildKit's own cache is the cache
        last = metrics(sessions[name])[-1]
        assert last["builder"] == "shared" and last["imports"] == [] and not last["export"]
    assert not Path(sessions["a"]["DOCKCACHE_BUILD_STORE"]).joinpath("blobs").exists()


def dangling(engine) -> set[str]:
    out = engine.docker("image", "ls", "-q", "--no-trunc", "--filter", "dangling=true").stdout
    return set(out.split())


def test_b_loads_a_built_image_while_its_build_runs_and_tags_it_after(sessions, engines, tmp_path):
    """A new session's build of what A just built (same inputs): the image goes into B
    while the build runs and is tagged when the build reports it (metrics 'early'); an
    edited build has other inputs, so no early load and the usual thin load; neither
    leaves a nameless image behind in B."""
    a, b = engines["a"], engines["b"]
    ctx, token = project(tmp_path, SLOW)
    tag = f"{a.prefix}/early:1"
    build(sessions["a"], a, ctx, tag)
    before = dangling(b)
    warm = build(sessions["b"], b, ctx, tag)
    last = metrics(sessions["b"])[-1]
    assert last["builder"] == "shared" and last["loaded"] and last["early"], last
    assert step_named(warm.stderr, token).cached
    assert image_id(b, tag) == image_id(a, tag)
    assert b.docker("run", "--rm", "--network", "none", tag, "cat", "/slow").stdout.strip() == token
    ctx.joinpath("app.txt").write_text("edited")
    build(sessions["b"], b, ctx, tag)
    last = metrics(sessions["b"])[-1]
    assert last["loaded"] and last["early"] is None, last  # no guess
    assert b.docker("run", "--rm", "--network", "none", tag, "cat", "/app.txt").stdout.strip() == "edited"
    assert dangling(b) - before <= {image_id(a, tag)}  # the first image, untagged by the edit


def test_a_wrong_guess_is_loaded_over_and_removed_after_the_builds_own_load(sessions, engines, tmp_path):
    """An edit that keeps the file's size and mtime looks like A's build to B's guess: A's
    image goes in early, the build reports another, which is loaded leaving out what the
    guess brought; only then is A's image removed, and B holds the edited image alone."""
    a, b = engines["a"], engines["b"]
    ctx, token = project(tmp_path, SLOW)
    tag = f"{a.prefix}/guess:1"
    build(sessions["a"], a, ctx, tag)
    app = ctx.joinpath("app.txt")
    old, st = app.read_text(), app.stat()
    app.write_text(old[::-1])  # the same size ...
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and mtime
    build(sessions["b"], b, ctx, tag)
    last = metrics(sessions["b"])[-1]
    assert last["loaded"] and last["early"] is False, last  # guessed, and missed
    assert b.docker("run", "--rm", "--network", "none", tag, "cat", "/app.txt").stdout.strip() == old[::-1]
    guess = image_id(a, tag)
    for _ in range(100):  # removed in the background, after the command returned
        if b.docker("image", "inspect", guess, check=False).returncode != 0:
            break
        time.sleep(0.1)
    assert b.docker("image", "inspect", guess, check=False).returncode != 0  # the guess is gone
    assert image_id(b, tag) != image_id(a, tag)


def test_the_cache_mount_is_warm_on_b_without_seeding(sessions, engines, tmp_path):
    body = (f"FROM {BUSYBOX}\nCOPY app.txt /app.txt\n"
            "RUN --mount=type=cache,id=TOKEN,target=/c "
            "if [ -f /c/warm ]; then echo MOUNT-WARM; else echo MOUNT-COLD; sleep 2; touch /c/warm; fi\n")
    ctx, _token = project(tmp_path, body)
    tag = f"{engines['a'].prefix}/mount:1"
    assert printed("MOUNT-COLD", build(sessions["a"], engines["a"], ctx, tag).stderr)
    ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)  # the RUN step runs again, on B
    cp = build(sessions["b"], engines["b"], ctx, tag)
    assert printed("MOUNT-WARM", cp.stderr) and not printed("MOUNT-COLD", cp.stderr), cp.stderr


def printed(word: str, progress: str) -> bool:
    """A RUN step printed `word` (not merely BuildKit echoing the command)."""
    return re.search(rf"^#\d+ \d+\.\d+ {word}$", progress, re.M) is not None


def test_concurrent_builds_from_a_and_b_same_and_different_projects(sessions, engines, tmp_path):
    same, same_token = project(tmp_path, SLOW, "same")
    other_a, _ = project(tmp_path, SLOW, "oa")
    other_b, _ = project(tmp_path, SLOW, "ob")
    jobs = [("a", same, "same"), ("b", same, "same"), ("a", other_a, "oa"), ("b", other_b, "ob")]
    results: dict = {}

    def run(i, name, ctx, what):
        tag = f"{engines['a'].prefix}/{what}:1"
        results[i] = (name, tag, build(sessions[name], engines[name], ctx, tag, ok=False))

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, tag, cp in results.values():
        assert cp.returncode == 0, f"{name} {tag}: {cp.stderr[-2000:]}"
        assert image_id(engines[name], tag)
    ran = [cp for name, tag, cp in results.values() if tag.endswith("/same:1")]
    assert all(step_named(cp.stderr, same_token) for cp in ran)


def test_load_only_when_the_image_changed(sessions, engines, tmp_path):
    """A ~200 MB image: the first build loads it, an unchanged rebuild does not (same id),
    an edit loads again (new id). Times are printed, not asserted (docs/benchmarks.md)."""
    a = engines["a"]
    ctx, _ = project(tmp_path, f"FROM {DEVTOOLS}\nCOPY app.txt /app.txt\n")
    tag = f"{a.prefix}/load:1"
    timed = []
    for step in ("first", "unchanged", "edited"):
        if step == "edited":
            ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)
        started = time.monotonic()
        cp = build(sessions["a"], a, ctx, tag)
        timed.append((step, time.monotonic() - started, image_id(a, tag), metrics(sessions["a"])[-1]["loaded"], cp))
    (_, t_first, id_first, loaded_first, _), (_, t_same, id_same, loaded_same, cp_same), \
        (_, t_edit, id_edit, loaded_edit, _) = timed
    print(f"load evidence: first {t_first:.2f}s, unchanged {t_same:.2f}s, edited {t_edit:.2f}s")
    assert loaded_first and not loaded_same and loaded_edit
    assert id_same == id_first and id_edit != id_first
    assert "load skipped" in cp_same.stderr and "importing to docker" not in cp_same.stderr


def test_quiet_iidfile_untagged_and_user_load_builds_take_the_thin_load(sessions, engines, tmp_path):
    """On the containerd store these loaded the whole image with --load (a 320 MB image:
    ~5 s each time) or stayed off the shared builder; now each runs once into the layout,
    loads only what B lacks, and -q/--iidfile name B's own image."""
    b = engines["b"]
    ctx, token = project(tmp_path, SLOW)
    tag = f"{b.prefix}/ids:1"
    build(sessions["a"], engines["a"], ctx, tag)  # the builder's cache is warm
    b.images.append(tag)
    quiet = shim(sessions["b"], "build", "--network", "none", "-q", "-t", tag, str(ctx))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.strip() == image_id(b, tag)  # the engine's id, not the builder's config digest
    ran = b.docker("run", "--rm", "--network", "none", quiet.stdout.strip(), "cat", "/slow")
    assert ran.stdout.strip() == token
    assert metrics(sessions["b"])[-1]["builder"] == "shared"
    ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)
    iid = tmp_path / "iid"
    loaded = shim(sessions["b"], "buildx", "build", "--load", "--network", "none", "--progress", "plain",
                  "--iidfile", str(iid), "-t", tag, str(ctx))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert iid.read_text() == image_id(b, tag)
    last = metrics(sessions["b"])[-1]
    assert last["builder"] == "shared" and last["loaded"] and last["thin"], (last, loaded.stderr[-3000:])  # only the new layer went
    assert "importing to docker" not in loaded.stderr  # no full --load stream
    untagged = shim(sessions["b"], "build", "--network", "none", "-q", str(ctx))
    assert untagged.returncode == 0, untagged.stderr[-2000:]
    got = untagged.stdout.strip()
    b.images.append(got)
    assert got.startswith("sha256:") and b.docker("image", "inspect", got).returncode == 0
    assert b.docker("run", "--rm", "--network", "none", got, "cat", "/slow").stdout.strip() == token


def test_the_old_engine_loads_with_load_and_skips_an_unchanged_image(sessions, engines, tmp_path):
    """Engine 20.10, classic image store: no OCI layout load, so --load after the id check.
    Its base is pulled from the registry the shared builder also pulls from: a classic store
    names only a pulled image by its registry digest, so a loaded one keeps the build on the
    engine (the shared builder may not resolve it to the same image: issue 35)."""
    old = engines["old"]
    env = {**sessions["a"], "DOCKER_HOST": old.host, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-old")}
    base = f"{REGISTRY}/{BUSYBOX}"
    old.docker("pull", "-q", base)
    ctx, token = project(tmp_path, SLOW.replace(f"FROM {BUSYBOX}", f"FROM {base}"))
    tag = f"{old.prefix}/old:1"
    first = build(env, old, ctx, tag)
    assert "using remote driver" in first.stderr and "importing to docker" in first.stderr
    again = build(env, old, ctx, tag)
    assert "load skipped" in again.stderr and step_named(again.stderr, token).cached
    assert old.docker("run", "--rm", "--network", "none", tag, "cat", "/slow").stdout.strip() == token


def test_compose_up_build_through_the_shared_builder(sessions, engines, tmp_path):
    """Each service a docker build of its own on the shared builder (thin loads), then
    compose with --no-build: B finds A's steps cached, an unchanged build loads nothing,
    an edit reaches the container; compose.shared_builder = false keeps the store path."""
    ctx, token = project(tmp_path, SLOW)
    image = f"{engines['a'].prefix}/compose:1"
    ctx.joinpath("compose.yaml").write_text(
        f"services:\n  app:\n    build: {{context: ., network: none, labels: {{mine: 'yes'}}}}\n"
        f"    image: {image}\n    network_mode: none\n    command: [cat, /slow, /app.txt]\n")
    outs, envs = {}, {}
    for name in ("a", "b"):
        engines[name].images.append(image)
        envs[name] = {**sessions[name], "COMPOSE_PROJECT_NAME": f"{engines['a'].prefix}c"}
        try:
            outs[name] = shim(envs[name], "compose", "--progress", "plain", "up", "--build", cwd=ctx)
        finally:
            shim(envs[name], "compose", "down", cwd=ctx)
        assert outs[name].returncode == 0, outs[name].stderr[-2000:]
        assert token in outs[name].stdout and "using remote driver" in outs[name].stderr
        compose_run = [m for m in all_metrics(envs[name]) if m.get("kind") == "compose"][-1]
        assert compose_run["service_builds"] == ["app"] and metrics(envs[name])[-1]["builder"] == "shared"
    assert step_named(outs["b"].stderr, token).cached and metrics(envs["b"])[-1]["thin"]
    labels = json.loads(engines["b"].docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout)
    assert labels["mine"] == "yes" and labels["com.docker.compose.service"] == "app"
    unchanged = shim(envs["b"], "compose", "build", cwd=ctx)
    assert unchanged.returncode == 0 and "is unchanged" in unchanged.stderr and not metrics(envs["b"])[-1]["loaded"]
    ctx.joinpath("app.txt").write_text(edited := uuid.uuid4().hex)
    try:
        again = shim(envs["a"], "compose", "up", "--build", cwd=ctx)
    finally:
        shim(envs["a"], "compose", "down", cwd=ctx)
    assert again.returncode == 0 and edited in again.stdout, again.stderr[-2000:]
    off = {**envs["a"], "DOCKCACHE_COMPOSE_SHARED_BUILDER": "0"}
    try:
        cp = shim(off, "compose", "--progress", "plain", "build", cwd=ctx)
    finally:
        shim(off, "compose", "down", cwd=ctx)
    assert cp.returncode == 0 and "using remote driver" not in cp.stdout + cp.stderr


def test_compose_services_build_side_by_side_in_dependency_order(sessions, engines, tmp_path):
    """Three services on the shared builder: api and worker build at the same time, web
    (depends_on api) after api, each build's lines named by service; a failing api ends the
    command with plain compose's exit code and web is not built."""
    root = tmp_path / f"stack-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    for svc in ("api", "worker", "web"):
        root.joinpath(f"Dockerfile.{svc}").write_text(
            f"FROM {BUSYBOX}\nARG FAIL=0\nRUN test $FAIL != {svc} && echo {uuid.uuid4().hex} > /token && "
            "date +%s > /start && sleep 3 && date +%s > /end\n")
    prefix = engines["a"].prefix
    lines = ["services:"]
    for svc in ("api", "worker", "web"):
        lines += [f"  {svc}:", f"    build: {{context: ., dockerfile: Dockerfile.{svc}, network: none, "
                  "args: {FAIL: \"${FAIL:-0}\"}}", f"    image: {prefix}/{svc}:1", "    network_mode: none"]
        engines["a"].images.append(f"{prefix}/{svc}:1")
    lines += ["    depends_on: [api]"]
    root.joinpath("compose.yaml").write_text("\n".join(lines) + "\n")
    env = {**sessions["a"], "COMPOSE_PROJECT_NAME": f"{prefix}s"}
    cp = shim(env, "compose", "build", cwd=root)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert all(f"{svc} | " in cp.stderr for svc in ("api", "worker", "web"))
    compose_run = [m for m in all_metrics(env) if m.get("kind") == "compose"][-1]
    assert sorted(compose_run["service_builds"]) == ["api", "web", "worker"]
    times = {svc: [int(x) for x in engines["a"].docker(
        "run", "--rm", "--network", "none", f"{prefix}/{svc}:1", "cat", "/start", "/end").stdout.split()]
        for svc in ("api", "worker", "web")}
    assert times["worker"][0] < times["api"][1] and times["api"][0] < times["worker"][1]  # they overlapped
    assert times["web"][0] >= times["api"][1]  # web waited for api
    web_id = image_id(engines["a"], f"{prefix}/web:1")
    root.joinpath("compose.yaml").write_text(root.joinpath("compose.yaml").read_text().replace(
        "network: none,", "network: none, no_cache: true,", 1))  # api runs again, and fails
    failed = shim({**env, "FAIL": "api"}, "compose", "build", cwd=root)
    plain = shim({**env, "FAIL": "api", "DOCKCACHE_DISABLE": "1"}, "compose", "build", cwd=root)
    assert failed.returncode == plain.returncode != 0, failed.stderr[-3000:]
    assert "api | " in failed.stderr and "web | " not in failed.stderr
    assert image_id(engines["a"], f"{prefix}/web:1") == web_id


def _on_a_terminal(env: dict, *argv: str, cwd: Path) -> tuple[int, str]:
    """bin/docker with a pty as its stdin, stdout and stderr: (exit code, what it printed)."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([str(REPO / "bin" / "docker"), *argv], env=env, cwd=cwd, stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    out = drain(master)
    return p.wait(timeout=600), out.decode(errors="replace")


def test_compose_progress_tty_builds_one_at_a_time_on_the_terminal(sessions, engines, tmp_path):
    """`compose --progress tty build` of two services: the builds take turns on the terminal
    (docker's tty display fails in a pipe: 'failed to get console'; every build failed, 17)."""
    root = tmp_path / f"tty-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    prefix = engines["a"].prefix
    lines = ["services:"]
    for svc in ("one", "two"):
        root.joinpath(f"Dockerfile.{svc}").write_text(f"FROM {BUSYBOX}\nRUN echo {svc}-{uuid.uuid4().hex} > /svc\n")
        lines += [f"  {svc}:", f"    build: {{context: ., dockerfile: Dockerfile.{svc}, network: none}}",
                  f"    image: {prefix}/tty-{svc}:1", "    network_mode: none"]
        engines["a"].images.append(f"{prefix}/tty-{svc}:1")
    root.joinpath("compose.yaml").write_text("\n".join(lines) + "\n")
    env = {**sessions["a"], "COMPOSE_PROJECT_NAME": f"{prefix}tty"}
    rc, out = _on_a_terminal(env, "compose", "--progress", "tty", "build", cwd=root)
    assert rc == 0 and "failed to get console" not in out, out[-3000:]
    for svc in ("one", "two"):
        assert image_id(engines["a"], f"{prefix}/tty-{svc}:1"), svc
    assert sorted(m.get("builder") for m in metrics(env)[-2:]) == ["shared", "shared"]


def test_compose_progress_quiet_prints_nothing_as_compose(sessions, engines, tmp_path):
    """`compose --progress quiet build` prints nothing on stdout; a docker build with
    `--progress quiet` prints its image id there (and, reporting an id, stays off the
    shared builder): compose keeps its own build."""
    root = tmp_path / f"quiet-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    prefix = engines["a"].prefix
    root.joinpath("Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {uuid.uuid4().hex} > /x\n")
    root.joinpath("compose.yaml").write_text(
        f"services:\n  one:\n    build: {{context: ., network: none}}\n    image: {prefix}/quiet:1\n")
    engines["a"].images.append(f"{prefix}/quiet:1")
    env = {**sessions["a"], "COMPOSE_PROJECT_NAME": f"{prefix}q"}
    cp = shim(env, "compose", "--progress", "quiet", "build", cwd=root)
    assert cp.returncode == 0 and cp.stdout == "", cp.stdout + cp.stderr[-2000:]
    assert image_id(engines["a"], f"{prefix}/quiet:1")


def test_side_by_side_services_carry_a_base_new_to_the_engine_once(sessions, engines, tmp_path):
    """Three services FROM a base engine B has never seen (the shared builder pulls it from
    a registry): their loads take turns, so one carries the base and the others leave it
    out (thin), instead of three loads of the same layers."""
    a, b = engines["a"], engines["b"]
    base = f"{REGISTRY}/{a.prefix}-base:1"
    root = tmp_path / f"newbase-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    root.joinpath("Dockerfile.base").write_text(f"FROM {BUSYBOX}\nRUN head -c 20000000 /dev/urandom > /big\n")
    a.images.append(base)
    assert a.docker("build", "--network", "none", "-q", "-f", str(root / "Dockerfile.base"), "-t", base,
                    str(root)).returncode == 0
    assert a.docker("push", "-q", base).returncode == 0
    assert b.docker("image", "inspect", base, check=False).returncode != 0  # new to B
    lines = ["services:"]
    for svc in ("x", "y", "z"):
        root.joinpath(f"Dockerfile.{svc}").write_text(f"FROM {base}\nRUN echo {svc}-{uuid.uuid4().hex} > /svc\n")
        lines += [f"  {svc}:", f"    build: {{context: ., dockerfile: Dockerfile.{svc}, network: none}}",
                  f"    image: {a.prefix}/nb-{svc}:1", "    network_mode: none"]
        b.images.append(f"{a.prefix}/nb-{svc}:1")
    root.joinpath("compose.yaml").write_text("\n".join(lines) + "\n")
    env = {**sessions["b"], "COMPOSE_PROJECT_NAME": f"{a.prefix}nb"}
    cp = shim(env, "compose", "build", cwd=root)
    assert cp.returncode == 0, cp.stderr[-3000:]
    loads = [m for m in metrics(env) if m.get("builder") == "shared"]
    assert len(loads) == 3 and all(m["loaded"] for m in loads)
    assert sorted(bool(m["thin"]) for m in loads) == [False, True, True], loads
    for svc in ("x", "y", "z"):
        out = b.docker("run", "--rm", "--network", "none", f"{a.prefix}/nb-{svc}:1", "sh", "-c", "cat /svc; wc -c < /big")
        assert out.returncode == 0 and out.stdout.split()[1] == "20000000", out.stderr


def all_metrics(env: dict) -> list[dict]:
    path = Path(env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_secret_of_a_is_not_readable_from_b(sessions, engines, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(f"s3cr3t-{uuid.uuid4().hex}")
    ctx_a, _ = project(tmp_path, f"FROM {BUSYBOX}\nRUN --mount=type=secret,id=tok test -s /run/secrets/tok && echo TOKEN\n")
    build(sessions["a"], engines["a"], ctx_a, f"{engines['a'].prefix}/sa:1", "--secret", f"id=tok,src={secret}")
    ctx_b, _b = project(tmp_path, f"FROM {BUSYBOX}\nRUN --mount=type=secret,id=tok,required=false "
                                 "cat /run/secrets/tok 2>/dev/null; echo TOKEN-done\n")
    cp = build(sessions["b"], engines["b"], ctx_b, f"{engines['a'].prefix}/sb:1")
    assert printed(f"{_b}-done", cp.stderr)  # the step ran, and printed no secret
    assert secret.read_text() not in cp.stderr


def test_b_cannot_get_an_image_of_a_by_reference(sessions, engines, tmp_path):
    ctx_a, _ = project(tmp_path, SLOW)
    tag = f"{engines['a'].prefix}/private:1"
    build(sessions["a"], engines["a"], ctx_a, tag)
    ctx_b, _ = project(tmp_path, f"FROM {tag}\nRUN cat /slow\n")
    cp = build(sessions["b"], engines["b"], ctx_b, f"{engines['a'].prefix}/thief:1", ok=False)
    # The OCI worker keeps no image store: the name resolves only in registries (here the
    # loopback mirror, which has no such image), never to what A built.
    assert cp.returncode != 0 and "failed to resolve source metadata" in cp.stderr and "private:1" in cp.stderr


def test_from_an_image_this_session_built_stays_on_its_engine(sessions, engines, tmp_path):
    """The shared builder pulls FROM images from registries: a base this session built
    and loaded is only in its engine, so the build that uses it stays there."""
    a = engines["a"]
    base_ctx, token = project(tmp_path, SLOW)
    base = f"{a.prefix}/base:1"
    build(sessions["a"], a, base_ctx, base)
    app_ctx, _ = project(tmp_path, f"FROM {base}\nCOPY app.txt /app.txt\n")
    build(sessions["a"], a, app_ctx, f"{a.prefix}/app:1")
    assert metrics(sessions["a"])[-1].get("builder") is None
    assert a.docker("run", "--rm", "--network", "none", f"{a.prefix}/app:1", "cat", "/slow").stdout.strip() == token


def test_an_unreachable_builder_falls_back_with_one_line(sessions, engines, tmp_path):
    env = {**sessions["a"], "DOCKCACHE_BUILD_BUILDER": f"unix://{tmp_path}/nobody.sock"}
    ctx, _ = project(tmp_path, SLOW)
    cp = build(env, engines["a"], ctx, f"{engines['a'].prefix}/fallback:1")
    lines = [x for x in cp.stderr.splitlines() if x.startswith("dockcache:")]
    assert len(lines) == 1 and "unreachable" in lines[0], lines
    assert "using remote driver" not in cp.stderr
    assert metrics(env)[-1].get("builder") is None and metrics(env)[-1]["export"]  # today's store path


@pytest.fixture
def own_builder(sessions, tmp_path):
    """A private buildkitd started and stopped by `dockcache builder up|down`."""
    if not (BUILDKIT_BIN / "buildkitd").exists():
        pytest.skip(f"no buildkitd in {BUILDKIT_BIN}")
    sock = f"/run/dockcache-engine/t{uuid.uuid4().hex[:8]}.sock"
    root = tmp_path / "bk-root"
    env = {**sessions["a"], "DOCKCACHE_BUILD_BUILDER": f"unix://{sock}"}

    def cli(*args):
        return subprocess.run([os.environ.get("DOCKCACHE_TEST_PYTHON", "python3"), "-m", "shim", "builder", *args],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=120)

    up = ("up", "--buildkitd", str(BUILDKIT_BIN / "buildkitd"), "--root", str(root),
          "--mirror", f"docker.io={REGISTRY}")
    yield env, cli, up
    cli("down")
    subprocess.run(["sh", "-c", f"grep -o ' {root}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount"],
                   capture_output=True)
    for suffix in ("", ".toml", ".pid", ".log"):
        Path(sock + suffix).unlink(missing_ok=True)


def test_builder_up_status_down_and_a_kill_mid_build(own_builder, engines, tmp_path):
    env, cli, up = own_builder
    started = cli(*up, "--json")
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    assert cli("status").returncode == 0
    assert json.loads(cli(*up, "--json").stdout)["started"] is False  # attached, not a second one
    a = engines["a"]
    ctx, token = project(tmp_path, f"FROM {BUSYBOX}\nCOPY app.txt /app.txt\nRUN echo TOKEN && sleep 30\n")
    tag = f"{a.prefix}/killed:1"
    a.images.append(tag)
    proc = subprocess.Popen([str(REPO / "bin" / "docker"), "build", "--network", "none", "--progress", "plain",
                             "-t", tag, str(ctx)], env=env, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while token not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    assert token in seen, seen[-2000:]
    os.kill(pid, 9)  # the builder dies mid-build
    _rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0  # as BuildKit (its client) reports it: the build did not finish
    cp = build(env, a, ctx, tag)  # the next build: socket dead -> this engine, one line
    assert "unreachable" in cp.stderr and "using remote driver" not in cp.stderr
    assert cli("status").returncode == 1
    assert cli(*up).returncode == 0
    ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)
    cp = build(env, a, ctx, tag)  # the builder is back: reconnects
    assert "using remote driver" in cp.stderr
    assert cli("down").returncode == 0 and cli("status").returncode == 1


def _certs(d: Path) -> tuple[Path, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    server, client = d / "server", d / "client"
    server.mkdir(parents=True)
    client.mkdir()

    def ssl(*args):
        cp = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=dockcache test CA",
        "-keyout", "ca-key.pem", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "cli.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for who, ext in (("server", "san.cnf"), ("client", "cli.cnf")):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}/key.pem",
            "-out", f"{who}.csr")
        ssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-days", "1", "-extfile", ext, "-out", f"{who}/cert.pem")
    for who in (server, client):
        (who / "ca.pem").write_bytes((d / "ca.pem").read_bytes())
    return server, client


@pytest.fixture
def tls_builder(sessions, tmp_path):
    """A private buildkitd on loopback TCP that wants TLS client certificates."""
    if not (BUILDKIT_BIN / "buildkitd").exists():
        pytest.skip(f"no buildkitd in {BUILDKIT_BIN}")
    server, client = _certs(tmp_path / "certs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "bk-tls"
    config = tmp_path / "buildkitd-tls.toml"
    config.write_text(
        f'root = "{root}"\n[grpc]\n  address = ["tcp://127.0.0.1:{port}"]\n[grpc.tls]\n'
        f'  cert = "{server}/cert.pem"\n  key = "{server}/key.pem"\n  ca = "{server}/ca.pem"\n'
        '[worker.oci]\n  enabled = true\n  networkMode = "host"\n[worker.containerd]\n  enabled = false\n'
        f'[registry."docker.io"]\n  mirrors = ["{REGISTRY}"]\n[registry."{REGISTRY}"]\n  http = true\n')
    log = open(tmp_path / "buildkitd-tls.log", "w")
    daemon = subprocess.Popen([str(BUILDKIT_BIN / "buildkitd"), "--config", str(config)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"tcp://127.0.0.1:{port}", client
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
        subprocess.run(["sh", "-c", f"grep -o ' {root}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount"],
                       capture_output=True)


def test_a_tcp_builder_with_tls_gets_the_build_and_refuses_a_client_without_certificates(
        tls_builder, sessions, engines, tmp_path):
    address, client = tls_builder
    a = engines["a"]
    env = {**sessions["a"], "DOCKCACHE_BUILD_BUILDER": address, "DOCKCACHE_BUILD_BUILDER_TLS": str(client)}
    ctx, token = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN > /slow\nCOPY app.txt /app.txt\n")
    tag = f"{a.prefix}/tls:1"
    cp = build(env, a, ctx, tag)
    assert "using remote driver" in cp.stderr and metrics(env)[-1]["builder"] == "shared"
    assert a.docker("run", "--rm", "--network", "none", tag, "cat", "/slow").stdout.strip() == token
    status = json.loads(subprocess.run([os.environ.get("DOCKCACHE_TEST_PYTHON", "python3"), "-m", "shim", "builder",
                                        "status", "--json"], env=env, cwd=REPO, capture_output=True,
                                       text=True, timeout=60).stdout)
    assert status["state"] == "up" and status["tls"] == str(client)
    # the control: the same builder without certificates is refused by buildkitd
    name = f"notls-{uuid.uuid4().hex[:8]}"
    docker = ["docker", "-H", a.host]
    home = {**os.environ, "HOME": str(tmp_path / "home-notls")}
    made = subprocess.run([*docker, "buildx", "create", "--driver", "remote", "--name", name, address],
                          env=home, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    refused = subprocess.run([*docker, "buildx", "inspect", "--bootstrap", name], env=home,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0, refused.stdout


def test_a_compose_service_built_from_another_services_image_keeps_the_store_path(sessions, engines, tmp_path):
    """The shared builder pulls FROM images from registries; `<project>-base` lives only in
    this session's engine, so the whole command keeps the store path (and succeeds)."""
    a = engines["a"]
    project_name = f"{a.prefix}fb"
    root = tmp_path / "stack"
    (root / "base").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "base" / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo from-base > /base.txt\n")
    (root / "app" / "Dockerfile").write_text(f"FROM {project_name}-base\nRUN cat /base.txt > /app.txt\n")
    (root / "compose.yaml").write_text(
        "services:\n  base:\n    build: {context: base, network: none}\n    network_mode: none\n"
        "    command: ['true']\n  app:\n    build: {context: app, network: none}\n    network_mode: none\n"
        "    command: [cat, /app.txt]\n    depends_on: [base]\n")
    env = {**sessions["a"], "COMPOSE_PROJECT_NAME": project_name}
    a.images += [f"{project_name}-base", f"{project_name}-app"]
    # base built before, without dockcache (so nothing in dockcache's state says where it lives)
    ok_build = shim({**env, "DOCKCACHE_DISABLE": "1"}, "compose", "build", "base", cwd=root)
    assert ok_build.returncode == 0, ok_build.stderr[-2000:]
    explained = subprocess.run([os.environ.get("DOCKCACHE_TEST_PYTHON", "python3"), "-m", "shim", "explain",
                                "compose", "up", "--build"], env=env, cwd=root, capture_output=True, text=True,
                               timeout=120)
    assert "another service's image" in explained.stdout, explained.stdout + explained.stderr
    try:
        cp = shim(env, "compose", "up", "--build", cwd=root)
    finally:
        shim(env, "compose", "down", cwd=root)
    assert cp.returncode == 0 and "from-base" in cp.stdout, cp.stderr[-2000:]
    assert "using remote driver" not in cp.stdout + cp.stderr
