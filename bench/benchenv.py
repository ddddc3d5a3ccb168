"""What every benchmark needs of the engine pair: the repo, daemons A and B, the shared
builder's address, the real docker (the one bin/docker execs) and dockcache's launcher.

The provisioned endpoints (`eval "$(bash tests/engine/provision.sh env)"`) win over the
defaults. Benchmarks import it by name: `python3 bench/NAME.py` puts bench/ on sys.path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
HOSTS = {d: os.environ.get(f"DOCKCACHE_TEST_HOST_{d.upper()}", f"unix:///run/dockcache-engine/{d}.sock")
         for d in ("a", "b")}
BUILDER = os.environ.get("DOCKCACHE_TEST_BUILDER", "unix:///run/dockcache-engine/buildkitd.sock")
DOCKCACHE = str(REPO / "bin" / "docker")


def real_docker() -> str:
    from shim.core.realdocker import find_real

    return find_real("docker", os.environ) or sys.exit("no real docker on PATH")
