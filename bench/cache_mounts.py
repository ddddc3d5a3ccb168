"""Cache mounts across sessions (#22): the edited-source rebuild a developer waits for.

  python3 bench/cache_mounts.py [--rounds 3] [--case go|npm|all] [--packages 60] [--funcs 400]
                                [--overhead-runs 6] [--builder unix://…] [--json F]

Two real toolchains, each a project whose expensive step keeps its state in cache mounts:
  go   gotools image, `go build` with the go-build cache and the module cache as mounts;
       one downloaded module plus --packages local packages (compile time)
  npm  devtools image, `npm install` of a few registry packages with /root/.npm as a mount
Each round is a new project (fresh mount ids: no daemon holds them), all builds with
`--network host` (the cold and plain builds download), the source edited before each:

  cold_a        dockcache on A: the first build (fills the mounts; saved detached)
  same_session  dockcache on A again: the mounts are warm in A's own BuildKit
  new_session   dockcache on B, new to these mounts: seeded from the store first
  without       plain docker on B, a new session without dockcache: cold mounts
  warm_on/off   dockcache on A, nothing changed, the mounts warm in A: cache mounts
                carried vs DOCKCACHE_BUILD_CACHE_MOUNTS=0, --overhead-runs each,
                alternating (what carrying them adds to a build: parse, plan, spawn)

Detached saves are waited for between builds so no build shares the CPU with one.
Medians over rounds; one run prints every ratio the issue's targets name.
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

GO_SUM = ("github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n"
          "github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=\n")
NPM_DEPS = {"express": "4.19.2", "lodash": "4.17.21", "commander": "12.1.0", "chalk": "4.1.2"}


def go_project(d: Path, packages: int, funcs: int) -> None:
    imports = "".join(f'\t"example.com/m/lib/p{i}"\n' for i in range(packages))
    calls = "".join(f", p{i}.F1({i})" for i in range(packages))
    for i in range(packages):
        (d / "lib" / f"p{i}").mkdir(parents=True)
        body = "".join(f"func F{j}(x int) int {{ s := 0; for k := 0; k < x; k++ {{ s += k*{j} ^ {i} }}; return s }}\n"
                       for j in range(funcs))
        (d / "lib" / f"p{i}" / "p.go").write_text(f"package p{i}\n\n{body}")
    (d / "main.go").write_text(f'package main\n\nimport (\n\t"fmt"\n\n\t"github.com/google/uuid"\n{imports})\n\n'
                               f'// edit: 0\nfunc main() {{ fmt.Println(uuid.NewString(){calls}) }}\n')
    (d / "go.mod").write_text("module example.com/m\n\ngo 1.19\n\nrequire github.com/google/uuid v1.6.0\n")
    (d / "go.sum").write_text(GO_SUM)
    (d / "Dockerfile").write_text(
        "FROM dockcache-test/gotools:latest\nARG TOKEN\nWORKDIR /src\nCOPY . .\n"
        "RUN --mount=type=cache,id=gobuild-${TOKEN},target=/root/.cache/go-build "
        "--mount=type=cache,id=gomod-${TOKEN},target=/root/go/pkg/mod go build -o /out/app .\n")


def npm_project(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "package.json").write_text(json.dumps({"name": "x", "version": "1.0.0", "dependencies": NPM_DEPS}))
    (d / "main.go").write_text("// edit: 0\n")  # the edited source file
    (d / "Dockerfile").write_text(
        "FROM dockcache-test/devtools:latest\nARG TOKEN\nWORKDIR /app\nCOPY . .\n"
        "RUN --mount=type=cache,id=npm-${TOKEN},target=/root/.npm "
        "npm install --prefer-offline --no-audit --no-fund\n")


def edit(d: Path) -> None:
    f = d / "main.go"
    f.write_text(f.read_text() + f"// edit: {uuid.uuid4().hex}\n")


class Bench:
    def __init__(self, builder: str = "off"):
        self.tmp = Path(tempfile.mkdtemp(prefix="dccm-"))
        self.shared = builder != "off"  # mounts live in the shared BuildKit: nothing seeded or saved
        self.env = {**os.environ, "DOCKCACHE_STATE_DIR": str(self.tmp / "state"),
                    "DOCKCACHE_BUILD_STORE": str(self.tmp / "store"), "DOCKCACHE_PYTHON": sys.executable,
                    "DOCKCACHE_BUILD_BUILDER": builder}
        self.real = real_docker()
        self.tags: list[str] = []
        self.overhead_runs = 6

    def build(self, daemon: str, ctx: Path, token: str, *, plain=False, extra_env=None) -> float:
        tag = f"dccm-{token}/app:1"
        self.tags.append(tag)
        saves = self.saves()
        t = time.perf_counter()
        cp = subprocess.run([self.real if plain else DOCKCACHE, "build", "--network", "host", "--progress", "plain",
                             "--build-arg", f"TOKEN={token}", "-t", tag, str(ctx)],
                            env={**self.env, **(extra_env or {}), "DOCKER_HOST": HOSTS[daemon]},
                            capture_output=True, text=True)
        took = time.perf_counter() - t
        if cp.returncode:
            raise SystemExit(cp.stderr[-3000:])
        if not plain and not self.shared and (extra_env or {}).get("DOCKCACHE_BUILD_CACHE_MOUNTS") != "0":
            self.wait_save(saves + 1)
        return round(took, 3)

    def metrics(self) -> list[dict]:
        path = self.tmp / "state" / "metrics.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def saves(self) -> int:
        return sum(1 for m in self.metrics() if m.get("kind") == "mount-save")

    def wait_save(self, n: int, timeout=600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.saves() < n and time.monotonic() < deadline:
            time.sleep(0.2)

    def cleanup(self) -> None:
        for d in HOSTS.values():
            subprocess.run([self.real, "-H", d, "image", "rm", "-f", *self.tags], capture_output=True)


def one_round(b: Bench, case: str, i: int, packages: int, funcs: int) -> dict:
    ctx = b.tmp / f"{case}-{i}"
    if case == "go":
        go_project(ctx, packages, funcs)
    else:
        npm_project(ctx)
    token = uuid.uuid4().hex[:12]
    r = {"cold_a": b.build("a", ctx, token)}
    edit(ctx)
    r["same_session"] = b.build("a", ctx, token)
    edit(ctx)
    r["new_session"] = b.build("b", ctx, token)
    r["seed_ms"] = last(b.metrics(), "build").get("mounts_seed_ms") or 0.0
    r["save_ms"] = last(b.metrics(), "mount-save").get("ms") or 0.0
    edit(ctx)
    r["without"] = b.build("b", ctx, uuid.uuid4().hex[:12], plain=True)
    b.build("a", ctx, token)  # A's own build of this source: the runs below are all cached
    on, off = [], []
    for n in range(b.overhead_runs):
        pair = [(on, {}), (off, {"DOCKCACHE_BUILD_CACHE_MOUNTS": "0"})]
        for runs, env in (pair if n % 2 == 0 else pair[::-1]):
            runs.append(b.build("a", ctx, token, extra_env=env))
    if on:
        r["warm_on"], r["warm_off"] = round(statistics.median(on), 3), round(statistics.median(off), 3)
    print(f"{case} round {i + 1}: {json.dumps(r)}", file=sys.stderr, flush=True)
    return r


def last(records: list[dict], kind: str) -> dict:
    return ([m for m in records if m.get("kind") == kind] or [{}])[-1]


def summary(rounds: list[dict]) -> dict:
    med = {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}
    out = {"median_seconds": med, "each": {k: [r[k] for r in rounds] for k in rounds[0]}}
    out["ratios"] = {
        "new_session_over_same_session": round(med["new_session"] / med["same_session"], 2),
        "without_over_new_session": round(med["without"] / med["new_session"], 2),
    }
    if "warm_on" in med:
        out["ratios"]["warm_mounts_extra_s"] = round(med["warm_on"] - med["warm_off"], 3)
    return out



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", default="all", choices=("go", "npm", "all"))
    ap.add_argument("--packages", type=int, default=60)
    ap.add_argument("--funcs", type=int, default=400)
    ap.add_argument("--overhead-runs", type=int, default=6)
    ap.add_argument("--builder", default="off",
                    help="build.builder for the dockcache builds: a shared BuildKit (unix://…) instead of each daemon's own")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    b = Bench(args.builder)
    b.overhead_runs = args.overhead_runs
    res: dict = {"rounds": args.rounds, "go_packages": args.packages, "go_funcs": args.funcs, "builder": args.builder}
    try:
        for case in (("go", "npm") if args.case == "all" else (args.case,)):
            res[case] = summary([one_round(b, case, i, args.packages, args.funcs) for i in range(args.rounds)])
    finally:
        b.cleanup()
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
