"""Which daemon a command reaches, told apart from the next one on the same socket.

Every session gets its own dockerd, often on the same socket path: what one daemon holds
(volumes, its BuildKit cache, what it can see of this host) says nothing about the next.
A restarted daemon makes a new socket file, so path + inode + ctime name one daemon.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from shim.core.state import current_context, docker_config_dir, endpoint_id


def daemon_key(host: str | None, context: str | None, environ: Mapping[str, str]) -> str:
    """The endpoint as docker picks it, plus the daemon's generation where it has one."""
    endpoint = endpoint_id(host, context, environ)
    generation = daemon_generation(host, context, environ)
    return f"{endpoint}|{generation}" if generation else endpoint


def daemon_generation(host: str | None, context: str | None, environ: Mapping[str, str]) -> str | None:
    """Identity of the daemon behind a unix socket (path, inode, ctime), else None."""
    path = socket_path(host, context, environ)
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{path}|{st.st_ino}|{st.st_ctime_ns}"


def socket_path(host: str | None, context: str | None, environ: Mapping[str, str]) -> str | None:
    host = host or (None if context else environ.get("DOCKER_HOST"))
    if not host:
        name = context or environ.get("DOCKER_CONTEXT") or current_context(environ)
        host = "unix:///var/run/docker.sock" if name == "default" else _context_host(name, environ)
    return host[len("unix://"):] if host and host.startswith("unix://") else None


def _context_host(name: str, environ: Mapping[str, str]) -> str | None:
    import hashlib

    meta = os.path.join(docker_config_dir(environ), "contexts", "meta",
                        hashlib.sha256(name.encode()).hexdigest(), "meta.json")
    try:
        with open(meta, encoding="utf-8") as fh:
            return json.load(fh)["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
