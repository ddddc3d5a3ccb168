"""Shared fixtures: a private home for every test, and the real engine trio for `engine` tests.

Engine tests talk to the daemons started by tests/engine/provision.sh. Without them the
tests skip with the reason; under CI=true a missing engine fails the run instead.
Everything a test creates on an engine carries a per-test label or name prefix and is
removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = os.environ.get("DOCKCACHE_ENGINE_RUN", "/run/dockcache-engine")
HOST_VARS = {"a": "DOCKCACHE_TEST_HOST_A", "b": "DOCKCACHE_TEST_HOST_B", "old": "DOCKCACHE_TEST_HOST_OLD"}
REAL_DOCKER = os.environ.get("DOCKCACHE_TEST_REAL_DOCKER", "/usr/local/bin/docker")
BUSYBOX = "dockcache-test/busybox:latest"
DEVTOOLS = "dockcache-test/devtools:latest"


@pytest.fixture(autouse=True)
def private_home(tmp_path_factory, monkeypatch):
    """No test touches the real home, config or cache dirs unless a fixture says so."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "DOCKER_HOST",
                "DOCKER_CONTEXT", "DOCKCACHE_DISABLE", "DOCKCACHE_CONFIG", "DOCKCACHE_STATE_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home


def _answers(host: str) -> bool:
    try:
        cp = subprocess.run([REAL_DOCKER, "-H", host, "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return cp.returncode == 0


@pytest.fixture(scope="session")
def engine_hosts() -> dict[str, str]:
    hosts = {k: os.environ.get(v) or f"unix://{RUN_DIR}/{k}.sock" for k, v in HOST_VARS.items()}
    missing = [k for k, h in hosts.items() if not _answers(h)]
    if missing:
        why = f"engine daemon(s) {', '.join(missing)} not answering; run tests/engine/provision.sh up"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return hosts


@dataclass
class Engine:
    """One daemon, with cleanup of everything a test made on it."""

    name: str
    host: str
    label: str
    prefix: str
    images: list[str] = field(default_factory=list)

    def docker(self, *args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        cp = subprocess.run([REAL_DOCKER, "-H", self.host, *args], capture_output=True,
                            text=True, timeout=timeout, **kw)
        if check and cp.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {cp.returncode}\n{cp.stderr}")
        return cp

    def volumes(self) -> list[str]:
        out = self.docker("volume", "ls", "-q", "--filter", f"name={self.prefix}").stdout.split()
        return [v for v in out if v.startswith(self.prefix)]

    def cleanup(self) -> None:
        ids = self.docker("ps", "-aq", "--filter", f"label={self.label}", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        vols = self.volumes()
        if vols:
            self.docker("volume", "rm", "-f", *vols, check=False)
        for image in self.images:
            self.docker("image", "rm", "-f", image, check=False)


@pytest.fixture
def engines(engine_hosts, request):
    tag = uuid.uuid4().hex[:8]
    made = {k: Engine(k, h, f"dockcache.test={tag}", f"dct{tag}") for k, h in engine_hosts.items()}
    yield made
    for eng in made.values():
        eng.cleanup()


@pytest.fixture
def shim_env(engines, tmp_path, private_home) -> dict[str, str]:
    """Environment for running bin/docker against daemon A with private dockcache state."""
    env = dict(os.environ)
    env.update({
        "PATH": f"{REPO / 'bin'}:{os.path.dirname(REAL_DOCKER)}:{env.get('PATH', '')}",
        "DOCKER_HOST": engines["a"].host,
        "DOCKCACHE_STATE_DIR": str(tmp_path / "state"),
        "DOCKCACHE_VOLUME_PREFIX": engines["a"].prefix,
        "DOCKCACHE_MODE": "volume",  # these tests look into volumes; auto is tested without any DOCKCACHE_*
        "DOCKCACHE_BUILD_STORE": str(tmp_path / "buildstore"),
        "DOCKCACHE_PYTHON": os.environ.get("DOCKCACHE_TEST_PYTHON", "python3"),
    })
    return env


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "engine" in item.keywords:
            item.fixturenames.insert(0, "engine_hosts")
