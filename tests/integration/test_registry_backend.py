"""The registry build cache backend against Debian's docker-registry on loopback."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.integration.helpers import REPO, shim
from tests.integration.test_build_cache import build, project, run_step

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
