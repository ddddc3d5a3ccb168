"""A dev container's day: a 1 GB+ base, the first build, a rebuild, a new session elsewhere.

  python3 bench/devcontainer.py [--rounds 2] [--sleep 8] [--shim bin/docker] [--no-cli] [--base-absent] [--json F]

Base image: devtools (Debian, python, node) plus two real toolchains from this host (a JDK
and Go: ~1.7 GB unpacked, ~0.6 GB compressed), built once on daemon A, pushed to the loopback
registry and pulled by B: one digest on both daemons, as a registry gives it. Kept between
runs. The slow RUN sleeps (`--sleep`, 8 s as the issue's tool install took): its time does
not move with the machine's load, so the difference to plain docker is dockcache's own.
Each round is a new project (fresh token: nothing cached anywhere at its start) in a
fresh build store, built as the dev containers CLI builds it: the image named
`vsc-<folder>-<sha256 of the workspace path>`, its Dockerfile copied to a new temp path each
time, the context the project's `.devcontainer`:

  cold A          first build of a project, plain docker and dockcache (each its own project)
  warm A          the same build again (a new temp Dockerfile path), plain and dockcache
  new session B   dockcache on daemon B, a copy of the project at another path (another tag,
                  another temp path); its reference is the warm build on A

`--base-absent`: before each cold run (plain and dockcache alike) the base leaves daemon A
(it, the images the bench made FROM it and dangling images removed, the build cache
pruned), as on a fresh engine: both pull it from the loopback
registry inside the cold build or `devcontainer up` (dockcache pulls it first, so its layers
stay out of the store: store bytes after cold show it). A and B get the base back at the end.

With the dev containers CLI installed (tests/engine/provision.sh), the same as real
`devcontainer up` runs (`--docker-path` plain docker or dockcache; warm = up with
`--remove-existing-container`, which builds again and starts a new container). Medians over
rounds, the order of plain and dockcache alternating per round; per dockcache build the
bytes BuildKit wrote into the export dir (metrics log) and the store's size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchenv import DOCKCACHE, HOSTS, real_docker  # noqa: E402
from shim.build.progress import counts, step_named  # noqa: E402
from shim.build.store.cachestore import CacheStore  # noqa: E402

REGISTRY = os.environ.get("DOCKCACHE_TEST_REGISTRY", "localhost:5000")
BASE = f"{REGISTRY}/dockcache-bench/devbase:v1"
TOOLCHAINS = ("/usr/lib/jvm", "/usr/local/go")  # real content, present on every machine of this kind
CONFIG = {"build": {"dockerfile": "Dockerfile", "options": ["--network=host"]}, "runArgs": ["--network=host"],
          "updateRemoteUserUID": False}


def sh(real: str, daemon: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run([real, "-H", HOSTS[daemon], *args], capture_output=True, text=True)
    if check and cp.returncode:
        raise SystemExit(f"docker {' '.join(args)} on {daemon}: {cp.stderr[-1500:]}")
    return cp


def ensure_base(real: str) -> dict:
    """The base on A and B with one digest: built on A from this host's toolchains, pushed, pulled."""
    ids = {d: sh(real, d, "image", "inspect", "--format", "{{.Id}}", BASE, check=False).stdout.strip()
           for d in HOSTS}
    if not ids["a"]:
        ctx = Path(tempfile.mkdtemp(prefix="dcbench-base-"))
        for src in TOOLCHAINS:
            shutil.copytree(src, ctx / Path(src).name, symlinks=True, copy_function=os.link)
        (ctx / "Dockerfile").write_text("FROM dockcache-test/devtools\n"
                                        + "".join(f"COPY {Path(s).name} /opt/{Path(s).name}\n" for s in TOOLCHAINS))
        sh(real, "a", "build", "--network", "none", "-q", "-t", BASE, str(ctx))
        shutil.rmtree(ctx, ignore_errors=True)
        sh(real, "a", "push", "-q", BASE)
        ids["a"] = sh(real, "a", "image", "inspect", "--format", "{{.Id}}", BASE).stdout.strip()
    if ids["b"] != ids["a"]:
        sh(real, "b", "pull", "-q", BASE)
    size = sh(real, "a", "image", "inspect", "--format", "{{.Size}}", BASE).stdout.strip()  # its blobs
    unpacked = sh(real, "b", "image", "ls", "--format", "{{.Size}}", BASE).stdout.strip()
    return {"image": "devtools + JDK + Go (this host's)", "id": ids["a"][:19], "bytes_compressed": int(size),
            "unpacked": unpacked}


class Bench:
    def __init__(self, shim: str, sleep: float, absent: bool = False):
        self.tmp = Path(tempfile.mkdtemp(prefix="dcbench-"))
        self.real, self.shim, self.sleep, self.absent = real_docker(), shim, sleep, absent
        self.made: list[tuple[str, str]] = []  # (daemon, image)

    def env(self, round_no: int, session: str) -> dict:
        return {**os.environ, "DOCKCACHE_STATE_DIR": str(self.tmp / f"state-{round_no}-{session}"),
                "DOCKCACHE_BUILD_STORE": str(self.tmp / f"store-{round_no}"), "DOCKCACHE_PYTHON": sys.executable,
                "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(self.tmp / "bind")}

    def workspace(self, where: str) -> tuple[Path, str]:
        token = uuid.uuid4().hex[:12]
        ws = self.tmp / where / "proj"
        (ws / ".devcontainer").mkdir(parents=True)
        (ws / ".devcontainer" / "devcontainer.json").write_text(json.dumps(CONFIG))
        (ws / ".devcontainer" / "Dockerfile").write_text(
            f"FROM {BASE}\nRUN echo {token} > /slow && sleep {self.sleep}\n"
            "RUN useradd -m -u 1000 dev\n")
        (ws / "README.md").write_text("a project\n")
        return ws, token

    def copy(self, ws: Path, where: str) -> Path:
        dest = self.tmp / where / "elsewhere" / "proj"
        shutil.copytree(ws, dest)
        return dest

    def build(self, daemon: str, ws: Path, token: str, env: dict, *, plain: bool) -> dict:
        """As the dev containers CLI builds: a new temp Dockerfile path, the image named by the path."""
        written = self.tmp / f"devcontainercli-{uuid.uuid4().hex[:8]}" / "Dockerfile"
        written.parent.mkdir()
        shutil.copy(ws / ".devcontainer" / "Dockerfile", written)
        tag = f"vsc-proj-{hashlib.sha256(str(ws).encode()).hexdigest()}"
        self.made.append((daemon, tag))
        metrics = Path(env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl"
        before = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        t = time.perf_counter()
        cp = subprocess.run([self.real if plain else self.shim, "buildx", "build", "--load", "--network", "host",
                             "--progress", "plain", "-f", str(written), "-t", tag, str(ws / ".devcontainer")],
                            env={**env, "DOCKER_HOST": HOSTS[daemon]}, capture_output=True, text=True)
        took = time.perf_counter() - t
        if cp.returncode:
            raise SystemExit(f"build on {daemon} failed:\n{cp.stderr[-2000:]}")
        cached, executed = counts(cp.stderr)
        step = step_named(cp.stderr, token)
        out = {"seconds": round(took, 3), "cached_steps": cached, "executed_steps": executed,
               "slow_step_cached": bool(step and step.cached),
               "pulled_base": any(w in cp.stderr for w in ("extracting sha256:", "Pulling from", "Pull complete"))}
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if not plain and len(lines) > before:
            record = json.loads(lines[-1])
            out["export_written"] = record.get("export_written") or 0
            out["as_typed"] = bool(record.get("as_typed"))  # nothing it reads changed: no --cache-to
        return out

    def up(self, daemon: str, ws: Path, env: dict, *, plain: bool, again: bool = False) -> dict:
        t = time.perf_counter()
        cp = subprocess.run(["devcontainer", "up", "--workspace-folder", str(ws), "--docker-path",
                             self.real if plain else self.shim, *(["--remove-existing-container"] if again else [])],
                            env={**env, "DOCKER_HOST": HOSTS[daemon]}, capture_output=True, text=True)
        took = time.perf_counter() - t
        last = cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else "{}"
        if cp.returncode or json.loads(last).get("outcome") != "success":
            raise SystemExit(f"devcontainer up on {daemon} failed:\n{cp.stdout[-1500:]}{cp.stderr[-1500:]}")
        image = sh(self.real, daemon, "inspect", "--format", "{{.Config.Image}}", json.loads(last)["containerId"],
                   check=False).stdout.strip()
        self.made += [(daemon, image)] if image else []
        return {"seconds": round(took, 3), "pulled_base": "extracting sha256:" in cp.stdout + cp.stderr
                or "Pull complete" in cp.stdout + cp.stderr}

    def sequence(self, sides: dict, round_no: int):
        """(phase, side, its args): both colds then both warms, the side first alternating per
        round; with --base-absent each side's cold then warm (dropping the base prunes the
        build cache: the other side's cold build would no longer be warm)."""
        names = list(sides) if round_no % 2 == 0 else list(sides)[::-1]
        pairs = ([(p, n) for n in names for p in ("cold_a", "warm_a")] if self.absent
                 else [(p, n) for p in ("cold_a", "warm_a") for n in names])
        return [(p, n, sides[n]) for p, n in pairs]

    def before_cold(self, daemon: str) -> None:
        """--base-absent: the engine as a fresh one is, without the base or any layer of it."""
        if self.absent:  # the images made FROM it so far hold its layers too
            self.remove_containers(daemon)
            for d, image in [m for m in self.made if m[0] == daemon]:
                sh(self.real, d, "image", "rm", "-f", image, check=False)
            sh(self.real, daemon, "image", "rm", "-f", BASE, check=False)
            sh(self.real, daemon, "image", "prune", "-f")  # dangling images may hold its layers
            sh(self.real, daemon, "builder", "prune", "-af")
            if sh(self.real, daemon, "image", "inspect", BASE, check=False).returncode == 0:
                raise SystemExit(f"the base is still on {daemon}")

    def cleanup(self) -> None:
        for d in HOSTS:
            self.remove_containers(d)
        for d, image in self.made:
            sh(self.real, d, "image", "rm", "-f", image, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.absent:
            for d in HOSTS:
                sh(self.real, d, "pull", "-q", BASE, check=False)

    def remove_containers(self, d: str) -> None:
        ids = sh(self.real, d, "ps", "-aq", "--filter", "label=devcontainer.local_folder", check=False).stdout.split()
        mine = [i for i in ids if str(self.tmp) in sh(self.real, d, "inspect", "--format",
                                                        '{{index .Config.Labels "devcontainer.local_folder"}}',
                                                        i, check=False).stdout]
        if mine:
            sh(self.real, d, "rm", "-f", *mine, check=False)


def builds_round(b: Bench, i: int) -> dict:
    env_a, env_b = b.env(i, "a"), b.env(i, "b")
    (p_ws, p_tok), (d_ws, d_tok) = b.workspace(f"plain-{i}"), b.workspace(f"dc-{i}")
    r: dict = {}
    order = [("plain", p_ws, p_tok, True), ("dockcache", d_ws, d_tok, False)]
    for phase, name, (ws, tok, plain) in b.sequence({n: (w, t, p) for n, w, t, p in order}, i):
        if phase == "cold_a":
            b.before_cold("a")
        r[f"{phase}_{name}"] = b.build("a", ws, tok, env_a, plain=plain)
    r["store_bytes_after_cold"] = CacheStore(Path(env_a["DOCKCACHE_BUILD_STORE"])).size()
    r["new_session_b_dockcache"] = b.build("b", b.copy(d_ws, f"dc-{i}-b"), d_tok, env_b, plain=False)
    return r


def cli_round(b: Bench, i: int) -> dict:
    env_a, env_b = b.env(100 + i, "a"), b.env(100 + i, "b")
    (p_ws, _), (d_ws, _) = b.workspace(f"cli-plain-{i}"), b.workspace(f"cli-dc-{i}")
    r: dict = {}
    order = [("plain", p_ws, True), ("dockcache", d_ws, False)]
    for phase, name, (ws, plain) in b.sequence({n: (w, p) for n, w, p in order}, i):
        if phase == "cold_a":
            b.before_cold("a")
        r[f"up_{phase}_{name}"] = b.up("a", ws, env_a, plain=plain, again=phase == "warm_a")
    r["up_new_session_b_dockcache"] = b.up("b", b.copy(d_ws, f"cli-dc-{i}-b"), env_b, plain=False)
    return r


def median(rounds: list[dict], kind: str):
    runs = [r[kind] for r in rounds]
    if not isinstance(runs[0], dict):
        return max(runs)
    out = {"seconds": round(statistics.median(x["seconds"] for x in runs), 3), "each": [x["seconds"] for x in runs]}
    for k in ("cached_steps", "executed_steps", "slow_step_cached", "pulled_base", "export_written", "as_typed"):
        if k in runs[0]:
            out[k] = [x.get(k) for x in runs]
    return out


def deltas(rounds: list[dict], prefix: str = "") -> dict:
    """dockcache minus plain docker within each round (both ran back to back): steadier than a
    ratio of medians when the machine's load moves between rounds."""
    return {f"{phase}_dockcache_minus_plain_s": round(statistics.median(
        r[f"{prefix}{phase}_dockcache"]["seconds"] - r[f"{prefix}{phase}_plain"]["seconds"] for r in rounds), 3)
        for phase in ("cold_a", "warm_a")}


def ratios(res: dict, prefix: str = "") -> dict:
    s = {k: v["seconds"] for k, v in res.items() if isinstance(v, dict) and "seconds" in v}
    p = prefix
    return {"cold_a_dockcache_over_plain": round(s[f"{p}cold_a_dockcache"] / s[f"{p}cold_a_plain"], 2),
            "warm_a_dockcache_over_plain": round(s[f"{p}warm_a_dockcache"] / s[f"{p}warm_a_plain"], 2),
            "new_session_b_over_warm_a_dockcache": round(s[f"{p}new_session_b_dockcache"] / s[f"{p}warm_a_dockcache"], 2),
            "new_session_b_over_warm_a_plain": round(s[f"{p}new_session_b_dockcache"] / s[f"{p}warm_a_plain"], 2),
            "new_session_b_over_cold_a_plain": round(s[f"{p}new_session_b_dockcache"] / s[f"{p}cold_a_plain"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sleep", type=float, default=8.0, help="seconds the slow RUN takes (the issue's took 8.1 s)")
    ap.add_argument("--shim", default=DOCKCACHE, help="the dockcache launcher (another checkout's bin/docker)")
    ap.add_argument("--no-cli", action="store_true", help="leave out the devcontainer up runs")
    ap.add_argument("--base-absent", action="store_true", help="each cold run starts without the base (pulls it)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    b = Bench(args.shim, args.sleep, args.base_absent)
    res: dict = {"base": ensure_base(b.real), "rounds": args.rounds, "shim": args.shim, "base_absent": args.base_absent,
                 "load_average": os.getloadavg()[0]}
    try:
        rounds = [builds_round(b, i) for i in range(args.rounds)]
        res["builds"] = {k: median(rounds, k) for k in rounds[0]}
        res["builds"]["ratios"] = {**ratios(res["builds"]), **deltas(rounds)}
        if shutil.which("devcontainer") and not args.no_cli:
            cli = [cli_round(b, i) for i in range(args.rounds)]
            res["devcontainer_up"] = {k: median(cli, k) for k in cli[0]}
            res["devcontainer_up"]["ratios"] = {**ratios(res["devcontainer_up"], "up_"), **deltas(cli, "up_")}
        else:
            res["devcontainer_up"] = "the dev containers CLI is not installed: buildx command lines only"
    finally:
        b.cleanup()
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
