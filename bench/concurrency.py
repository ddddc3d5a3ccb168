"""8 parallel runs and builds across daemons A and B, sharing caches, through bin/docker.

  python3 bench/concurrency.py [--json out.json]

Each job alone first (its single time), then all 8 at once: every one must exit 0; the
report gives wall time of the batch against the longest single job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOSTS = [os.environ.get(f"DOCKCACHE_TEST_HOST_{d}", f"unix:///run/dockcache-engine/{d.lower()}.sock") for d in "AB"]


def jobs(tmp: Path) -> list[tuple[str, list[str]]]:
    out = []
    for i in range(4):
        proj = tmp / f"app{i}"
        proj.mkdir()
        (proj / "package.json").write_text(json.dumps(
            {"name": f"app{i}", "version": "1.0.0", "dependencies": {"is-number": "7.0.0", "left-pad": "1.3.0"}}))
        out.append((HOSTS[i % 2], ["run", "--rm", "--network", "host", "-v", f"{proj}:/app", "-w", "/app",
                                   "dockcache-test/devtools", "npm", "install", "--no-audit", "--no-fund"]))
        ctx = tmp / f"ctx{i}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM dockcache-test/busybox\nRUN echo {uuid.uuid4().hex} && i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done\n")
        out.append((HOSTS[i % 2], ["build", "--network", "none", "-t", f"dcconc/k{i % 2}:{i}", str(ctx)]))
    return out


def timed(env, host, argv):
    t = time.perf_counter()
    cp = subprocess.run([str(REPO / "bin" / "docker"), *argv], env={**env, "DOCKER_HOST": host},
                        capture_output=True, text=True)
    return cp.returncode, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, "DOCKCACHE_STATE_DIR": str(tmp / "state"), "DOCKCACHE_BUILD_STORE": str(tmp / "store"),
           "DOCKCACHE_VOLUME_PREFIX": f"dcconc{uuid.uuid4().hex[:6]}"}
    work = jobs(tmp)
    singles = [timed(env, h, a) for h, a in work]
    for _host, argv in work:  # the batch must rebuild: new tokens, so nothing is cached for it
        if argv[0] == "build":
            df = Path(argv[-1]) / "Dockerfile"
            df.write_text(df.read_text().replace("RUN echo ", f"RUN echo {uuid.uuid4().hex[:4]}"))
    t = time.perf_counter()
    with ThreadPoolExecutor(len(work)) as pool:
        batch = list(pool.map(lambda j: timed(env, *j), work))
    wall = time.perf_counter() - t
    res = {"jobs": len(work), "all_exit_0": all(rc == 0 for rc, _ in singles + batch),
           "longest_single_s": round(max(s for _, s in singles), 2), "batch_wall_s": round(wall, 2)}
    res["wall_over_longest_single"] = round(wall / res["longest_single_s"], 2)
    for host in HOSTS:
        subprocess.run(["docker", "-H", host, "image", "rm", "-f", *[f"dcconc/k{i % 2}:{i}" for i in range(4)]],
                       capture_output=True)
        subprocess.run(["docker", "-H", host, "volume", "rm", f"{env['DOCKCACHE_VOLUME_PREFIX']}-npm"],
                       capture_output=True)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
