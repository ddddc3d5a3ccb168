"""[mirrors] on a real engine: tools download through the configured mirror.

The mirror (tests/integration/mirror_server.py) runs on 127.0.0.1 and serves packages
that exist nowhere else, so a successful install is only possible through it; its
request counter shows what went through it. Containers use --network host to reach it.
"""

import json
import subprocess

import pytest

from tests.integration.helpers import DEVTOOLS, GOTOOLS, REPO, RUSTTOOLS, ok, shim, write_json
from tests.integration.mirror_server import Mirror

pytestmark = pytest.mark.engine
REAL = "/usr/local/bin/docker"
NPM_PKG, PY_PKG = "dockcache-probe-npm", "dockcache-probe-py"


@pytest.fixture
def mirror():
    m = Mirror(npm={NPM_PKG: "1.0.0"}, pypi={PY_PKG: "1.0.0"})
    yield m
    m.close()


def project(tmp_path, name="app"):
    proj = tmp_path / name
    proj.mkdir()
    write_json(proj / "package.json", {"name": name, "version": "1.0.0", "dependencies": {NPM_PKG: "1.0.0"}})
    (proj / "requirements.txt").write_text(f"{PY_PKG}==1.0.0\n")
    proj.chmod(0o777)
    return proj


def run_in(proj, script, network="host"):
    return ["run", "--rm", "--network", network, "-v", f"{proj}:/app", "-w", "/app", DEVTOOLS, "sh", "-c", script]


def test_npm_installs_through_the_configured_mirror(shim_env, engines, tmp_path, mirror):
    env = {**shim_env, "DOCKCACHE_MIRROR_NPM": f"{mirror.base}/npm/"}
    proj = project(tmp_path)
    cp = ok(shim(env, *run_in(proj, "npm config get registry && npm install --no-audit --no-fund")))
    assert cp.stdout.splitlines()[0] == f"{mirror.base}/npm/"
    assert mirror.hits[f"/npm/{NPM_PKG}"] >= 1 and mirror.hits[f"/npm/{NPM_PKG}/-/{NPM_PKG}-1.0.0.tgz"] == 1
    lock = json.loads((proj / "package-lock.json").read_text())
    assert lock["packages"][f"node_modules/{NPM_PKG}"]["resolved"].startswith(mirror.base)
    # The mirror and the cache together: a new container installs offline, the mirror sees nothing.
    before = sum(mirror.hits.values())
    (proj / "node_modules").chmod(0o777)
    ok(shim(env, *run_in(proj, "rm -rf node_modules && npm ci --offline --no-audit --no-fund", network="none")))
    assert sum(mirror.hits.values()) == before
    control = ok(shim(env, *run_in(proj, "npm config get registry"), extra={"DOCKCACHE_DISABLE": "1"}))
    assert mirror.base not in control.stdout


def test_pip_and_uv_install_through_an_http_mirror(shim_env, engines, tmp_path, mirror):
    env = {**shim_env, "DOCKCACHE_MIRROR_PYPI": f"{mirror.base}/pypi/simple/"}
    proj = project(tmp_path)
    (proj / "package.json").unlink()
    pip = "python3 -m venv /tmp/v && /tmp/v/bin/pip install --disable-pip-version-check -r requirements.txt"
    cp = ok(shim(env, *run_in(proj, pip)))
    assert f"Successfully installed {PY_PKG}" in cp.stdout.replace("_", "-")
    assert mirror.count("/pypi/files/") == 1
    again = ok(shim(env, *run_in(proj, pip)))  # pip's HTTP cache: the trusted http mirror is cached
    assert mirror.count("/pypi/files/") == 1, again.stdout
    (proj / "uv.lock").write_text("version = 1\n")
    uv = "uv venv -q /tmp/u && uv pip install --python /tmp/u/bin/python -r requirements.txt"
    ok(shim(env, *run_in(proj, uv), extra={"DOCKCACHE_MANAGERS": "uv"}))
    assert mirror.count(f"/pypi/simple/{PY_PKG}") >= 3  # pip twice, uv once


def test_private_ca_bundle_is_passed_to_the_tool(shim_env, engines, tmp_path):
    tls = Mirror(npm={NPM_PKG: "1.0.0"}, pypi={}, tls_dir=tmp_path / "tls")
    try:
        env = {**shim_env, "DOCKCACHE_MIRROR_NPM": f"{tls.base}/npm/"}
        proj = project(tmp_path)
        install = "npm install --no-audit --no-fund --fetch-retries=0"
        control = shim(env, *run_in(proj, install))
        assert control.returncode != 0 and tls.count("/npm/") == 0  # the private CA is not trusted
        cp = ok(shim({**env, "DOCKCACHE_MIRROR_CA_BUNDLE": str(tls.ca)}, *run_in(proj, install)))
        assert tls.hits[f"/npm/{NPM_PKG}/-/{NPM_PKG}-1.0.0.tgz"] == 1, cp.stderr
        assert (proj / "node_modules" / NPM_PKG / "index.js").is_file()
    finally:
        tls.close()


def test_compose_service_installs_through_the_mirror(shim_env, engines, tmp_path, mirror):
    root = tmp_path / "svc"
    root.mkdir()
    proj = project(root)
    (proj / "requirements.txt").unlink()
    (root / "compose.yaml").write_text(
        "services:\n  app:\n    image: dockcache-test/devtools\n    network_mode: host\n"
        "    volumes: [./app:/app]\n    working_dir: /app\n")
    env = {**shim_env, "DOCKCACHE_MIRROR_NPM": f"{mirror.base}/npm/"}
    cp = subprocess.run([str(REPO / "bin" / "docker"), "compose", "run", "--rm", "app", "sh", "-c",
                         "npm install --no-audit --no-fund"], env=env, cwd=root,
                        capture_output=True, text=True, timeout=300)
    subprocess.run([REAL, "-H", engines["a"].host, "compose", "down"], cwd=root, capture_output=True)
    assert cp.returncode == 0, cp.stderr
    assert mirror.hits[f"/npm/{NPM_PKG}/-/{NPM_PKG}-1.0.0.tgz"] == 1


GO_MOD = "example.test/probe"


def test_go_modules_through_the_mirror_then_offline_from_the_cache(shim_env, engines, tmp_path):
    go = Mirror(npm={}, pypi={}, go={GO_MOD: "v1.0.0"})
    try:
        proj = tmp_path / "goapp"
        proj.mkdir()
        (proj / "go.mod").write_text(f"module app\n\ngo 1.19\n\nrequire {GO_MOD} v1.0.0\n")
        (proj / "main.go").write_text(f'package main\n\nimport (\n\t"fmt"\n\n\t"{GO_MOD}"\n)\n\n'
                                      "func main() { fmt.Println(probe.Hello()) }\n")
        env = {**shim_env, "DOCKCACHE_MIRROR_GO": f"{go.base}/go"}
        build = "export GOSUMDB=off GOFLAGS=-mod=mod; go build -x -o /tmp/app . 2>&1 && /tmp/app"

        def run(script, network, extra=None):
            return shim(env, "run", "--rm", "--network", network, "-v", f"{proj}:/src", "-w", "/src", GOTOOLS,
                        "sh", "-c", script, extra=extra)

        cold = ok(run(build, "host"))
        assert f"hello from {GO_MOD}@v1.0.0" in cold.stdout
        assert go.hits[f"/go/{GO_MOD}/@v/v1.0.0.zip"] == 1  # GOPROXY pointed at the mirror
        compiled = [ln for ln in cold.stdout.splitlines() if "/compile " in ln and f"-p {GO_MOD} " in ln]
        assert compiled  # the module's package was compiled once…
        offline = "export GOPROXY=off; " + build
        warm = ok(run(offline, "none"))
        assert f"hello from {GO_MOD}@v1.0.0" in warm.stdout  # modules from GOMODCACHE, no network
        assert not [ln for ln in warm.stdout.splitlines() if "/compile " in ln and f"-p {GO_MOD} " in ln]
        assert go.hits[f"/go/{GO_MOD}/@v/v1.0.0.zip"] == 1  # …and GOCACHE kept the build
        control = run(offline, "none", extra={"DOCKCACHE_DISABLE": "1"})
        assert control.returncode != 0  # without the cache the module cannot be found offline
    finally:
        go.close()


CRATE = "dockcache-probe-crate"


def test_cargo_fetches_crates_through_the_mirror_then_offline_from_the_cache(shim_env, engines, tmp_path):
    """Source replacement comes from a file (no variable can replace crates-io): dockcache
    mounts a generated /.cargo/config.toml, read-only, that cargo finds from any working dir."""
    crates = Mirror(npm={}, pypi={}, cargo={CRATE: "1.0.0"})
    try:
        proj = tmp_path / "rsapp"
        (proj / "src").mkdir(parents=True)
        (proj / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                         f'[dependencies]\n{CRATE} = "1.0.0"\n')
        (proj / "src" / "main.rs").write_text(f'fn main() {{ println!("{{}}", {CRATE.replace("-", "_")}::hello()); }}\n')
        proj.chmod(0o777)
        env = {**shim_env, "DOCKCACHE_MIRROR_CARGO": f"{crates.base}/cargo/index"}

        def run(script, network, extra=None):
            return shim(env, "run", "--rm", "--network", network, "-v", f"{proj}:/app", "-w", "/app", RUSTTOOLS,
                        "sh", "-c", script, extra=extra)

        cold = ok(run("cargo build -q && ./target/debug/app", "host"))
        assert f"hello from {CRATE}@1.0.0" in cold.stdout
        assert crates.hits["/cargo/index/git-upload-pack"] >= 1  # the index came from the mirror…
        assert crates.hits[f"/cargo/dl/{CRATE}/1.0.0"] == 1  # …and so did the crate
        before = sum(crates.hits.values())
        offline = "rm -rf target && cargo build -q --offline && ./target/debug/app"
        warm = ok(run(offline, "none"))
        assert f"hello from {CRATE}@1.0.0" in warm.stdout  # index and crate from the cargo cache volume
        assert sum(crates.hits.values()) == before
        control = run(offline, "none", extra={"DOCKCACHE_DISABLE": "1"})
        assert control.returncode != 0  # no cache, no network: the crate cannot be had
    finally:
        crates.close()
