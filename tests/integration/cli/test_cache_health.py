"""Health and size limits on a real engine: `cache verify` finds and repairs a corrupted
npm cache, `run.max_size` makes `cache prune` remove least recently used caches (never one
in use), a run with limits starts a detached prune, and a nearly full disk gets no new caches.
"""

import base64
import json
import subprocess
import sys
import time

import jsonschema
import pytest

from tests.integration.helpers import BUSYBOX, DEVTOOLS, GOTOOLS, REPO, ok, shim, volume_files, write_json

pytestmark = pytest.mark.engine
DEPS = {"is-number": "7.0.0", "left-pad": "1.3.0"}
CI = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"


def dockcache(env, *args, extra=None):
    for _ in range(6):
        cp = subprocess.run([sys.executable, "-m", "shim", *args], env={**env, **(extra or {})},
                            capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, timeout=600)
        # `docker system df` fails while another test's container or image is half removed (shared daemons)
        if "engine not reachable: Error response from daemon" not in cp.stderr:
            return cp
        time.sleep(1)
    return cp


def in_project(proj, cmd, network="none", image=DEVTOOLS):
    return ["run", "--rm", "--network", network, "-v", f"{proj}:/app", "-w", "/app", image, "sh", "-c", cmd]


def content_path(proj, package):
    """Where cacache keeps a package's tarball: content-v2/sha512/<hex digest split 2/2/rest>."""
    lock = json.loads((proj / "package-lock.json").read_text())
    integrity = lock["packages"][f"node_modules/{package}"]["integrity"]
    digest = base64.b64decode(integrity.split("-", 1)[1]).hex()
    return f"_cacache/content-v2/sha512/{digest[:2]}/{digest[2:4]}/{digest[4:]}"


def test_verify_reports_a_truncated_npm_tarball_and_repair_fixes_it(shim_env, engines, tmp_path):
    a = engines["a"]
    volume = f"{a.prefix}-npm"
    proj = tmp_path / "app"
    proj.mkdir()
    write_json(proj / "package.json", {"name": "app", "version": "1.0.0", "dependencies": DEPS})
    proj.chmod(0o777)
    ok(shim(shim_env, *in_project(proj, "npm install --no-audit --no-fund", network="host")))
    (proj / "node_modules").chmod(0o777)
    ok(shim(shim_env, *in_project(proj, CI)))  # the warm cache installs offline
    clean = json.loads(ok(dockcache(shim_env, "cache", "verify", "--npm", "--json")).stdout)
    assert [(c["name"], c["status"]) for c in clean["caches"]] == [(volume, "ok")] and clean["caches"][0]["checked"] > 0
    files = volume_files(a, volume, "_cacache/content-v2")

    broken = content_path(proj, "left-pad")
    truncate(a, volume, broken)
    found = dockcache(shim_env, "cache", "verify", "--npm", "--json")
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    jsonschema.validate(report, json.loads((REPO / "docs/cache-verify.schema.json").read_text()))
    assert report["healthy"] is False and report["caches"][0]["status"] == "broken"
    assert broken in [b["path"] for b in report["caches"][0]["broken"]]
    assert "checksum mismatch (100 bytes)" in dockcache(shim_env, "cache", "verify").stdout

    repaired = json.loads(ok(dockcache(shim_env, "cache", "verify", "--npm", "--repair", "--json")).stdout)
    entry = repaired["caches"][0]
    jsonschema.validate(repaired, json.loads((REPO / "docs/cache-verify.schema.json").read_text()))
    assert entry["status"] == "repaired" and repaired["healthy"] is True and broken in entry["repaired"]
    assert any("npm cache verify" in ln or "Index entries" in ln for ln in entry["tool_output"])
    # npm cache verify removed the bytes; the index key named the tarball's URL, and
    # `npm cache add` put it back: the repaired cache installs offline again, nothing else fetched.
    assert [u.rsplit("/", 1)[-1] for u in entry["refetched"]] == ["left-pad-1.3.0.tgz"], entry
    assert entry["reason"] == ""
    again = json.loads(ok(dockcache(shim_env, "cache", "verify", "--npm", "--json")).stdout)
    assert again["caches"][0]["status"] == "ok"
    assert volume_files(a, volume, "_cacache/content-v2") == files
    assert "added 2 packages" in ok(shim(shim_env, *in_project(proj, CI))).stdout

    # Control: the same repair without the re-fetch leaves a healthy cache that cannot install
    # offline (the gap the re-fetch closes); it says the next online install fetches it again.
    truncate(a, volume, broken)
    bare = json.loads(ok(dockcache(shim_env, "cache", "verify", "--npm", "--repair", "--no-refetch", "--json")).stdout)
    entry = bare["caches"][0]
    assert (entry["status"], entry["refetched"]) == ("repaired", []) and "next online install" in entry["reason"]
    assert volume_files(a, volume, "_cacache/content-v2") == files - 1  # only the broken entry went
    failed = shim(shim_env, *in_project(proj, CI))
    assert failed.returncode != 0 and "ENOTCACHED" in failed.stderr + failed.stdout

    # Control: the corruption itself breaks an offline install (npm then drops the entry itself).
    ok(shim(shim_env, *in_project(proj, "npm ci --no-audit --no-fund", network="host")))
    assert volume_files(a, volume, "_cacache/content-v2") == files
    truncate(a, volume, broken)
    failed = shim(shim_env, *in_project(proj, CI))
    assert failed.returncode != 0 and "corrupted" in failed.stderr + failed.stdout


GO_MOD = "github.com/BurntSushi/toml"  # upper case: the cache spells it !burnt!sushi
GO_ZIP = "mod/cache/download/github.com/!burnt!sushi/toml/@v/v1.3.2.zip"
GO_OFFLINE = "GOPROXY=off GOFLAGS=-mod=mod go mod download -x 2>&1"


def test_verify_repair_fetches_a_broken_go_module_zip_back(shim_env, engines, tmp_path):
    """`go mod download` offline needs the module zips (a build can live on the extracted tree)."""
    a = engines["a"]
    proj = tmp_path / "app"
    proj.mkdir()
    (proj / "go.mod").write_text(f"module app\n\ngo 1.19\n\nrequire {GO_MOD} v1.3.2\n")
    ok(shim(shim_env, *in_project(proj, "GOFLAGS=-mod=mod go mod download", network="host", image=GOTOOLS)))
    ok(shim(shim_env, *in_project(proj, GO_OFFLINE, image=GOTOOLS)))
    truncate(a, f"{a.prefix}-go", GO_ZIP)
    found = json.loads(dockcache(shim_env, "cache", "verify", "--go", "--json").stdout)
    assert [b["path"] for b in found["caches"][0]["broken"]] == [GO_ZIP]

    repaired = json.loads(ok(dockcache(shim_env, "cache", "verify", "--go", "--repair", "--json")).stdout)
    entry = repaired["caches"][0]
    jsonschema.validate(repaired, json.loads((REPO / "docs/cache-verify.schema.json").read_text()))
    assert (entry["status"], entry["repaired"], entry["refetched"], entry["reason"]) == \
        ("repaired", [GO_ZIP], [f"{GO_MOD}@v1.3.2"], ""), entry
    ok(shim(shim_env, *in_project(proj, GO_OFFLINE, image=GOTOOLS)))

    # Control: removed without the re-fetch, the offline download fails.
    truncate(a, f"{a.prefix}-go", GO_ZIP)
    bare = json.loads(ok(dockcache(shim_env, "cache", "verify", "--go", "--repair", "--no-refetch", "--json")).stdout)
    assert (bare["caches"][0]["status"], bare["caches"][0]["refetched"]) == ("repaired", [])
    failed = shim(shim_env, *in_project(proj, GO_OFFLINE, image=GOTOOLS))
    assert failed.returncode != 0 and "disabled by GOPROXY=off" in failed.stdout, failed.stdout


def truncate(engine, volume, path):
    engine.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/c", BUSYBOX, "sh", "-c",
                  f"head -c 100 /c/{path} > /tmp/t && cat /tmp/t > /c/{path}")


def fill(env, proj, manager_cmd, var, kib):
    """One cache of a known size, made by a run the shim sees as that manager's."""
    cmd = f'head -c {kib * 1024} /dev/zero > "${var}/blob" && {manager_cmd} >/dev/null'
    ok(shim(env, *in_project(proj, cmd)))
    time.sleep(1.1)  # distinct "last used" times


def test_max_size_prune_removes_least_recently_used_and_never_one_in_use(shim_env, engines, tmp_path):
    a, prefix = engines["a"], engines["a"].prefix
    proj = tmp_path / "app"
    proj.mkdir()
    fill(shim_env, proj, "npm --version", "npm_config_cache", 300)  # oldest
    fill(shim_env, proj, "pip --version", "PIP_CACHE_DIR", 200)
    fill(shim_env, proj, "yarn --version", "YARN_CACHE_FOLDER", 100)  # newest
    holder = a.docker("run", "-d", "--label", a.label, "--network", "none", "-v", f"{prefix}-pip:/c",
                      BUSYBOX, "sleep", "120").stdout.strip()
    try:
        cp = ok(dockcache(shim_env, "cache", "prune", "--json", extra={"DOCKCACHE_MAX_SIZE": "250KiB"}))
    finally:
        a.docker("rm", "-f", holder, check=False)
    limits = json.loads(cp.stdout)["run_limits"]
    assert [r["name"] for r in limits["removed"]] == [f"{prefix}-npm", f"{prefix}-yarn"]  # pip is in use
    assert all(r["reason"] == "run.max_size" for r in limits["removed"])
    assert limits["freed_bytes"] >= 400 * 1024 and limits["size_after"] <= 250 * 1024
    assert not limits["still_over"]
    assert sorted(a.volumes()) == [f"{prefix}-pip"]
    human = ok(dockcache(shim_env, "cache", "prune", extra={"DOCKCACHE_MAX_SIZE": "1KiB"})).stdout
    assert f"removed {prefix}-pip" in human and "least recently used" in human and a.volumes() == []


def test_a_per_manager_limit_trims_only_that_manager(shim_env, engines, tmp_path):
    a, prefix = engines["a"], engines["a"].prefix
    proj = tmp_path / "app"
    proj.mkdir()
    fill(shim_env, proj, "npm --version", "npm_config_cache", 300)
    fill(shim_env, proj, "pip --version", "PIP_CACHE_DIR", 100)
    cfg = tmp_path / "limits.toml"
    cfg.write_text('[managers.npm]\nmax_size = "100KiB"\n[managers.pip]\nmax_size = "1MiB"\n')
    cp = ok(dockcache(shim_env, "cache", "prune", "--json", extra={"DOCKCACHE_CONFIG": str(cfg)}))
    limits = json.loads(cp.stdout)["run_limits"]
    assert [(r["name"], r["reason"]) for r in limits["removed"]] == [(f"{prefix}-npm", "managers.npm.max_size")]
    assert sorted(a.volumes()) == [f"{prefix}-pip"]


def test_a_run_over_the_limit_starts_a_detached_prune_that_spares_recent_caches(shim_env, engines, tmp_path):
    a, prefix = engines["a"], engines["a"].prefix
    proj = tmp_path / "app"
    proj.mkdir()
    fill(shim_env, proj, "npm --version", "npm_config_cache", 200)
    env = {**shim_env, "DOCKCACHE_MAX_SIZE": "100KiB"}
    started = time.monotonic()
    ok(shim(env, *in_project(proj, "pip --version")))  # over the limit: a detached prune starts
    assert time.monotonic() - started < 30
    audit = tmp_path / "state" / "audit.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and '"autoprune"' not in (audit.read_text() if audit.exists() else ""):
        time.sleep(1)
    record = next(json.loads(ln) for ln in audit.read_text().splitlines() if '"autoprune"' in ln)
    # Both caches were used minutes ago: the background prune never takes a cache being used.
    assert record["removed"] == [] and record["still_over"] is True and "error" not in record
    assert f"{prefix}-npm" in a.volumes()


def test_nearly_full_disk_gets_no_new_caches_and_says_so_once(shim_env, engines, tmp_path):
    a, prefix = engines["a"], engines["a"].prefix
    proj = tmp_path / "app"
    proj.mkdir()
    ok(shim(shim_env, *in_project(proj, "npm --version")))
    full = {**shim_env, "DOCKCACHE_MIN_FREE_PERCENT": "100"}  # every filesystem is "nearly full"
    first = ok(shim(full, *in_project(proj, "echo npm=$npm_config_cache pip=$PIP_CACHE_DIR; npm --version; pip --version")))
    assert first.stderr.count("disk nearly full") == 1 and "no new caches" in first.stderr
    assert "npm=/dockcache/npm pip=\n" in first.stdout  # the existing cache is still used
    assert f"{prefix}-pip" not in a.volumes()
    second = ok(shim(full, *in_project(proj, "pip --version && true")))
    assert "disk nearly full" not in second.stderr  # said once
