"""`docker compose config`, remembered while nothing it read has changed.

Asking compose for the resolved project costs a CLI start (~0.1 s), a tenth of a
no-change `compose up --build`. The answer depends on the compose files, `.env`, the
environment (interpolation) and the compose binary, so it is remembered under a key of
argv, cwd, the whole environment and the binary, and reused only while every file it
was read from has the same size and mtime. Projects whose files pull in others
(`include:`, `extends:`, `env_file:`) are always asked afresh: their file list is not
known without compose itself. Compose reading the project from stdin (`-f -`) is never
asked at all: that would drain the user's input.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence

from shim.compose.files import ComposeCall, config_sources
from shim.core import proc
from shim.core.state import State, state_dir

VOLATILE = ("_", "OLDPWD", "SHLVL")  # shell bookkeeping that never reaches compose's answer
PULLS_IN = (b"include:", b"extends:", b"env_file:")


def cache_key(argv: Sequence[str], cwd: str, environ: Mapping[str, str], real: str) -> str:
    env = sorted((k, v) for k, v in environ.items() if k not in VOLATILE)
    try:
        binary = os.stat(real)
        stamp = f"{binary.st_mtime_ns}:{binary.st_size}"
    except OSError:
        stamp = ""
    blob = json.dumps([list(argv), cwd, env, real, stamp])
    return hashlib.sha256(blob.encode()).hexdigest()


def stats(paths: Sequence[str]) -> list | None:
    """[path, size, mtime] of each file; None when one pulls in files we cannot see."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                if any(word in fh.read() for word in PULLS_IN):
                    return None
        except OSError:
            out.append([path, -1, -1])  # absent now: its appearance must invalidate
            continue
        out.append([path, st.st_size, st.st_mtime_ns])
    return out


def resolved(state: State, key: str, sources: Sequence[str] | None, ask: Callable[[], dict | None]) -> dict | None:
    """compose's resolved config, from the state dir when its sources are unchanged."""
    before = stats(sources) if sources else None
    if before is not None:
        hit = state.get("compose-config", "config", key)
        if hit and hit.get("sources") == before:
            return hit.get("config")
    cfg = ask()
    if cfg is not None and before is not None and stats(sources) == before:
        state.put("compose-config", "config", key, {"sources": before, "config": cfg})
    return cfg


def resolved_config(real: str, call: ComposeCall, environ: Mapping[str, str],
                    services: Sequence[str] = ()) -> dict | None:
    """compose's own view of the project (remembered while its files are unchanged);
    with `services`, only those and what they depend on, their profiles enabled, as
    compose does for a service named on its command line."""
    def ask() -> dict | None:
        res = proc.run_docker(real, [*call.base, *call.globals, "config", "--format", "json", *services],
                              timeout=60)
        if res.returncode != 0:
            return None  # compose will report its own error when it runs for real
        try:
            return json.loads(res.stdout)
        except ValueError:
            return None

    cwd = os.getcwd()
    key = cache_key([*call.base, *call.globals, *(["--", *services] if services else [])], cwd, environ, real)
    return resolved(State(state_dir(environ)), key, config_sources(call, environ, cwd), ask)
