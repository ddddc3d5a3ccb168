"""`docker compose build 2>&1 | head -1` through dockcache, in a minimal environment (issue 34):
the reader goes away after one line while two service builds run side by side on the shared
builder; the command still ends with the builds' own code, as plain compose does, and both
images are built. Python's flush of a closed stream at exit made it 120 (hidden wherever
PYTHONUNBUFFERED was set)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.integration.build.test_shared_builder import ADDRESS, image_id, sessions  # noqa: F401 - the fixture
from tests.integration.helpers import REPO

pytestmark = pytest.mark.engine


def minimal(env: dict) -> dict:
    """What `env -i PATH=… HOME=… LANG=C.UTF-8` leaves, plus where this test's session is."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKCACHE_STATE_DIR", "DOCKCACHE_BUILD_STORE", "DOCKCACHE_PYTHON",
            "DOCKCACHE_BUILD_BUILDER", "DOCKCACHE_VOLUME_PREFIX", "COMPOSE_PROJECT_NAME", "FAIL")
    return {"LANG": "C.UTF-8", **{k: v for k, v in env.items() if k in keep}}


def first_line_then_gone(env: dict, cwd) -> int:
    """`docker compose --progress plain build 2>&1 | head -1`: the exit code of the left side."""
    p = subprocess.Popen([str(REPO / "bin" / "docker"), "compose", "--progress", "plain", "build"], env=env, cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout.readline()
    p.stdout.close()
    return p.wait(timeout=600)


def test_compose_build_into_a_pipe_closed_after_one_line_ends_with_the_builds_code(sessions, engines, tmp_path):
    root = tmp_path / f"pipe-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    prefix = engines["a"].prefix
    lines = ["services:"]
    for svc in ("one", "two"):
        root.joinpath(f"Dockerfile.{svc}").write_text(
            "FROM dockcache-test/busybox:latest\nARG FAIL=0\n"
            f"RUN i=0; while [ $i -lt 2000 ]; do echo {svc} line $i; i=$((i+1)); done; "
            f"test $FAIL != {svc} && echo {uuid.uuid4().hex} > /token\n")
        lines += [f"  {svc}:", f"    build: {{context: ., dockerfile: Dockerfile.{svc}, network: none, "
                  "args: {FAIL: \"${FAIL:-0}\"}}", f"    image: {prefix}/pipe-{svc}:1", "    network_mode: none"]
        engines["a"].images.append(f"{prefix}/pipe-{svc}:1")
    root.joinpath("compose.yaml").write_text("\n".join(lines) + "\n")
    env = minimal({**sessions["a"], "COMPOSE_PROJECT_NAME": f"{prefix}pipe"})
    assert "PYTHONUNBUFFERED" not in env
    assert first_line_then_gone(env, root) == 0
    assert image_id(engines["a"], f"{prefix}/pipe-one:1") and image_id(engines["a"], f"{prefix}/pipe-two:1")
    failed = first_line_then_gone({**env, "FAIL": "two"}, root)
    plain = subprocess.run([str(REPO / "bin" / "docker"), "compose", "--progress", "plain", "build"],
                           env={**env, "FAIL": "two", "DOCKCACHE_DISABLE": "1"}, cwd=root, capture_output=True)
    assert failed == plain.returncode != 0
