"""A bounded concurrency soak: parallel installs and builds on both daemons, shared caches."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shim.build.store.cachestore import CacheStore
from tests.integration.helpers import DEVTOOLS, shim, write_json

pytestmark = pytest.mark.engine


def test_parallel_installs_and_builds(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    jobs = []
    for i in range(6):
        proj = tmp_path / f"app{i}"
        proj.mkdir()
        write_json(proj / "package.json", {"name": f"app{i}", "version": "1.0.0",
                                           "dependencies": {"is-number": "7.0.0", "left-pad": "1.3.0"}})
        eng = a if i % 2 == 0 else b
        jobs.append((eng, ["run", "--rm", "--network", "host", "-v", f"{proj}:/app", "-w", "/app", DEVTOOLS,
                           "npm", "install", "--no-audit", "--no-fund"]))
    for i in range(4):
        ctx = tmp_path / f"ctx{i}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM dockcache-test/busybox\nRUN echo {uuid.uuid4().hex} > /t\n")
        eng = a if i % 2 == 0 else b
        tag = f"{a.prefix}/soak{i % 2}:{i}"
        eng.images.append(tag)
        jobs.append((eng, ["build", "--network", "none", "-t", tag, str(ctx)]))
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: shim({**shim_env, "DOCKER_HOST": j[0].host}, *j[1]), jobs))
    assert [r.returncode for r in results] == [0] * len(jobs), [r.stderr[-400:] for r in results if r.returncode]
    for eng in (a, b):
        verify = eng.docker("run", "--rm", "--network", "none", "-v", f"{a.prefix}-npm:/c", DEVTOOLS,
                            "npm", "cache", "verify", "--cache", "/c")
        assert "Cache verified" in verify.stdout + verify.stderr
    store = CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"]))
    assert store.check() == [] and {f"{a.prefix}-soak0", f"{a.prefix}-soak1"} <= set(store.keys())
