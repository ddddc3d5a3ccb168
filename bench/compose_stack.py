"""A three-service compose stack: `up -d --build` cold on daemon A, then warm on daemon B,
then the developer's loop on A: `up -d --build` with no change (the stack keeps running),
through dockcache and with plain docker, alternating, medians of --rounds.

  python3 bench/compose_stack.py [--loops 3000000] [--base dockcache-test/devtools] [--rounds 5]
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

from benchenv import REPO, HOSTS  # noqa: E402
from shim.build.progress import counts  # noqa: E402



REAL = "/usr/local/bin/docker"


def up(env, host, root, *, docker=str(REPO / "bin" / "docker"), down=True):
    t = time.perf_counter()
    cp = subprocess.run([docker, "compose", "--progress", "plain", "up", "-d", "--build"],
                        env={**env, "DOCKER_HOST": host}, cwd=root, capture_output=True, text=True)
    took = time.perf_counter() - t
    if down:
        subprocess.run([REAL, "-H", host, "compose", "down", "--rmi", "local"], cwd=root, capture_output=True)
    if cp.returncode:
        raise SystemExit(cp.stdout[-1500:] + cp.stderr[-1500:])
    cached, executed = counts(cp.stdout + cp.stderr)
    return {"seconds": round(took, 2), "cached_steps": cached, "executed_steps": executed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=3_000_000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--base", default="dockcache-test/busybox")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    root = tmp / f"stack{uuid.uuid4().hex[:6]}"
    root.mkdir()
    lines = ["services:"]
    for s in ("api", "web", "worker"):
        (root / s).mkdir()
        (root / s / "Dockerfile").write_text(
            f"FROM {args.base}\nRUN echo {s}-{uuid.uuid4().hex} > /t && "
            f"i=0; while [ $i -lt {args.loops} ]; do i=$((i+1)); done\n")
        lines += [f"  {s}:", f"    build: {{context: ./{s}, network: none}}", "    network_mode: none",
                  '    command: ["sleep", "600"]', '    stop_signal: SIGKILL']
    (root / "compose.yaml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "DOCKCACHE_STATE_DIR": str(tmp / "state"), "DOCKCACHE_BUILD_STORE": str(tmp / "store"),
           "DOCKCACHE_PYTHON": sys.executable}  # as install.sh pins it (a pyenv shim adds ~0.2 s)
    res = {"cold_a": up(env, HOSTS["a"], root), "warm_b": up(env, HOSTS["b"], root)}
    res["warm_b_over_cold_a"] = round(res["warm_b"]["seconds"] / res["cold_a"]["seconds"], 3)
    up(env, HOSTS["a"], root, down=False)
    loop = {"no_change_a": [], "no_change_a_plain": []}
    for i in range(args.rounds):
        order = [("no_change_a", str(REPO / "bin" / "docker")), ("no_change_a_plain", REAL)]
        for name, docker in (order if i % 2 == 0 else order[::-1]):
            loop[name].append(up(env, HOSTS["a"], root, docker=docker, down=False)["seconds"])
    subprocess.run([REAL, "-H", HOSTS["a"], "compose", "down", "--rmi", "local"], cwd=root, capture_output=True)
    for name, runs in loop.items():
        res[name] = {"seconds": round(statistics.median(runs), 3), "each": runs}
    res["no_change_over_plain"] = round(res["no_change_a"]["seconds"] / res["no_change_a_plain"]["seconds"], 3)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
