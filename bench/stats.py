"""`dockcache cache stats --json` with 20 caches (20 labelled volumes) on daemon A.

  python3 bench/stats.py [--runs 5]
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

REPO = Path(__file__).resolve().parent.parent
HOST = os.environ.get("DOCKCACHE_TEST_HOST_A", "unix:///run/dockcache-engine/a.sock")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    prefix = f"dcstats{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(20)]
    for n in names:
        subprocess.run(["docker", "-H", HOST, "volume", "create", "--label", "dockcache.managed=true",
                        "--label", "dockcache.manager=npm", n], capture_output=True, check=True)
    env = {**os.environ, "DOCKER_HOST": HOST, "DOCKCACHE_STATE_DIR": tempfile.mkdtemp()}
    times = []
    try:
        for _ in range(args.runs):
            t = time.perf_counter()
            cp = subprocess.run([sys.executable, "-m", "shim", "cache", "stats", "--json"], env=env, cwd=REPO,
                                capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            assert cp.returncode == 0 and cp.stdout.count(prefix) >= 20, cp.stderr
    finally:
        subprocess.run(["docker", "-H", HOST, "volume", "rm", *names], capture_output=True)
    res = {"caches": 20, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
           "max_s": round(max(times), 3), "runs": args.runs}
    print(f"cache stats --json with >= 20 caches: median {res['median_s']:.2f} s "
          f"(min {res['min_s']:.2f}, max {res['max_s']:.2f}, {args.runs} runs)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
