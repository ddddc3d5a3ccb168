"""Package caches through dockcache vs the real docker, against the registry stand-in.

  python3 bench/packages.py [--profiles 100mbit-20ms,lan] [--runs 3] [--json out.json]

Per profile and tool (npm ci of an express app, pip install of wheels plus an sdist that
must be built): fresh container every time; cold (empty cache) and warm through
bin/docker, and the real docker with no cache; time (median of --runs), bytes the
registry served, whether the warm install works with --network none, and a lockfile
change (one added dependency: what gets fetched).
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
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from registry_proxy import serve  # noqa: E402

HOST = os.environ.get("DOCKCACHE_TEST_HOST_A", "unix:///run/dockcache-engine/a.sock")
IMAGE = "dockcache-test/devtools:latest"
NPM_DEPS = {"express": "4.18.2", "lodash": "4.17.21", "chalk": "4.1.2", "commander": "11.1.0"}
PIP_REQS = "docopt==0.6.2\nrequests==2.31.0\nidna==3.6\ncertifi==2024.2.2\nurllib3==2.1.0\ncharset-normalizer==3.3.2\n"


def tools(port: int) -> dict:
    reg = f"http://127.0.0.1:{port}"
    return {
        "npm": {"files": {"package.json": json.dumps({"name": "b", "version": "1.0.0", "dependencies": NPM_DEPS})},
                "prepare": f"npm install --package-lock-only --no-audit --no-fund --registry {reg}/npm/",
                "install": f"rm -rf node_modules && npm ci --no-audit --no-fund --registry {reg}/npm/",
                "offline": "rm -rf node_modules && npm ci --offline --no-audit --no-fund",
                "change": f"npm install --no-audit --no-fund --registry {reg}/npm/ is-number@7.0.0"},
        "yarn": {"files": {"package.json": json.dumps({"name": "b", "version": "1.0.0", "dependencies": NPM_DEPS})},
                 "prepare": f"yarn install --non-interactive --registry {reg}/npm/ && rm -rf node_modules",
                 "install": f"rm -rf node_modules && yarn install --frozen-lockfile --non-interactive --registry {reg}/npm/",
                 "offline": "rm -rf node_modules && yarn install --offline --frozen-lockfile --non-interactive",
                 "change": f"yarn add --non-interactive --registry {reg}/npm/ is-number@7.0.0"},
        "pnpm": {"files": {"package.json": json.dumps({"name": "b", "version": "1.0.0", "dependencies": NPM_DEPS})},
                 "prepare": f"pnpm install --lockfile-only --registry {reg}/npm/",
                 "install": f"rm -rf node_modules && pnpm install --frozen-lockfile --registry {reg}/npm/",
                 "offline": "rm -rf node_modules && pnpm install --offline --frozen-lockfile",
                 "change": f"pnpm add --registry {reg}/npm/ is-number@7.0.0"},
        "uv": {"files": {"requirements.txt": PIP_REQS, "uv.lock": "version = 1\n"},
               "prepare": "true",
               "install": f"rm -rf /tmp/v && uv venv -q /tmp/v && uv pip install -q --python /tmp/v/bin/python "
                          f"--index-url {reg}/pypi/simple/ -r requirements.txt",
               "offline": (f"uv venv -q /tmp/v && uv pip install -q --offline --python /tmp/v/bin/python "
                           f"--index-url {reg}/pypi/simple/ -r requirements.txt"),
               "change": f"uv venv -q /tmp/v && uv pip install -q --python /tmp/v/bin/python "
                         f"--index-url {reg}/pypi/simple/ -r requirements.txt tomli==2.0.1"},
        "pip": {"files": {"requirements.txt": PIP_REQS},
                "prepare": "true",
                "install": (f"pip install -q --break-system-packages --root-user-action=ignore "
                            f"--trusted-host 127.0.0.1 --index-url {reg}/pypi/simple/ -r requirements.txt"),
                "offline": None,  # pip has no offline mode against an index
                "change": (f"pip install -q --break-system-packages --root-user-action=ignore "
                           f"--trusted-host 127.0.0.1 --index-url {reg}/pypi/simple/ -r requirements.txt tomli==2.0.1")},
    }


def stats(port: int, reset: bool = False) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/__stats", method="POST" if reset else "GET")
    return json.loads(urllib.request.urlopen(req).read() or b"{}")


def run(docker: str, env: dict, proj: Path, cmd: str, port: int, network: str = "host") -> dict:
    stats(port, reset=True)
    t = time.perf_counter()
    cp = subprocess.run([docker, "run", "--rm", "--network", network, "-v", f"{proj}:/app", "-w", "/app",
                         IMAGE, "sh", "-c", cmd], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    return {"seconds": round(took, 2), "ok": cp.returncode == 0, "bytes": stats(port)["bytes"]}


def bench_tool(name: str, spec: dict, port: int, runs: int, tmp: Path) -> dict:
    proj = tmp / f"{name}-{uuid.uuid4().hex[:6]}"
    proj.mkdir()
    for fname, text in spec["files"].items():
        (proj / fname).write_text(text)
    base_env = {**os.environ, "DOCKER_HOST": HOST}
    subprocess.run(["docker", "run", "--rm", "--network", "host", "-v", f"{proj}:/app", "-w", "/app", IMAGE,
                    "sh", "-c", spec["prepare"]], env=base_env, capture_output=True, check=True)
    run("/usr/local/bin/docker", base_env, proj, spec["install"], port)  # fill the proxy's own upstream cache
    shim = str(REPO / "bin" / "docker")
    prefix = f"dcb{uuid.uuid4().hex[:6]}"
    env = {**base_env, "DOCKCACHE_STATE_DIR": str(tmp / f"state-{prefix}"), "DOCKCACHE_VOLUME_PREFIX": prefix}
    out = {"cold": run(shim, env, proj, spec["install"], port)}
    warm = [run(shim, env, proj, spec["install"], port) for _ in range(runs)]
    plain = [run("/usr/local/bin/docker", base_env, proj, spec["install"], port) for _ in range(runs)]
    out["warm"] = {"seconds": statistics.median(w["seconds"] for w in warm), "bytes": max(w["bytes"] for w in warm),
                   "ok": all(w["ok"] for w in warm)}
    out["no_dockcache"] = {"seconds": statistics.median(p["seconds"] for p in plain),
                           "bytes": statistics.median(p["bytes"] for p in plain)}
    if spec["offline"]:
        out["warm_network_none_works"] = run(shim, env, proj, spec["offline"], port, network="none")["ok"]
    out["lockfile_change"] = run(shim, env, proj, spec["change"], port)
    out["warm_over_cold"] = round(out["warm"]["seconds"] / out["cold"]["seconds"], 3)
    subprocess.run(["docker", "-H", HOST, "volume", "rm", f"{prefix}-{name}"], capture_output=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default="100mbit-20ms")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--json", default=None)
    ap.add_argument("--tools", default="npm,yarn,pnpm,uv,pip")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    results = {}
    for i, profile in enumerate(args.profiles.split(",")):
        port = args.port + i
        server, _ = serve(port, profile, Path("/var/cache/dockcache-bench-proxy"))
        try:
            results[profile] = {name: bench_tool(name, spec, port, args.runs, tmp)
                                for name, spec in tools(port).items() if name in args.tools.split(",")}
        finally:
            server.shutdown()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
