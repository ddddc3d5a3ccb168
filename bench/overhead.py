"""Time added by dockcache to docker commands: medians over alternating runs.

  python3 bench/overhead.py [--runs 40] [--host unix:///run/dockcache-engine/a.sock]

Three views: (1) the launcher alone, with a no-op program as the "real docker", so
only dockcache's own work is timed; (2) `docker version` / `docker ps` through the
shim vs the real CLI on a real engine; (3) an intercepted `docker run` in the steady
state (volumes known, image config cached) vs the same argv straight to docker.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIM = str(REPO / "bin" / "docker")


def timed(argv, env, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append((time.perf_counter() - t) * 1000)
    return out


def pair(label, real_argv, shim_argv, env, runs):
    a, b = [], []
    for _ in range(runs):  # alternate so machine noise hits both sides alike
        a += timed(real_argv, env, 1)
        b += timed(shim_argv, env, 1)
    ma, mb = statistics.median(a), statistics.median(b)
    return {"case": label, "real_ms": round(ma, 2), "shim_ms": round(mb, 2), "added_ms": round(mb - ma, 2),
            "ratio": round(mb / ma, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--host", default=os.environ.get("DOCKCACHE_TEST_HOST_A", "unix:///run/dockcache-engine/a.sock"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    real = "/usr/local/bin/docker"
    tmp = Path(tempfile.mkdtemp())
    noop = tmp / "noop"
    noop.write_text("#!/bin/sh\nexit 0\n")
    noop.chmod(0o755)
    proj = tmp / "proj"
    proj.mkdir()
    (proj / "package-lock.json").write_text("{}")
    env = {**os.environ, "DOCKCACHE_STATE_DIR": str(tmp / "state"), "DOCKER_HOST": args.host,
           "DOCKCACHE_PYTHON": sys.executable}
    noop_env = {**env, "DOCKCACHE_REAL_DOCKER": str(noop)}
    run_argv = ["run", "--rm", "--network", "none", "-v", f"{proj}:/app", "-w", "/app",
                "dockcache-test/busybox", "true"]
    learn = subprocess.run([SHIM, *run_argv], env={**env, "DOCKCACHE_DEBUG": "1"}, capture_output=True, text=True)
    final = json.loads(learn.stderr.split("dockcache: exec ", 1)[1].splitlines()[0])[1:]  # argv with our mount
    rows = [
        pair("launcher only: ps (no-op docker)", [str(noop), "ps"], [SHIM, "ps"], noop_env, args.runs),
        pair("launcher only: intercepted run, steady state (no-op docker)", [str(noop), *run_argv],
             [SHIM, *run_argv], {**noop_env}, args.runs),
        pair("docker version", [real, "version"], [SHIM, "version"], env, args.runs),
        pair("docker ps", [real, "ps"], [SHIM, "ps"], env, args.runs),
        pair("docker run, real engine: user argv vs shim (includes the cache mount's own cost)",
             [real, *run_argv], [SHIM, *run_argv], env, max(10, args.runs // 4)),
        pair("docker run, real engine: same final argv, direct vs through the shim",
             [real, *final], [SHIM, *run_argv], env, max(10, args.runs // 4)),
    ]
    print(f"{'case':62} {'real ms':>8} {'shim ms':>8} {'added':>7} {'ratio':>6}")
    for r in rows:
        print(f"{r['case']:62} {r['real_ms']:8.2f} {r['shim_ms']:8.2f} {r['added_ms']:7.2f} {r['ratio']:6.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
