"""Helpers for engine tests that go through bin/docker."""

from __future__ import annotations

import json
from contextlib import contextmanager
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVTOOLS = "dockcache-test/devtools:latest"
BUSYBOX = "dockcache-test/busybox:latest"
GOTOOLS = "dockcache-test/gotools:latest"  # devtools + Go (tests/engine/provision.sh)
RUSTTOOLS = "dockcache-test/rusttools:latest"  # devtools + cargo


def shim(env: dict, *argv: str, cwd=None, input=None, extra=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "bin" / "docker"), *argv], env={**env, **(extra or {})},
                          capture_output=True, text=True, cwd=cwd, input=input, timeout=timeout)


def keep_previous(engine, tag: str) -> None:
    """Engine 26's own race (containerd image store, plain docker too): when a rebuild moves
    a tag, the old image's snapshots (the new one's parents) can be collected before the new
    one unpacks ("parent snapshot ... does not exist"). A second tag keeps the old image."""
    if engine.docker("tag", tag, f"{tag}-prev", check=False).returncode == 0:
        engine.images.append(f"{tag}-prev")


def volume_files(engine, volume: str, sub: str = "") -> int:
    """How many files a volume (or a subdir of it) holds (0 if it does not exist)."""
    if volume not in engine.volumes():
        return 0
    cp = engine.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/c", BUSYBOX,
                       "sh", "-c", f"find /c/{sub} -type f 2>/dev/null | wc -l")
    return int(cp.stdout.strip())


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1))


AS_UID_1000 = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]


def launcher_1000(base: Path) -> Path:
    """bin/docker as uid 1000 runs it: the copy host_user_1000 made under `base`. The checkout
    itself may sit where that user cannot go (a clone under a 0700 dir: `mktemp -d`, root's home)."""
    return base / "dockcache" / "bin" / "docker"


def _copy_launcher(dest: Path) -> None:
    """bin/ and shim/ (all the launcher runs), readable by everyone, in a dir uid 1000 can reach."""
    import shutil

    for sub in ("bin", "shim"):
        shutil.copytree(REPO / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__"))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() or p.parent.name == "bin" else 0o644)


@contextmanager
def host_user_1000(engine, prefix: str):
    """A non-root host user (uid 1000) allowed on the engine's socket, with a home and an
    app dir of its own under a fresh /tmp dir (yielded), and a copy of the launcher it can
    run (launcher_1000); all undone afterwards."""
    import os
    import shutil
    import tempfile

    from shim.run.hostacl import encode

    sock = engine.host[len("unix://"):]
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix=prefix))
    try:
        for d in (base, base / "home", base / "app"):
            d.mkdir(exist_ok=True)
            os.chown(d, 1000, 1000)
        _copy_launcher(base / "dockcache")
        os.setxattr(sock, "system.posix_acl_access", encode(1000))  # uid 1000 may talk to the daemon
        yield base
    finally:
        try:
            os.removexattr(sock, "system.posix_acl_access")
        except OSError:
            pass
        os.chmod(sock, 0o660)
        shutil.rmtree(base, ignore_errors=True)


def ok(cp: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


def dockcache(env: dict, *args: str, extra=None, timeout=300) -> subprocess.CompletedProcess:
    """The management CLI with this test's environment (the interpreter running the tests)."""
    import sys

    return subprocess.run([sys.executable, "-m", "shim", *args], env={**env, **(extra or {})}, capture_output=True,
                          text=True, cwd=REPO, stdin=subprocess.DEVNULL, timeout=timeout)
