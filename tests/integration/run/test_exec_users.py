"""Through bin/docker on a real engine: `docker exec -u` of another user than the container's.

The container runs as root (as dev containers and most images do) and gets dockcache's
caches; the tools then run as `dev` through `docker exec -u dev`, as the dev containers CLI
and VS Code run every lifecycle command. Plain docker works there (each user's own ~/.npm,
~/.cache/pip, ~/go); each tool must work through dockcache too and really use a cache, in
both places caches live (named volumes and host dirs), never leaving the user's files
beside another user's.
"""

import time

import pytest

from tests.integration.helpers import GOTOOLS, ok, shim, write_json

pytestmark = pytest.mark.engine
MODES = pytest.mark.parametrize("mode", ["volume", "bind"])
GO_DEP = "github.com/google/uuid"


@pytest.fixture
def container(shim_env, engines, tmp_path):
    """Start a root container through the shim with the project at /app; yields (env, run-as-dev)."""
    made = []

    def start(mode: str, files: dict):
        env = {**shim_env, "DOCKCACHE_MODE": mode, "DOCKCACHE_BIND_ROOT": str(tmp_path / "bindroot")}
        proj = tmp_path / "app"
        proj.mkdir()
        for name, text in files.items():
            (proj / name).write_text(text)
        proj.chmod(0o777)
        cid = ok(shim(env, "run", "-d", "--network", "host", "--label", engines["a"].label, "-v", f"{proj}:/app",
                      "-w", "/app", GOTOOLS, "sh", "-c", "useradd -m -u 1000 dev && touch /ready && sleep 900")).stdout.strip()
        made.append(cid)
        for _ in range(100):
            if engines["a"].docker("exec", cid, "test", "-e", "/ready", check=False).returncode == 0:
                break
            time.sleep(0.1)

        def as_dev(script: str, **extra):
            return shim(env, "exec", "-u", "dev", cid, "sh", "-c", script, extra=extra)
        as_dev.cid, as_dev.env = cid, env
        return as_dev
    yield start
    for cid in made:
        engines["a"].docker("rm", "-f", cid, check=False)


def only_in_own_tree(engines, cid: str, cache: str) -> None:
    """Nothing dev wrote lies outside its own tree: no other user meets a file it cannot change."""
    stray = engines["a"].docker("exec", cid, "find", cache, "-user", "dev", "-not", "-path", f"{cache}/.users/dev*").stdout
    assert stray == "" and engines["a"].docker("exec", cid, "find", f"{cache}/.users/dev", "-user", "dev").stdout


@MODES
def test_npm_as_an_exec_user(container, engines, mode):
    as_dev = container(mode, {"package.json": '{"name": "app", "version": "1.0.0", '
                                              '"dependencies": {"is-number": "7.0.0", "left-pad": "1.3.0"}}'})
    ok(as_dev("npm install --no-audit --no-fund"))
    offline = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    assert "added 2 packages" in ok(as_dev(offline)).stdout
    only_in_own_tree(engines, as_dev.cid, "/dockcache/npm")
    assert as_dev(offline, DOCKCACHE_DISABLE="1").returncode != 0  # as typed: the root-owned cache


@MODES
def test_pip_as_an_exec_user_reuses_the_wheel_it_built(container, engines, mode):
    as_dev = container(mode, {"requirements.txt": "docopt==0.6.2\n"})  # sdist only: pip builds a wheel
    install = "pip install -q --break-system-packages --target /tmp/{} -r requirements.txt -v 2>&1"
    assert "Building wheel for docopt" in ok(as_dev(install.format("t1"))).stdout
    warm = ok(as_dev(install.format("t2")))
    assert "Using cached docopt-0.6.2-py2.py3-none-any.whl" in warm.stdout and "Building wheel" not in warm.stdout
    only_in_own_tree(engines, as_dev.cid, "/dockcache/pip")
    control = ok(as_dev(install.format("t3"), DOCKCACHE_DISABLE="1"))
    assert "Building wheel for docopt" in control.stdout  # pip turns off a cache dir it cannot write


@MODES
def test_go_as_an_exec_user_builds_offline_from_the_cache(container, engines, mode):
    as_dev = container(mode, {
        "go.mod": f"module app\n\ngo 1.19\n\nrequire {GO_DEP} v1.6.0\n",
        "main.go": f'package main\n\nimport (\n\t"fmt"\n\n\t"{GO_DEP}"\n)\n\n'
                   'func main() { fmt.Println("uuid", len(uuid.NewString())) }\n'})
    build = "export GOFLAGS=-mod=mod; go build -o /tmp/app . && /tmp/app"
    assert "uuid 36" in ok(as_dev(build)).stdout
    assert "uuid 36" in ok(as_dev("export GOPROXY=off; " + build.replace("/tmp/app", "/tmp/app2"))).stdout
    only_in_own_tree(engines, as_dev.cid, "/dockcache/go")
    assert as_dev("export GOPROXY=off; " + build, DOCKCACHE_DISABLE="1").returncode != 0


@MODES
def test_root_exec_leaves_a_non_root_containers_cache_to_its_owner(shim_env, engines, tmp_path, mode):
    """The container runs as uid 1000 (its caches are 1000's); `docker exec -u 0` runs npm as
    root: root's files go to its own tree, so the owner's next download still works."""
    env = {**shim_env, "DOCKCACHE_MODE": mode, "DOCKCACHE_BIND_ROOT": str(tmp_path / "bindroot")}
    proj = tmp_path / "app"
    proj.mkdir()
    (proj / "package.json").write_text('{"name": "app", "version": "1.0.0"}')
    (proj / "package.json").chmod(0o666)  # uid 1000 adds its dependency
    proj.chmod(0o777)
    cid = ok(shim(env, "run", "-d", "--network", "host", "--user", "1000:1000", "-e", "HOME=/tmp", "--label",
                  engines["a"].label, "-v", f"{proj}:/app", "-w", "/app", GOTOOLS, "sleep", "900")).stdout.strip()
    try:
        ok(shim(env, "exec", "-u", "0", cid, "npm", "install", "--prefix", "/tmp/r", "--no-audit", "--no-fund", "is-number@7.0.0"))
        owner = ok(shim(env, "exec", cid, "npm", "install", "--no-audit", "--no-fund", "left-pad@1.3.0"))
        assert "added 1 package" in owner.stdout
        stray = engines["a"].docker("exec", cid, "find", "/dockcache/npm", "-mindepth", "1", "-user", "root",
                                    "-not", "-path", "/dockcache/npm/.users*").stdout
        assert stray == ""  # nothing of root's in the owner's cache
    finally:
        engines["a"].docker("rm", "-f", cid, check=False)
