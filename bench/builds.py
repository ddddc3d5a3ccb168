"""Cross-session build cache through bin/docker: cold on A, warm on B, warm on A.

  python3 bench/builds.py [--loops 3000000] [--sessions 4] [--backend local|registry]

Each run uses a fresh Dockerfile token (nothing cached anywhere at the start) and a
fresh store. "warm on A" is the same-daemon baseline (A's own BuildKit cache); "warm on
B" is what dockcache adds: another daemon, nothing local, everything from the store.
Also reports the store size after N more sessions (alternating A and B). With
--backend registry the cache goes only to the loopback registry (DOCKCACHE_TEST_REGISTRY)
and every session starts with an empty state dir; sizes are what the key tags reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from shim.cachestore import CacheStore  # noqa: E402
from shim.progress import counts  # noqa: E402

HOSTS = {d: os.environ.get(f"DOCKCACHE_TEST_HOST_{d.upper()}", f"unix:///run/dockcache-engine/{d}.sock")
         for d in ("a", "b")}


def build(env, host, ctx, tag):
    t = time.perf_counter()
    cp = subprocess.run([str(REPO / "bin" / "docker"), "build", "--network", "none", "--progress", "plain",
                         "-t", tag, str(ctx)], env={**env, "DOCKER_HOST": host}, capture_output=True, text=True)
    took = time.perf_counter() - t
    if cp.returncode:
        raise SystemExit(cp.stderr[-2000:])
    cached, executed = counts(cp.stderr)
    return {"seconds": round(took, 2), "cached_steps": cached, "executed_steps": executed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=3_000_000)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("--backend", choices=("local", "registry"), default="local")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ctx = tmp / "ctx"
    ctx.mkdir()
    token = uuid.uuid4().hex
    ctx.joinpath("Dockerfile").write_text(
        "FROM dockcache-test/busybox\n"
        f"RUN echo {token} > /a && i=0; while [ $i -lt {args.loops} ]; do i=$((i+1)); done\n"
        f"RUN echo {token} > /b && i=0; while [ $i -lt {args.loops // 2} ]; do i=$((i+1)); done\n")
    env = {**os.environ, "DOCKCACHE_STATE_DIR": str(tmp / "state"), "DOCKCACHE_BUILD_STORE": str(tmp / "store")}
    tag = f"dcbench-{token[:8]}/app:1"
    size = lambda: CacheStore(tmp / "store").size()  # noqa: E731
    if args.backend == "registry":
        size = _registry_backend(env, token)
    fresh = iter(range(1000))

    def session(host):  # the registry backend: every session has an empty local state
        state = env if args.backend == "local" else {**env, "DOCKCACHE_STATE_DIR": str(tmp / f"s{next(fresh)}")}
        return build(state, host, ctx, tag)

    res = {"backend": args.backend, "cold_a": session(HOSTS["a"])}
    size_one = size()
    res["warm_b"] = session(HOSTS["b"])
    res["warm_a"] = session(HOSTS["a"])
    for i in range(args.sessions):
        session(HOSTS["b" if i % 2 else "a"])
    res["store_bytes_after_1"] = size_one
    res["store_bytes_after_n"] = size()
    res["ratios"] = {
        "warm_b_over_warm_a": round(res["warm_b"]["seconds"] / res["warm_a"]["seconds"], 2),
        "cold_a_over_warm_b": round(res["cold_a"]["seconds"] / res["warm_b"]["seconds"], 1),
        "store_n_over_1": round(res["store_bytes_after_n"] / size_one, 3),
    }
    for d in HOSTS.values():
        subprocess.run(["docker", "-H", d, "image", "rm", "-f", tag], capture_output=True)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def _registry_backend(env: dict, token: str):
    from shim.registrycache import Registry

    repo = f"{os.environ.get('DOCKCACHE_TEST_REGISTRY', 'localhost:5000')}/dcbench-{token[:8]}"
    env.update({"DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo})

    def size() -> int:  # bytes the key tags reference (what a new session would import)
        return sum({i.digest: i.size for i in Registry(repo).inventory() if i.built_at is None}.values())
    return size


if __name__ == "__main__":
    main()
