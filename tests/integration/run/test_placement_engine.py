"""Where run caches live (run.mode auto), proven on the engine pair as a new user meets it:
no config file, no DOCKCACHE_* variable, daemon A then a fresh daemon B on the same host.
Plus: a daemon that cannot see this host's files, caches removed behind dockcache's back,
and the host user's own caches (run.host_caches)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REAL_DOCKER
from tests.integration.helpers import (AS_UID_1000, DEVTOOLS, GOTOOLS, REPO, dockcache,
                                     host_user_1000, launcher_1000, ok, shim, write_json)

pytestmark = pytest.mark.engine
DEPS = {"is-number": "7.0.0", "left-pad": "1.3.0"}
NPM_CI = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
PIP = "pip install --break-system-packages --root-user-action=ignore -r requirements.txt 2>&1"
GO_MOD = "module example.com/app\n\ngo 1.19\n\nrequire github.com/google/uuid v1.3.0\n"
GO_MAIN = ('package main\n\nimport (\n\t"fmt"\n\n\t"github.com/google/uuid"\n)\n\n'
           'func main() { fmt.Println("id", uuid.NewSHA1(uuid.NameSpaceURL, []byte("x"))) }\n')


def clean_env(home: Path, host: str) -> dict:
    """What a new user has: PATH with dockcache first, HOME, DOCKER_HOST. Nothing else."""
    py_dir = os.path.dirname(os.environ.get("DOCKCACHE_TEST_PYTHON", "") or shutil.which("python3"))
    return {"PATH": f"{REPO / 'bin'}:{py_dir}:{os.path.dirname(REAL_DOCKER)}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home), "DOCKER_HOST": host}


def in_dir(proj, image, cmd, network="none", *opts):
    return ["run", "--rm", "--network", network, *opts, "-v", f"{proj}:/app", "-w", "/app", image, "sh", "-c", cmd]


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def test_no_config_caches_follow_the_developer_into_a_new_session(engines, home, tmp_path):
    a, b = engines["a"], engines["b"]
    env_a, env_b = clean_env(home, a.host), clean_env(home, b.host)
    node = tmp_path / "node"
    node.mkdir()
    write_json(node / "package.json", {"name": "x", "version": "1.0.0", "dependencies": DEPS})
    ok(shim(env_a, *in_dir(node, DEVTOOLS, "npm install --no-audit --no-fund", "host")))
    cache = home / ".cache" / "dockcache" / "run" / "dockcache-npm"
    assert any(cache.rglob("*")), "npm's cache should be in a host dir under ~/.cache/dockcache/run"
    warm = ok(shim(env_b, *in_dir(node, DEVTOOLS, NPM_CI)))  # session B: its own, fresh daemon
    assert "added 2 packages" in warm.stdout
    assert shim(env_b, *in_dir(node, DEVTOOLS, NPM_CI), extra={"DOCKCACHE_DISABLE": "1"}).returncode != 0

    py = tmp_path / "py"
    py.mkdir()
    (py / "requirements.txt").write_text("docopt==0.6.2\n")  # an sdist: pip builds a wheel and caches it
    assert "Building wheel for docopt" in ok(shim(env_a, *in_dir(py, DEVTOOLS, PIP, "host"))).stdout
    reused = ok(shim(env_b, *in_dir(py, DEVTOOLS, PIP, "host"))).stdout
    assert "Using cached docopt-0.6.2-py2.py3-none-any.whl" in reused and "Building wheel" not in reused
    control = ok(shim(env_b, *in_dir(py, DEVTOOLS, PIP, "host"), extra={"DOCKCACHE_DISABLE": "1"})).stdout
    assert "Building wheel for docopt" in control

    go = tmp_path / "go"
    go.mkdir()
    (go / "go.mod").write_text(GO_MOD)
    (go / "main.go").write_text(GO_MAIN)
    mine = ("-e", "GOSUMDB=off", "-e", "GOFLAGS=-mod=mod")  # the user's own settings: no checksum database
    ok(shim(env_a, *in_dir(go, GOTOOLS, "go run .", "host", *mine)))
    offline = ("-e", "GOPROXY=off", *mine)
    assert "id " in ok(shim(env_b, *in_dir(go, GOTOOLS, "go run .", "none", *offline))).stdout
    control = shim(env_b, *in_dir(go, GOTOOLS, "go run .", "none", *offline), extra={"DOCKCACHE_DISABLE": "1"})
    assert control.returncode != 0 and "GOPROXY=off" in control.stderr

    doctor = json.loads(dockcache(env_b, "doctor", "--json").stdout)
    placed = next(c for c in doctor["checks"] if c["check"] == "run caches")
    assert placed["value"].startswith("bind: auto: the engine sees"), placed
    assert not b.docker("volume", "ls", "-q", "--filter", "name=dockcache-npm").stdout.split()


def test_a_daemon_that_cannot_see_the_probe_gets_named_volumes(engines, home, tmp_path):
    """Simulated: dockcache runs in its own mount namespace whose ~/.cache is a private tmpfs,
    as when the engine is in a VM or another namespace: the daemon cannot see the probe."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    a = engines["a"]
    env = {**clean_env(home, a.host), "DOCKCACHE_VOLUME_PREFIX": a.prefix}  # volumes under this test's prefix
    (home / ".cache").mkdir()
    private = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs tmpfs "$HOME/.cache" && exec "$@"', "sh"]
    node = tmp_path / "node"
    node.mkdir()
    write_json(node / "package.json", {"name": "x", "version": "1.0.0", "dependencies": DEPS})
    cp = subprocess.run([*private, str(REPO / "bin" / "docker"),
                         *in_dir(node, DEVTOOLS, "npm install --no-audit --no-fund", "host")],
                        env=env, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert f"{a.prefix}-npm" in a.volumes()
    py = os.environ.get("DOCKCACHE_TEST_PYTHON", "python3")
    doc = subprocess.run([*private, py, "-m", "shim", "doctor", "--json"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    placed = next(c for c in json.loads(doc.stdout)["checks"] if c["check"] == "run caches")
    assert placed["value"].startswith("volume: auto: the engine cannot see this host's files"), placed


def test_caches_removed_behind_dockcaches_back_never_break_a_run(shim_env, engines, tmp_path):
    a = engines["a"]
    node = tmp_path / "node"
    node.mkdir()
    write_json(node / "package.json", {"name": "x", "version": "1.0.0", "dependencies": DEPS})
    node.chmod(0o777)
    install = in_dir(node, DEVTOOLS, "npm install --no-audit --no-fund", "host")
    ok(shim(shim_env, *install))  # volume mode (shim_env): a labelled volume
    vol = f"{a.prefix}-npm"
    for _ in range(2):  # once re-planned, once from the remembered plan: both keep the labels
        a.docker("volume", "rm", "-f", vol)
        ok(shim(shim_env, *install))
        labels = json.loads(a.docker("volume", "inspect", "--format", "{{json .Labels}}", vol).stdout)
        assert labels["dockcache.managed"] == "true" and labels["dockcache.prefix"] == a.prefix
    listed = json.loads(dockcache(shim_env, "cache", "list", "--json").stdout)["caches"]
    assert any(r["name"] == vol and r["manager"] == "npm" for r in listed)  # the state and list agree again

    bind_env = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(tmp_path / "bind")}
    cache = tmp_path / "bind" / f"{a.prefix}-npm"
    root = tmp_path / "stack"
    root.mkdir()
    (root / "compose.yaml").write_text(
        "services:\n  app:\n    image: dockcache-test/devtools\n    network_mode: none\n"
        "    command: [\"sh\", \"-c\", \"npm --version\"]\n")
    for _ in range(2):
        ok(shim(bind_env, *install))
        assert any(cache.rglob("*"))
        shutil.rmtree(cache)  # rm -rf of a bind cache dir
        ok(shim(bind_env, *install))
        assert cache.is_dir() and any(cache.rglob("*"))
        shutil.rmtree(cache)
        up = subprocess.run([str(REPO / "bin" / "docker"), "compose", "run", "--rm", "app"], env=bind_env,
                            cwd=root, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        assert cache.is_dir()
    subprocess.run([REAL_DOCKER, "-H", a.host, "compose", "down"], cwd=root, capture_output=True)


def test_host_caches_serve_containers_and_stay_the_host_users(engines):
    """The host user (uid 1000, allowed on daemon A's socket) warms their own ~/.npm through
    a container running as them; a root container then installs offline from it; afterwards
    the user can still write into and clear everything the root container added."""
    a = engines["a"]
    with host_user_1000(a, "dc-hostcache-") as base:
        write_json(base / "app" / "package.json", {"name": "x", "version": "1.0.0", "dependencies": DEPS})
        os.chown(base / "app" / "package.json", 1000, 1000)
        env = {**clean_env(base / "home", a.host), "DOCKCACHE_HOST_CACHES": "1",
               "DOCKCACHE_VOLUME_PREFIX": a.prefix,  # uid 1000's PATH: nothing inside the checkout
               "PATH": f"{launcher_1000(base).parent}:{os.path.dirname(REAL_DOCKER)}:/usr/local/bin:/usr/bin:/bin"}

        def run(*argv, environ=env):
            return subprocess.run([*AS_UID_1000, str(launcher_1000(base)), *argv], env=environ,
                                  capture_output=True, text=True, timeout=300)
        ok(run(*in_dir(base / "app", DEVTOOLS, "npm install --no-audit --no-fund", "host", "--user", "1000:1000")))
        npm_home = base / "home" / ".npm"
        assert any(p.is_file() for p in npm_home.rglob("*")) and npm_home.stat().st_uid == 1000
        subprocess.run([*AS_UID_1000, "rm", "-rf", str(base / "app" / "node_modules")], check=True)
        ok(run(*in_dir(base / "app", DEVTOOLS, "npm ci --offline --no-audit --no-fund && mkdir -p /dockcache/npm/by-root")))
        assert (npm_home / "by-root").stat().st_uid == 0  # root in the container wrote into the user's cache
        assert run(*in_dir(base / "app", DEVTOOLS, NPM_CI), environ={**env, "DOCKCACHE_DISABLE": "1"}).returncode != 0
        touched = subprocess.run([*AS_UID_1000, "touch", str(npm_home / "by-root" / "mine")], capture_output=True, text=True)
        assert touched.returncode == 0, touched.stderr  # the user writes where root created
        cleared = subprocess.run([*AS_UID_1000, "rm", "-rf", str(npm_home)], capture_output=True, text=True)
        assert cleared.returncode == 0 and not npm_home.exists(), cleared.stderr  # and clears it, no sudo
