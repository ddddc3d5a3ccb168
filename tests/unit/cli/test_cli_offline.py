"""Management commands that need no engine: metrics, prune of the build store, config."""

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def cli(tmp_path, *args):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "DOCKCACHE_STATE_DIR": str(tmp_path / "state"),
           "DOCKCACHE_BUILD_STORE": str(tmp_path / "store"), "DOCKCACHE_REAL_DOCKER": "/bin/false"}
    return subprocess.run([sys.executable, "-m", "shim", *args], env=env, cwd=REPO, capture_output=True, text=True)


def test_metrics_show_counts_what_was_logged(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    now = time.time()
    recs = [{"ts": now - 10 * 86400, "kind": "run", "caches": ["dockcache-npm"], "ms": 5},
            {"ts": now - 60, "kind": "run", "caches": ["dockcache-npm", "dockcache-pip"], "ms": 7},
            {"ts": now - 30, "kind": "build", "key": "app", "imports": ["app"], "export": True, "rc": 0, "ms": 900},
            {"ts": now - 20, "kind": "build", "key": "app", "imports": [], "export": False, "rc": None, "ms": 4,
             "as_typed": True}]
    (state / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + "not json\n")
    data = json.loads(cli(tmp_path, "metrics", "show", "--json").stdout)
    assert data["commands"] == {"run": 2, "build": 2}
    assert data["caches_mounted"] == {"dockcache-npm": 2, "dockcache-pip": 1}
    assert data["builds"]["with_import"] == 1 and data["builds"]["published"] == 1
    assert data["builds"]["as_typed"] == 1 and data["builds"]["failed"] == 0  # a build docker ran as typed
    recent = json.loads(cli(tmp_path, "metrics", "show", "--since", "1d", "--json").stdout)
    assert recent["commands"] == {"run": 1, "build": 2}
    human = cli(tmp_path, "metrics", "show").stdout
    assert "KIND" in human and "1 ran as typed" in human


def test_prune_on_empty_store_and_bad_duration(tmp_path):
    cp = cli(tmp_path, "cache", "prune", "--max-size", "1G", "--json")
    assert cp.returncode == 0 and json.loads(cp.stdout)["build"]["removed_keys"] == []
    bad = cli(tmp_path, "cache", "prune", "--older-than", "soon")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_config_init_then_show(tmp_path):
    assert cli(tmp_path, "config", "init").returncode == 0
    again = cli(tmp_path, "config", "init")
    assert again.returncode == 1 and "--force" in again.stderr
    shown = json.loads(cli(tmp_path, "config", "show", "--json").stdout)
    cfg = str(tmp_path / ".config" / "dockcache" / "config.toml")
    assert shown["files"] == [cfg] and shown["settings"]["run.mode"] == {"value": "auto", "source": cfg}


def test_clear_without_selection_is_an_error(tmp_path):
    cp = cli(tmp_path, "cache", "clear")
    assert cp.returncode == 1 and cp.stderr.startswith("dockcache: say what to clear")


def test_prune_backends_without_a_registry(tmp_path):
    everything = cli(tmp_path, "cache", "prune", "--backend", "all", "--json")
    assert everything.returncode == 0 and "registry" not in json.loads(everything.stdout)  # none configured
    only = cli(tmp_path, "cache", "prune", "--backend", "registry")
    assert only.returncode == 1 and "no build cache registry configured" in only.stderr
    assert only.stderr.count("\n") == 1 and "Traceback" not in only.stderr
    odd = cli(tmp_path, "cache", "prune", "--backend", "s3")
    assert odd.returncode != 0 and "local, registry or all" in odd.stderr
    dry_local = cli(tmp_path, "cache", "prune", "--dry-run")
    assert dry_local.returncode == 1 and "--backend registry" in dry_local.stderr


def test_doctor_counts_the_thin_load_images_and_a_blob_they_share_once(tmp_path):
    root = tmp_path / "store-load"
    for name, own in (("a", b"x" * 3000), ("b", b"y" * 5000)):
        blobs = root / name / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        (root / name / "index.json").write_text("{}")
        (blobs / "own").write_bytes(own)
    (root / "a" / "blobs" / "sha256" / "base").write_bytes(b"z" * 100_000)
    (root / "b" / "blobs" / "sha256" / "base").hardlink_to(root / "a" / "blobs" / "sha256" / "base")
    (root / "half-written").mkdir()  # no index.json: not an image yet
    checks = json.loads(cli(tmp_path, "doctor", "--json").stdout)["checks"]
    line = next(c for c in checks if c["check"] == "shared builder images")
    assert line["value"].startswith(f"{root} (2 of at most 64, ") and "105.5 KiB" in line["value"], line


def test_doctor_flags_a_build_store_or_state_dir_that_cannot_be_written(tmp_path):
    """Builds run without the shared cache there (one line each), and nothing is remembered
    in such a state dir; doctor said ok for both when a file stood where the dir should be."""
    (tmp_path / "store").write_text("a file where the store should be")
    (tmp_path / "state").write_text("a file where the state dir should be")
    cp = cli(tmp_path, "doctor", "--json")
    checks = {c["check"]: c for c in json.loads(cp.stdout)["checks"]}
    line = checks["build store"]
    assert cp.returncode == 1 and not line["ok"] and "is not a directory" in line["problem"], line
    assert "DOCKCACHE_BUILD_STORE" in line["fix"]
    assert not checks["state dir"]["ok"], checks["state dir"]


def test_explain_under_the_kill_switch_says_docker_runs_unchanged(tmp_path):
    """DOCKCACHE_DISABLE=1 makes bin/docker exec the real docker with the argv as typed:
    explain must say that, not the rewrite dockcache would otherwise make."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "package-lock.json").write_text("{}")
    argv = ["docker", "run", "--rm", "-v", f"{tmp_path / 'app'}:/w", "-w", "/w", "node", "npm", "ci"]
    for value in ("1", "true", "On"):
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "DOCKCACHE_STATE_DIR": str(tmp_path / "state"),
               "DOCKCACHE_REAL_DOCKER": "/bin/false", "DOCKCACHE_MODE": "volume", "DOCKCACHE_DISABLE": value}
        cp = subprocess.run([sys.executable, "-m", "shim", "explain", "--json", "--", *argv], env=env, cwd=REPO,
                            capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
        data = json.loads(cp.stdout)
        assert data["argv"] == argv and data["disabled"] is True
        assert "DOCKCACHE_DISABLE" in data["reasons"][0]
    del env["DOCKCACHE_DISABLE"]
    cp = subprocess.run([sys.executable, "-m", "shim", "explain", "--json", "--", *argv], env=env, cwd=REPO,
                        capture_output=True, text=True)
    assert any("npm_config_cache" in a for a in json.loads(cp.stdout)["argv"])  # the control: rewritten


def test_version_names_the_version_and_the_code_that_answers(tmp_path):
    import shim

    cp = cli(tmp_path, "--version")
    assert cp.returncode == 0 and cp.stdout.startswith(f"dockcache {shim.__version__} (python ")
    assert str(REPO) in cp.stdout


def test_the_package_and_the_code_carry_one_version():
    import tomllib

    import shim

    with open(REPO / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["version"] == shim.__version__


def test_every_problem_and_warning_doctor_reports_comes_with_its_fix(tmp_path):
    """doctor is the page a confused user is sent to first: nothing it flags may leave them
    without the next step (a bad DOCKCACHE_REAL_DOCKER, no engine, an unwritable store, a
    mirror and a shared builder that do not answer)."""
    (tmp_path / "store").write_text("a file where the store should be")
    (tmp_path / "config.toml").write_text('[mirrors]\nnpm = "http://127.0.0.1:9/"\n')
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "DOCKCACHE_STATE_DIR": str(tmp_path / "state"),
           "DOCKCACHE_BUILD_STORE": str(tmp_path / "store"), "DOCKCACHE_REAL_DOCKER": str(tmp_path / "nothing"),
           "DOCKCACHE_CONFIG": str(tmp_path / "config.toml"),
           "DOCKCACHE_BUILD_BUILDER": f"unix://{tmp_path}/buildkitd.sock"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "shim", "doctor", *a], env=env, cwd=REPO,  # noqa: E731
                                    capture_output=True, text=True)
    checks = json.loads(run("--json").stdout)["checks"]
    flagged = [c for c in checks if not c["ok"] or c.get("warning")]
    names = {c["check"] for c in flagged}
    assert {"real docker", "engine", "build store", "mirror npm", "shared builder"} <= names, names
    assert all(c["fix"] for c in flagged), [c for c in flagged if not c["fix"]]
    human = run()
    assert human.returncode == 1 and "Traceback" not in human.stderr
    assert human.stdout.count("     fix: ") == len(flagged)
    assert human.stdout.rstrip().splitlines()[-1].startswith(f"{sum(not c['ok'] for c in checks)} problem(s), 1 warning(s)")
