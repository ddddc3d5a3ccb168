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
from shim.core.records import dataclass
from pathlib import Path

from shim.core.grammar import scan_options

GLOBAL_VALUE = frozenset("-f --file -p --project-name --project-directory --workdir --env-file --profile "
                         "--ansi --progress --parallel -H --host -c --context".split())  # --workdir: hidden, old
# In compose's own order of preference (seen with compose 2.26 and every name present):
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")



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


def given(call: ComposeCall, flag: str) -> bool:
    """`--flag`, or `--flag=VALUE` with a value that is not false/never, on the subcommand
    (cobra takes `--no-cache=true` and `--pull=always` as well as the bare switch)."""
    off = ("false", "0", "never")
    rest = call.rest[1:]
    for i, tok in enumerate(rest):
        if tok == flag:  # `up --pull never` takes a value; `build --pull` is a switch
            return i + 1 >= len(rest) or rest[i + 1].lower() not in off
        if tok.startswith(flag + "="):
            return tok.split("=", 1)[1].lower() not in off
    return False


def builder_of(call: ComposeCall, environ: Mapping[str, str]) -> str | None:
    """The builder the user chose: `--builder X` on the subcommand, else BUILDX_BUILDER."""
    rest = call.rest[1:]
    for i, tok in enumerate(rest):
        if tok == "--builder" and i + 1 < len(rest):
            return rest[i + 1]
        if tok.startswith("--builder="):
            return tok.split("=", 1)[1]
    return environ.get("BUILDX_BUILDER") or None


def wants_build(call: ComposeCall) -> bool:
    flags = set(call.rest[1:])
    if call.sub == "build":
        return True
    if call.sub == "up":
        return "--no-build" not in flags
    return call.sub in ("run", "create") and "--build" in flags


def files_for(call: ComposeCall, environ: Mapping[str, str], cwd: str) -> tuple[list[str] | None, str | None]:
    """(files compose would load, or None when -f is given; COMPOSE_FILE value if it decides).

    COMPOSE_FILE comes from the environment, else from the env files (`--env-file`,
    else COMPOSE_ENV_FILES, else the project dir's `.env`); its relative paths are
    relative to the working dir, also with --project-directory (as compose 2.26 does)."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    if any(k in ("-f", "--file") for k, _ in opts):
        return None, None
    proj = project_dir(opts, cwd)
    env = {**_env_files_values(env_files(opts, environ, cwd)), **environ}
    listed = env.get("COMPOSE_FILE")
    if listed:
        sep = env.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [os.path.join(cwd, f) for f in listed.split(sep) if f], listed
    here = Path(proj).resolve()
    for d in (here, *here.parents):
        main = next((d / f for f in DEFAULT_FILES if (d / f).is_file()), None)
        if main:
            extra = next((d / f for f in OVERRIDE_FILES if (d / f).is_file()), None)
            return [str(main)] + ([str(extra)] if extra else []), None
    return [], None


def env_files_kept(call: ComposeCall, environ: Mapping[str, str], cwd: str, files: Sequence[str]) -> str | None:
    """COMPOSE_ENV_FILES for a COMPOSE_FILE that dockcache moves from the project's `.env`
    into the environment, or None. Compose that found COMPOSE_FILE in `./.env` keeps that
    file's other values and then adds (for names still unset) the `.env` beside the first
    compose file; given COMPOSE_FILE in the environment it reads only the latter. So both,
    the one that decides last (later files win in COMPOSE_ENV_FILES)."""
    opts, _ = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    if "COMPOSE_FILE" in environ or environ.get("COMPOSE_ENV_FILES") or not files:
        return None
    if any(k in ("--env-file", "--project-directory", "--workdir") for k, _v in opts):
        return None  # compose reads the same env files either way
    held = os.path.normpath(os.path.join(project_dir(opts, cwd), ".env"))
    beside = os.path.normpath(os.path.join(os.path.dirname(files[0]), ".env"))
    if beside == held or not os.path.isfile(held):
        return None  # compose reads the same file either way
    chain = [f for f in (beside, held) if os.path.isfile(f)]
    if any("," in f for f in chain):
        return None  # COMPOSE_ENV_FILES cannot name it
    return ",".join(chain)


def project_dir(opts, cwd: str) -> str:
    """--project-directory, else the deprecated --workdir compose still takes for it."""
    given = {k: v for k, v in opts if k in ("--project-directory", "--workdir") and v}
    return os.path.join(cwd, given.get("--project-directory") or given.get("--workdir") or ".")


def env_files(opts, environ: Mapping[str, str], cwd: str) -> list[str]:
    """The env files compose reads its own settings from."""
    given = [os.path.join(cwd, v) for k, v in opts if k == "--env-file" and v]
    if given:
        return given
    listed = [f for f in environ.get("COMPOSE_ENV_FILES", "").split(",") if f]
    return [os.path.join(cwd, f) for f in listed] or [os.path.join(project_dir(opts, cwd), ".env")]


def _env_files_values(paths) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in paths:
        out.update(dotenv(path))
    return out


def dotenv(path: str) -> dict[str, str]:
    """A .env file as compose reads it: `export` prefixes, comments, quoted values."""
    out = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            value = value[1:value.find(value[0], 1)]
        else:
            value = value.split(" #", 1)[0].strip()
        out[key.strip()] = value
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
    proj = project_dir(opts, cwd)
    read = env_files(opts, environ, cwd)
    given = [os.path.join(cwd, v) for k, v in opts if k in ("-f", "--file")]
    if given:
        return [*given, *read]
    files, _listed = files_for(call, environ, cwd)
    here = Path(proj).resolve()
    top = Path(files[0]).parent if files else Path(here.anchor)
    candidates = []
    for d in (here, *here.parents):
        candidates += [str(d / f) for f in (*DEFAULT_FILES, *OVERRIDE_FILES)]
        if d == top:
            break
    return [*dict.fromkeys([*(files or []), *candidates, *read])]


def invocation(call: ComposeCall):
    """docker's view of the command (its -H/--context), for the fact calls made about it."""
    from shim.core.grammar import parse_invocation

    return parse_invocation([*call.base[:-1], "compose"] if call.base else ["compose"])
