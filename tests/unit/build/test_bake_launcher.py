"""`docker buildx bake` through bin/docker with a fake real docker that records every call
and answers `bake --print` with a resolved definition."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FAKE = """#!{py}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if "--print" in sys.argv and os.environ.get("FAKE_PRINT"):
    print(os.environ["FAKE_PRINT"])
    sys.exit(int(os.environ.get("FAKE_PRINT_RC", "0")))
if sys.argv[1:3] == ["buildx", "inspect"]:
    print("Name: default\\nDriver: docker\\n org.mobyproject.buildkit.worker.snapshotter: overlayfs")
if sys.argv[1:3] == ["buildx", "version"]:
    print("github.com/docker/buildx 0.13.1 x")
sys.exit(int(os.environ.get("FAKE_RC", "0")) if sys.argv[2:3] in (["bake"], ["f"]) else 0)
"""
RESOLVED = {"group": {"default": {"targets": ["api", "web"]}},
            "target": {"api": {"context": "api", "dockerfile": "Dockerfile", "tags": ["org/api:1"]},
                       "web": {"context": "web", "dockerfile": "Dockerfile.web", "cache-to": ["type=inline"]}}}


@pytest.fixture
def fake(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    docker = real_dir / "docker"
    docker.write_text(FAKE.format(py=sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "log.jsonl"
    (tmp_path / "docker-bake.hcl").write_text('target "api" {}\n')
    env = {"PATH": f"{REPO / 'bin'}:{real_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), "HOME": str(tmp_path),
           "DOCKCACHE_STATE_DIR": str(tmp_path / "state"), "DOCKCACHE_BUILD_STORE": str(tmp_path / "store"),
           "DOCKCACHE_PYTHON": sys.executable, "FAKE_PRINT": json.dumps(RESOLVED)}

    def call(*argv, extra=None):
        cp = subprocess.run([str(REPO / "bin" / "docker"), *argv], env={**env, **(extra or {})},
                            capture_output=True, text=True, cwd=tmp_path)
        calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return cp, calls
    return call


def test_each_target_gets_our_sets_and_bakes_own_entries_stay(fake):
    argv = ["buildx", "bake", "--progress", "plain", "api", "web"]
    cp, calls = fake(*argv)
    assert cp.returncode == 0 and "dockcache:" not in cp.stderr
    assert ["buildx", "bake", "--print", "--progress", "plain", "api", "web"] in calls
    final = calls[-1]
    added = final[2:len(final) - 4]
    assert final[:2] == argv[:2] and final[len(final) - 4:] == argv[2:]
    assert added[::2] == ["--set"] * (len(added) // 2)
    assert any(v.startswith("api.cache-to=type=local,dest=") and "tag=org-api" in v for v in added[1::2])
    assert not any(v.startswith("web.cache-to") for v in added[1::2])  # its own cache-to (inline) stays alone
    assert any(v.startswith("web.cache-from=type=local") for v in added[1::2]) is False  # nothing stored yet


def test_print_is_asked_once_while_the_files_are_the_same(fake, tmp_path):
    fake("buildx", "bake", "api")
    _cp, calls = fake("buildx", "bake", "api")
    assert calls and not any("--print" in c for c in calls)
    (tmp_path / "docker-bake.hcl").write_text('target "api" { tags = ["x"] }\n')
    _cp, calls = fake("buildx", "bake", "api")
    assert any("--print" in c for c in calls)


@pytest.mark.parametrize("argv", [
    ["buildx", "bake", "--print", "api"], ["buildx", "bake", "--help"], ["buildx", "f", "--list=targets"],
])
def test_looking_only_runs_unchanged_silently(fake, argv):
    cp, calls = fake(*argv)
    assert calls == [argv] and "dockcache:" not in cp.stderr


def test_kill_switch_runs_bake_byte_identical(fake):
    argv = ["buildx", "bake", "-f", "docker-bake.hcl", "--set", "*.platform=linux/amd64", "api", "--load"]
    cp, calls = fake(*argv, extra={"DOCKCACHE_DISABLE": "1"})
    assert calls == [argv] and cp.stderr == ""


@pytest.mark.parametrize("argv,extra,rc", [
    (["buildx", "bake", "--frobnicate", "x", "api"], {}, 0),  # an option it does not know
    (["buildx", "bake", "api"], {"FAKE_PRINT_RC": "1"}, 3),  # bake --print failed: bake says why itself
])
def test_not_sure_runs_unchanged_with_one_line(fake, argv, extra, rc):
    cp, calls = fake(*argv, extra={**extra, "FAKE_RC": str(rc)})
    assert calls[-1] == argv and cp.returncode == rc
    assert cp.stderr.count("dockcache:") == 1


@pytest.mark.parametrize("word", ["bake", "f"])  # `f`: bake's alias, which bin/docker sends to Python too
def test_bakes_exit_code_is_returned(fake, word):
    cp, calls = fake("buildx", word, "api", extra={"FAKE_RC": "7"})
    assert cp.returncode == 7 and any("--set" in c for c in calls)
