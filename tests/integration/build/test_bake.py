"""`docker buildx bake` through bin/docker: its targets share the build store across
sessions as `docker build`'s do (HCL, JSON and compose definitions, the user's own --set)."""

import json
import os
import uuid
from pathlib import Path

import pytest

from shim.build.progress import step_named
from shim.build.store.cachestore import CacheStore
from tests.integration.helpers import REPO, dockcache, keep_previous, shim
from tests.integration.build.test_shared_builder import sessions  # noqa: F401 - the fixture

pytestmark = pytest.mark.engine
REGISTRY = os.environ.get("DOCKCACHE_TEST_REGISTRY", "localhost:5000")
# The daemons have no bridge: bake 0.13 has no `network` key, so each RUN names its own.
SLOW = "RUN --network=none echo {token} > /t && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n"


def two_services(root: Path) -> dict[str, str]:
    """Two contexts (one with a Dockerfile of another name), each with a slow RUN of a fresh token."""
    tokens = {}
    for name, dockerfile in (("api", "Dockerfile"), ("web", "Dockerfile.web")):
        (root / name).mkdir(parents=True)
        tokens[name] = f"{name}-{uuid.uuid4().hex}"
        (root / name / dockerfile).write_text("FROM dockcache-test/busybox\n" + SLOW.format(token=tokens[name]))
    return tokens


def hcl(root: Path, prefix: str) -> None:
    (root / "docker-bake.hcl").write_text(f'''
variable "TAG" {{ default = "1" }}
group "default" {{ targets = ["api", "web"] }}
target "api" {{
  context = "api"
  tags = ["{prefix}/bake-api:${{TAG}}"]
}}
target "web" {{
  context = "web"
  dockerfile = "Dockerfile.web"
  tags = ["{prefix}/bake-web:${{TAG}}"]
}}
''')


def bake(env, engine, root, *argv, tags=()):
    engine.images.extend(tags)
    return shim(env, "buildx", "bake", "--progress", "plain", *argv, cwd=root, extra={"DOCKER_HOST": engine.host})


def ran(cp, token):
    assert cp.returncode == 0, cp.stderr[-3000:]
    # targets built side by side (the shared builder) name each line: "api | #5 CACHED";
    # each build numbers its own steps, so only the token's target's lines (tokens are "api-…")
    mine = f"{token.split('-')[0]} | "
    text = "\n".join(ln[len(mine):] for ln in cp.stderr.splitlines() if ln.startswith(mine)) or cp.stderr
    step = step_named(text, token)
    assert step is not None, cp.stderr[-3000:]
    return step


def keys(env) -> set[str]:
    return set(CacheStore(Path(env["DOCKCACHE_BUILD_STORE"])).keys())


@pytest.mark.parametrize("definition", ["hcl", "json"])
def test_two_targets_on_a_then_b_hit_the_store(shim_env, engines, tmp_path, definition):
    a, b = engines["a"], engines["b"]
    tokens = two_services(tmp_path)
    tags = [f"{a.prefix}/bake-api:1", f"{a.prefix}/bake-web:1"]
    if definition == "hcl":
        hcl(tmp_path, a.prefix)
        files = ()
    else:
        (tmp_path / "bake.json").write_text(json.dumps({"target": {
            "api": {"context": "api", "tags": [tags[0]]},
            "web": {"context": "web", "dockerfile": "Dockerfile.web", "tags": [tags[1]]}}}))
        files = ("-f", "bake.json", "api", "web")
    cold = bake(shim_env, a, tmp_path, *files, tags=tags)
    assert not any(ran(cold, t).cached for t in tokens.values())
    assert "dockcache:" not in cold.stderr
    assert f"{a.prefix}-bake-api" in keys(shim_env) and f"{a.prefix}-bake-web" in keys(shim_env)
    warm = bake(shim_env, b, tmp_path, *files, tags=tags)  # another session: B never built these
    assert all(ran(warm, t).cached for t in tokens.values())
    assert not list((Path(shim_env["DOCKCACHE_BUILD_STORE"]) / "tmp").iterdir())  # private dirs gone
    metrics = json.loads(dockcache(shim_env, "metrics", "show", "--json").stdout)["builds"]
    assert metrics["bake_runs"] == 2 and metrics["with_import"] == 2  # B's two targets imported


def test_unchanged_bake_on_its_own_daemon_runs_as_typed(shim_env, engines, tmp_path):
    """Nothing a target reads changed since this daemon exported its key, and the daemon made
    every stored build: no import, no export, bake as typed; an edit exports that target again."""
    a = engines["a"]
    tokens = two_services(tmp_path)
    hcl(tmp_path, a.prefix)
    tags = [f"{a.prefix}/bake-api:1", f"{a.prefix}/bake-web:1"]
    env = {**shim_env, "DOCKCACHE_DEBUG": "1"}
    assert not ran(bake(env, a, tmp_path, tags=tags), tokens["api"]).cached
    again = bake(env, a, tmp_path, tags=tags)
    assert ran(again, tokens["api"]).cached and "--set" not in again.stderr.split("#")[0], again.stderr[:2000]
    (tmp_path / "web" / "Dockerfile.web").write_text((tmp_path / "web" / "Dockerfile.web").read_text() + "RUN --network=none true\n")
    for tag in tags:  # the edit moves the tag: Engine 26's own race otherwise (helpers.keep_previous)
        keep_previous(a, tag)
    edited = bake(env, a, tmp_path, tags=tags)
    assert edited.returncode == 0, edited.stderr[-3000:]
    debug = edited.stderr.split("\n")[0]
    assert "web.cache-to=type=local" in debug and "api.cache-to" not in debug


def test_compose_file_as_bake_input(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    tokens = two_services(tmp_path)
    tags = [f"{a.prefix}/bake-capi:1", f"{a.prefix}/bake-cweb:1"]
    (tmp_path / "compose.yaml").write_text(json.dumps({"services": {
        "api": {"image": tags[0], "build": {"context": "api"}},
        "web": {"image": tags[1], "build": {"context": "web", "dockerfile": "Dockerfile.web"}},
        "db": {"image": "dockcache-test/busybox"}}}))
    cold = bake(shim_env, a, tmp_path, tags=tags)
    assert not ran(cold, tokens["api"]).cached and not ran(cold, tokens["web"]).cached
    warm = bake(shim_env, b, tmp_path, "-f", "compose.yaml", "api", "web", tags=tags)
    assert ran(warm, tokens["api"]).cached and ran(warm, tokens["web"]).cached


def test_users_own_set_is_respected(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    tokens = two_services(tmp_path)
    hcl(tmp_path, a.prefix)
    mine = tmp_path / "mine"
    tags = [f"{a.prefix}/bake-api:1", f"{a.prefix}/bake-web:1"]
    cp = bake(shim_env, a, tmp_path, "--set", f"api.cache-to=type=local,dest={mine},mode=max",
              "--set", "web.args.UNUSED=1", tags=tags)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert (mine / "index.json").exists()  # their cache-to, as they wrote it, and none of ours beside it
    assert f"{a.prefix}-bake-web" in keys(shim_env) and f"{a.prefix}-bake-api" not in keys(shim_env)
    warm = bake(shim_env, b, tmp_path, "--set", "web.args.UNUSED=1", tags=tags)
    assert ran(warm, tokens["web"]).cached and not ran(warm, tokens["api"]).cached


def test_old_engine_imports_only(shim_env, engines, tmp_path):
    """Engine 20.10 (classic image store) cannot export cache: its bake imports what A
    published and adds no cache-to; the store is left as it was."""
    import shutil

    a, old = engines["a"], engines["old"]
    (tmp_path / "app").mkdir()
    shutil.copy("/bin/busybox", tmp_path / "app" / "busybox")
    (tmp_path / "app" / "t").write_text(uuid.uuid4().hex)
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\nCOPY t /t\n")
    tag = f"{a.prefix}/bake-old:1"
    (tmp_path / "docker-bake.json").write_text(json.dumps({"target": {"default": {"context": "app", "tags": [tag]}}}))
    assert bake(shim_env, a, tmp_path, tags=[tag]).returncode == 0
    index = Path(shim_env["DOCKCACHE_BUILD_STORE"]) / "oci" / "index.json"
    before = index.read_text()
    cp = bake({**shim_env, "DOCKCACHE_DEBUG": "1"}, old, tmp_path, tags=[tag])
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "default.cache-from=type=local" in cp.stderr and "cache-to" not in cp.stderr.split("\n")[0]
    copy = step_named(cp.stderr, "COPY t /t")
    assert copy and copy.cached  # imported from the store daemon A wrote
    assert index.read_text() == before


def test_registry_backend_across_sessions(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    tokens = two_services(tmp_path)
    hcl(tmp_path, a.prefix)
    repo = f"{REGISTRY}/dct-bake-{uuid.uuid4().hex[:8]}"
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo}
    tags = [f"{a.prefix}/bake-api:1", f"{a.prefix}/bake-web:1"]
    cold = bake(env, a, tmp_path, tags=tags)
    assert not ran(cold, tokens["api"]).cached and "dockcache:" not in cold.stderr
    assert not os.path.exists(shim_env["DOCKCACHE_BUILD_STORE"])  # registry only: no local store
    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "other-state")}
    warm = bake(fresh, b, tmp_path, tags=tags)
    assert ran(warm, tokens["api"]).cached and ran(warm, tokens["web"]).cached


def test_kill_switch_passes_bake_through_unchanged(shim_env, engines, tmp_path):
    a = engines["a"]
    tokens = two_services(tmp_path)
    hcl(tmp_path, a.prefix)
    env = {**shim_env, "DOCKCACHE_DISABLE": "1", "DOCKCACHE_DEBUG": "1"}
    cp = bake(env, a, tmp_path, "api", tags=[f"{a.prefix}/bake-api:1"])
    assert not ran(cp, tokens["api"]).cached
    assert "dockcache:" not in cp.stderr  # not even the debug line: docker ran as typed
    assert not os.path.exists(shim_env["DOCKCACHE_BUILD_STORE"]) and not os.path.exists(shim_env["DOCKCACHE_STATE_DIR"])
    assert REPO  # the launcher under test is this checkout's


COMPOSE_BAKE = os.environ.get("DOCKCACHE_TEST_COMPOSE_BAKE", "")  # provision.sh compose-bake (opt-in)


@pytest.mark.skipif(not os.path.isdir(COMPOSE_BAKE),
                    reason="no Compose that builds through bake: tests/engine/provision.sh compose-bake")
def test_compose_building_through_bake_gets_the_cache_from_its_override(shim_env, engines, tmp_path):
    """Compose v5 runs the buildx plugin's bake itself, which the docker shim never sees: the
    override file's cache_from/cache_to reach bake's targets, so B's slow RUN is CACHED."""
    a, b = engines["a"], engines["b"]
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "cli-plugins").symlink_to(COMPOSE_BAKE)  # their compose and buildx, before the system's
    env = {**shim_env, "DOCKER_CONFIG": str(config), "COMPOSE_BAKE": "true"}
    tokens = two_services(tmp_path)
    tag = f"{a.prefix}/bake-compose:1"
    (tmp_path / "compose.yaml").write_text(json.dumps({"services": {"api": {
        "image": tag, "build": {"context": "api"}, "network_mode": "none", "command": ["true"]}}}))
    for engine in (a, b):
        engine.images.append(tag)
        cp = shim(env, "compose", "--progress", "plain", "up", "--build", "-d", cwd=tmp_path,
                  extra={"DOCKER_HOST": engine.host})
        out = cp.stdout + cp.stderr  # compose v5 prints bake's progress on stdout
        assert cp.returncode == 0, out[-3000:]
        assert "load local bake definitions" in out  # compose built through bake
        step = step_named(out, tokens["api"])
        assert step is not None and step.cached is (engine is b), out[-3000:]
        shim(env, "compose", "down", cwd=tmp_path, extra={"DOCKER_HOST": engine.host})


def test_targets_on_the_shared_builder_load_only_what_changed(sessions, engines, tmp_path):
    """With the host's shared BuildKit up, each target is a docker build on it (no store
    export or import): B's RUNs are CACHED, each tagged image reaches B's engine, and an
    unchanged bake loads nothing."""
    a, b = engines["a"], engines["b"]
    tokens = two_services(tmp_path)
    hcl(tmp_path, a.prefix)
    tags = [f"{a.prefix}/bake-api:1", f"{a.prefix}/bake-web:1"]
    cold = bake(sessions["a"], a, tmp_path, tags=tags)
    assert "using remote driver" in cold.stderr and not ran(cold, tokens["api"]).cached
    warm = bake(sessions["b"], b, tmp_path, "--load", tags=tags)
    assert ran(warm, tokens["api"]).cached and ran(warm, tokens["web"]).cached
    for tag, token in zip(tags, (tokens["api"], tokens["web"])):
        assert b.docker("run", "--rm", "--network", "none", tag, "cat", "/t").stdout.strip() == token
    again = bake(sessions["b"], b, tmp_path, tags=tags)
    assert again.returncode == 0 and again.stderr.count("load skipped") == 2, again.stderr[-3000:]
    assert not Path(sessions["a"]["DOCKCACHE_BUILD_STORE"]).joinpath("oci").exists()  # BuildKit's cache only


def test_a_target_bake_alone_can_say_keeps_the_store_path_on_the_shared_builder(sessions, engines, tmp_path):
    a = engines["a"]
    tokens = two_services(tmp_path)
    hcl(tmp_path, a.prefix)
    env = {**sessions["a"], "DOCKCACHE_DEBUG": "1"}
    cp = bake(env, a, tmp_path, "--set", "api.output=type=cacheonly", tags=[f"{a.prefix}/bake-web:1"])
    assert not ran(cp, tokens["api"]).cached and "using remote driver" not in cp.stderr
    assert "web.cache-to=type=local" in cp.stderr  # bake ran itself, with the store's cache


def test_a_target_never_exports_its_base_and_a_new_session_that_has_it_imports_every_step(
        shim_env, engines, tmp_path):
    """As for docker build (docs/build.md): placeholders for the FROM image's layers in the
    target's export dir, and the stored build imported where the engine holds them."""
    from tests.integration.build.test_build_keys import base_layers, stored_blobs
    from tests.integration.helpers import DEVTOOLS

    a, b = engines["a"], engines["b"]
    token = f"app-{uuid.uuid4().hex}"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"ARG BASE=busybox\nFROM ${{BASE}}\n" + SLOW.format(token=token)
                                                 + "COPY tools.txt /tools.txt\n")
    (tmp_path / "app" / "tools.txt").write_text("make\n")
    tag = f"{a.prefix}/bake-base:1"
    (tmp_path / "docker-bake.hcl").write_text(
        f'target "app" {{\n  context = "app"\n  args = {{ BASE = "{DEVTOOLS}" }}\n  tags = ["{tag}"]\n}}\n')
    cold = bake(shim_env, a, tmp_path, "app", tags=[tag])
    assert not ran(cold, token).cached
    blobs, base = stored_blobs(Path(shim_env["DOCKCACHE_BUILD_STORE"])), base_layers(a, DEVTOOLS)
    assert {h: blobs[h] for h in base if h in blobs} == {h: 0 for h in base}  # placeholders, never the base
    assert sum(blobs.values()) < 5_000_000
    warm = bake(shim_env, b, tmp_path, "app", tags=[tag])
    assert ran(warm, token).cached and step_named(warm.stderr, "COPY tools.txt").cached


def test_a_new_session_without_the_base_pulls_it_first_and_imports_every_step(shim_env, engines, tmp_path):
    registry = os.environ.get("DOCKCACHE_TEST_REGISTRY")
    if not registry:
        pytest.skip("no test registry (tests/engine/provision.sh)")
    a, b = engines["a"], engines["b"]
    token = f"app-{uuid.uuid4().hex}"
    base = f"{registry}/{a.prefix}/bbase:1"  # a base only A has; B pulls it from the registry
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(f"FROM dockcache-test/busybox\nRUN echo {token} > /base\n")
    a.docker("build", "--network", "none", "-q", "-t", base, str(tmp_path / "base"))
    a.images.append(base)
    a.docker("push", "-q", base)
    b.images.append(base)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {base}\n" + SLOW.format(token=token))
    tag = f"{a.prefix}/bake-pulled:1"
    (tmp_path / "docker-bake.hcl").write_text(f'target "app" {{\n  context = "app"\n  tags = ["{tag}"]\n}}\n')
    assert not ran(bake(shim_env, a, tmp_path, "app", tags=[tag]), token).cached
    assert ran(bake(shim_env, b, tmp_path, "app", tags=[tag]), token).cached  # pulled, then imported


def test_a_first_bake_on_an_engine_without_the_base_leaves_the_base_out_of_the_store(shim_env, engines, tmp_path):
    from tests.integration.build.test_build_keys import assert_no_base, fresh_base

    a, b = engines["a"], engines["b"]
    token = f"app-{uuid.uuid4().hex}"
    base = fresh_base(a, b, tmp_path, "bfresh")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {base}\n" + SLOW.format(token=token))
    tag = f"{a.prefix}/bake-fresh:1"
    (tmp_path / "docker-bake.hcl").write_text(f'target "app" {{\n  context = "app"\n  tags = ["{tag}"]\n}}\n')
    assert not ran(bake(shim_env, a, tmp_path, "app", tags=[tag]), token).cached
    assert_no_base(Path(shim_env["DOCKCACHE_BUILD_STORE"]), b, base)
