"""A three-service compose stack: `up -d --build` cold on daemon A, then warm on daemon B.

  python3 bench/compose_stack.py [--loops 3000000]
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
from shim.progress import counts  # noqa: E402

HOSTS = {d: os.environ.get(f"DOCKCACHE_TEST_HOST_{d.upper()}", f"unix:///run/dockcache-engine/{d}.sock")
         for d in ("a", "b")}


def up(env, host, root):
    t = time.perf_counter()
    cp = subprocess.run([str(REPO / "bin" / "docker"), "compose", "--progress", "plain", "up", "-d", "--build"],
                        env={**env, "DOCKER_HOST": host}, cwd=root, capture_output=True, text=True)
    took = time.perf_counter() - t
    subprocess.run(["/usr/local/bin/docker", "-H", host, "compose", "down", "--rmi", "local"], cwd=root,
                   capture_output=True)
    if cp.returncode:
        raise SystemExit(cp.stdout[-1500:] + cp.stderr[-1500:])
    cached, executed = counts(cp.stdout + cp.stderr)
    return {"seconds": round(took, 2), "cached_steps": cached, "executed_steps": executed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=3_000_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    root = tmp / f"stack{uuid.uuid4().hex[:6]}"
    root.mkdir()
    lines = ["services:"]
    for s in ("api", "web", "worker"):
        (root / s).mkdir()
        (root / s / "Dockerfile").write_text(
            f"FROM dockcache-test/busybox\nRUN echo {s}-{uuid.uuid4().hex} > /t && "
            f"i=0; while [ $i -lt {args.loops} ]; do i=$((i+1)); done\n")
        lines += [f"  {s}:", f"    build: {{context: ./{s}, network: none}}", "    network_mode: none",
                  '    command: ["sleep", "1"]']
    (root / "compose.yaml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "DOCKCACHE_STATE_DIR": str(tmp / "state"), "DOCKCACHE_BUILD_STORE": str(tmp / "store")}
    res = {"cold_a": up(env, HOSTS["a"], root), "warm_b": up(env, HOSTS["b"], root)}
    res["warm_b_over_cold_a"] = round(res["warm_b"]["seconds"] / res["cold_a"]["seconds"], 3)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
