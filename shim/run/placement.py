"""Where package caches live: host directories or named volumes (`run.mode`).

Named volumes live in one daemon's data root, and every session here gets a fresh daemon:
its volumes start empty. Host directories outlive the daemon, but only an engine that sees
this host's filesystem can mount them (not a remote engine, not one in a VM or in another
mount namespace). `auto` decides by evidence, once per daemon: a directory with a unique
name is made under `run.bind_root`, and the daemon is asked to create (never start) a
container that bind-mounts it. The daemon validates a bind source on its own filesystem
("bind source path does not exist"), so success means it sees our directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from shim.core.records import dataclass

REMEMBER = 30 * 24 * 3600.0  # per daemon; a new daemon (new socket) is probed again
PROBE_TARGET = "/dockcache-probe"


@dataclass(frozen=True)
class Placement:
    mode: str  # "bind" | "volume"
    reason: str
    verdict: str = ""  # the probe's answer, when one was needed


def decide(configured: str, verdict: str | None, bind_root: str, detail: str = "") -> Placement:
    """The mode from facts. verdict: "seen" | "unseen" | "unwritable" | None (no probe yet)."""
    if configured in ("bind", "volume"):
        return Placement(configured, f"run.mode = {configured}")
    if verdict == "seen":
        return Placement("bind", f"auto: the engine sees {bind_root}, so caches outlive the daemon", verdict)
    if verdict == "unseen":
        return Placement("volume", "auto: the engine cannot see this host's files (remote, in a VM or "
                         f"another mount namespace){_tail(detail)}; caches are named volumes", verdict)
    if verdict == "unwritable":
        return Placement("volume", f"auto: cannot create {bind_root}{_tail(detail)}; caches are named volumes",
                         verdict)
    return Placement("volume", f"auto: not probed yet{_tail(detail)}; named volumes for now", "")


def resolve(state, daemon: str, configured: str, bind_root: str, docker: Callable,
            image: str | None) -> Placement:
    """The mode for this daemon: configured, remembered, or probed now (with `image`, one the
    daemon already has; None: not probed, volumes this time). Remembered per daemon and root."""
    if configured != "auto":
        return decide(configured, None, bind_root)
    known = state.get("placement", daemon, bind_root, max_age=REMEMBER)
    if known:
        return decide("auto", known.get("verdict"), bind_root, known.get("detail", ""))
    if not image:
        return decide("auto", None, bind_root, "no image on this engine to probe with yet")
    verdict, detail = probe(docker, bind_root, image)
    if verdict:
        state.put("placement", daemon, bind_root, {"verdict": verdict, "detail": detail})
    return decide("auto", verdict, bind_root, detail)


def _tail(detail: str) -> str:
    return f" ({detail})" if detail else ""


def probe(docker: Callable, bind_root: str, image: str) -> tuple[str | None, str]:
    """Ask the daemon whether it sees a fresh directory under bind_root: (verdict, detail).

    `docker` runs a docker command (argv tail) and returns a proc.Result. The container is
    only created, with --pull never and no network, then removed."""
    try:
        os.makedirs(bind_root, exist_ok=True)
        marker = os.path.join(bind_root, f".probe-{secrets.token_hex(8)}")
        os.mkdir(marker)
    except OSError as exc:
        return "unwritable", exc.strerror or type(exc).__name__
    try:
        res = docker("create", "--pull", "never", "--network", "none", "--label", "dockcache.probe=true",
                     "--mount", f"type=bind,source={marker},target={PROBE_TARGET},readonly", image, "true")
        if res.returncode == 0:
            created = res.stdout.split()
            if created:
                docker("rm", "-f", created[-1])
            return "seen", ""
        if "bind source path does not exist" in res.stderr:
            return "unseen", f"{marker} does not exist for it"
        return None, _first_line(res.stderr)  # e.g. the image is not there: decide another time
    finally:
        shutil.rmtree(marker, ignore_errors=True)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:160] if lines else "no answer"


def session_local(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Why `path` probably vanishes with this session (tmpfs, an overlay upper dir), else None.

    The filesystem is the one of the longest mount point that contains the path."""
    try:
        with open(mountinfo, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    path = os.path.realpath(path)
    best, fstype = "", ""
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        kind = line.split(" - ", 1)[1].split()[0]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    if fstype in ("tmpfs", "ramfs"):
        return f"{path} is on {fstype} (mounted at {best}): it is gone when the machine or session ends"
    if fstype == "overlay":
        return (f"{path} is on an overlay filesystem (mounted at {best}): in a container it goes with "
                "the container; point run.bind_root (DOCKCACHE_BIND_ROOT) at a volume every session mounts")
    return None
