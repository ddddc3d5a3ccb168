"""`dockcache images up|down|status|prune`: the host's pull-through image caches.

One Distribution registry (`registry` on PATH, else Debian's `docker-registry`; Distribution 3
is faster on a miss: registryconf.fill_mode) per upstream
in proxy mode, on images.address (loopback by default), like `builder up` runs buildkitd:
each cache's config, pid file, log and storage sit under `ROOT/<upstream>/`, and the index
`ROOT/caches.json` is what every session's shim reads to route its pulls (shim/images).
`down` stops only what `up` started (by pid, with its own config on the command line).
Distribution 2.8's proxy mode asks its upstream at start and exits when it cannot reach
it: that upstream is reported failed and the others start. Docs: docs/images.md.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from shim.images.caches import read_index, running, write_index
from shim.images.refs import registry_name, remote_url
from shim.images.registryconf import config_yaml, fill_mode
from shim.core import proc

from .buildercmd import _stop, _tail
from .context import Ctx
from .output import CliError, UsageError, emit

START_TIMEOUT = 15.0


def root_of(ctx: Ctx, root: str | None) -> str:
    return os.path.abspath(os.path.expanduser(root or ctx.config["images.root"]))


def upstreams_of(ctx: Ctx, given: list[str]) -> list[str]:
    names = given or list(ctx.config["images.upstreams"])
    out = []
    for n in names:
        reg = registry_name(n)
        if reg is None:
            raise UsageError(f"--upstream {n!r}: not a registry host (docker.io, ghcr.io, HOST:PORT)")
        out.append(reg)
    return list(dict.fromkeys(out))


def dir_name(registry: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in registry)


def free_port(host: str, start: int, taken: set[int]) -> int:
    for port in range(start, min(start + 1000, 65536)):
        if port in taken:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host.strip("[]"), port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise CliError(f"no free port on {host} from {start}")


def answers(address: str) -> bool:
    """The registry's API answers (any HTTP status: 401 is an answer too)."""
    try:
        urllib.request.urlopen(f"http://{address}/v2/", timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def up(ctx: Ctx, *, upstreams: list[str], root: str | None, registry: str | None, as_json: bool) -> int:
    base = root_of(ctx, root)
    binary = registry or shutil.which("registry") or shutil.which("docker-registry")
    if not binary or not os.access(binary, os.X_OK):
        raise CliError("no Distribution registry found (install Debian's docker-registry, "
                       "put `registry` on PATH or pass --registry PATH)")
    try:
        Path(base).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot make {base}: {exc.strerror} (run as root, or set images.root / --root)") from None
    index = read_index(base)
    taken = {int(e["address"].rsplit(":", 1)[1]) for e in index.values() if running(e) and ":" in str(e.get("address"))}
    rows = []
    for reg in upstreams_of(ctx, upstreams):
        entry = index.get(reg)
        if entry and running(entry) and answers(entry["address"]):
            rows.append({**_public(reg, entry), "state": "running"})
            continue
        entry, problem = _start(ctx, base, reg, binary, taken)
        if entry:
            index[reg] = entry
            write_index(base, index)
            ctx.audit("images up", reg, pid=entry["pid"], address=entry["address"])
        rows.append({**_public(reg, entry or {}), "state": "started" if entry else "failed",
                     **({"problem": problem} if problem else {})})
    human = [f"{r['upstream']}: {r['state']}" + (f" at {r['address']} (pid {r['pid']})" if r.get("address") else "")
             + (f": {r['problem']}" if r.get("problem") else "") for r in rows]
    emit({"root": base, "caches": rows}, as_json=as_json, human="\n".join(human) or "no upstreams configured")
    return 1 if any(r["state"] == "failed" for r in rows) else 0


def _public(reg: str, entry: dict) -> dict:
    return {"upstream": reg, "address": entry.get("address"), "pid": entry.get("pid"),
            "url": entry.get("url") or remote_url(reg), "dir": entry.get("dir"),
            "credentials": bool(entry.get("credentials"))}


def _start(ctx: Ctx, base: str, reg: str, binary: str, taken: set[int]) -> tuple[dict | None, str]:
    host = ctx.config["images.address"]
    here = Path(base) / dir_name(reg)
    (here / "data").mkdir(parents=True, exist_ok=True)
    port = free_port(host, ctx.config["images.port"], taken)
    debug = free_port(host, port + 1, taken)
    user, password = _credentials(ctx, reg)
    conf = here / "config.yml"
    text = config_yaml(data_dir=str(here / "data"), address=f"{host}:{port}", debug_address=f"{host}:{debug}",
                       remote_url=remote_url(reg), secret=secrets.token_hex(16), username=user, password=password)
    conf.touch(mode=0o600)
    os.chmod(conf, 0o600)  # it may hold the upstream's password
    conf.write_text(text)
    log = here / "registry.log"
    pid = proc.spawn_detached([binary, "serve", str(conf)], str(log))
    (here / "registry.pid").write_text(f"{pid}\n")
    address = f"{host}:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(address):
        if time.monotonic() > deadline or not _alive(pid):
            _stop(pid)
            (here / "registry.pid").unlink(missing_ok=True)
            return None, _why(log)
        time.sleep(0.1)
    return {"address": address, "debug": f"{host}:{debug}", "pid": pid, "config": str(conf), "dir": str(here),
            "url": remote_url(reg), "credentials": bool(user), "started": time.time(),
            "fill": fill_mode(_version(binary))}, ""


def _version(binary: str) -> str:
    import subprocess

    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return False


def _why(log: Path) -> str:
    """The registry's own reason: a panic line names the upstream it could not reach."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    panic = next((ln for ln in reversed(lines) if ln.startswith("panic:")), None)
    return (panic[len("panic: "):] if panic else _tail(log))[:300]


def _credentials(ctx: Ctx, reg: str) -> tuple[str, str]:
    """images.credentials names the upstreams whose login (this command's docker config) the cache uses."""
    wanted = {registry_name(c) for c in ctx.config["images.credentials"]}
    if reg not in wanted:
        return "", ""
    from shim.build.store.registry_auth import credentials

    found = credentials(reg, ctx.environ)
    if found is None:
        raise CliError(f"images.credentials names {reg}, but there is no docker login for it")
    return found.username, found.secret


def down(ctx: Ctx, *, upstreams: list[str], root: str | None, as_json: bool) -> int:
    base = root_of(ctx, root)
    index = read_index(base)
    only = set(upstreams_of(ctx, upstreams)) if upstreams else set(index)
    stopped = []
    for reg in sorted(only & set(index)):
        entry = index.pop(reg)
        if running(entry):
            _stop(int(entry["pid"]))
            stopped.append({"upstream": reg, "pid": entry["pid"]})
            ctx.audit("images down", reg, pid=entry["pid"])
        Path(entry.get("dir", "/nonexistent"), "registry.pid").unlink(missing_ok=True)
    if os.path.isdir(base):
        write_index(base, index)
    human = "\n".join(f"stopped the cache for {s['upstream']} (pid {s['pid']})" for s in stopped)
    emit({"root": base, "stopped": stopped}, as_json=as_json,
         human=human or "no image cache started by dockcache; nothing stopped")
    return 0
