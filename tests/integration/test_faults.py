"""Faults never break the user's command: it runs unchanged, with its own exit code."""

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.helpers import BUSYBOX, REPO, shim, write_json

pytestmark = pytest.mark.engine
REAL = "/usr/local/bin/docker"


def npm_project(tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    write_json(proj / "package.json", {"name": "p", "version": "1.0.0"})
    return proj


def test_engine_unreachable_same_exit_code(shim_env, tmp_path):
    proj = npm_project(tmp_path)
    argv = ["run", "--rm", "-v", f"{proj}:/app", BUSYBOX, "true"]
    env = {**shim_env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    real = subprocess.run([REAL, *argv], env=env, capture_output=True, text=True)
    via = shim(env, *argv)
    assert via.returncode == real.returncode != 0
    assert "Traceback" not in via.stderr and via.stderr.count("dockcache:") <= 1


def test_state_dir_unwritable_still_runs(shim_env, engines, tmp_path):
    proj = npm_project(tmp_path)
    env = {**shim_env, "DOCKCACHE_STATE_DIR": "/proc/dockcache-state"}
    cp = shim(env, "run", "--rm", "--network", "none", "-v", f"{proj}:/app", BUSYBOX, "sh", "-c",
              "echo $npm_config_cache; exit 3")
    assert cp.returncode == 3 and cp.stdout.strip() == "/dockcache/npm"
    assert cp.stderr.count("dockcache:") == 1 and "state dir /proc/dockcache-state not writable" in cp.stderr


@pytest.mark.parametrize("kind", ["read-only mount", "a file in its place"])
def test_build_store_read_only_builds_anyway(shim_env, engines, tmp_path, kind):
    """The build runs with its exit code and one line naming the store, twice: the store
    was written anyway (snapshot, export dir: 'internal error (OSError: [Errno 30] ...);
    running docker unchanged'), and its cache mounts were saved by a worker that failed."""
    a = engines["a"]
    store = tmp_path / "ro-store"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN --mount=type=cache,target=/c echo {uuid.uuid4().hex} > /c/x\n")
    tag = f"{a.prefix}/ro:1"
    a.images.append(tag)
    if kind == "read-only mount":
        store.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(store)], check=True)
    else:
        store.write_text("not a dir")
    env = {**shim_env, "DOCKCACHE_BUILD_STORE": str(store)}
    try:
        runs = [shim(env, "build", "--network", "none", "-t", tag, str(ctx)) for _ in range(2)]
    finally:
        if kind == "read-only mount":
            subprocess.run(["umount", str(store)], check=False)
    for cp in runs:
        assert cp.returncode == 0, cp.stderr
        lines = [ln for ln in cp.stderr.splitlines() if ln.startswith("dockcache:")]
        assert len(lines) == 1 and str(store) in lines[0] and "internal error" not in lines[0], cp.stderr


def test_build_store_disk_full_builds_anyway(shim_env, engines, tmp_path):
    a = engines["a"]
    store = tmp_path / "full-store"
    store.mkdir()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN head -c 300000 /dev/urandom > /blob && echo {uuid.uuid4().hex}\n")
    tag = f"{a.prefix}/full:1"
    a.images.append(tag)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(store)], check=True)
    try:
        cp = shim({**shim_env, "DOCKCACHE_BUILD_STORE": str(store)}, "build", "--network", "none", "-t", tag, str(ctx))
        leftovers = [p for p in store.rglob("*") if "dockcache-export" in p.name or p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(store)], check=False)
    assert cp.returncode == 0, cp.stderr[-1500:]
    assert "Traceback" not in cp.stderr and leftovers == []


def test_sigterm_during_build_reaches_docker_and_cleans_up(shim_env, engines, tmp_path):
    a = engines["a"]
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {uuid.uuid4().hex} && sleep 60\n")
    tag = f"{a.prefix}/sig:1"
    a.images.append(tag)
    p = subprocess.Popen([str(REPO / "bin" / "docker"), "build", "--network", "none", "-t", tag, str(ctx)],
                         env=shim_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not list((store / "tmp").glob("dockcache-export-*")):
        time.sleep(0.2)
    time.sleep(2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0  # docker's own exit code for a cancelled build
    assert "Traceback" not in err
    assert list((store / "tmp").glob("*")) == [] and list((store / "snapshots").glob("*")) == []


def test_state_dir_disk_full_still_runs(shim_env, engines, tmp_path):
    state = tmp_path / "full-state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(state)], check=True)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={state}/filler", "bs=1k", "count=64"], capture_output=True)
        proj = npm_project(tmp_path)
        cp = shim({**shim_env, "DOCKCACHE_STATE_DIR": str(state)}, "run", "--rm", "--network", "none",
                  "-v", f"{proj}:/app", BUSYBOX, "sh", "-c", "echo $npm_config_cache; exit 4")
        leftovers = [p.name for p in state.rglob("*.tmp")]
    finally:
        subprocess.run(["umount", str(state)], check=False)
    assert cp.returncode == 4 and cp.stdout.strip() == "/dockcache/npm"
    assert "Traceback" not in cp.stderr and cp.stderr.count("dockcache:") == 1 and leftovers == []


def test_project_scope_isolates_projects(shim_env, engines, tmp_path):
    env = {**shim_env, "DOCKCACHE_SCOPE": "project"}
    a_proj, b_proj = tmp_path / "a", tmp_path / "b"
    for p in (a_proj, b_proj):
        p.mkdir()
        write_json(p / "package.json", {"name": p.name, "version": "1.0.0"})
    cp = shim(env, "run", "--rm", "--network", "none", "-v", f"{a_proj}:/app", BUSYBOX, "sh", "-c",
              "echo secret-of-a > $npm_config_cache/marker")
    assert cp.returncode == 0, cp.stderr
    cp = shim(env, "run", "--rm", "--network", "none", "-v", f"{b_proj}:/app", BUSYBOX, "sh", "-c",
              "ls -A $npm_config_cache; cat $npm_config_cache/marker 2>/dev/null || echo none")
    assert cp.returncode == 0 and cp.stdout.strip() == "none"
    names = [v for v in engines["a"].volumes() if v.startswith(engines["a"].prefix + "-npm-p")]
    assert len(names) == 2 and not any("/" in n or "tmp" in n for n in names)
