"""Differential: the files dockcache thinks compose loads, against compose itself.

For random projects (any of the default and override names, COMPOSE_FILE in `.env`
written with `export`, quotes or comments, `--env-file`, COMPOSE_ENV_FILES,
`--project-directory`), `docker compose config` with compose's own discovery must equal
`docker compose -f <dockcache's list> config`. Needs the compose plugin, no daemon."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shim.compose.files import DEFAULT_FILES, OVERRIDE_FILES, files_for, split
from tests.conftest import REAL_DOCKER


def _compose_works() -> bool:
    try:
        return subprocess.run([REAL_DOCKER, "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _compose_works(), reason="no docker compose plugin")

DOTENV_FORMS = ["COMPOSE_FILE={v}", "export COMPOSE_FILE={v}", 'COMPOSE_FILE="{v}"', "COMPOSE_FILE={v} # mine",
                "# COMPOSE_FILE=nothing.yaml\nCOMPOSE_FILE={v}"]


@st.composite
def projects(draw):
    return {
        "mains": draw(st.lists(st.sampled_from(DEFAULT_FILES), unique=True, max_size=4)),
        "overrides": draw(st.lists(st.sampled_from(OVERRIDE_FILES), unique=True, max_size=2)),
        "listed": draw(st.sampled_from([None, "extra.yaml", "extra.yaml:more.yaml"])),
        "where": draw(st.sampled_from(["dotenv", "env-file", "COMPOSE_ENV_FILES", "environ"])),
        "form": draw(st.sampled_from(DOTENV_FORMS)),
        "project_dir": draw(st.booleans()),
    }


def compose_config(args, cwd, env):
    cp = subprocess.run([REAL_DOCKER, "compose", *args, "config", "--format", "json"], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        return "error"
    doc = json.loads(cp.stdout)
    doc.pop("name", None)  # the project name follows the first file's dir: the same dir here
    return doc


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=projects())
def test_dockcache_loads_the_files_compose_loads(p, tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    proj = root / "sub" if p["project_dir"] else root
    proj.mkdir(exist_ok=True)
    for name in [*p["mains"], "extra.yaml", "more.yaml"]:
        (proj if name in p["mains"] else root).joinpath(name).write_text(
            f"services:\n  s:\n    image: busybox\n    labels: [from={name}]\n")
    for name in p["overrides"]:
        proj.joinpath(name).write_text(f"services:\n  s:\n    environment: [FROM={name}]\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    globals_ = ["--project-directory", "sub"] if p["project_dir"] else []
    if p["listed"]:
        line = p["form"].format(v=p["listed"]) + "\n"
        if p["where"] == "dotenv":
            proj.joinpath(".env").write_text(line)
        elif p["where"] == "env-file":
            root.joinpath("vars.env").write_text(line)
            globals_ += ["--env-file", "vars.env"]
        elif p["where"] == "COMPOSE_ENV_FILES":
            root.joinpath("vars.env").write_text(line)
            env["COMPOSE_ENV_FILES"] = "vars.env"
        else:
            env["COMPOSE_FILE"] = p["listed"]
    call = split("docker", ["compose", *globals_, "up"])
    files, _listed = files_for(call, env, str(root))
    theirs = compose_config(globals_, root, env)
    ours = compose_config([*globals_, *(x for f in files for x in ("-f", f))], root, env) if files else "error"
    assert ours == theirs, f"dockcache loads {files}"


@pytest.mark.parametrize("beside", [None, "XARG=beside\nYARG=beside\n"])
def test_compose_file_moved_out_of_dotenv_keeps_the_dotenv_values(tmp_path, beside):
    """COMPOSE_FILE in ./.env naming a file in another dir: compose keeps ./.env's other
    values (and adds the first file's dir's .env for names still unset). dockcache gives
    compose COMPOSE_FILE in the environment instead, where compose reads only the latter:
    env_files_kept must make the interpolated project the same."""
    from shim.compose.files import env_files_kept

    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "base.yml").write_text(
        "services:\n  s:\n    image: busybox\n    environment:\n      X: ${XARG:-unset}\n      Y: ${YARG:-unset}\n")
    (tmp_path / ".env").write_text("COMPOSE_FILE=deploy/base.yml\nXARG=fromdotenv\n")
    if beside:
        (tmp_path / "deploy" / ".env").write_text(beside)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    theirs = compose_config([], tmp_path, env)
    call = split("docker", ["compose", "up"])
    files, listed = files_for(call, env, str(tmp_path))
    assert listed == "deploy/base.yml"
    shimmed = {**env, "COMPOSE_FILE": ":".join(files)}
    kept = env_files_kept(call, env, str(tmp_path), files)
    if kept:
        shimmed["COMPOSE_ENV_FILES"] = kept
    ours = compose_config([], tmp_path, shimmed)
    assert theirs["services"]["s"]["environment"]["X"] == "fromdotenv"
    assert ours == theirs
