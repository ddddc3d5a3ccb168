"""bin/docker with a fake real docker that records argv and env as JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE = """#!{py}
import json, os, sys
# the environment as exec'd (this fake's own Python may coerce the locale into os.environ)
given = dict(x.split("=", 1) for x in open("/proc/self/environ").read().split("\\0") if "=" in x)
keys = ("npm_", "PIP_", "DOCKCACHE", *given.get("FAKE_ENV_KEYS", "-").split(","))
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "env": {{k: v for k, v in given.items() if k.startswith(keys)}}}}) + "\\n")
if sys.argv[1:3] == ["image", "inspect"]:
    print('["PATH=/usr/bin"]\\t"%s"\\tamd64\\tsha256:abc' % os.environ.get("FAKE_USER", ""))
if " ".join(sys.argv[1:3]) in os.environ.get("FAKE_FAIL", "").split(","):
    sys.exit(1)
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""


@pytest.fixture
def fake(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    docker = real_dir / "docker"
    docker.write_text(FAKE.format(py=sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "log.jsonl"
    env = {"PATH": f"{REPO / 'bin'}:{real_dir}:/usr/bin:/bin", "FAKE_LOG": str(log),
           "HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "state"),
           "DOCKCACHE_PYTHON": sys.executable, "DOCKCACHE_MODE": "volume"}  # auto: test_auto_mode_*

    def call(*argv, extra=None, cwd=None, launcher="docker"):
        e = {**env, **(extra or {})}
        cp = subprocess.run([str(REPO / "bin" / launcher), *argv], env=e, capture_output=True,
                            text=True, cwd=cwd or tmp_path)
        calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return cp, calls
    call.real = str(docker)
    return call


WEIRD = ["run", "--rm", "-e", "A=b c", "img", "sh", "-c", "echo '$x' \"q\"", "", "ümlaut", "--", "-v"]


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_kill_switch_byte_identical(fake, value):
    cp, calls = fake(*WEIRD, extra={"DOCKCACHE_DISABLE": value})
    assert cp.returncode == 0 and [c["argv"] for c in calls] == [WEIRD]


def test_passthrough_is_unchanged_and_no_python_needed(fake):
    cp, calls = fake("ps", "-a", extra={"DOCKCACHE_PYTHON": "/nonexistent/python"})
    assert cp.returncode == 0 and [c["argv"] for c in calls] == [["ps", "-a"]]


def test_exit_code_preserved(fake):
    cp, _ = fake("ps", extra={"FAKE_RC": "42"})
    assert cp.returncode == 42
    cp, _ = fake("run", "img", extra={"FAKE_RC": "7"})
    assert cp.returncode == 7


def test_real_docker_env_wins(fake, tmp_path):
    cp, calls = fake("ps", extra={"DOCKCACHE_REAL_DOCKER": fake.real, "PATH": f"{REPO / 'bin'}:/usr/bin:/bin"})
    assert cp.returncode == 0 and calls[0]["argv"] == ["ps"]


def test_no_real_docker_is_127_not_a_loop(fake, tmp_path):
    other = tmp_path / "other-install"
    other.mkdir()
    os.symlink(REPO / "bin" / "docker", other / "docker")
    cp, calls = fake("ps", extra={"PATH": f"{REPO / 'bin'}:{other}:/nonexistent"})
    assert cp.returncode == 127 and calls == []
    assert cp.stderr.count("\n") == 1 and "no real 'docker'" in cp.stderr


def test_second_install_on_path_is_skipped(fake, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "docker").write_text((REPO / "bin" / "docker").read_text())
    (copy / "docker").chmod(0o755)
    real_dir = os.path.dirname(fake.real)
    cp, calls = fake("ps", extra={"PATH": f"{copy}:{REPO / 'bin'}:{real_dir}"})
    assert cp.returncode == 0 and calls[0]["argv"] == ["ps"]


def test_run_of_npm_project_adds_mount_and_variable(fake, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "package-lock.json").write_text("{}")
    cp, calls = fake("run", "--rm", "-v", f"{proj}:/app", "-w", "/app", "img", "npm", "ci")
    final = calls[-1]["argv"]
    assert "--mount" in final and "npm_config_cache=/dockcache/npm" in final
    assert final[-3:] == ["img", "npm", "ci"]
    # first run: image inspect, the daemon's data root (disk guard, asked once per daemon) and
    # volume create; steady state: no extra docker call
    assert [c["argv"][:2] for c in calls[:-1]] == [["image", "inspect"], ["info", "--format"], ["volume", "create"]]
    cp, calls = fake("run", "--rm", "-v", f"{proj}:/app", "-w", "/app", "img", "npm", "ci")
    assert len(calls) == 1 and calls[0]["argv"] == final


def test_bad_config_runs_unchanged_with_one_line(fake, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[run\nmode=")
    argv = ["run", "img", "npm", "ci"]
    cp, calls = fake(*argv, extra={"DOCKCACHE_CONFIG": str(cfg)})
    assert [c["argv"] for c in calls] == [argv]
    assert cp.stderr.count("dockcache:") == 1 and "bad.toml" in cp.stderr


@pytest.mark.parametrize("body,word", [("[run]\nmode = 3\n", "run.mode"), ("[run]\nbogus = 1\n", "run.bogus"),
                                       ("[managers.npm]\nvolume = 'x; rm -rf /'\n", "managers.npm.volume")])
def test_config_errors_name_the_key(fake, tmp_path, body, word):
    cfg = tmp_path / "c.toml"
    cfg.write_text(body)
    cp, calls = fake("run", "img", "npm", extra={"DOCKCACHE_CONFIG": str(cfg)})
    assert calls[-1]["argv"] == ["run", "img", "npm"] and word in cp.stderr


@pytest.mark.parametrize("flow", ["shim.run.command", "shim.build.command", "shim.compose.command"])
def test_hot_path_imports_no_heavy_modules(flow):
    """typer/rich/psutil belong to the CLI; dataclasses (it imports inspect) and typing cost
    ~20 ms each, on every intercepted command: shim.core.records stands in for dataclasses."""
    code = (f"import sys; from shim import hot; import {flow}; "
            "bad = [m for m in ('typer', 'rich', 'psutil', 'click', 'dataclasses', 'inspect', 'typing') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr




def test_auto_mode_probes_once_per_daemon_then_binds_host_dirs(fake, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "package-lock.json").write_text("{}")
    argv = ["run", "--rm", "-v", f"{proj}:/app", "-w", "/app", "img", "npm", "ci"]
    _, calls = fake(*argv, extra={"DOCKCACHE_MODE": ""})
    assert [c["argv"][:2] for c in calls[:-1]] == [["image", "inspect"], ["create", "--pull"]]
    probe = calls[1]["argv"]
    assert "never" in probe and "none" in probe and probe[-2:] == ["img", "true"]
    bind_root = tmp_path / ".cache" / "dockcache" / "run"
    assert f"{bind_root}/dockcache-npm:/dockcache/npm" in calls[-1]["argv"]
    assert (bind_root / "dockcache-npm").is_dir() and not list(bind_root.glob(".probe-*"))  # probe dir gone
    (proj / "requirements.txt").write_text("x\n")  # a new plan on the same daemon: no second probe
    _, calls = fake(*argv, extra={"DOCKCACHE_MODE": ""})
    assert [c["argv"][:2] for c in calls[:-1]] == []
    assert f"{bind_root}/dockcache-pip:/dockcache/pip" in calls[-1]["argv"]


def test_auto_mode_falls_back_to_volumes_when_the_daemon_cannot_see_the_probe(fake, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "package-lock.json").write_text("{}")
    _, calls = fake("run", "-v", f"{proj}:/app", "img", "npm", "ci",
                    extra={"DOCKCACHE_MODE": "", "FAKE_FAIL": "create --pull"})
    assert [c["argv"][:2] for c in calls[:-1]] == [["image", "inspect"], ["create", "--pull"], ["info", "--format"],
                                                    ["volume", "create"]]
    assert any(a.startswith("type=volume,source=dockcache-npm,") for a in calls[-1]["argv"])


def test_remembered_plan_skips_planning_and_notices_changes(fake, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "package-lock.json").write_text("{}")
    argv = ["run", "--rm", "-v", f"{proj}:/app", "-w", "/app", "img", "sh", "-c", "rm -rf node_modules"]
    _, first = fake(*argv)
    metrics = tmp_path / "state" / "metrics.jsonl"

    def last_metric():
        return json.loads(metrics.read_text().splitlines()[-1])

    _, calls = fake(*argv)
    assert calls[-1]["argv"] == first[-1]["argv"] and last_metric().get("remembered")
    (proj / "node_modules").mkdir()  # the dir changes, no marker does: still remembered
    fake(*argv)
    assert last_metric().get("remembered")
    (proj / "requirements-dev.txt").write_text("x\n")  # a glob marker appears: plan again
    _, calls = fake(*argv)
    assert not last_metric().get("remembered") and "PIP_CACHE_DIR=/dockcache/pip" in calls[-1]["argv"]
    (proj / ".dockcache.toml").write_text("[managers.pip]\nenabled = false\n")  # a project file appears
    _, calls = fake(*argv)
    assert "PIP_CACHE_DIR=/dockcache/pip" not in calls[-1]["argv"]
    _, calls = fake(*argv, extra={"DOCKCACHE_SCOPE": "project"})  # settings are part of the key
    assert not last_metric().get("remembered")
    for rec in (tmp_path / "state" / "volumes").rglob("*.json"):
        rec.unlink()  # what `cache clear` does: the next run re-creates the volume
    _, calls = fake(*argv)
    assert ["volume", "create"] in [c["argv"][:2] for c in calls]


def test_an_image_built_again_through_dockcache_is_asked_again(fake, tmp_path):
    """Seen: `docker build -t app .` of a Dockerfile that gained `USER node`, then
    `docker run app npm install`: the run still mounted the root-owned cache (the old
    build's USER was remembered for a day, and the remembered plan with it): npm, now
    node, failed with EACCES on it."""
    proj = npm_proj(tmp_path)
    argv = ["run", "--rm", "-v", f"{proj}:/app", "-w", "/app", "app", "npm", "install"]
    _, calls = fake(*argv)
    assert any(a.startswith("type=volume,source=dockcache-npm,") for a in calls[-1]["argv"])
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\nUSER node\n")
    fake("build", "-t", "docker.io/library/app:latest", str(tmp_path / "ctx"), extra={"FAKE_USER": "node"})
    _, calls = fake(*argv, extra={"FAKE_USER": "node"})
    assert ["image", "inspect"] in [c["argv"][:2] for c in calls]
    owned = [a for a in calls[-1]["argv"] if a.startswith("type=volume,source=dockcache-npm-c")]
    assert owned and "dockcache.owner=node" in owned[0], calls[-1]["argv"]


def test_compose_v1_passes_through_with_one_line(fake, tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    fake_compose = tmp_path / "real" / "docker-compose"
    fake_compose.write_text("#!/bin/sh\n[ \"$1\" = version ] && echo 1.29.2\nexit 0\n")
    fake_compose.chmod(0o755)
    cp, calls = fake("up", "--build", launcher="docker-compose")
    assert cp.returncode == 0
    assert cp.stderr.count("dockcache:") == 1 and "1.29.2" in cp.stderr


def test_real_docker_pointing_at_a_launcher_cannot_loop(fake):
    cp, calls = fake("ps", extra={"DOCKCACHE_REAL_DOCKER": str(REPO / "bin" / "docker")})
    assert cp.returncode == 0 and calls[0]["argv"] == ["ps"]
    cp, calls = fake("run", "img", extra={"DOCKCACHE_REAL_DOCKER": str(REPO / "bin" / "docker")})
    assert cp.returncode == 0 and calls[-1]["argv"][-1] == "img"


def npm_proj(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    (proj / "package-lock.json").write_text("{}")
    return proj


def test_volume_create_refused_runs_uncached_with_one_line(fake, tmp_path):
    argv = ["run", "-v", f"{npm_proj(tmp_path)}:/app", "img", "npm", "ci"]
    cp, calls = fake(*argv, extra={"FAKE_FAIL": "volume create", "FAKE_RC": "0"})
    assert calls[-1]["argv"] == argv and cp.stderr.count("dockcache:") == 1


def test_buildx_missing_build_passes_through(fake, tmp_path):
    argv = ["build", "-t", "x", str(tmp_path)]
    cp, calls = fake(*argv, extra={"FAKE_FAIL": "buildx version"})
    assert cp.returncode == 0 and calls[-1]["argv"] == argv and "dockcache" not in cp.stderr


def test_nested_shim_adds_nothing_twice(fake, tmp_path):
    argv = ["run", "-v", f"{npm_proj(tmp_path)}:/app", "-w", "/app", "img", "npm", "ci"]
    _, calls = fake(*argv)
    once = calls[-1]["argv"]
    _, calls = fake(*once)  # what a second dockcache in front of docker would receive
    assert calls[-1]["argv"] == once


def test_pythons_locale_coercion_never_reaches_docker(fake, tmp_path):
    """With LANG=C Python sets LC_CTYPE=C.UTF-8 in its own environment (PEP 538)."""
    (tmp_path / "package-lock.json").write_text("{}")
    env = {"LANG": "C", "FAKE_ENV_KEYS": "LC_"}
    cp, calls = fake("run", "-v", f"{tmp_path}:/app", "-w", "/app", "img", "npm", "ci", extra=env)
    assert cp.returncode == 0, cp.stderr
    assert calls and all("LC_CTYPE" not in c["env"] for c in calls)
    cp, calls = fake("run", "img", "npm", "ci", extra={**env, "LC_CTYPE": "de_DE.UTF-8"})
    assert calls[-1]["env"].get("LC_CTYPE") == "de_DE.UTF-8"  # the user's own stays


@pytest.mark.parametrize("argv", [["run", "img", "npm", "ci"], ["build", "-t", "x", "."],
                                  ["compose", "up", "--build"], ["buildx", "build", "."]])
def test_debug_prints_the_final_argv_of_every_rewritten_command(fake, argv):
    cp, calls = fake(*argv, extra={"DOCKCACHE_DEBUG": "1"})
    final = calls[-1]["argv"]
    assert 'dockcache: ' in cp.stderr and json.dumps(final)[1:-1] in cp.stderr, cp.stderr


@pytest.mark.parametrize("argv", [["builder", "prune", "-af"], ["system", "prune", "-f"], ["buildx", "prune"]])
def test_buildkit_prunes_run_unchanged(fake, argv):
    cp, calls = fake(*argv)
    assert cp.returncode == 0 and [c["argv"] for c in calls] == [argv]


@pytest.mark.parametrize("argv", [["exec", "-it", "-e", "user=1", "-w", "/u", "C", "sh", "-u"],
                                  ["container", "exec", "--env-file", "u.env", "C", "ls"], ["exec", "-d", "C", "-u"]])
def test_exec_without_a_user_needs_no_python(fake, argv):
    cp, calls = fake(*argv, extra={"DOCKCACHE_PYTHON": "/nonexistent/python"})
    assert cp.returncode == 0 and [c["argv"] for c in calls] == [argv]


@pytest.mark.parametrize("argv", [["exec", "-u", "dev", "C", "ls"], ["exec", "-iu", "dev", "C", "ls"],
                                  ["container", "exec", "--user=1000", "C", "ls"]])
def test_exec_with_a_user_asks_about_the_container_then_runs_as_typed_without_dockcache_caches(fake, argv):
    cp, calls = fake(*argv, extra={"DOCKER_HOST": "tcp://127.0.0.1:1"})  # no local socket: the CLI's inspect
    assert cp.returncode == 0 and calls[0]["argv"][:2] == ["container", "inspect"] and calls[-1]["argv"] == argv
