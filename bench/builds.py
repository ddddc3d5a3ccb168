"""Cross-session build cache through bin/docker: cold on A, warm on B, warm on A.

  python3 bench/builds.py [--loops 3000000] [--rounds 5] [--sessions 4] [--backend local|registry]

Each round uses a fresh Dockerfile token (nothing cached anywhere at its start) and
reports medians over the rounds (one build is too noisy on 2 cores). "warm on A" is the
same-daemon baseline (A's own BuildKit cache); "warm on B" is what dockcache adds:
another daemon, nothing local, everything from the store. "warm on A, real docker" is
BuildKit alone, without dockcache. The launcher runs with DOCKCACHE_PYTHON pinned, as
install.sh leaves it (a version manager's `python3` shim would add its own start cost).
Also reports the store size after N more sessions (alternating A and B). With
--backend registry the cache goes only to the loopback registry (DOCKCACHE_TEST_REGISTRY)
and every session starts with an empty state dir; sizes are what the key tags reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchenv import REPO, HOSTS, real_docker  # noqa: E402
from shim.build.store.cachestore import CacheStore  # noqa: E402
from shim.build.progress import counts  # noqa: E402



def build(env, host, ctx, tag, docker=str(REPO / "bin" / "docker")):
    t = time.perf_counter()
    cp = subprocess.run([docker, "build", "--network", "none", "--progress", "plain",
                         "-t", tag, str(ctx)], env={**env, "DOCKER_HOST": host}, capture_output=True, text=True)
    took = time.perf_counter() - t
    if cp.returncode:
        raise SystemExit(cp.stderr[-2000:])
    cached, executed = counts(cp.stderr)
    return {"seconds": round(took, 2), "cached_steps": cached, "executed_steps": executed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=3_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("--backend", choices=("local", "registry"), default="local")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ctx = tmp / "ctx"
    ctx.mkdir()
    env = {**os.environ, "DOCKCACHE_STATE_DIR": str(tmp / "state"), "DOCKCACHE_BUILD_STORE": str(tmp / "store"),
           "DOCKCACHE_PYTHON": sys.executable}
    run_id = uuid.uuid4().hex[:8]
    tag = f"dcbench-{run_id}/app:1"
    size = lambda: CacheStore(tmp / "store").size()  # noqa: E731
    if args.backend == "registry":
        size = _registry_backend(env, run_id)
    fresh = iter(range(10_000))
    real = real_docker()

    def session(host, docker=str(REPO / "bin" / "docker")):  # registry: every session has an empty state
        state = env if args.backend == "local" else {**env, "DOCKCACHE_STATE_DIR": str(tmp / f"s{next(fresh)}")}
        return build(state, host, ctx, tag, docker)

    rounds, size_one = [], None
    for _ in range(args.rounds):
        write_dockerfile(ctx, uuid.uuid4().hex, args.loops)
        r = {"cold_a": session(HOSTS["a"]), "warm_b": session(HOSTS["b"]), "warm_a": session(HOSTS["a"]),
             "warm_a_real_docker": session(HOSTS["a"], real)}
        size_one = size_one or size()
        rounds.append(r)
    for i in range(args.sessions):
        session(HOSTS["b" if i % 2 else "a"])
    res = {"backend": args.backend, "rounds": args.rounds,
           **{k: median_of(rounds, k) for k in ("cold_a", "warm_b", "warm_a", "warm_a_real_docker")}}
    res["store_bytes_after_1"] = size_one
    res["store_bytes_after_n"] = size()
    res["ratios"] = {
        "warm_b_over_warm_a": round(res["warm_b"]["seconds"] / res["warm_a"]["seconds"], 2),
        "cold_a_over_warm_b": round(res["cold_a"]["seconds"] / res["warm_b"]["seconds"], 1),
        "store_n_over_1": round(res["store_bytes_after_n"] / size_one, 3),
    }
    for d in HOSTS.values():
        subprocess.run([real, "-H", d, "image", "rm", "-f", tag], capture_output=True)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def write_dockerfile(ctx: Path, token: str, loops: int) -> None:
    ctx.joinpath("Dockerfile").write_text(
        "FROM dockcache-test/busybox\n"
        f"RUN echo {token} > /a && i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done\n"
        f"RUN echo {token} > /b && i=0; while [ $i -lt {loops // 2} ]; do i=$((i+1)); done\n")


def median_of(rounds: list[dict], kind: str) -> dict:
    runs = [r[kind] for r in rounds]
    return {"seconds": round(statistics.median(r["seconds"] for r in runs), 2),
            "each": [r["seconds"] for r in runs],
            "cached_steps": min(r["cached_steps"] for r in runs),
            "executed_steps": max(r["executed_steps"] for r in runs)}



def _registry_backend(env: dict, run_id: str):
    from shim.build.store.registry import Registry

    repo = f"{os.environ.get('DOCKCACHE_TEST_REGISTRY', 'localhost:5000')}/dcbench-{run_id}"
    env.update({"DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo})

    def size() -> int:  # bytes the key tags reference (what a new session would import)
        return sum({i.digest: i.size for i in Registry(repo).inventory() if i.built_at is None}.values())
    return size


if __name__ == "__main__":
    main()
