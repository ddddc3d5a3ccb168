"""Run every benchmark once and write one Markdown and one JSON report.

  python3 bench/run_all.py [--out bench/out] [--quick]

Needs the engine pair (tests/engine/provision.sh up). Each figure is a ratio or a
median measured within this one run; the report names the machine and this command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHES = {  # name -> (script, arguments, quick arguments)
    "overhead": ("overhead.py", ["--runs", "120"], ["--runs", "20"]),
    "builds": ("builds.py", [], ["--loops", "1000000", "--sessions", "2"]),
    "workflow": ("workflow.py", ["--rounds", "5"], ["--rounds", "2"]),
    "devcontainer": ("devcontainer.py", ["--rounds", "3"], ["--rounds", "1", "--no-cli"]),
    "compose": ("compose_stack.py", ["--loops", "1000000", "--base", "dockcache-test/devtools", "--rounds", "7"],
                ["--loops", "1000000", "--rounds", "3"]),
    "stats": ("stats.py", [], ["--runs", "2"]),
    "packages": ("packages.py", ["--profiles", "100mbit-20ms,20mbit-50ms,lan"], ["--runs", "1"]),
    "concurrency": ("concurrency.py", [], []),
}


def machine() -> dict:
    ver = subprocess.run(["docker", "-H", "unix:///run/dockcache-engine/a.sock", "version", "--format",
                          "{{.Server.Version}}"], capture_output=True, text=True).stdout.strip()
    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "?")
    return {"cpus": os.cpu_count(), "mem_kib": int(mem), "kernel": platform.release(),
            "python": platform.python_version(), "engine": ver}


def run_one(name: str, quick: bool, tmp: Path) -> dict:
    script, full, short = BENCHES[name]
    out = tmp / f"{name}.json"
    argv = [sys.executable, str(REPO / "bench" / script), *(short if quick else full), "--json", str(out)]
    t = time.perf_counter()
    cp = subprocess.run(argv, capture_output=True, text=True)
    res = json.loads(out.read_text()) if out.exists() else None
    return {"command": " ".join(["python3", f"bench/{script}", *(short if quick else full)]),
            "seconds": round(time.perf_counter() - t, 1), "ok": cp.returncode == 0, "result": res,
            "error": None if cp.returncode == 0 else cp.stderr[-1000:]}


def markdown(report: dict) -> str:
    lines = ["# dockcache benchmark report", "", f"Command: `{report['command']}`", "",
             f"Machine: {json.dumps(report['machine'])}", ""]
    for name, r in report["benches"].items():
        lines += [f"## {name}", "", f"`{r['command']}` ({r['seconds']} s, {'ok' if r['ok'] else 'FAILED'})", "",
                  "```json", json.dumps(r["result"] if r["ok"] else r["error"], indent=1), "```", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "bench" / "out"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    ap.add_argument("--only", default=",".join(BENCHES))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    report = {"command": " ".join(["python3", "bench/run_all.py", *sys.argv[1:]]), "machine": machine(),
              "benches": {n: run_one(n, args.quick, tmp) for n in args.only.split(",")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    sys.exit(0 if all(r["ok"] for r in report["benches"].values()) else 1)


if __name__ == "__main__":
    main()
