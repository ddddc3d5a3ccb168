"""`docker compose exec -u USER SERVICE …`: what `docker exec -u` gets (shim/run/execplan.py),
for the service's container. compose resolves the service to a container (`compose ps`,
with the user's own compose options, so the same project), then the run flow's exec
steps: one inspect, the user's dirs made once, the variables added as compose's `-e`.
Every other compose command returns at once; whatever fails, compose runs as typed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from shim.core import proc
from shim.core.grammar import parse_exec, parse_invocation

VALUE_FLAGS = frozenset("-e --env -u --user -w --workdir --index".split())  # `docker compose exec --help` (2.26)
BOOL_FLAGS = frozenset("-d --detach --dry-run -T --no-TTY --privileged -i --interactive -t --tty --help -h".split())


def execute_exec(real: str, name: str, args: Sequence[str], environ: Mapping[str, str], *, on_error: Callable) -> None:
    """Exec compose with the user's caches when this is `compose exec -u`; else return."""
    from shim.compose.files import split

    call = split(name, args)
    if call.sub != "exec":
        return
    try:
        argv = planned_argv(real, name, args, call, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        on_error(real, list(args), exc)
        return
    proc.exec_docker(real, argv)


def planned_argv(real: str, name: str, args: Sequence[str], call, environ: Mapping[str, str]) -> list[str]:
    from shim.core.realdocker import find_real
    from shim.run.execcmd import inspect, prepare
    from shim.run.execplan import plan_exec

    start = len(call.base) + len(call.globals) + 1
    ex = parse_exec(list(args), start, VALUE_FLAGS, VALUE_FLAGS | BOOL_FLAGS)
    if ex.user is None or ex.container is None or ex.unknown or "--dry-run" in args[start:ex.insert_at]:
        return list(args)
    cid = _container(real, call, ex.container, _index(args[start:ex.insert_at]))
    if not cid:
        return list(args)  # not running: compose says so in its own words
    docker = real if name == "docker" else (find_real("docker", environ) or real)
    inv = parse_invocation([*call.base[:-1], "exec"])  # docker's globals: the same engine as compose's
    facts = inspect(docker, inv, cid, environ)
    plan = plan_exec(args, ex, facts)
    if plan.dirs and facts is not None and not prepare(docker, inv, environ, facts.id, cid, plan):
        return list(args)
    return list(plan.argv)


def _index(opts: Sequence[str]) -> str:
    for i, tok in enumerate(opts):
        if tok == "--index" and i + 1 < len(opts):
            return opts[i + 1]
        if tok.startswith("--index="):
            return tok.split("=", 1)[1]
    return "1"


def _container(real: str, call, service: str, index: str) -> str | None:
    """The id of the service's container compose would exec into (its `--index`, default 1)."""
    res = proc.run_docker(real, [*call.base, *call.globals, "ps", "--format", "{{.ID}}\t{{.Name}}", service])
    if res.returncode != 0:
        return None
    rows = [ln.split("\t") for ln in res.stdout.splitlines() if "\t" in ln]
    pick = [cid for cid, name in rows if name.endswith((f"-{index}", f"_{index}"))]
    return (pick or [cid for cid, _ in rows] or [None])[0]
