"""`cache stats` reports what the caches' own files show, after real runs on the engine:
packages, misses for a cold run, hits and no misses for a warm one, savings with its basis."""

import json
import subprocess
import sys

import jsonschema
import pytest

from tests.integration.helpers import DEVTOOLS, REPO, shim, write_json

pytestmark = pytest.mark.engine
DEPS = {"is-number": "7.0.0", "left-pad": "1.3.0"}


def stats(env):
    cp = subprocess.run([sys.executable, "-m", "shim", "cache", "stats", "--json"], env=env, capture_output=True,
                        text=True, cwd=REPO, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    data = json.loads(cp.stdout)
    jsonschema.validate(data, json.loads((REPO / "docs/cache-stats.schema.json").read_text()))
    return {r["manager"]: r for r in data["caches"] if r["kind"] in ("volume", "bind")}, data


def run(env, proj, cmd, network):
    cp = shim(env, "run", "--rm", "--network", network, "-v", f"{proj}:/app", "-w", "/app", DEVTOOLS, "sh", "-c", cmd)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


@pytest.mark.parametrize("mode", ["volume", "bind"])
def test_stats_show_packages_misses_then_hits_from_the_caches_files(shim_env, engines, tmp_path, mode):
    env = {**shim_env, "DOCKCACHE_MODE": mode, "DOCKCACHE_BIND_ROOT": str(tmp_path / "bind")}
    node, py = tmp_path / "node", tmp_path / "py"  # one manager each: a run's window is its cache's
    for d in (node, py):
        d.mkdir()
        d.chmod(0o777)
    write_json(node / "package.json", {"name": "x", "version": "1.0.0", "dependencies": DEPS})
    (py / "requirements.txt").write_text("docopt==0.6.2\n")
    pip = "pip install --break-system-packages --root-user-action=ignore -r requirements.txt"
    run(env, node, "npm install --no-audit --no-fund", "host")
    run(env, py, pip, "host")
    cold, _ = stats(env)
    for manager in ("npm", "pip"):
        ev = cold[manager]["evidence"]
        assert cold[manager]["entries"] > 0 and ev["last_run"]["misses"] > 0, (manager, ev)
        assert ev["downloaded_bytes"] > 0
    run(env, node, "rm -rf node_modules && npm ci --offline --no-audit --no-fund", "none")
    run(env, py, pip, "host")  # a fresh container: installs again, from the cache
    warm, data = stats(env)
    for manager in ("npm", "pip"):
        ev = warm[manager]["evidence"]
        assert ev["last_run"] == {"hits": ev["last_run"]["hits"], "misses": 0} and ev["last_run"]["hits"] > 0, \
            (manager, ev)
        assert ev["savings"]["bytes"] > 0 and ev["savings"]["estimate"] and "lower bound" in ev["savings"]["basis"]
        assert warm[manager]["uses"] == 2
    assert data["totals"]["entries"] >= warm["npm"]["entries"] + warm["pip"]["entries"]
    human = subprocess.run([sys.executable, "-m", "shim", "cache", "stats"], env=env, capture_output=True,
                           text=True, cwd=REPO).stdout
    assert "HIT RATE" in human and "estimated savings" in human
    days = json.loads(subprocess.run([sys.executable, "-m", "shim", "metrics", "show", "--since", "7d", "--json"],
                                     env=env, capture_output=True, text=True, cwd=REPO).stdout)["days"]
    assert days and days[-1]["saved_bytes"] > 0 and days[-1]["downloaded_bytes"] > 0


def test_build_store_size_counts_shared_blobs_once_and_compose_builds_count_as_uses(shim_env, engines, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {DEVTOOLS}\nRUN echo one > /one\n")
    a = engines["a"]
    for tag in ("one", "two"):  # two keys over the same base layers
        image = f"{a.prefix}/stats-{tag}:1"
        a.images.append(image)
        cp = shim(shim_env, "build", "--network", "none", "-t", image, str(ctx))
        assert cp.returncode == 0, cp.stderr
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "compose.yaml").write_text(f"name: {a.prefix}st\nservices:\n  svc:\n"
                                        f"    build: {{context: {ctx}, network: none}}\n")
    a.images.append(f"{a.prefix}st-svc")
    for _ in range(2):  # the second imports what the first published
        cp = subprocess.run([str(REPO / "bin" / "docker"), "compose", "build"], env=shim_env, cwd=stack,
                            capture_output=True, text=True, timeout=600)
        assert cp.returncode == 0, cp.stderr
    _, data = stats(shim_env)
    keys = {r["name"]: r for r in data["caches"] if r["kind"] == "build-key"}
    assert len(keys) == 3 and keys[f"{a.prefix}st-svc"]["uses"] == 2  # compose's uses count too
    assert data["totals"]["build_store_size"] < sum(k["size"] for k in keys.values())  # shared blobs once
    assert data["build"]["builds"] == 2 and data["build"]["compose_runs"] == 2


def test_ccache_compiled_twice_shows_the_tools_own_hit_counters(shim_env, engines, tmp_path):
    ctools = "dockcache-test/ctools:latest"  # tests/engine/provision.sh: gcc + ccache
    proj = tmp_path / "c"
    proj.mkdir()
    (proj / "hello.c").write_text("int main(void) { return 0; }\n")
    compile_ = ["run", "--rm", "--network", "none", "-v", f"{proj}:/src", "-w", "/src", ctools,
                "sh", "-c", "ccache gcc -c hello.c -o /tmp/hello.o"]
    for _ in range(2):
        cp = shim(shim_env, *compile_)
        assert cp.returncode == 0, cp.stderr
    by_manager, _ = stats(shim_env)
    counters = by_manager["ccache"]["tool_counters"]
    assert counters["hits"] >= 1 and counters["misses"] >= 1 and counters["source"].startswith("ccache --print-stats")
