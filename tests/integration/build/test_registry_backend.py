"""The registry build cache backend against Debian's docker-registry on loopback."""

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from shim.build.store.registry import Registry
from tests.integration.helpers import REPO, shim
from tests.integration.build.test_build_cache import build, project, run_step

pytestmark = pytest.mark.engine
REGISTRY = os.environ.get("DOCKCACHE_TEST_REGISTRY", "localhost:5000")


def test_session_b_with_empty_state_imports_from_the_registry(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, token = project(tmp_path)
    repo = f"{REGISTRY}/dct-{uuid.uuid4().hex[:8]}"
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo}
    tag = f"{a.prefix}/reg:1"
    assert not run_step(build(env, a, ctx, tag), token).cached
    assert not os.path.exists(shim_env["DOCKCACHE_BUILD_STORE"])  # registry only: no local store
    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "other-state"),
             "DOCKCACHE_BUILD_STORE": str(tmp_path / "other-store")}
    assert run_step(build(fresh, b, ctx, tag), token).cached


def test_registry_down_builds_uncached_with_one_line(shim_env, engines, tmp_path):
    a = engines["a"]
    ctx, token = project(tmp_path)
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": "localhost:5999/none"}
    cp = build(env, a, ctx, f"{a.prefix}/down:1")
    assert cp.returncode == 0 and cp.stderr.count("dockcache:") == 1 and "unreachable" in cp.stderr


def test_old_engine_registry_backend_is_explained_and_unused(shim_env, engines, tmp_path):
    old = engines["old"]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM dockcache-test/busybox\nRUN true\n")
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": f"{REGISTRY}/x",
           "DOCKER_HOST": old.host}
    explained = subprocess.run([sys.executable, "-m", "shim", "explain", "--json", "--", "docker", "build", str(ctx)],
                               env=env, capture_output=True, text=True, cwd=str(REPO))
    data = json.loads(explained.stdout)
    assert not any("type=registry" in a for a in data["argv"])
    assert any("only inline cache" in r for r in data["reasons"])
    assert shim(env, "build", "--network", "none", str(ctx)).returncode == 0


def registry_env(shim_env, tmp_path, name):
    repo = f"{REGISTRY}/dct-{uuid.uuid4().hex[:8]}"
    return repo, {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo,
                  "DOCKCACHE_STATE_DIR": str(tmp_path / f"state-{name}")}


def two_step(tmp_path, name, shared, own, loops=200000):
    """An expensive step every variant shares, then one of its own."""
    d = tmp_path / name
    d.mkdir()
    d.joinpath("Dockerfile").write_text(
        f"FROM dockcache-test/busybox\nRUN echo {shared} > /s && i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done\n"
        f"RUN echo {own} > /t\n")
    return d


def cli(env, *args):
    cp = subprocess.run([sys.executable, "-m", "shim", *args], env=env, capture_output=True, text=True, cwd=str(REPO))
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout) if "--json" in args else cp.stdout


def test_key_tag_follows_each_build_and_prune_keeps_the_live_key(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    repo, env = registry_env(shim_env, tmp_path, "a")
    env["DOCKCACHE_BUILD_KEY_HISTORY"] = "1"  # the key alone: an older build is superseded at once
    reg = Registry(repo)
    shared = uuid.uuid4().hex
    tag = f"{a.prefix}/mv:1"
    key = f"{a.prefix}-mv"
    assert build(env, a, two_step(tmp_path, "v1", shared, "one"), tag).returncode == 0
    time.sleep(1.1)  # build tags carry whole seconds
    assert build(env, a, two_step(tmp_path, "v2", shared, "two"), tag).returncode == 0
    infos = {i.tag: i for i in reg.inventory()}
    builds = sorted((i for i in infos.values() if i.built_at), key=lambda i: i.built_at)
    assert len(builds) == 2 and set(infos) == {key, *(i.tag for i in builds)}
    assert infos[key].digest == builds[1].digest != builds[0].digest  # the key moved to the newest build
    plan = cli(env, "cache", "prune", "--backend", "registry", "--dry-run", "--json")["registry"]
    assert [d["tags"] for d in plan["deleted"]] == [[builds[0].tag]] and set(reg.tags()) == set(infos)
    done = cli(env, "cache", "prune", "--backend", "registry", "--json")["registry"]
    assert "garbage collection" in done["note"] and set(reg.tags()) == {key, builds[1].tag}
    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    # The moved key serves B, also for a Dockerfile that shares only its first step.
    assert run_step(build(fresh, b, two_step(tmp_path, "v3", shared, "three"), tag), shared).cached
    cli(env, "cache", "prune", "--backend", "registry", "--older-than", "0s", "--json")
    assert not [t for t in reg.tags() if t == key]
    cp = build({**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-c")}, a,
               two_step(tmp_path, "v4", uuid.uuid4().hex, "four"), tag)
    assert cp.returncode == 0 and "dockcache:" not in cp.stderr  # a pruned key is simply absent


def test_concurrent_builds_of_one_key_leave_a_complete_key(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    repo, env = registry_env(shim_env, tmp_path, "c")
    shared = uuid.uuid4().hex
    tag = f"{a.prefix}/conc:1"
    owns = [f"own{i}-{uuid.uuid4().hex}" for i in range(4)]
    jobs = [(a if i % 2 == 0 else b, two_step(tmp_path, f"c{i}", shared, owns[i])) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        # One key (the repository), distinct tags: two builds tagging one name on one daemon
        # race inside the engine ("already exists"), with or without dockcache.
        results = list(pool.map(lambda job: build({**env, "DOCKCACHE_STATE_DIR": str(job[1]) + "-state"},
                                                  job[0], job[1], f"{tag}-{job[1].name}"), jobs))
    assert [cp.returncode for cp in results] == [0, 0, 0, 0], [cp.stderr[-3000:] for cp in results if cp.returncode]
    infos = Registry(repo).inventory()
    key = next(i for i in infos if i.built_at is None)
    assert key.digest in {i.digest for i in infos if i.built_at} and key.size > 0
    # The key is one build's complete manifest: BuildKit prints the digest it wrote.
    won = next(i for i, cp in enumerate(results) if f"writing cache manifest {key.digest}" in cp.stderr)
    # The other daemon never ran the winner's own step: only the key can make it CACHED.
    other = b if jobs[won][0] is a else a
    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-after")}
    assert run_step(build(fresh, other, jobs[won][1], f"{tag}-after"), owns[won]).cached


def test_fallback_key_starts_a_new_branch_warm(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    repo, env = registry_env(shim_env, tmp_path, "f")
    shared = uuid.uuid4().hex
    ctx = two_step(tmp_path, "branchy", shared, "x")
    (ctx / ".git").mkdir()
    (ctx / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (ctx / ".dockcache.toml").write_text('[build]\nkey = "{repo}-{branch}"\nfallback_keys = ["{repo}-main"]\n')
    tag = f"{a.prefix}/br:1"
    assert build(env, a, ctx, tag).returncode == 0
    assert f"{a.prefix}-br-main" in Registry(repo).tags()
    (ctx / ".git" / "HEAD").write_text("ref: refs/heads/feature-x\n")
    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-feature")}
    assert run_step(build(fresh, b, ctx, tag), shared).cached  # imported from {repo}-main
    assert f"{a.prefix}-br-feature-x" in Registry(repo).tags()


def doctor(env):
    cp = subprocess.run([sys.executable, "-m", "shim", "doctor", "--json"], env=env, capture_output=True,
                        text=True, cwd=str(REPO))
    return {c["check"]: c for c in json.loads(cp.stdout)["checks"]}


def test_doctor_and_explain_show_the_backend(shim_env, engines, tmp_path):
    a, old = engines["a"], engines["old"]
    repo, env = registry_env(shim_env, tmp_path, "d")
    env = {**env, "DOCKER_HOST": a.host, "DOCKCACHE_BUILD_BACKEND": "both"}
    ctx = two_step(tmp_path, "doc", uuid.uuid4().hex, "x")
    assert build(env, a, ctx, f"{a.prefix}/doc:1").returncode == 0
    checks = doctor(env)
    assert checks["build cache backend"]["value"] == f"both (registry {repo})"
    assert checks["build cache registry"]["ok"] and "1 keys, 1 build tags" in checks["build cache registry"]["value"]
    assert "1 keys" in checks["build store"]["value"]  # the local side of "both"
    listed = cli(env, "cache", "list", "--json")
    jsonschema.validate(listed, json.loads((REPO / "docs/cache-list.schema.json").read_text()))
    reg_rows = [r for r in listed["caches"] if r["kind"] == "registry-key"]
    assert [r["name"] for r in reg_rows] == [f"{repo}:{a.prefix}-doc"] and reg_rows[0]["size"] > 0
    assert reg_rows[0]["last_used"] is not None  # from the build tag the key points at
    explained = cli(env, "explain", "--json", "--", "docker", "build", "-t", f"{a.prefix}/doc:1", str(ctx))
    assert explained["backend"] == "both" and explained["registry"] == repo
    assert any(f"type=registry,ref={repo}:{a.prefix}-doc" == arg for arg in explained["argv"])
    on_old = doctor({**env, "DOCKER_HOST": old.host})
    assert not on_old["registry cache on this engine"]["ok"]
    assert "only inline cache" in on_old["registry cache on this engine"]["problem"]
    down = doctor({**env, "DOCKCACHE_BUILD_REGISTRY": "localhost:5999/none", "DOCKCACHE_MIRROR_NPM": "http://127.0.0.1:9/"})
    assert "unreachable" in down["build cache registry"]["problem"] and not down["mirror npm"]["ok"]


@pytest.fixture()
def login_registry(tmp_path):
    """A second loopback registry that wants a login (htpasswd, as teams run them)."""
    import shutil
    import socket
    import urllib.error
    import urllib.request

    bcrypt = pytest.importorskip("bcrypt")
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry not installed (tests/engine/provision.sh up installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path / "login-registry"
    d.mkdir()
    (d / "htpasswd").write_text("ci:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=5)).decode() + "\n")
    (d / "r.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {d}/data}}\n  delete: {{enabled: true}}\n"
        f"http: {{addr: \"127.0.0.1:{port}\"}}\nauth:\n  htpasswd: {{realm: dockcache-test, path: {d}/htpasswd}}\n")
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(d / "r.yml")], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(80):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"login registry did not start: {(d / 'log').read_text()[-500:]}")
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_registry_behind_a_login_uses_the_users_docker_login(shim_env, engines, tmp_path, login_registry):
    a, b = engines["a"], engines["b"]
    repo = f"{login_registry}/cache"
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo,
           "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    ctx, token = project(tmp_path)
    tag = f"{a.prefix}/login:1"

    # No login yet: BuildKit would be refused too, so the build runs without the registry.
    cp = build(env, a, ctx, tag)
    assert cp.returncode == 0 and cp.stderr.count("dockcache:") == 1
    assert f"needs `docker login {login_registry}`" in cp.stderr
    explained = cli({**env, "DOCKER_HOST": a.host}, "explain", "--json", "--", "docker", "build", str(ctx))
    assert not any("type=registry" in arg for arg in explained["argv"])
    assert any(f"needs `docker login {login_registry}`" in r for r in explained["reasons"])

    login = subprocess.run([os.environ.get("DOCKCACHE_REAL_DOCKER", "docker"), "login", login_registry, "-u", "ci",
                            "--password-stdin"], input="s3cret\n", capture_output=True, text=True,
                           env={**os.environ, "DOCKER_CONFIG": env["DOCKER_CONFIG"], "DOCKER_HOST": a.host,
                                "DOCKCACHE_DISABLE": "1"})
    assert login.returncode == 0, login.stderr

    cp = build(env, a, ctx, tag, "--no-cache")
    assert cp.returncode == 0 and "dockcache:" not in cp.stderr, cp.stderr[-2000:]
    infos = {i.tag: i for i in Registry(repo, environ=env).inventory()}
    key = f"{a.prefix}-login"
    builds = [i for i in infos.values() if i.built_at]
    # Published to its own build tag, then the key moved onto it: dockcache's own calls logged in.
    assert len(builds) == 1 and infos[key].digest == builds[0].digest and infos[key].size > 0

    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b"), "DOCKCACHE_BUILD_STORE": str(tmp_path / "b")}
    assert run_step(build(fresh, b, ctx, tag), token).cached
    # `docker --config DIR` names the login as DOCKER_CONFIG does, for BuildKit and for dockcache.
    by_flag = {k: v for k, v in fresh.items() if k != "DOCKER_CONFIG"}
    cp = shim(by_flag, "--config", env["DOCKER_CONFIG"], "build", "--network", "none", "--progress", "plain",
              "-t", tag, str(ctx), extra={"DOCKER_HOST": b.host})
    assert cp.returncode == 0 and "dockcache:" not in cp.stderr, cp.stderr[-2000:]

    doctor = subprocess.run([sys.executable, "-m", "shim", "doctor", "--json"], env={**env, "DOCKER_HOST": a.host},
                            capture_output=True, text=True, cwd=str(REPO))
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["build cache registry"]["value"].startswith(f"reachable, with the docker login for {login_registry}")
    cli(env, "cache", "prune", "--backend", "registry", "--older-than", "0s", "--json")
    assert Registry(repo, environ=env).tags() == []  # deletes went through the login too
