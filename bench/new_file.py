"""A new session after a file was added at the top of a flat project (no git clone).

Session 1 builds on daemon A; a copy elsewhere gets one new top-level file and session 2
builds it on daemon B, with its own state dir and the same store. Timed: session 2's
build with plain docker, through dockcache at --base (a git revision, checked out beside)
and at this checkout, rounds alternating; both daemons' build caches are pruned before
each round.
The project: the devtools image, `npm ci` of express, lodash and typescript (74 packages
from the npm registry), then `COPY . .`.

    python3 bench/new_file.py --base d3b7619 --rounds 2 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchenv import DOCKCACHE, HOSTS, REPO, real_docker

PACKAGE = {"name": "bench-new-file", "version": "1.0.0", "private": True,
           "dependencies": {"express": "4.21.2", "lodash": "4.17.21", "typescript": "5.7.3"}}
DOCKERFILE = ("FROM dockcache-test/devtools:latest\nWORKDIR /app\nCOPY package*.json ./\n"
              "RUN npm ci --no-audit --no-fund\nCOPY . .\n")


def project(where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "package.json").write_text(json.dumps(PACKAGE))
    subprocess.run(["npm", "install", "--package-lock-only", "--silent", "--no-audit", "--no-fund"],
                   cwd=where, check=True, capture_output=True)
    (where / "Dockerfile").write_text(DOCKERFILE)
    (where / "index.js").write_text("console.log('hi')\n")
    return where


def build(launcher: str, host: str, ctx: Path, env: dict) -> tuple[float, bool]:
    """(seconds, whether `npm ci` was CACHED)."""
    start = time.monotonic()
    cp = subprocess.run([launcher, "build", "--network", "host", "--progress", "plain", "."], cwd=ctx,
                        env={**env, "DOCKER_HOST": host}, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - start
    if cp.returncode != 0:
        raise SystemExit(f"build failed ({launcher}):\n{cp.stderr[-2000:]}")
    from shim.build.progress import step_named

    step = step_named(cp.stderr, "npm ci")
    return took, bool(step and step.cached)


def one_round(launcher: str, proj: Path, work: Path) -> dict:
    docker = real_docker()
    for host in HOSTS.values():
        subprocess.run([docker, "-H", host, "builder", "prune", "-af"], check=True, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    first, second = work / "s1" / "app", work / "s2" / "app"
    shutil.copytree(proj, first)
    env = {**os.environ, "DOCKCACHE_BUILD_STORE": str(work / "store"), "HOME": str(work / "home"),
           "DOCKCACHE_STATE_DIR": str(work / "state-a")}
    (work / "home").mkdir(parents=True, exist_ok=True)
    build(launcher, HOSTS["a"], first, env)
    time.sleep(3)  # the store's publish after the build
    shutil.copytree(first, second)
    (second / "util.js").write_text("export const x = 1\n")  # the new file at the top
    took, cached = build(launcher, HOSTS["b"], second, {**env, "DOCKCACHE_STATE_DIR": str(work / "state-b")})
    return {"seconds": round(took, 2), "npm_ci_cached": cached}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the git revision to compare with (checked out beside)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockcache-bench-") as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base), a.base], check=True)
        try:
            proj = project(tmp / "proj")
            runs: dict[str, list[dict]] = {"plain": [], "base": [], "head": []}
            for _ in range(a.rounds):
                for name, launcher in (("plain", real_docker()), ("base", str(base / "bin" / "docker")),
                                       ("head", DOCKCACHE)):
                    runs[name].append(one_round(launcher, proj, tmp / "work"))
                    print(name, runs[name][-1], flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    ratios = {"plain_over_head": round(med["plain"] / med["head"], 2), "base_over_head": round(med["base"] / med["head"], 2)}
    out = {"base": a.base, "rounds": runs, "median_seconds": med, **ratios}
    print(json.dumps({"median_seconds": med, **ratios}))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
