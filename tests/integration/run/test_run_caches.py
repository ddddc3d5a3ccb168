"""Through bin/docker on a real engine: each package manager really USES its cache.

Proof is the tool's own behaviour in a fresh container: an offline install that only
a warm cache makes possible, pip reusing a wheel it built, a cache that grows on the
first run and not on the second; each with a control run without dockcache.
"""


import subprocess

import pytest

from tests.integration.helpers import BUSYBOX, DEVTOOLS, REPO, RUSTTOOLS, ok, shim, volume_files, write_json

pytestmark = pytest.mark.engine
DEPS = {"is-number": "7.0.0", "left-pad": "1.3.0"}


def node_project(tmp_path, name="app"):
    proj = tmp_path / name
    proj.mkdir()
    write_json(proj / "package.json", {"name": name, "version": "1.0.0", "dependencies": DEPS})
    proj.chmod(0o777)
    return proj


def in_project(proj, *cmd, network="none", user=None):
    args = ["run", "--rm", "--network", network, "-v", f"{proj}:/app", "-w", "/app"]
    if user:
        args += ["--user", user]
    return [*args, DEVTOOLS, "sh", "-c", " ".join(cmd)]


def test_npm_offline_install_works_only_with_the_cache(shim_env, engines, tmp_path):
    a = engines["a"]
    proj = node_project(tmp_path)
    ok(shim(shim_env, *in_project(proj, "npm install --no-audit --no-fund", network="host")))
    volume = f"{a.prefix}-npm"
    after_cold = volume_files(a, volume, "_cacache/content-v2")
    assert after_cold > 0
    (proj / "node_modules").chmod(0o777)
    clean = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    warm = ok(shim(shim_env, *in_project(proj, clean)))
    assert "added 2 packages" in warm.stdout
    assert volume_files(a, volume, "_cacache/content-v2") == after_cold  # read, not re-fetched
    control = shim(shim_env, *in_project(proj, clean), extra={"DOCKCACHE_DISABLE": "1"})
    assert control.returncode != 0  # without the cache an offline install cannot work


def test_npm_as_non_root_user(shim_env, engines, tmp_path):
    a = engines["a"]
    proj = node_project(tmp_path)
    ok(shim(shim_env, *in_project(proj, "npm install --no-audit --no-fund", network="host", user="1000:1000")))
    volume = f"{a.prefix}-npm-c1000"
    assert volume in a.volumes() and volume_files(a, volume) > 0
    clean = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    warm = ok(shim(shim_env, *in_project(proj, clean, user="1000:1000")))
    assert "added 2 packages" in warm.stdout


def test_user_npm_cache_setting_wins(shim_env, engines, tmp_path):
    a = engines["a"]
    proj = node_project(tmp_path)
    cp = ok(shim(shim_env, "run", "--rm", "--network", "none", "-e", "npm_config_cache=/tmp/mine",
                 "-v", f"{proj}:/app", "-w", "/app", DEVTOOLS, "sh", "-c", "echo $npm_config_cache; npm --version"))
    assert cp.stdout.splitlines()[0] == "/tmp/mine"
    assert f"{a.prefix}-npm" not in a.volumes()


def test_kill_switch_on_real_engine(shim_env, engines, tmp_path):
    a = engines["a"]
    proj = node_project(tmp_path)
    cp = ok(shim(shim_env, *in_project(proj, "echo cache=$npm_config_cache; npm --version"),
                 extra={"DOCKCACHE_DISABLE": "1"}))
    assert "cache=\n" in cp.stdout and a.volumes() == []


def test_pip_reuses_the_wheel_it_built(shim_env, engines, tmp_path):
    proj = tmp_path / "py"
    proj.mkdir()
    (proj / "requirements.txt").write_text("docopt==0.6.2\n")  # sdist only: pip must build a wheel
    cmd = "pip install --break-system-packages --root-user-action=ignore -r requirements.txt 2>&1"
    cold = ok(shim(shim_env, *in_project(proj, cmd, network="host")))
    assert "Building wheel for docopt" in cold.stdout
    warm = ok(shim(shim_env, *in_project(proj, cmd, network="host")))
    assert "Using cached docopt-0.6.2-py2.py3-none-any.whl" in warm.stdout
    assert "Building wheel" not in warm.stdout
    control = ok(shim(shim_env, *in_project(proj, cmd, network="host"), extra={"DOCKCACHE_DISABLE": "1"}))
    assert "Building wheel for docopt" in control.stdout


def test_yarn_offline_after_warm_cache(shim_env, engines, tmp_path):
    proj = node_project(tmp_path)
    ok(shim(shim_env, *in_project(proj, "yarn install --non-interactive", network="host")))
    assert (proj / "yarn.lock").exists()
    clean = "rm -rf node_modules && yarn install --offline --frozen-lockfile --non-interactive"
    ok(shim(shim_env, *in_project(proj, clean)))
    assert (proj / "node_modules" / "is-number").is_dir()
    assert shim(shim_env, *in_project(proj, clean), extra={"DOCKCACHE_DISABLE": "1"}).returncode != 0


def test_pnpm_offline_after_warm_cache(shim_env, engines, tmp_path):
    proj = node_project(tmp_path)
    ok(shim(shim_env, *in_project(proj, "pnpm install", network="host")))
    assert (proj / "pnpm-lock.yaml").exists()
    clean = "rm -rf node_modules && pnpm install --offline --frozen-lockfile"
    ok(shim(shim_env, *in_project(proj, clean)))
    assert (proj / "node_modules" / "is-number").exists()
    assert shim(shim_env, *in_project(proj, clean), extra={"DOCKCACHE_DISABLE": "1"}).returncode != 0


def test_uv_offline_after_warm_cache(shim_env, engines, tmp_path):
    proj = tmp_path / "uvp"
    proj.mkdir()
    (proj / "requirements.txt").write_text("six==1.16.0\n")
    (proj / "uv.lock").write_text("version = 1\n")  # marks the project as a uv project
    install = "export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt; uv venv -q /tmp/v && uv pip install -q --python /tmp/v/bin/python -r requirements.txt"
    ok(shim(shim_env, *in_project(proj, install, network="host")))
    offline = install.replace("uv pip install", "uv pip install --offline")
    ok(shim(shim_env, *in_project(proj, offline + " && /tmp/v/bin/python -c 'import six'")))
    assert shim(shim_env, *in_project(proj, offline), extra={"DOCKCACHE_DISABLE": "1"}).returncode != 0


def test_stdin_stdout_and_exit_code_pass_through(shim_env, engines, tmp_path):
    proj = node_project(tmp_path)
    data = "line1\nline2 ümlaut\n"
    cp = shim(shim_env, "run", "-i", "--rm", "--network", "none", "-v", f"{proj}:/app", BUSYBOX,
              "sh", "-c", "cat; exit 7", input=data)
    assert cp.returncode == 7 and cp.stdout == data


def test_bind_mode_host_dir_is_used_and_shared_across_daemons(shim_env, engines, tmp_path):
    """mode=bind: a host dir under bind_root; a fresh daemon (session B) starts warm."""
    root = tmp_path / "bindroot"
    env = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(root)}
    proj = node_project(tmp_path)
    ok(shim(env, *in_project(proj, "npm install --no-audit --no-fund", network="host")))
    host_cache = root / f"{engines['a'].prefix}-npm"
    assert (host_cache / "_cacache").is_dir()
    clean = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    warm = ok(shim({**env, "DOCKER_HOST": engines["b"].host}, *in_project(proj, clean)))
    assert "added 2 packages" in warm.stdout
    assert engines["b"].volumes() == []  # no volume: the host dir did the work


def test_project_config_file_is_honoured(shim_env, engines, tmp_path):
    proj = node_project(tmp_path)
    (proj / ".dockcache.toml").write_text("[managers.npm]\nenabled = false\n")
    cp = ok(shim(shim_env, *in_project(proj, "echo cache=$npm_config_cache")))
    assert "cache=\n" in cp.stdout and engines["a"].volumes() == []


def test_readonly_mode_does_not_break_installs(shim_env, engines, tmp_path):
    env = {**shim_env, "DOCKCACHE_READONLY": "1"}
    proj = node_project(tmp_path)
    cp = ok(shim(env, *in_project(proj, "npm install --no-audit --no-fund && echo cache=$npm_config_cache",
                                  network="host")))
    assert "cache=\n" in cp.stdout  # npm cannot use a read-only cache: it keeps its private one
    assert engines["a"].volumes() == []


def test_corrupted_npm_entry_then_clear_recovers(shim_env, engines, tmp_path):
    import subprocess
    import sys

    a = engines["a"]
    proj = node_project(tmp_path)
    ok(shim(shim_env, *in_project(proj, "npm install --no-audit --no-fund", network="host")))
    volume = f"{a.prefix}-npm"
    a.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/c", BUSYBOX, "sh", "-c",
             "for f in $(find /c/_cacache/content-v2 -type f); do echo garbage > $f; done")
    clean = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    broken = shim(shim_env, *in_project(proj, clean))
    assert broken.returncode != 0 and "Traceback" not in broken.stderr  # the tool's own error
    cleared = subprocess.run([sys.executable, "-m", "shim", "cache", "clear", "--npm", "--force"],
                             env=shim_env, capture_output=True, text=True, cwd=str(REPO))
    assert cleared.returncode == 0, cleared.stderr
    ok(shim(shim_env, *in_project(proj, "npm install --no-audit --no-fund", network="host")))
    ok(shim(shim_env, *in_project(proj, clean)))


def crate_repo(tmp_path):
    """A git repository holding a library crate: a cargo git dependency with no network."""
    repo = tmp_path / "probe"
    (repo / "src").mkdir(parents=True)
    (repo / "Cargo.toml").write_text('[package]\nname = "probe"\nversion = "0.1.0"\nedition = "2021"\n')
    (repo / "src" / "lib.rs").write_text('pub fn hello() -> &\'static str { "hello from probe" }\n')
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "probe"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


def rust_project(tmp_path):
    proj = tmp_path / "rustapp"
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                     '[dependencies]\nprobe = { git = "file:///deps/probe" }\n')
    (proj / "src" / "main.rs").write_text('fn main() { println!("{}", probe::hello()); }\n')
    proj.chmod(0o777)
    return proj


@pytest.mark.parametrize("image_home", [None, "/usr/local/cargo"], ids=["cargo-home-ours", "image-cargo-home"])
def test_cargo_git_dependency_builds_offline_only_with_the_cache(shim_env, engines, tmp_path, image_home):
    a = engines["a"]
    image = RUSTTOOLS
    if image_home:  # like the rust image: CARGO_HOME is set (and holds cargo itself there)
        ctx = tmp_path / "img"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {RUSTTOOLS}\nENV CARGO_HOME={image_home}\n")
        image = f"{a.prefix}/rust-home:1"
        a.images.append(image)
        a.docker("build", "--network", "none", "-q", "-t", image, str(ctx))
    repo, proj = crate_repo(tmp_path), rust_project(tmp_path)
    run = ["run", "--rm", "--network", "none", "-v", f"{proj}:/app", "-w", "/app"]
    cold = shim(shim_env, *run, "-v", f"{repo}:/deps/probe:ro", image,
                "sh", "-c", "cargo build -q && ./target/debug/app")
    assert cold.returncode == 0, cold.stderr
    assert "hello from probe" in cold.stdout
    if image_home:
        volumes = [v for v in a.volumes() if v.startswith(f"{a.prefix}-cargo")]
        assert sorted(volumes) == [f"{a.prefix}-cargo-git", f"{a.prefix}-cargo-registry"]
    # A new container without the dependency's repository: only CARGO_HOME's git cache has it.
    offline = "rm -rf target && cargo build -q --offline && ./target/debug/app"
    warm = shim(shim_env, *run, image, "sh", "-c", offline)
    assert warm.returncode == 0, warm.stderr
    assert "hello from probe" in warm.stdout
    control = shim(shim_env, *run, image, "sh", "-c", offline, extra={"DOCKCACHE_DISABLE": "1"})
    assert control.returncode != 0
