"""The CLI's edge: usage errors exit 2 in docker's style, config errors are one line,
--json errors are JSON, every option says what it does, and nothing prints a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

MATRIX = [  # (argv, expected exit code)
    (["--bogus"], 2),
    (["cache", "--bogus"], 2),
    (["cache", "clear", "--nope"], 2),
    (["cache", "prune", "--max-size", "3x"], 2),
    (["cache", "prune", "--backend", "s3"], 2),
    (["metrics", "show", "--since", "soon"], 2),
    (["nosuchcommand"], 2),
    (["explain", "--", "docker", "run", "alpine", "npm", "ci"], 1),  # broken config below
    (["explain", "--json", "--", "docker", "build", "."], 1),
    (["config", "show"], 1),
    (["cache", "clear", "--npm", "--dry-run", "--json"], 1),
]


@pytest.fixture
def broken_project(tmp_path):
    (tmp_path / ".dockcache.toml").write_text("[run\nmode = 1\n")
    return tmp_path


def dockcache(args, cwd, home):
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{home}/no.sock",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "shim", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("args,code", MATRIX, ids=[" ".join(a) for a, _ in MATRIX])
def test_errors_are_one_line_with_the_right_exit_code(args, code, broken_project, private_home):
    cp = dockcache(args, broken_project, private_home)
    assert "Traceback" not in cp.stdout + cp.stderr
    assert cp.returncode == code, cp.stderr
    assert cp.stderr.startswith("dockcache: ")
    if code == 2:
        assert "See 'dockcache " in cp.stderr or "managers:" in cp.stderr or "must be" in cp.stderr
    if "--json" in args:
        assert json.loads(cp.stdout)["exit_code"] == code


def test_every_option_has_a_help_line():
    import typer.main

    from shim.cli.app import app

    def walk(cmd, path):
        for param in getattr(cmd, "params", []):
            if param.param_type_name == "option" and "--help" not in param.opts:
                yield f"{path} {param.opts[0]}", getattr(param, "help", None)
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    missing = [opt for opt, text in walk(typer.main.get_command(app), "dockcache") if not text]
    assert missing == []


def test_clear_lists_every_manager_flag_in_its_help(private_home, tmp_path):
    from shim.core.managers import BY_NAME

    cp = dockcache(["cache", "clear", "--help"], tmp_path, private_home)
    text = " ".join(cp.stdout.split())
    assert cp.returncode == 0 and all(f"--{name}" in text for name in BY_NAME)


def test_list_and_stats_show_the_host_side_store_without_an_engine(private_home, tmp_path):
    from tests.unit.build.test_cachestore import BASE, export
    from shim.build.store.cachestore import CacheStore

    store = CacheStore(tmp_path / "store")
    store.publish(export(store, "app", BASE, b"x"), "app")
    env_extra = {"DOCKCACHE_BUILD_STORE": str(tmp_path / "store")}
    for args in (["cache", "list", "--json"], ["cache", "stats", "--json"]):
        env = {"HOME": str(private_home), "PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/no.sock",
               "PYTHONPATH": str(REPO), **env_extra}
        cp = subprocess.run([sys.executable, "-m", "shim", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
        assert "app" in {r["name"] for r in json.loads(cp.stdout)["caches"]}
        assert cp.stderr.count("dockcache:") == 1 and "volumes not listed" in cp.stderr


def test_stats_count_the_image_bytes_the_host_cache_served(private_home, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "metrics.jsonl").write_text(
        json.dumps({"kind": "images", "pulled": ["a:1", "b:1"], "bytes": 3_000_000, "failed": []}) + "\n"
        + json.dumps({"kind": "images", "pulled": [], "bytes": 0, "failed": [{"image": "c:1", "why": "401"}]}) + "\n")
    env = {"HOME": str(private_home), "PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/no.sock",
           "PYTHONPATH": str(REPO), "DOCKCACHE_STATE_DIR": str(state), "DOCKCACHE_BUILD_STORE": str(tmp_path / "s")}
    got = [subprocess.run([sys.executable, "-m", "shim", "cache", "stats", *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True) for extra in (["--json"], [])]
    assert json.loads(got[0].stdout)["images"] == {"pulled": 2, "bytes": 3_000_000, "fell_back": 1}
    assert "images: 2 pulled through the host's image cache" in got[1].stdout
