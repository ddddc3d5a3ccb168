"""Through bin/docker: a new session finds what another built, whatever the client names it,
and the store never holds the layers of the images builds start FROM."""

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pytest

from shim.build.progress import step_named
from shim.build.store import CacheStore
from tests.integration.helpers import DEVTOOLS, dockcache, shim

pytestmark = pytest.mark.engine


def workspace(where: Path, token: str, base: str = DEVTOOLS) -> Path:
    """A dev container project: `.devcontainer/` with its config and a file the build copies."""
    ws = where / "proj"
    (ws / ".devcontainer").mkdir(parents=True)
    (ws / ".devcontainer" / "devcontainer.json").write_text('{"build": {"dockerfile": "Dockerfile"}}')
    (ws / ".devcontainer" / "tools.txt").write_text("make\n")
    (ws / ".devcontainer" / "Dockerfile").write_text(dockerfile(token, base))
    return ws


def dockerfile(token: str, base: str) -> str:
    return (f"FROM {base}\nRUN echo {token} > /t && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n"
            "COPY tools.txt /tools.txt\n")


def client_build(env, engine, ws: Path, tmp: Path, *extra: str):
    """As the dev containers CLI builds: its Dockerfile copied to a new temp path, the image
    named `vsc-<folder>-<sha256 of the workspace path>`, the context the project's .devcontainer."""
    written = tmp / f"devcontainercli-{uuid.uuid4().hex[:8]}" / "Dockerfile-with-features"
    written.parent.mkdir(parents=True)
    shutil.copy(ws / ".devcontainer" / "Dockerfile", written)
    tag = f"vsc-{ws.name}-{hashlib.sha256(str(ws).encode()).hexdigest()}"
    engine.images.append(tag)
    return shim(env, "buildx", "build", "--load", "--network", "none", "--progress", "plain", "-f", str(written),
                "-t", tag, *extra, str(ws / ".devcontainer"), extra={"DOCKER_HOST": engine.host}, cwd=str(ws))


def slow_step(cp, token):
    assert cp.returncode == 0, cp.stderr[-2000:]
    step = step_named(cp.stderr, token)
    assert step is not None, cp.stderr[-2000:]
    return step


def test_a_new_session_of_a_client_that_names_by_path_imports_what_another_built(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    first = workspace(tmp_path / "session-a", token)
    assert not slow_step(client_build(shim_env, a, first, tmp_path), token).cached
    second = tmp_path / "session-b" / "elsewhere"
    shutil.copytree(first, second / "proj")
    again = client_build(shim_env, b, second / "proj", tmp_path)
    assert slow_step(again, token).cached  # another daemon, another path, tag and Dockerfile path
    keys = CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"])).keys()
    assert len([k for k in keys if k.startswith("df-")]) == 1 and not any(k.startswith("vsc-") for k in keys)


def test_explain_says_which_candidates_the_store_holds(shim_env, engines, tmp_path):
    a = engines["a"]
    token = uuid.uuid4().hex
    ws = workspace(tmp_path, token)
    slow_step(client_build(shim_env, a, ws, tmp_path), token)
    tag = f"vsc-proj-{'0' * 64}"
    cp = dockcache(shim_env, "explain", "--", "docker", "build", "-t", tag, "-f",
                   str(ws / ".devcontainer" / "Dockerfile"), str(ws / ".devcontainer"))
    assert cp.returncode == 0, cp.stderr
    line = next(x for x in cp.stdout.splitlines() if "key candidates" in x)
    assert "content df-" in line and "(export, stored)" in line and f"tag {tag} (not stored)" in line
