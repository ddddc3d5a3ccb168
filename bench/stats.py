"""`dockcache cache stats --json` with 20 caches (20 labelled volumes) on daemon A, each
holding --files npm cache entries (index + content files), which stats counts and reads
hits/misses from.

  python3 bench/stats.py [--runs 5] [--files 1000]
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
    ap.add_argument("--files", type=int, default=1000, help="npm cache entries per volume")
    args = ap.parse_args()
    prefix = f"dcstats{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(20)]
    for n in names:
        subprocess.run(["docker", "-H", HOST, "volume", "create", "--label", "dockcache.managed=true",
                        "--label", "dockcache.manager=npm", n], capture_output=True, check=True)
        fill = (f"i=0; while [ $i -lt {args.files} ]; do d=/c/_cacache/index-v5/$((i % 256))/$((i / 256)); "
                f"e=/c/_cacache/content-v2/sha512/$((i % 256))/$((i / 256)); mkdir -p $d $e; "
                f"echo k > $d/$i; echo data > $e/$i; i=$((i + 1)); done")
        subprocess.run(["docker", "-H", HOST, "run", "--rm", "--network", "none", "-v", f"{n}:/c",
                        "dockcache-test/busybox:latest", "sh", "-c", fill], capture_output=True, check=True)
    env = {**os.environ, "DOCKER_HOST": HOST, "DOCKCACHE_STATE_DIR": tempfile.mkdtemp(), "DOCKCACHE_VOLUME_PREFIX": prefix}
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
    res = {"caches": 20, "files_per_cache": 2 * args.files, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
           "max_s": round(max(times), 3), "runs": args.runs}
    print(f"cache stats --json with >= 20 caches of {2 * args.files} files each: median {res['median_s']:.2f} s "
          f"(min {res['min_s']:.2f}, max {res['max_s']:.2f}, {args.runs} runs)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
