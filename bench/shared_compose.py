"""`docker compose build` on the host's shared BuildKit against the store path and plain compose.

  python3 bench/shared_compose.py [--base dockcache-test/gotools:latest] [--runs 3] [--services 1]
                                  [--ways store,shared,plain] [--json F]

--services N: N services FROM a ~320 MB base, each an expensive RUN of its own, then COPY
app.txt (the last depends_on the first). Per way (shared: build.builder = the provisioned
buildkitd, compose.shared_builder on: one docker build per service, side by side, with a thin
load, then compose --no-build; shared-seq: the same with COMPOSE_PARALLEL_LIMIT=1, one build
after another; store: build.builder = off; plain: the real docker compose, no dockcache): cold
on A, unchanged rebuilds on A (median of --runs), an edited rebuild on A, the same build on B
(a new session), and B after a further edit.
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


def project(ctx: Path, token: str, base: str, services: int) -> list[str]:
    """The stack's files; its image names."""
    ctx.mkdir()
    lines, images = ["services:"], []
    for i in range(services):
        ctx.joinpath(f"Dockerfile.{i}").write_text(
            f"FROM {base}\nRUN echo {token}-{i} > /slow && i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done\n"
            "COPY app.txt /app.txt\n")
        images.append(f"dcsc-{token}/app{i}:1")
        lines += [f"  app{i}:", f"    build: {{context: ., dockerfile: Dockerfile.{i}, network: none}}",
                  f"    image: {images[-1]}", "    network_mode: none"]
        lines += ["    depends_on: [app0]"] if i and i == services - 1 else []
    ctx.joinpath("compose.yaml").write_text("\n".join(lines) + "\n")
    ctx.joinpath("app.txt").write_text(token)
    return images


def way(tmp: Path, name: str, base: str, runs: int, services: int) -> dict:
    token = uuid.uuid4().hex[:12]
    ctx = tmp / f"{name}-{token}"
    images = project(ctx, token, base, services)
    shared = name.startswith("shared")
    env = {**os.environ, "DOCKCACHE_PYTHON": sys.executable, "COMPOSE_PROJECT_NAME": f"dcsc{token}",
           "DOCKCACHE_BUILD_STORE": str(tmp / f"{token}-store"),
           "DOCKCACHE_BUILD_BUILDER": BUILDER if shared else "off",
           "DOCKCACHE_COMPOSE_SHARED_BUILDER": "1" if shared else "0",
           "BENCH_DOCKER": real_docker() if name == "plain" else ""}
    if name == "shared-seq":
        env["COMPOSE_PARALLEL_LIMIT"] = "1"
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
            subprocess.run([real_docker(), "-H", HOSTS[d], "image", "rm", "-f", *images], capture_output=True)
    return out



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="dockcache-test/gotools:latest")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--services", type=int, default=1)
    ap.add_argument("--ways", default="store,shared,plain")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dcsc-"))
    res = {"base": args.base, "services": args.services,
           **{name: way(tmp, name, args.base, args.runs, args.services) for name in args.ways.split(",")}}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
