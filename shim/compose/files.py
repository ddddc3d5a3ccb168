"""Which files a compose command loads, read as compose itself reads them. Pure but for
reading those files; never runs docker.

Compose's rules (../shared/BUILDKIT.md, "Override gotchas"): an explicit `-f` turns off
automatic override loading; otherwise `COMPOSE_FILE` (from the environment, else from
the project's `.env`) lists the files; otherwise the first directory upward holding a
default file decides, with its override file beside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shim.core.grammar import scan_options

GLOBAL_VALUE = frozenset("-f --file -p --project-name --project-directory --env-file --profile "
                         "--ansi --progress --parallel -H --host -c --context".split())
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")



@dataclass
class ComposeCall:
    base: list[str]  # how to run compose: [real] or [real, *docker globals, "compose"]
    globals: list[str]  # compose's own global options, verbatim
    rest: list[str]  # subcommand and its args, verbatim
    sub: str | None


def split(name: str, args: Sequence[str]) -> ComposeCall:
    """Separate docker's globals, `compose`, compose's globals and the subcommand."""
    args = list(args)
    if name == "docker-compose":
        start, base = 0, []
    else:
        idx = args.index("compose")
        start, base = idx + 1, args[:idx + 1]
    opts, pos = scan_options(args, start, GLOBAL_VALUE, interspersed=False)
    sub_at = pos[0] if pos else len(args)
    return ComposeCall(base, args[start:sub_at], args[sub_at:], args[sub_at] if pos else None)


def wants_build(call: ComposeCall) -> bool:
    flags = set(call.rest[1:])
    if call.sub == "build":
        return True
    if call.sub == "up":
        return "--no-build" not in flags
    return call.sub in ("run", "create") and "--build" in flags


def files_for(call: ComposeCall, environ: Mapping[str, str], cwd: str) -> tuple[list[str] | None, str | None]:
    """(files compose would load, or None when -f is given; COMPOSE_FILE value if it decides)."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    if any(k in ("-f", "--file") for k, _ in opts):
        return None, None
    proj = next((v for k, v in opts if k == "--project-directory"), None) or cwd
    listed = environ.get("COMPOSE_FILE") or _dotenv(os.path.join(proj, ".env")).get("COMPOSE_FILE")
    if listed:
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [os.path.join(proj, f) for f in listed.split(sep) if f], listed
    here = Path(proj).resolve()
    for d in (here, *here.parents):
        main = next((d / f for f in DEFAULT_FILES if (d / f).is_file()), None)
        if main:
            extra = next((d / f for f in OVERRIDE_FILES if (d / f).is_file()), None)
            return [str(main)] + ([str(extra)] if extra else []), None
    return [], None


def _dotenv(path: str) -> dict[str, str]:
    out = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    out[k.strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


def reads_stdin(call: ComposeCall) -> bool:
    """`-f -`: compose reads the project from stdin, which only the real command may read."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    return any(k in ("-f", "--file") and v == "-" for k, v in opts)


def only_looks(call: ComposeCall) -> bool:
    """`--dry-run`, `--help`, `-h`: compose changes nothing, so neither may dockcache."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    return (any(k in ("--dry-run", "-h", "--help") for k, _v in opts)
            or any(a in ("--help", "-h", "--dry-run") for a in call.rest[1:]))


def config_sources(call: ComposeCall, environ: Mapping[str, str], cwd: str) -> list[str]:
    """Every file compose's answer depends on, absent candidates included (a new
    compose.override.yaml must count as a change)."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    proj = next((v for k, v in opts if k == "--project-directory"), None) or cwd
    env_files = [os.path.join(cwd, v) for k, v in opts if k == "--env-file"] or [os.path.join(proj, ".env")]
    given = [os.path.join(cwd, v) for k, v in opts if k in ("-f", "--file")]
    if given:
        return [*given, *env_files]
    files, _listed = files_for(call, environ, cwd)
    here = Path(proj).resolve()
    top = Path(files[0]).parent if files else Path(here.anchor)
    candidates = []
    for d in (here, *here.parents):
        candidates += [str(d / f) for f in (*DEFAULT_FILES, *OVERRIDE_FILES)]
        if d == top:
            break
    return [*dict.fromkeys([*(files or []), *candidates, *env_files])]
