"""`docker exec -u USER` into a container with dockcache's caches: the pure half. No I/O.

A container's caches belong to the user it runs as (root, `--user` or the image's USER).
Clients start containers as one user and work in them as another: the dev containers CLI
and VS Code run the container as root and every lifecycle command, terminal and server
as `remoteUser` (`docker exec -u dev`); people type `docker exec -u` and `docker compose
exec -u`. That user gets the container's variables (npm_config_cache=/dockcache/npm) but
cannot write a root-owned cache: `npm ci` fails with EACCES where plain docker works.

So each other user gets a tree of its own inside the cache: `CACHE/.users/NAME`, made
and handed to it once (as root, by the executor), with the container's cache variables
pointed there for that exec only. Owners never mix inside a tree (a file of one user in
another's tree is what breaks a tool), the cache still outlives the container and the
session, and the exec'd user's files are all under one dir that root (and, in bind mode,
the host user through the bind root's default ACL) can clear. Other users of mounts,
variables and files than dockcache's own are never touched.

The run planner marks the containers whose caches this applies to with the LABEL below
(their writable cache paths and owner), so a `docker exec -u` into any other container
costs one inspect and runs unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from shim.core.records import dataclass

from shim.core.grammar import ExecArgs, insert_before

LABEL = "dockcache.caches"
USERS_DIR = ".users"
_ROOT = ("", "0", "root")


def label_value(owner: str | None, paths: Sequence[str]) -> str:
    """The label's value: who the caches at `paths` belong to (None: root)."""
    return json.dumps({"owner": owner or "root", "paths": list(paths)}, separators=(",", ":"))


def read_label(value: str | None) -> tuple[str, tuple[str, ...]] | None:
    """(owner, paths) from a label value; None when absent or not ours."""
    try:
        data = json.loads(value or "")
        paths = tuple(p for p in data["paths"] if isinstance(p, str) and p.startswith("/"))
        return str(data["owner"]), paths
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Container:
    """What the executor learned of the container (one inspect)."""

    id: str
    label: str | None
    env: tuple[str, ...]  # Config.Env, "NAME=value"
    running: bool = True  # docker refuses an exec into a stopped container: nothing to prepare


@dataclass(frozen=True)
class ExecPlan:
    argv: tuple[str, ...]
    user: str = ""  # the exec'd user, as given (what the dirs are chowned to)
    dirs: tuple[str, ...] = ()  # per-user cache dirs to make and hand to `user` first
    reasons: tuple[str, ...] = ()


def same_user(a: str, b: str) -> bool:
    """Docker's `name|uid[:group|gid]`, by user: root by any of its spellings."""
    ua, ub = a.split(":")[0], b.split(":")[0]
    return ua == ub or (ua in _ROOT and ub in _ROOT)


def user_dir_name(user: str) -> str:
    name = user.split(":")[0]
    safe = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "_.-")).lstrip(".")  # never `..`
    return "root" if name in _ROOT else (safe or "user")


def plan_exec(argv: Sequence[str], ex: ExecArgs, facts: Container | None,
              env_file_names: frozenset[str] = frozenset()) -> ExecPlan:
    """The exec as typed, or with the cache variables pointed at the user's own tree."""
    argv = tuple(argv)
    if ex.user is None or ex.insert_at is None:
        return ExecPlan(argv, reasons=("runs as the container's user: its caches are its own",))
    if ex.unknown:
        return ExecPlan(argv, reasons=(f"unknown option {ex.unknown[0]}: it may take a value, so the container "
                                       "is not certain; the exec runs unchanged",))
    if facts is None or not facts.running:
        return ExecPlan(argv, reasons=("the container is not running (or could not be inspected): docker says why",))
    got = read_label(facts.label)
    if got is None:
        return ExecPlan(argv, reasons=("no dockcache caches in this container",))
    owner, paths = got
    if same_user(ex.user, owner):
        return ExecPlan(argv, reasons=(f"{ex.user} owns this container's caches",))
    mine = _user_values(ex)
    added, dirs = [], []
    for name, value in _container_env(facts.env).items():
        if name in env_file_names or (name in mine and mine[name] != value):
            continue  # the user's own setting wins (a client echoing the container's value does not count)
        new, used = _redirect(value, paths, user_dir_name(ex.user))
        if used:
            added += ["-e", f"{name}={new}"]
            dirs += [d for d in used if d not in dirs]
    if not added:
        return ExecPlan(argv, reasons=("no cache variable to point elsewhere",))
    why = f"caches of {owner}: {ex.user} gets its own tree in each ({', '.join(dirs)})"
    return ExecPlan(insert_before(argv, ex.insert_at, added), ex.user, tuple(dirs), (why,))


def _user_values(ex: ExecArgs) -> Mapping[str, str | None]:
    return {name: value for name, value in ex.env}


def _container_env(env: Sequence[str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in env if "=" in e)


def _redirect(value: str, paths: Sequence[str], user: str) -> tuple[str, list[str]]:
    """`value` with each cache path in it (a whole path, or a path's start: `=/c/npm/x`,
    `/c/npm:/other`) moved to CACHE/.users/USER; and the dirs that were used."""
    import re  # only for a container with caches: an exec -u into any other costs no regex import

    used: list[str] = []
    for path in sorted(paths, key=len, reverse=True):
        mine = f"{path.rstrip('/')}/{USERS_DIR}/{user}"
        pattern = re.compile(r"(?<![^\s=:])" + re.escape(path.rstrip("/")) + r"(?=$|[/\s:])")
        value, count = pattern.subn(lambda _m, mine=mine: mine, value)
        if count:
            used.append(mine)
    return value, used
