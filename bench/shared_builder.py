"""The host's shared BuildKit against the local store path and plain docker (issue 17).

  python3 bench/shared_builder.py [--rounds 2] [--base dockcache-test/gotools] [--loops 2000000] [--json F]

Daemons A and B are two sessions (each its own HOME and state dir). Each round is a new
project (fresh token: nothing cached anywhere at its start), built in three ways:

  shared   dockcache, build.builder = the provisioned buildkitd (DOCKCACHE_TEST_BUILDER)
  store    dockcache, build.builder = off: today's local store path (import/export)
  plain    the real docker, no dockcache (B has no cache of A's builds)

and in each way: cold A, warm A (unchanged rebuild), warm B (the same build on the other
session), then an edit and the edited rebuild on A, a further edit and the edited rebuild
on B. The order of the ways rotates per round. A session (HOME, state dir) lives across
rounds, so round 1 holds each session's one-time costs (the buildx builder made, engine
caps probed) and later rounds are a session's steady state; the store starts empty in
every round. Ratios (warm B / warm A, edited B /
edited A) come from medians of one run. The load cost: a fully cached build on the
shared builder with `--load` minus the same build with the image kept in the builder,
for the base image's size.
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

from benchenv import BUILDER, DOCKCACHE, HOSTS, real_docker  # noqa: E402
from shim.build.progress import counts  # noqa: E402
from shim.build.shared.route import builder_name  # noqa: E402

WAYS = ("shared", "store", "plain")
STEPS = ("cold_a", "warm_a", "warm_b", "edited_a", "edited_b")


class Bench:
    def __init__(self, base: str, loops: int):
        self.real = real_docker()
        self.tmp = Path(tempfile.mkdtemp(prefix="dcsb-"))
        self.base, self.loops = base, loops
        self.tags: list[str] = []

    def env(self, way: str, daemon: str, token: str) -> dict:
        session = self.tmp / f"session-{way}-{daemon}"  # a session lives across rounds; round 1 is its first build
        (session / "home").mkdir(parents=True, exist_ok=True)
        return {**os.environ, "HOME": str(session / "home"), "DOCKCACHE_STATE_DIR": str(session / "state"),
                "DOCKCACHE_BUILD_STORE": str(self.tmp / f"{token}-store"), "DOCKCACHE_PYTHON": sys.executable,
                "DOCKER_HOST": HOSTS[daemon], "DOCKCACHE_BUILD_BUILDER": BUILDER if way == "shared" else "off"}

    def project(self) -> tuple[Path, str]:
        token = uuid.uuid4().hex[:12]
        ctx = self.tmp / f"ctx-{token}"
        ctx.mkdir()
        ctx.joinpath("Dockerfile").write_text(
            f"FROM {self.base}\n"
            f"RUN echo {token} > /slow && i=0; while [ $i -lt {self.loops} ]; do i=$((i+1)); done\n"
            "COPY app.txt /app/app.txt\nRUN cat /app/app.txt > /app/out\n")
        edit(ctx)
        return ctx, token

    def build(self, way: str, daemon: str, ctx: Path, token: str, *extra: str, docker: str | None = None) -> dict:
        tag = f"dcsb-{token}-{way}/app:1"
        self.tags.append(tag)
        docker = docker or (self.real if way == "plain" else DOCKCACHE)
        t = time.perf_counter()
        cp = subprocess.run([docker, "build", "--network", "none", "--progress", "plain", *extra, "-t", tag, str(ctx)],
                            env=self.env(way, daemon, token), capture_output=True, text=True)
        took = time.perf_counter() - t
        if cp.returncode:
            raise SystemExit(f"{way} build on {daemon} ({tag}) failed:\n{cp.stderr[-2000:]}")
        cached, executed = counts(cp.stderr)
        return {"seconds": round(took, 3), "cached_steps": cached, "executed_steps": executed,
                "loaded": self.loaded(way, daemon, cp.stderr)}

    def loaded(self, way: str, daemon: str, stderr: str):
        """Did the image go into the session's engine: dockcache's own record (a thin load
        prints nothing), else BuildKit's --load step."""
        if way != "shared":
            return "importing to docker" in stderr
        path = self.tmp / f"session-{way}-{daemon}" / "state" / "metrics.jsonl"
        builds = [json.loads(x) for x in path.read_text().splitlines() if '"build"' in x] if path.exists() else []
        last = builds[-1] if builds else None
        return {k: last.get(k) for k in ("loaded", "thin", "early")} if last else None

    def way(self, way: str, ctx: Path, token: str) -> dict:
        r = {"cold_a": self.build(way, "a", ctx, token), "warm_a": self.build(way, "a", ctx, token),
             "warm_b": self.build(way, "b", ctx, token)}
        edit(ctx)
        r["edited_a"] = self.build(way, "a", ctx, token)
        edit(ctx)
        r["edited_b"] = self.build(way, "b", ctx, token)
        return r

    def load_cost(self, ctx: Path, token: str) -> dict:
        """A fully cached build on the shared builder, with --load and with the image kept there."""
        name = builder_name(BUILDER)
        env = self.env("shared", "a", token)
        subprocess.run([self.real, "buildx", "inspect", name], env=env, capture_output=True)
        kept = self.build("shared", "a", ctx, token, "--builder", name, "--output", "type=image", docker=self.real)
        loaded = self.build("shared", "a", ctx, token, "--builder", name, "--load", docker=self.real)
        return {"kept_s": kept["seconds"], "loaded_s": loaded["seconds"],
                "load_s": round(loaded["seconds"] - kept["seconds"], 3)}

    def image_size(self, token: str) -> int:
        cp = subprocess.run([self.real, "-H", HOSTS["a"], "image", "inspect", "--format", "{{.Size}}",
                             f"dcsb-{token}-shared/app:1"], capture_output=True, text=True)
        return int(cp.stdout.strip() or 0)

    def cleanup(self) -> None:
        for d in HOSTS.values():
            subprocess.run([self.real, "-H", d, "image", "rm", "-f", *set(self.tags)], capture_output=True)


def edit(ctx: Path) -> None:
    ctx.joinpath("app.txt").write_text(uuid.uuid4().hex + "\n")


def median(runs: list[dict]) -> dict:
    return {"seconds": round(statistics.median(r["seconds"] for r in runs), 3), "each": [r["seconds"] for r in runs],
            "cached_steps": min(r["cached_steps"] for r in runs), "executed_steps": max(r["executed_steps"] for r in runs),
            "loaded": [r["loaded"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base", default="dockcache-test/gotools:latest")
    ap.add_argument("--loops", type=int, default=2_000_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    b = Bench(args.base, args.loops)
    rounds, loads = [], []
    try:
        for i in range(args.rounds):
            one = {}
            for k in range(len(WAYS)):
                way = WAYS[(i + k) % len(WAYS)]
                ctx, token = b.project()
                one[way] = b.way(way, ctx, token)
                if way == "shared":
                    loads.append({**b.load_cost(ctx, token), "image_bytes": b.image_size(token)})
            rounds.append(one)
    finally:
        b.cleanup()
    res: dict = {"base": args.base, "rounds": args.rounds, "loops": args.loops}
    for way in WAYS:
        res[way] = {s: median([r[way][s] for r in rounds]) for s in STEPS}
        sec = {s: res[way][s]["seconds"] for s in STEPS}
        res[way]["ratios"] = {"warm_b_over_warm_a": round(sec["warm_b"] / sec["warm_a"], 2),
                              "edited_b_over_edited_a": round(sec["edited_b"] / sec["edited_a"], 2)}
    res["load"] = {"each": loads, "median_load_s": round(statistics.median(x["load_s"] for x in loads), 3),
                   "image_bytes": loads[0]["image_bytes"]}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
