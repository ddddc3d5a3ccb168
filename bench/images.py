"""Images across sessions: a project's `docker compose up -d --build` in a new session, with
every image behind a link that stands for the internet (100 Mbit/s, 20 ms).

  python3 bench/images.py [--json F] [--only stack|pulls|floor|order] [--rounds N] [--registry PATH]

The stack: 3 built services (Go with a build cache mount, Node with `npm ci`, Python with
`pip install`) FROM real bases, and 2 pulled service images, all in a registry of the
bench's own on loopback behind bench/throttle.py (the "internet"). Each session is a fresh
dockerd (an empty image store, as every new session's is), started and stopped here by pid.
Measured: plain docker's new session; dockcache's first session (the host's image cache
cold: it fetches each image once) and a new session after it (the host cache warm, the
build store too); that session's warm restart (`compose down` + `up -d --build`). Wall time
and bytes fetched from the "internet"; and plain docker's new session with the registry on
loopback (the floor: unpacking, builds and starts on this machine). Then single pulls of one ~200 MB base: direct
through the link vs the first pull through the cache, and a new session's pull from the
cache vs a plain pull from a loopback registry. And the five images alone (`--only order`):
plain compose pulling them side by side vs dockcache's pulls ordered by shared layers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchenv import DOCKCACHE, HOSTS, REPO, real_docker  # noqa: E402
from throttle import Throttle  # noqa: E402

ENGINE_CACHE = Path(os.environ.get("DOCKCACHE_ENGINE_CACHE", "/var/cache/dockcache-engine"))
PREFIX = ENGINE_CACHE / "prefix" / "trixie"
WORK = Path(os.environ.get("DOCKCACHE_BENCH_DIR", "/var/tmp/dockcache-bench-images"))
# what each name stands for: the test images provisioned on daemon A
IMAGES = {"go": "dockcache-test/gotools:latest", "node": "dockcache-test/scripttools:latest",
          "python": "dockcache-test/devtools:latest", "db": "dockcache-test/ctools:latest",
          "cache": "dockcache-test/busybox:latest"}
PROFILE = (100e6 / 8, 0.020)  # bytes/s, seconds per request


def sh(*argv, env=None, cwd=None, check=True) -> subprocess.CompletedProcess:
    cp = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True)
    if check and cp.returncode:
        raise SystemExit(f"{' '.join(map(str, argv))} -> {cp.returncode}\n{cp.stderr[-3000:]}{cp.stdout[-1500:]}")
    return cp


class Registry:
    """The bench's "internet" registry (Distribution on loopback), its data kept between runs."""

    def __init__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{s.getsockname()[1]}"
        WORK.mkdir(parents=True, exist_ok=True)
        self.config = WORK / "upstream.yml"
        self.config.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {WORK / 'upstream'}}}\n"
                               f"http: {{addr: \"{self.address}\"}}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(1)

    def fill(self) -> None:
        """Push the stand-in images once (from daemon A, at loopback speed)."""
        docker = real_docker()
        for name, src in IMAGES.items():
            mark = WORK / "upstream" / f".pushed-{name}"
            if mark.exists():
                continue
            ref = f"{self.address}/bench/{name}:1"
            sh(docker, "-H", HOSTS["a"], "tag", src, ref)
            sh(docker, "-H", HOSTS["a"], "push", "-q", ref)
            sh(docker, "-H", HOSTS["a"], "image", "rm", ref)
            mark.touch()

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)


class Session:
    """A fresh dockerd: its own data root, exec root and socket (a new session's engine)."""

    def __init__(self, name: str):
        tag = uuid.uuid4().hex[:6]
        self.name, self.root, self.run = name, WORK / "sessions" / f"{name}-{tag}", Path(f"/run/dcbi-{tag}")
        self.host = f"unix://{self.run}.sock"
        self.root.mkdir(parents=True)
        self.run.mkdir(parents=True)
        cfg = {"features": {"containerd-snapshotter": True}, "bridge": "none", "iptables": False,
               "ip-masq": False, "ip-forward": False, "data-root": str(self.root / "data"),
               "exec-root": str(self.run / "exec"), "pidfile": str(self.run / "pid"), "hosts": [self.host]}
        (self.root / "daemon.json").write_text(json.dumps(cfg))
        env = {**os.environ, "PATH": f"{PREFIX}/usr/bin:{PREFIX}/usr/sbin:{os.environ['PATH']}"}
        self.proc = subprocess.Popen([str(PREFIX / "usr/sbin/dockerd"), "--config-file", str(self.root / "daemon.json")],
                                     env=env, stdout=open(self.root / "dockerd.log", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for _ in range(120):
            if subprocess.run([real_docker(), "-H", self.host, "version"], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        raise SystemExit(f"session {name}: dockerd did not answer ({self.root / 'dockerd.log'})")

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        mounts = [ln.split()[4] for ln in open("/proc/self/mountinfo") if
                  ln.split()[4].startswith((str(self.run), str(self.root)))]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", m], capture_output=True)
        shutil.rmtree(self.run, ignore_errors=True)
        LEFT.append(self.root)  # removed when the bench ends: see discard()


# Removing a session's GBs just before the next session starts slows that session's unpacking
# on ext4 (a perf profile: `ext4_create` -> `recently_deleted`; one fresh pull of the go
# image took 26-29 s right after a removal, 16-18 s a minute later), and the sessions run in
# a fixed order: plain first, dockcache's new session right after its first session's removal.
# So every session's data stays until the bench ends, the same for plain and dockcache.
LEFT: list[Path] = []


def discard() -> None:
    while LEFT:
        shutil.rmtree(LEFT.pop(), ignore_errors=True)


def project(ctx: Path, reg: str) -> None:
    """The stack, its images named by the "internet" registry's address."""
    for d in ("api", "web", "worker"):
        (ctx / d).mkdir(parents=True)
    (ctx / "api/go.mod").write_text("module bench\n\ngo 1.19\n")
    (ctx / "api/main.go").write_text('package main\n\nimport "time"\n\nfunc main() { for { time.Sleep(time.Hour) } }\n')
    (ctx / "api/Dockerfile").write_text(f"FROM {reg}/bench/go:1\nWORKDIR /src\nCOPY . .\n"
                                        "RUN --mount=type=cache,target=/root/.cache/go-build CGO_ENABLED=0 go build -o /app .\n"
                                        'CMD ["/app"]\n')
    (ctx / "web/package.json").write_text(json.dumps({"name": "web", "version": "1.0.0", "private": True,
                                                      "dependencies": {"ms": "2.1.3", "debug": "4.3.4"}}))
    sh("npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "-q", cwd=ctx / "web")
    (ctx / "web/Dockerfile").write_text(f"FROM {reg}/bench/node:1\nWORKDIR /app\nCOPY package*.json ./\n"
                                        "RUN npm ci --no-audit --no-fund\nCOPY . .\n"
                                        'CMD ["node", "-e", "setInterval(() => {}, 1e6)"]\n')
    (ctx / "worker/requirements.txt").write_text("six==1.16.0\nidna==3.7\n")
    (ctx / "worker/Dockerfile").write_text(f"FROM {reg}/bench/python:1\nWORKDIR /app\nCOPY requirements.txt .\n"
                                           "RUN pip install --break-system-packages -r requirements.txt\nCOPY . .\n"
                                           'CMD ["sleep", "infinity"]\n')
    svc = lambda body: "    network_mode: none\n" + body  # noqa: E731
    (ctx / "compose.yaml").write_text(
        "services:\n"
        "  api:\n    build: {context: ./api, network: none}\n" + svc("") +
        "  web:\n    build: {context: ./web, network: host}\n" + svc("") +
        "  worker:\n    build: {context: ./worker, network: host}\n" + svc("") +
        f"  db:\n    image: {reg}/bench/db:1\n" + svc("    command: sleep infinity\n") +
        f"  cache:\n    image: {reg}/bench/cache:1\n" + svc("    command: sleep 1000000\n"))


TRACE: list[Path] = []  # --trace DIR: each timed command's output, every line stamped


def timed(env: dict, *argv, cwd=None) -> float:
    t = time.perf_counter()
    if not TRACE:
        sh(*argv, env=env, cwd=cwd)
        return round(time.perf_counter() - t, 2)
    TRACE[0].mkdir(parents=True, exist_ok=True)
    log = TRACE[0] / f"{len(list(TRACE[0].iterdir())):02d}-{env.get('DOCKCACHE_STATE_DIR', 'x').split('/')[-2]}.log"
    env = {**env, "DOCKCACHE_DEBUG": "1"}
    with subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as p, open(log, "w") as out:
        for line in p.stdout:
            out.write(f"{time.perf_counter() - t:7.2f} {line}")
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, argv))} -> {p.returncode}: {log}")
    return round(time.perf_counter() - t, 2)


def env_for(session: Session, home: Path, *, plain: bool, images_root: Path) -> dict:
    env = {**os.environ, "DOCKER_HOST": session.host, "HOME": str(home),
           "DOCKCACHE_STATE_DIR": str(home / "state"), "DOCKCACHE_BUILD_STORE": str(WORK / "buildstore"),
           "DOCKCACHE_IMAGES_ROOT": str(images_root), "DOCKCACHE_BUILD_BUILDER": "off",
           "COMPOSE_PROJECT_NAME": "bench"}
    if plain:
        env["DOCKCACHE_DISABLE"] = "1"
    return env


def up(session: Session, home: Path, ctx: Path, link: Throttle, images_root: Path, *, plain: bool) -> dict:
    env = env_for(session, home, plain=plain, images_root=images_root)
    link.reset()
    seconds = timed(env, DOCKCACHE, "compose", "up", "-d", "--build", cwd=ctx)
    return {"seconds": seconds, "internet_bytes": link.reset()}


CACHE_REGISTRY: list[str] = []  # --registry PATH for `images up` (bench option)


def images_cmd(images_root: Path, *args) -> None:
    args = (*args, *CACHE_REGISTRY) if args[:1] == ("up",) else args
    env = {**os.environ, "DOCKCACHE_IMAGES_ROOT": str(images_root), "DOCKCACHE_IMAGES_PORT": "5400"}
    python = os.environ.get("DOCKCACHE_TEST_PYTHON") or next(
        (str(p) for p in [REPO / ".venv/bin/python"] if p.exists()), sys.executable)  # the CLI needs typer
    sh(python, "-m", "shim", "images", *args, env=env, cwd=REPO)


def stack(reg: Registry, link: Throttle, tmp: Path) -> dict:
    ctx = tmp / "proj"
    project(ctx, link.address)
    roots = tmp / "images"
    out = {}
    s = Session("plain")
    try:
        out["plain_new_session"] = up(s, tmp / "home-plain", ctx, link, roots, plain=True)
    finally:
        s.stop()
    shutil.rmtree(WORK / "buildstore", ignore_errors=True)
    images_cmd(roots, "up", "--upstream", link.address)
    try:
        s = Session("a")
        try:
            out["dockcache_first_session"] = up(s, tmp / "home-a", ctx, link, roots, plain=False)
        finally:
            s.stop()
        s = Session("b")
        try:
            out["dockcache_new_session"] = up(s, tmp / "home-b", ctx, link, roots, plain=False)
            env = env_for(s, tmp / "home-b", plain=False, images_root=roots)
            sh(DOCKCACHE, "compose", "down", "-t", "0", env=env, cwd=ctx)
            out["dockcache_warm_restart"] = up(s, tmp / "home-b", ctx, link, roots, plain=False)
        finally:
            s.stop()
    finally:
        images_cmd(roots, "down")
    return out


def floor(reg: Registry, link: Throttle, tmp: Path) -> dict:
    """Plain docker's new session with the registry on loopback (no link): what a new session
    costs on this machine when nothing crosses the internet (unpacking, builds, starts)."""
    ctx = tmp / "proj-floor"
    project(ctx, reg.address)
    s = Session("floor")
    try:
        return {"plain_new_session_loopback_registry": up(s, tmp / "home-floor", ctx, link, tmp / "images-floor",
                                                           plain=True)}
    finally:
        s.stop()


def pulls(reg: Registry, link: Throttle, tmp: Path, rounds: int = 1) -> dict:
    """One ~200 MB (compressed) base: the acceptance ratios for single pulls. Each round: a
    direct pull and the first pull through a fresh cache back to back (their order alternating),
    then a new session's pull from that cache and a plain pull from a loopback registry; the
    ratios are the medians of each round's own (the machine's load moves between rounds)."""
    import statistics

    name, direct_name = f"{link.address}/bench/python:1", f"{reg.address}/bench/python:1"
    each: list[dict] = []

    def once(out: dict, label: str, image: str, roots: Path, *, plain: bool):
        s = Session(label)
        try:
            env = env_for(s, tmp / f"home-{label}", plain=plain, images_root=roots)
            link.reset()
            out[label] = {"seconds": timed(env, DOCKCACHE, "pull", "-q", image), "internet_bytes": link.reset()}
        finally:
            s.stop()

    for i in range(rounds):
        out: dict = {}
        roots = tmp / f"images-pull-{i}"
        first = ["direct", "cache"] if i % 2 == 0 else ["cache", "direct"]
        images_cmd(roots, "up", "--upstream", link.address)
        try:
            for side in first:
                if side == "direct":
                    once(out, "direct_through_the_link", name, roots, plain=True)
                else:
                    once(out, "first_through_the_cache", name, roots, plain=False)
            once(out, "new_session_from_the_cache", name, roots, plain=False)
        finally:
            images_cmd(roots, "down")
            shutil.rmtree(roots, ignore_errors=True)
        once(out, "plain_from_a_loopback_registry", direct_name, roots, plain=True)
        out["first_pull_ratio"] = round(out["first_through_the_cache"]["seconds"]
                                        / out["direct_through_the_link"]["seconds"], 2)
        out["new_session_ratio"] = round(out["new_session_from_the_cache"]["seconds"]
                                         / out["plain_from_a_loopback_registry"]["seconds"], 2)
        each.append(out)
    median = {k: {"seconds": round(statistics.median(r[k]["seconds"] for r in each), 2),
                  "internet_bytes": max(r[k]["internet_bytes"] for r in each)}
              for k in each[0] if isinstance(each[0][k], dict)}
    return {**median, "first_pull_ratio": round(statistics.median(r["first_pull_ratio"] for r in each), 2),
            "new_session_ratio": round(statistics.median(r["new_session_ratio"] for r in each), 2),
            "rounds": each}


def order(reg: Registry, tmp: Path, rounds: int = 1) -> dict:
    """The five images alone (`compose pull`), everything on loopback: plain compose pulls them
    side by side from the registry; dockcache pulls them from the host cache, the largest
    first and those sharing its base after it (shim/images/order.py). A fresh dockerd each
    time, the order of the two alternating; the ratio is the median of each round's own."""
    import statistics

    ctx = tmp / "proj-order"
    ctx.mkdir(parents=True)
    (ctx / "compose.yaml").write_text("services:\n" + "".join(
        f"  {n}:\n    image: {reg.address}/bench/{n}:1\n    network_mode: none\n" for n in IMAGES))
    roots = tmp / "images-order"
    images_cmd(roots, "up", "--upstream", reg.address)
    each: list[dict] = []

    def once(label: str, *, plain: bool) -> float:
        s = Session(label)
        try:
            return timed(env_for(s, tmp / f"home-{label}", plain=plain, images_root=roots), DOCKCACHE, "compose",
                         "pull", "-q", cwd=ctx)
        finally:
            s.stop()
    try:
        once("order-fill", plain=False)  # the host cache holds them (as after any earlier session)
        for i in range(rounds):
            out = {}
            for side in (["plain", "dockcache"] if i % 2 == 0 else ["dockcache", "plain"]):
                out[f"{side}_seconds"] = once(f"order-{side}-{i}", plain=side == "plain")
            out["ratio"] = round(out["plain_seconds"] / out["dockcache_seconds"], 2)
            each.append(out)
    finally:
        images_cmd(roots, "down")
    return {"plain_side_by_side_from_loopback": round(statistics.median(r["plain_seconds"] for r in each), 2),
            "dockcache_ordered_from_the_host_cache": round(statistics.median(r["dockcache_seconds"] for r in each), 2),
            "speedup": round(statistics.median(r["ratio"] for r in each), 2), "rounds": each}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--only", choices=("stack", "pulls", "floor", "order"))
    ap.add_argument("--trace", help="a dir for each timed command's output, every line stamped (DOCKCACHE_DEBUG=1)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of the single pulls and of --only order")
    ap.add_argument("--registry", help="the Distribution binary the host caches run (default: images up's choice)")
    args = ap.parse_args()
    CACHE_REGISTRY[:] = ["--registry", args.registry] if args.registry else []
    TRACE[:] = [Path(args.trace)] if args.trace else []
    reg = Registry()
    link = Throttle(tuple(reg.address.split(":")[0:1]) + (int(reg.address.split(":")[1]),),
                    rate=PROFILE[0], latency=PROFILE[1]).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-", dir=WORK))
    try:
        reg.fill()
        report = {"profile": "100 Mbit/s, 20 ms per request", "images": IMAGES,
                  "cache_registry": args.registry or "images up's choice"}
        if args.only in (None, "floor"):
            report["floor"] = floor(reg, link, tmp)
        if args.only in (None, "stack"):
            report["stack"] = stack(reg, link, tmp)
            st = report["stack"]
            st["speedup_new_session"] = round(st["plain_new_session"]["seconds"] / st["dockcache_new_session"]["seconds"], 2)
        if args.only in (None, "pulls"):
            report["pulls"] = pulls(reg, link, tmp, args.rounds)
        if args.only in (None, "order"):
            report["order"] = order(reg, tmp, args.rounds)
    finally:
        link.stop()
        reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        discard()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
