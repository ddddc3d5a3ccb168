"""What a `docker buildx bake` will build: its targets as bake itself resolves them.

Bake's files (HCL with variables and functions, JSON, compose files with `${VAR}` and
`.env`), groups, matrices, `inherits` and `--set` patterns are bake's to evaluate, so
dockcache asks bake: the user's own argv with `--print` (one more buildx start, ~0.1 s)
prints each target's context, Dockerfile, tags and cache entries, and builds nothing.
The answer is remembered while the argv, the directory, the files bake reads (by content)
and the environment variables they can read are the same, so a repeated bake asks once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence

from shim.core import proc
from shim.core.grammar import BakeArgs, Invocation, insert_before
from shim.core.state import State, state_dir

# buildx's lookup when no -f is given (bake/bake.go defaultFilenames, 0.13 and later),
# and the .env a compose file interpolates from
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml",
                 "docker-bake.json", "docker-bake.override.json", "docker-bake.hcl", "docker-bake.override.hcl")
MAX_FILE = 1_000_000  # a larger definition is read by bake each time, not remembered
REMEMBER = 24 * 3600.0
ENV_PREFIXES = ("BUILDX_", "BAKE_", "COMPOSE_", "DOCKER_", "BUILDKIT_")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OTHER_FILES = re.compile(r"\b(extends|include)\b")  # compose reading files not named here


class Unresolved(Exception):
    """bake --print failed: bake itself will say why when it runs."""


def resolve(real: str, inv: Invocation, bake: BakeArgs, environ: Mapping[str, str], cwd: str) -> dict[str, dict]:
    """Target name -> its resolved definition (bake --print's `target` map)."""
    argv = insert_before(inv.argv, inv.args_start, ["--print"])
    memo = fingerprint(argv, bake, environ, cwd)
    state = State(state_dir(environ))
    if memo:
        hit = state.get("bake", "print", memo, max_age=REMEMBER)
        if hit and isinstance(hit.get("targets"), dict):
            return hit["targets"]
    res = proc.run_docker(real, argv, timeout=60)
    if res.returncode != 0:
        raise Unresolved(_last_line(res.stderr) or f"exit {res.returncode}")
    try:
        targets = json.loads(res.stdout).get("target") or {}
    except (ValueError, AttributeError) as exc:
        raise Unresolved(f"bake --print gave no JSON ({exc})") from None
    if not isinstance(targets, dict) or not all(isinstance(v, dict) for v in targets.values()):
        raise Unresolved("bake --print gave no target map")
    if memo:
        state.put("bake", "print", memo, {"targets": targets})
    return targets


def fingerprint(argv: Sequence[str], bake: BakeArgs, environ: Mapping[str, str], cwd: str) -> str | None:
    """What bake's answer depends on, hashed; None when it cannot be told (then bake is asked)."""
    names = bake.files or tuple(n for n in DEFAULT_FILES if os.path.isfile(os.path.join(cwd, n)))
    contents = []
    for name in (*names, ".env"):
        path = os.path.join(cwd, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_FILE + 1)
        except FileNotFoundError:
            if name == ".env":
                continue
            return None
        except OSError:
            return None
        if len(data) > MAX_FILE:
            return None
        contents.append((name, data))
    text = b"\n".join(d for _n, d in contents).decode("utf-8", "replace")
    if _OTHER_FILES.search(text):
        return None
    words = set(_WORD.findall(text))
    env = sorted((k, v) for k, v in environ.items() if k in words or k.startswith(ENV_PREFIXES))
    blob = json.dumps([list(argv), cwd, [(n, hashlib.sha256(d).hexdigest()) for n, d in contents], env])
    return hashlib.sha256(blob.encode()).hexdigest()


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def dockerfile_of(target: Mapping) -> str | None:
    """The Dockerfile as `docker build -f` would name it (relative to the working directory;
    None for the default): bake names it relative to the context."""
    name = target.get("dockerfile")
    if not isinstance(name, str) or name in ("", "Dockerfile"):
        return None
    if os.path.isabs(name) or "://" in str(target.get("context") or ""):
        return name
    return os.path.join(str(target.get("context") or "."), name)


def tags_of(target: Mapping) -> tuple[str, ...]:
    tags = target.get("tags") or ()
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()


def has(target: Mapping, attr: str) -> bool:
    """A non-empty list (strings in 0.13, objects in later releases) under `attr`."""
    value = target.get(attr)
    return bool(value) and (not isinstance(value, list) or any(value))
