"""`dockcache builder up` gives buildkitd the host's image caches that are up as mirrors."""

from __future__ import annotations

import subprocess
import sys
import time

from shim.cli.buildercmd import buildkitd_config, with_image_caches
from shim.images.caches import write_index


def test_caches_that_are_up_become_mirrors_after_the_named_ones(tmp_path):
    config = tmp_path / "c" / "config.yml"
    config.parent.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(config)])
    while str(config).encode() not in open(f"/proc/{live.pid}/cmdline", "rb").read():
        time.sleep(0.01)  # until the child has exec'd: a registry that `images up` started
    try:
        write_index(str(tmp_path), {"docker.io": {"address": "127.0.0.1:5100", "pid": live.pid, "config": str(config)},
                                    "ghcr.io": {"address": "127.0.0.1:5102", "pid": live.pid, "config": str(config)},
                                    "quay.io": {"address": "127.0.0.1:5104", "pid": 1, "config": "/gone.yml"}})
        pairs = with_image_caches([("ghcr.io", "10.0.0.1:5000")], str(tmp_path))
    finally:
        live.kill()
        live.wait()
    assert pairs == [("ghcr.io", "10.0.0.1:5000"), ("docker.io", "127.0.0.1:5100")]
    toml = buildkitd_config("/run/x.sock", "/var/lib/x", 1, None, pairs)
    assert '[registry."docker.io"]\n  mirrors = ["127.0.0.1:5100"]\n[registry."127.0.0.1:5100"]\n  http = true' in toml


def test_no_index_no_mirrors(tmp_path):
    assert with_image_caches([], str(tmp_path / "none")) == []
