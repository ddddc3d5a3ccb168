"""`docker compose build` on the host's shared BuildKit against the store path and plain compose.

  python3 bench/shared_compose.py [--base dockcache-test/gotools:latest] [--runs 3] [--json F]

One service FROM a ~320 MB base: an expensive RUN, then COPY app.txt. Per way (shared:
build.builder = the provisioned buildkitd, compose.shared_builder on: one docker build per
service with a thin load, then compose --no-build; store: build.builder = off; plain: the
real docker compose, no dockcache): cold on A, unchanged rebuilds on A (median of --runs),
an edited rebuild on A, the same build on B (a new session), and B after a further edit.
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

from benchenv import REPO, BUILDER, HOSTS, real_docker  # noqa: E402


def compose(env: dict, daemon: str, ctx: Path, *args: str) -> float:
    t = time.perf_counter()
    docker = env.get("BENCH_DOCKER") or str(REPO / "bin" / "docker")
    cp = subprocess.run([docker, "compose", *args], cwd=ctx, capture_output=True, text=True,
                        env={**env, "DOCKER_HOST": HOSTS[daemon], "HOME": env[f"HOME_{daemon}"],
                             "DOCKCACHE_STATE_DIR": env[f"STATE_{daemon}"]})
    if cp.returncode:
        raise SystemExit(cp.stderr[-2000:] + cp.stdout[-2000:])
    return round(time.perf_counter() - t, 3)


def way(tmp: Path, name: str, base: str, runs: int) -> dict:
    token = uuid.uuid4().hex[:12]
    ctx = tmp / f"{name}-{token}"
    ctx.mkdir()
    ctx.joinpath("Dockerfile").write_text(
        f"FROM {base}\nRUN echo {token} > /slow && i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done\n"
        "COPY app.txt /app.txt\n")
    ctx.joinpath("app.txt").write_text(token)
    ctx.joinpath("compose.yaml").write_text(
        f"services:\n  app:\n    build: {{context: ., network: none}}\n    image: dcsc-{token}/app:1\n"
        "    network_mode: none\n")
    env = {**os.environ, "DOCKCACHE_PYTHON": sys.executable, "COMPOSE_PROJECT_NAME": f"dcsc{token}",
           "DOCKCACHE_BUILD_STORE": str(tmp / f"{token}-store"),
           "DOCKCACHE_BUILD_BUILDER": BUILDER if name == "shared" else "off",
           "DOCKCACHE_COMPOSE_SHARED_BUILDER": "1" if name == "shared" else "0",
           "BENCH_DOCKER": real_docker() if name == "plain" else ""}
    for d in ("a", "b"):
        (tmp / f"{name}-home-{d}").mkdir(exist_ok=True)
        env[f"HOME_{d}"], env[f"STATE_{d}"] = str(tmp / f"{name}-home-{d}"), str(tmp / f"{name}-state-{d}")
    try:
        out = {"cold_a": compose(env, "a", ctx, "build")}
        warm = [compose(env, "a", ctx, "build") for _ in range(runs)]
        out["warm_a"] = {"median": statistics.median(warm), "each": warm}
        ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)
        out["edited_a"] = compose(env, "a", ctx, "build")
        out["warm_b"] = compose(env, "b", ctx, "build")
        ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)
        out["edited_b"] = compose(env, "b", ctx, "build")
    finally:
        for d in ("a", "b"):
            subprocess.run(["docker", "-H", HOSTS[d], "image", "rm", "-f", f"dcsc-{token}/app:1"], capture_output=True)
    return out



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="dockcache-test/gotools:latest")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dcsc-"))
    res = {"base": args.base, **{name: way(tmp, name, args.base, args.runs) for name in ("store", "shared", "plain")}}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
