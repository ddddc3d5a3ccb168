"""`dockcache builder up|down|status|use`: the host's one shared BuildKit.

`up` starts a buildkitd (OCI worker on runc, containerd worker off, host networking for
RUN steps only, GC bounded by build.max_size) listening on a unix socket that the docker
group may use, or attaches to the one already answering there. Its config, pid and log
sit beside the socket (`SOCKET.toml`, `SOCKET.pid`, `SOCKET.log`), so `down` stops only
a buildkitd that `up` started. `use` points build.builder at a builder (an address or a
buildx builder name) in the user config. Running it as a service: docs/shared-builder.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

from shim.build.shared.builder import instance_path, unreachable
from shim.build.shared.route import DEFAULT_SOCKET, socket_of, target_for
from shim.core import proc
from shim.core.config import builder_problem, load, user_config_path
from shim.core.grammar import parse_invocation

from .context import Ctx
from .output import CliError, UsageError, emit

DEFAULT_ROOT = "/var/lib/dockcache/buildkit"
START_TIMEOUT = 30.0


def socket_for(ctx: Ctx, socket: str | None) -> str:
    """--socket, else the unix socket build.builder names, else the default."""
    if socket:
        return socket
    path = socket_of(ctx.config["build.builder"])
    return path or DEFAULT_SOCKET


def files_for(sock: str) -> dict[str, Path]:
    return {k: Path(f"{sock}.{k}") for k in ("toml", "pid", "log")}


def buildkitd_config(sock: str, root: str, keep_bytes: int, gid: int | None,
                     mirrors: list[tuple[str, str]]) -> str:
    """buildkitd.toml: one worker (runc), GC to keep_bytes, RUN steps on the host network
    (never a bridge or CNI; `--network host` builds need the entitlement), plain-HTTP
    mirrors on loopback."""
    lines = [f'root = "{root}"', 'insecure-entitlements = ["network.host"]', "[grpc]",
             f'  address = ["unix://{sock}"]', *([f"  gid = {gid}"] if gid is not None else []),
             "[worker.oci]", "  enabled = true", '  snapshotter = "overlayfs"', '  networkMode = "host"',
             "  gc = true", f'  gckeepstorage = "{keep_bytes}"', "[worker.containerd]", "  enabled = false"]
    for registry, mirror in mirrors:
        lines += [f'[registry."{registry}"]', f'  mirrors = ["{mirror}"]']
        if mirror.split(":")[0] in ("127.0.0.1", "localhost"):
            lines += [f'[registry."{mirror}"]', "  http = true"]
    return "\n".join(lines) + "\n"


def docker_gid() -> int | None:
    import grp

    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        return None


def up(ctx: Ctx, *, buildkitd: str | None, socket: str | None, root: str | None,
       mirrors: list[str], as_json: bool) -> int:
    sock = socket_for(ctx, socket)
    address = f"unix://{sock}"
    if not unreachable(address):
        emit({"address": address, "started": False, "pid": _our_pid(sock)}, as_json=as_json,
             human=f"a builder already answers at {address}: attached")
        return 0
    binary = buildkitd or shutil.which("buildkitd")
    if not binary or not os.access(binary, os.X_OK):
        raise CliError("no buildkitd found (put BuildKit's buildkitd on PATH or pass --buildkitd PATH)")
    if not shutil.which("runc"):
        raise CliError("buildkitd's OCI worker needs runc on PATH")
    files = files_for(sock)
    Path(sock).parent.mkdir(parents=True, exist_ok=True)
    rootdir = root or DEFAULT_ROOT
    Path(rootdir).mkdir(parents=True, exist_ok=True)
    files["toml"].write_text(buildkitd_config(sock, rootdir, ctx.config["build.max_size"], docker_gid(),
                                              with_image_caches([_mirror(m) for m in mirrors],
                                                                ctx.config["images.root"])))
    if os.path.exists(sock):
        os.unlink(sock)  # a dead builder's socket: buildkitd refuses to listen over it
    pid = proc.spawn_detached([binary, "--config", str(files["toml"])], str(files["log"]))
    files["pid"].write_text(f"{pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while unreachable(address):
        if time.monotonic() > deadline or not os.path.exists(f"/proc/{pid}"):
            _stop(pid)
            raise CliError(f"buildkitd did not answer at {address}: {_tail(files['log'])}")
        time.sleep(0.2)
    ctx.audit("builder up", address, pid=pid)
    emit({"address": address, "started": True, "pid": pid, "config": str(files["toml"])}, as_json=as_json,
         human=f"shared builder up at {address} (pid {pid}, config {files['toml']})")
    return 0


def with_image_caches(mirrors: list[tuple[str, str]], images_root: str) -> list[tuple[str, str]]:
    """The --mirror pairs, then the host's image caches that are up (`dockcache images up`) for
    the registries not named: the builder's FROM pulls come from the host too (docs/images.md)."""
    from shim.images.caches import up

    named = {r for r, _m in mirrors}
    return mirrors + [(r, str(e["address"])) for r, e in sorted(up(images_root).items()) if r not in named]


def _mirror(spec: str) -> tuple[str, str]:
    registry, sep, mirror = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", registry) or not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", mirror):
        raise UsageError(f"--mirror {spec!r}: expected REGISTRY=MIRROR, e.g. docker.io=127.0.0.1:5000")
    return registry, mirror


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return (lines or ["no output"])[-1]


def _our_pid(sock: str) -> int | None:
    """The pid of a buildkitd that `up` started for this socket, if it still runs."""
    files = files_for(sock)
    try:
        pid = int(files["pid"].read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(files["toml"]).encode() in cmdline else None


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down(ctx: Ctx, *, socket: str | None, as_json: bool) -> int:
    sock = socket_for(ctx, socket)
    pid = _our_pid(sock)
    if pid is None:
        emit({"address": f"unix://{sock}", "stopped": None}, as_json=as_json,
             human=f"no buildkitd started by dockcache at unix://{sock}; nothing stopped")
        return 0
    _stop(pid)
    files_for(sock)["pid"].unlink(missing_ok=True)
    ctx.audit("builder down", f"unix://{sock}", pid=pid)
    emit({"address": f"unix://{sock}", "stopped": pid}, as_json=as_json, human=f"stopped buildkitd (pid {pid})")
    return 0


def status(ctx: Ctx, *, as_json: bool) -> int:
    setting = ctx.config["build.builder"]
    target = target_for(setting, ctx.config["build.builder_tls"])
    data = {"setting": setting, "source": ctx.config.source("build.builder"),
            "address": target.address if target else None, "buildx_builder": target.name if target else None,
            "tls": (target.tls or None) if target else None}
    if target is None:
        data["state"] = "off"
    elif not target.address:
        data["state"] = "named"  # an operator's buildx builder: buildx itself knows
    else:
        problem = unreachable(target.address)
        data["state"] = "up" if not problem else "down"
        data["problem"] = problem
        sock = socket_of(target.address)
        data["pid"] = _our_pid(sock) if sock else None
        made = os.path.exists(instance_path(parse_invocation([]), ctx.environ, target.name))
        data["buildx_builder_made"] = made
    human = [f"build.builder = {setting} ({data['source']})", f"state: {data['state']}"]
    if data.get("address"):
        human.append(f"address: {data['address']}" + (f" ({data['problem']})" if data.get("problem") else "")
                     + (f", TLS certificates in {data['tls']}" if data.get("tls") else ""))
    if data.get("pid"):
        human.append(f"started by dockcache builder up: pid {data['pid']}")
    if target:
        human.append(f"buildx builder: {target.name}"
                     + ("" if data.get("buildx_builder_made", True) else " (made at the first build)"))
    emit(data, as_json=as_json, human="\n".join(human))
    return 0 if data["state"] in ("up", "named") else 1


def use(ctx: Ctx, value: str) -> int:
    problem = builder_problem(value)
    if problem:
        raise UsageError(f"build.builder {problem}")
    path = user_config_path(ctx.environ)
    before = path.read_text() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(with_builder(before or "", value))
    try:
        load(ctx.environ, None)
    except Exception as exc:  # noqa: BLE001 - put the user's file back as it was
        if before is None:
            path.unlink()
        else:
            path.write_text(before)
        raise CliError(f"{path}: not changed: {exc}") from None
    print(f"build.builder = {value!r} in {path}")
    return 0


def with_builder(text: str, value: str) -> str:
    """The config text with build.builder set, comments and other keys kept (pure)."""
    line = f"builder = {_toml_string(value)}"
    lines = text.splitlines()
    section = None
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        if stripped.startswith("["):
            section = stripped.strip("[] ")
            continue
        if section is None and re.match(r"build\.builder\s*=", stripped):
            lines[i] = f"build.{line}"
            return "\n".join(lines) + "\n"
        if section == "build" and re.match(r"builder\s*=", stripped):
            lines[i] = line
            return "\n".join(lines) + "\n"
    for i, raw in enumerate(lines):
        if raw.strip() == "[build]":
            lines.insert(i + 1, line)
            return "\n".join(lines) + "\n"
    return "\n".join([*lines, "", "[build]", line]).lstrip("\n") + "\n"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
