"""The dev containers CLI (`@devcontainers/cli`, what VS Code runs) through bin/docker.

`devcontainer up` on daemon A, then on daemon B (a new session) with a fresh copy of the
project at another path, `--docker-path` = bin/docker. The CLI builds the dev image, starts
the container as the image's user (root) and runs `postCreateCommand` as `remoteUser`
with `docker exec -u dev`: with dockcache's caches that user must get a cache it can write
(shim/run/execplan.py), warm in the new session. tests/engine/provision.sh installs the CLI.
"""

import json
import shutil
import subprocess
import uuid

import pytest

from tests.integration.helpers import DEVTOOLS, REPO, ok, shim

pytestmark = pytest.mark.engine

CONFIG = """{
  // as a new user writes it: a Dockerfile, a non-root remote user, npm ci after create
  "name": "dcapp",
  "build": {"dockerfile": "Dockerfile", "options": ["--network=host"]},  /* no bridge here */
  "runArgs": ["--network=host"],
  "remoteUser": "REMOTE_USER",
  "updateRemoteUserUID": false,
  "postCreateCommand": "npm ci --no-audit --no-fund"
}
"""
LOCK = {"name": "dcapp", "version": "1.0.0", "lockfileVersion": 3, "requires": True, "packages": {
    "": {"name": "dcapp", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}},
    "node_modules/is-number": {"version": "7.0.0", "license": "MIT", "engines": {"node": ">=0.12.0"},
                               "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8AN"
                                            "v0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="}}}


def project(where, token, user="dev"):
    (where / ".devcontainer").mkdir(parents=True)
    (where / ".devcontainer" / "devcontainer.json").write_text(CONFIG.replace("REMOTE_USER", user))
    (where / ".devcontainer" / "Dockerfile").write_text(
        # the token: no daemon's own BuildKit cache has this step from an earlier run
        f"FROM {DEVTOOLS}\nRUN useradd -m -u 1000 dev && sleep 3 && echo {token} && date +%s%N > /built-at\n")
    (where / "package.json").write_text(json.dumps({"name": "dcapp", "version": "1.0.0",
                                                    "dependencies": {"is-number": "7.0.0"}}))
    (where / "package-lock.json").write_text(json.dumps(LOCK, indent=2))
    for p in [where, *where.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)  # the remote user (uid 1000) writes node_modules
    return where


@pytest.fixture
def devcontainer(engines, tmp_path):
    if not shutil.which("devcontainer"):
        pytest.skip("the dev containers CLI is not installed (tests/engine/provision.sh up)")
    made = []

    def up(env, folder):
        made.append((env["DOCKER_HOST"], str(folder)))
        cp = subprocess.run(["devcontainer", "up", "--workspace-folder", str(folder),
                             "--docker-path", str(REPO / "bin" / "docker")],
                            env=env, capture_output=True, text=True, timeout=900)
        result = json.loads(cp.stdout.strip().splitlines()[-1]) if cp.stdout.strip() else {}
        assert cp.returncode == 0 and result.get("outcome") == "success", cp.stdout[-3000:] + cp.stderr[-3000:]
        return result["containerId"]
    yield up
    for host, folder in made:
        eng = next(e for e in engines.values() if e.host == host)
        ids = eng.docker("ps", "-aq", "--filter", f"label=devcontainer.local_folder={folder}", check=False).stdout.split()
        images = {eng.docker("inspect", "--format", "{{.Config.Image}}", i, check=False).stdout.strip() for i in ids}
        if ids:
            eng.docker("rm", "-f", *ids, check=False)
        for image in images - {""}:
            eng.docker("image", "rm", "-f", image, check=False)


def test_devcontainer_up_on_two_sessions_with_a_non_root_remote_user(shim_env, engines, tmp_path, devcontainer):
    shared = {"DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(tmp_path / "bindroot")}  # outlives a session
    env_a = {**shim_env, **shared, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-a")}
    env_b = {**shim_env, **shared, "DOCKER_HOST": engines["b"].host, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    token = uuid.uuid4().hex
    cid_a = devcontainer(env_a, project(tmp_path / "a" / "dcapp", token))
    cid_b = devcontainer(env_b, project(tmp_path / "elsewhere" / "b" / "dcapp", token))

    def as_dev(script, **extra):
        return shim(env_b, "exec", "-u", "dev", "-w", "/workspaces/dcapp", cid_b, "sh", "-c", script, extra=extra)
    offline = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    assert "added 1 package" in ok(as_dev(offline)).stdout  # B's remote user installs from A's downloads
    assert as_dev(offline, DOCKCACHE_DISABLE="1").returncode != 0  # as typed: root's cache, not dev's
    assert as_dev(f"export npm_config_cache=/tmp/empty; {offline}").returncode != 0  # the cache made it work

    built_a = engines["a"].docker("exec", cid_a, "cat", "/built-at").stdout
    built_b = engines["b"].docker("exec", cid_b, "cat", "/built-at").stdout
    assert built_a == built_b  # the layer came from A's build: B's slow RUN was CACHED (a stable build key)


def test_devcontainer_up_with_root_as_the_remote_user(shim_env, engines, tmp_path, devcontainer):
    """The other common shape: the remote user is the container's (root): its caches are its own."""
    env = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state")}
    cid = devcontainer(env, project(tmp_path / "dcapp", uuid.uuid4().hex, user="root"))
    offline = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    cp = ok(shim(env, "exec", "-u", "root", "-w", "/workspaces/dcapp", cid, "sh", "-c", f"{offline}; echo $npm_config_cache"))
    assert "added 1 package" in cp.stdout and cp.stdout.strip().endswith("/dockcache/npm")  # no tree of its own
