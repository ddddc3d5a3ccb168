"""`dockcache` management commands against real caches on a real engine."""

import json
import subprocess

import jsonschema
import pytest

from tests.integration.helpers import (AS_UID_1000, BUSYBOX, DEVTOOLS, REPO, dockcache, host_user_1000, launcher_1000,
                                      shim, write_json)

pytestmark = pytest.mark.engine


def mine(rows, prefix):
    return {r["name"]: r for r in rows if r["name"].startswith(prefix)}


@pytest.fixture
def warm(shim_env, engines, tmp_path):
    """One real npm and one real pip run through the shim."""
    proj = tmp_path / "app"
    proj.mkdir()
    write_json(proj / "package.json", {"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}})
    (proj / "requirements.txt").write_text("docopt==0.6.2\n")  # an sdist: pip caches the wheel it builds
    cmd = ("npm install --no-audit --no-fund && "
           "pip install -q --break-system-packages --root-user-action=ignore -r requirements.txt")
    cp = shim(shim_env, "run", "--rm", "--network", "host", "-v", f"{proj}:/app", "-w", "/app", DEVTOOLS, "sh", "-c", cmd)
    assert cp.returncode == 0, cp.stderr
    return proj


def test_list_and_stats_show_real_caches(shim_env, engines, warm):
    prefix = engines["a"].prefix
    listed = dockcache(shim_env, "cache", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = mine(json.loads(listed.stdout)["caches"], prefix)
    for name in (f"{prefix}-npm", f"{prefix}-pip"):
        assert rows[name]["exists"] and rows[name]["size"] > 0
        assert rows[name]["last_used"].endswith("+00:00")  # ISO 8601 UTC, recorded on mount
    assert rows[f"{prefix}-cargo"]["exists"] is False  # "(not created)" row
    jsonschema.validate(json.loads(listed.stdout), json.loads((REPO / "docs/cache-list.schema.json").read_text()))
    stats = json.loads(dockcache(shim_env, "cache", "stats", "--json").stdout)
    jsonschema.validate(stats, json.loads((REPO / "docs/cache-stats.schema.json").read_text()))
    assert stats["totals"]["size"] >= rows[f"{prefix}-npm"]["size"]
    assert stats["build"]["observed_cached_steps"] is None  # never claims what it did not see
    human = dockcache(shim_env, "cache", "list").stdout
    assert "(not created)" in human and "KiB" in human


def test_clear_npm_only_and_in_use_volume_is_kept(shim_env, engines, warm):
    a, prefix = engines["a"], engines["a"].prefix
    refused = dockcache(shim_env, "cache", "clear", "--npm")
    assert refused.returncode == 1 and "--force" in refused.stderr
    holder = a.docker("run", "-d", "--label", a.label, "--network", "none", "-v", f"{prefix}-npm:/c",
                      BUSYBOX, "sleep", "60").stdout.strip()
    cp = dockcache(shim_env, "cache", "clear", "--npm", "--force")
    assert cp.returncode == 0 and "in use by" in cp.stdout
    assert f"{prefix}-npm" in a.volumes()
    a.docker("rm", "-f", holder)
    cp = dockcache(shim_env, "cache", "clear", "--npm", "--force", "--json")
    assert f"{prefix}-npm" in json.loads(cp.stdout)["removed"]
    assert f"{prefix}-npm" not in a.volumes() and f"{prefix}-pip" in a.volumes()
    shim(shim_env, "run", "--rm", "--network", "host", "-v", f"{warm}:/app", "-w", "/app", DEVTOOLS,
         "npm", "install", "--no-audit", "--no-fund")
    assert f"{prefix}-npm" in a.volumes()  # the next use recreates it
    audit = (shim_env["DOCKCACHE_STATE_DIR"] + "/audit.jsonl")
    assert '"action":"clear"' in open(audit).read()


def test_doctor_old_engine_and_no_engine(shim_env, engines):
    old = dockcache(shim_env, "doctor", "--json", extra={"DOCKER_HOST": engines["old"].host})
    checks = {c["check"]: c for c in json.loads(old.stdout)["checks"]}
    assert checks["build caching"]["value"].startswith("import-only")
    gone = dockcache(shim_env, "doctor", extra={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert gone.returncode == 1 and "Traceback" not in gone.stderr + gone.stdout
    assert "engine not reachable" in gone.stdout


def test_explain_shows_detection_and_argv(shim_env, engines, warm):
    cp = dockcache(shim_env, "explain", "--json", "--", "docker", "run", "-v", f"{warm}:/app", "-w", "/app",
                   DEVTOOLS, "npm", "ci")
    data = json.loads(cp.stdout)
    assert any("npm" in d for d in data["detected"])
    assert "npm_config_cache=/dockcache/npm" in data["argv"]


def test_explain_build_shows_key_and_decision(shim_env, engines, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM dockcache-test/busybox\n")
    cp = dockcache(shim_env, "explain", "--json", "--", "docker", "build", "-t", "reg.example:5000/org/app:feat",
                   str(tmp_path))
    data = json.loads(cp.stdout)
    assert data["key"] == "org-app" and data["engine"] == "full" and data["export"] is True
    old = json.loads(dockcache(shim_env, "explain", "--json", "--", "docker", "build", str(tmp_path),
                               extra={"DOCKER_HOST": engines["old"].host}).stdout)
    assert old["engine"] == "import-only" and old["export"] is False
    assert any("cannot export" in r for r in old["reasons"])


def test_bind_mode_dirs_are_listed_measured_and_cleared(shim_env, engines, tmp_path):
    root = tmp_path / "bindroot"
    env = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(root)}
    proj = tmp_path / "app"
    proj.mkdir()
    write_json(proj / "package.json", {"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}})
    cp = shim(env, "run", "--rm", "--network", "host", "-v", f"{proj}:/app", "-w", "/app", DEVTOOLS,
              "sh", "-c", "npm install --no-audit --no-fund")
    assert cp.returncode == 0, cp.stderr
    listed = json.loads(dockcache(env, "cache", "list", "--json").stdout)
    jsonschema.validate(listed, json.loads((REPO / "docs/cache-list.schema.json").read_text()))
    row = next(r for r in listed["caches"] if r["kind"] == "bind")
    on_disk = sum(p.stat().st_size for p in (root / f"{engines['a'].prefix}-npm").rglob("*") if p.is_file())
    assert row["manager"] == "npm" and row["size"] == on_disk > 0 and row["uses"] == 1
    assert not any(r["kind"] == "volume" and not r["exists"] for r in listed["caches"])  # no volume rows in bind mode
    cleared = dockcache(env, "cache", "clear", "--npm", "--force", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["removed"] == [row["name"]] and not (root / f"{engines['a'].prefix}-npm").exists()


def test_bind_mode_root_container_files_stay_clearable_by_a_non_root_host_user(shim_env, engines):
    """The host user is uid 1000 (with access to daemon A's socket); the container runs as root."""
    a = engines["a"]
    as_user = AS_UID_1000
    with host_user_1000(a, "dc-nonroot-") as base:
        write_json(base / "app" / "package.json", {"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}})
        env = {"PATH": f"{REPO / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(base / "home"),
               "DOCKER_HOST": a.host, "DOCKCACHE_STATE_DIR": str(base / "state"), "DOCKCACHE_PYTHON": "/usr/bin/python3",
               "DOCKCACHE_VOLUME_PREFIX": a.prefix, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(base / "bind")}
        cp = subprocess.run([*as_user, str(launcher_1000(base)), "run", "--rm", "--network", "host",
                             "-v", f"{base / 'app'}:/app", "-w", "/app", DEVTOOLS, "sh", "-c",
                             "npm install --no-audit --no-fund"], env=env, capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr
        cache = base / "bind" / f"{a.prefix}-npm"
        written = [p for p in cache.rglob("*") if p.is_file()]
        assert written and all(p.stat().st_uid == 0 for p in written)  # root in the container wrote them
        rm = subprocess.run([*as_user, "rm", "-rf", str(cache)], capture_output=True, text=True)
        assert rm.returncode == 0 and not cache.exists(), rm.stderr  # and the host user can still clear them
        ci = [*cp.args[:-1], "npm ci --no-audit --no-fund"]  # leaves package-lock.json (a plan input) alone
        for _ in range(2):  # the first re-plans (package-lock.json appeared), the second is a remembered plan
            again = subprocess.run(ci, env=env, capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, again.stderr
            assert cache.stat().st_uid == 1000  # re-made by dockcache, not by docker as root
            subprocess.run([*as_user, "rm", "-rf", str(cache)], check=True)


def test_doctor_takes_dockers_host_and_context_options(shim_env, engines):
    env = {k: v for k, v in shim_env.items() if k != "DOCKER_HOST"}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # the option must win over it, as in docker
    for opts in (["-H", engines["b"].host], ["--host", engines["b"].host]):
        cp = dockcache(env, "doctor", "--json", *opts)
        checks = json.loads(cp.stdout)["checks"]
        engine = next(c for c in checks if c["check"] == "engine")
        assert engine["ok"] and "Traceback" not in cp.stderr, cp.stdout


def test_management_touches_only_this_installations_caches(shim_env, engines):
    """Two installations on one daemon (another prefix: another user's or team's setup):
    clear --all and list see only their own volumes; --all-installations reaches both."""
    a = engines["a"]
    mine_env = {**shim_env, "DOCKER_HOST": a.host}
    other_env = {**mine_env, "DOCKCACHE_VOLUME_PREFIX": a.prefix + "other",
                 "DOCKCACHE_STATE_DIR": shim_env["DOCKCACHE_STATE_DIR"] + "-other"}
    for env in (mine_env, other_env):
        cp = shim(env, "run", "--rm", "--network", "none", DEVTOOLS, "sh", "-c", "npm --version")
        assert cp.returncode == 0, cp.stderr
    mine_vol, other_vol = f"{a.prefix}-npm", f"{a.prefix}other-npm"
    assert {mine_vol, other_vol} <= set(a.volumes())
    listed = {r["name"] for r in json.loads(dockcache(mine_env, "cache", "list", "--json").stdout)["caches"]}
    assert mine_vol in listed and other_vol not in listed
    everyone = dockcache(mine_env, "cache", "list", "--json", "--all-installations")
    assert other_vol in {r["name"] for r in json.loads(everyone.stdout)["caches"]}
    cp = dockcache(mine_env, "cache", "clear", "--all", "--force")
    assert cp.returncode == 0, cp.stderr
    left = set(a.volumes())
    assert mine_vol not in left and other_vol in left


def test_prune_keeps_a_cache_another_session_uses_and_removes_an_untouched_one(shim_env, engines, tmp_path):
    """No metrics log here knows of either dir: the tools' own writes are the evidence."""
    import os
    import time

    root = tmp_path / "bind"
    env = {**shim_env, "DOCKER_HOST": engines["a"].host, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(root)}
    prefix = shim_env["DOCKCACHE_VOLUME_PREFIX"]
    used, stale = root / f"{prefix}-npm", root / f"{prefix}-pip"
    for d in (used, stale):
        (d / "content").mkdir(parents=True)
        (d / "content" / "f").write_text("x")
    old = time.time() - 3 * 86400
    for p in (stale / "content" / "f", stale / "content", stale, used / "content" / "f", used):
        os.utime(p, (old, old))
    # another session's npm just wrote its index entry:
    (used / "content" / "new").write_text("y")
    cp = dockcache(env, "cache", "prune", "--older-than", "1d", "--json")
    assert cp.returncode == 0, cp.stderr
    assert used.exists() and not stale.exists(), cp.stdout
