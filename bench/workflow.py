"""The build cache on a developer's real day: a real base image, edits, a new session.

  python3 bench/workflow.py [--rounds 3] [--base dockcache-test/gotools] [--loops 2000000] [--json F]

Base image: a Debian image of real size (gotools, ~320 MB, one digest on A and B, as a
registry pull gives: provisioning saves it once and loads it into every daemon). Each
round is a new project (fresh tag, fresh token: nothing cached anywhere at its start):

  cold A         dockcache, first build
  warm A         unchanged rebuild, dockcache and plain docker on the same daemon
  edited A       a source file that only a later COPY reads changes; dockcache and plain
  new session B  dockcache on the other daemon after a further edit (plain docker there
                 has nothing: its reference is the plain edited build on A)

Medians over rounds, the order of dockcache and plain alternating per round. Per build:
seconds, steps cached/run, and the bytes BuildKit wrote into the export dir (from
dockcache's metrics log: blobs that were not links to the store). Then five more edit
cycles (alternating A and B) for the store's growth, and two build-arg variants built
alternately on A, then both on B.
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

from benchenv import DOCKCACHE, HOSTS, real_docker  # noqa: E402
from shim.build.store.cachestore import CacheStore  # noqa: E402
from shim.build.progress import counts  # noqa: E402



class Bench:
    def __init__(self, base: str, loops: int):
        self.tmp = Path(tempfile.mkdtemp(prefix="dcwf-"))
        self.env = {**os.environ, "DOCKCACHE_STATE_DIR": str(self.tmp / "state"),
                    "DOCKCACHE_BUILD_STORE": str(self.tmp / "store"), "DOCKCACHE_PYTHON": sys.executable}
        self.real = real_docker()
        self.base, self.loops = base, loops
        self.tags: list[str] = []

    def project(self, variant_arg: bool = False) -> tuple[Path, str]:
        token = uuid.uuid4().hex[:12]
        ctx = self.tmp / f"ctx-{token}"
        ctx.mkdir()
        arg = "ARG V=0\n" if variant_arg else ""
        use = " $V" if variant_arg else ""
        ctx.joinpath("Dockerfile").write_text(
            f"FROM {self.base}\n{arg}"
            f"RUN echo {token}{use} > /slow && i=0; while [ $i -lt {self.loops} ]; do i=$((i+1)); done\n"
            "COPY app.txt /app/app.txt\n"
            "RUN cat /app/app.txt > /app/out\n")
        ctx.joinpath("app.txt").write_text("v0\n")
        tag = f"dcwf-{token}/app:1"
        self.tags.append(tag)
        return ctx, tag

    def build(self, daemon: str, ctx: Path, tag: str, *, plain: bool = False, extra=()) -> dict:
        docker = self.real if plain else DOCKCACHE
        before = self.metric_count()
        t = time.perf_counter()
        cp = subprocess.run([docker, "build", "--network", "none", "--progress", "plain", *extra, "-t", tag,
                             str(ctx)], env={**self.env, "DOCKER_HOST": HOSTS[daemon]},
                            capture_output=True, text=True)
        took = time.perf_counter() - t
        if cp.returncode:
            raise SystemExit(f"build on {daemon} ({tag}, {'plain' if plain else 'dockcache'}) failed:\n"
                             f"{cp.stderr[-2000:]}")
        cached, executed = counts(cp.stderr)
        out = {"seconds": round(took, 3), "cached_steps": cached, "executed_steps": executed}
        if not plain:  # no new record: nothing it reads changed, so docker ran as typed (no export)
            out["export_written"] = (self.last_metric().get("export_written") or 0) if self.metric_count() > before else 0
            out["exported"] = self.metric_count() > before and bool(self.last_metric().get("export"))
        return out

    def metric_count(self) -> int:
        path = self.tmp / "state" / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def last_metric(self) -> dict:
        lines = (self.tmp / "state" / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def store_size(self) -> int:
        return CacheStore(self.tmp / "store").size()

    def cleanup(self) -> None:
        for d in HOSTS.values():
            subprocess.run([self.real, "-H", d, "image", "rm", "-f", *self.tags], capture_output=True)


def edit(ctx: Path) -> None:
    ctx.joinpath("app.txt").write_text(uuid.uuid4().hex + "\n")


def one_round(b: Bench, i: int) -> dict:
    ctx, tag = b.project()
    r = {"cold_a": b.build("a", ctx, tag)}
    pair = [("warm_a", False), ("warm_a_plain", True)]
    for name, plain in (pair if i % 2 == 0 else pair[::-1]):
        r[name] = b.build("a", ctx, tag, plain=plain)
    pair = [("edited_a", False), ("edited_a_plain", True)]
    for name, plain in (pair if i % 2 == 0 else pair[::-1]):
        edit(ctx)
        r[name] = b.build("a", ctx, tag, plain=plain)
    edit(ctx)
    r["new_session_b"] = b.build("b", ctx, tag)
    return r


def growth(b: Bench) -> dict:
    ctx, tag = b.project()
    b.build("a", ctx, tag)
    one = b.store_size()
    for n in range(5):
        edit(ctx)
        b.build("b" if n % 2 else "a", ctx, tag)
    return {"store_bytes_after_1": one, "store_bytes_after_5_edit_cycles": b.store_size(),
            "ratio": round(b.store_size() / one, 3)}


def variants(b: Bench) -> dict:
    ctx, tag = b.project(variant_arg=True)
    for v in ("0", "1", "0", "1"):
        b.build("a", ctx, tag, extra=("--build-arg", f"V={v}"))
    return {f"b_v{v}": b.build("b", ctx, tag, extra=("--build-arg", f"V={v}")) for v in ("0", "1")}


def median_of(rounds: list[dict], kind: str) -> dict:
    runs = [r[kind] for r in rounds]
    out = {"seconds": round(statistics.median(r["seconds"] for r in runs), 3), "each": [r["seconds"] for r in runs],
           "cached_steps": min(r["cached_steps"] for r in runs),
           "executed_steps": max(r["executed_steps"] for r in runs)}
    if "export_written" in runs[0]:
        out["export_written_bytes"] = max(r.get("export_written") or 0 for r in runs)
        out["exported"] = [r.get("exported") for r in runs]
    return out



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", default="dockcache-test/gotools:latest")
    ap.add_argument("--loops", type=int, default=2_000_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    b = Bench(args.base, args.loops)
    try:
        rounds = [one_round(b, i) for i in range(args.rounds)]
        res = {"base": args.base, "rounds": args.rounds,
               **{k: median_of(rounds, k) for k in rounds[0]}}
        res["growth"] = growth(b)
        res["variants"] = variants(b)
    finally:
        b.cleanup()
    s = {k: res[k]["seconds"] for k in rounds[0]}
    res["ratios"] = {
        "warm_a_over_plain": round(s["warm_a"] / s["warm_a_plain"], 2),
        "warm_a_minus_plain_s": round(s["warm_a"] - s["warm_a_plain"], 3),
        "edited_a_over_plain": round(s["edited_a"] / s["edited_a_plain"], 2),
        "edited_a_minus_plain_s": round(s["edited_a"] - s["edited_a_plain"], 3),
        "new_session_b_over_plain_edited": round(s["new_session_b"] / s["edited_a_plain"], 2),
        "new_session_b_minus_plain_edited_s": round(s["new_session_b"] - s["edited_a_plain"], 3),
        "cold_a_over_new_session_b": round(s["cold_a"] / s["new_session_b"], 1),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
