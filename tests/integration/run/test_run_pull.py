"""A `docker run` of an image the session's engine does not have: dockcache pulls it
first (it needs the image's USER and variables to plan the caches); the user sees that
pull on stderr, as docker run would show its own, not a silent wait."""

from __future__ import annotations

import os

import pytest

from tests.integration.helpers import BUSYBOX, shim

pytestmark = pytest.mark.engine
REGISTRY = os.environ.get("DOCKCACHE_TEST_REGISTRY", "localhost:5000")


def test_the_pull_before_a_run_shows_its_progress_on_stderr(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ref = f"{REGISTRY}/{a.prefix}-pull:1"
    a.images.append(ref)
    b.images.append(ref)
    a.docker("build", "--network", "none", "-q", "-t", ref, "-", input=f"FROM {BUSYBOX}\nRUN echo {a.prefix} > /id\n")
    a.docker("push", "-q", ref)
    b.docker("image", "rm", "-f", ref, check=False)
    proj = tmp_path / "app"
    proj.mkdir()
    (proj / "package-lock.json").write_text("{}")
    cp = shim({**shim_env, "DOCKER_HOST": b.host}, "run", "--rm", "--network", "none", "-v", f"{proj}:/app",
              "-w", "/app", ref, "sh", "-c", "cat /id; echo $npm_config_cache")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == [a.prefix, "/dockcache/npm"]  # the pulled image, with its cache; stdout clean
    assert "Pulling from" in cp.stderr and "Downloaded newer image" in cp.stderr, cp.stderr
