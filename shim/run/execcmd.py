"""`docker exec -u USER CONTAINER …`: the I/O half of execplan (see there for why).

bin/docker sends only an exec with a user to Python; every other exec is exec'd by the
launcher at once. Here: one inspect of the container (a request on the engine's socket,
a few ms; the CLI where there is no local socket), nothing more for a container without
dockcache's label or run as the same user. The first exec of a user into a container
makes that user's dirs (`docker exec -u 0 … mkdir/chown`, remembered per container);
later ones only add the variables. Whatever fails: the exec as typed, one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from shim.core import proc
from shim.core.grammar import ExecArgs, Invocation, parse_exec
from shim.run.execplan import LABEL, Container, ExecPlan, plan_exec

PREPARED = "execusers"  # state: (daemon, container id) -> users whose dirs exist


def execute(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str],
            *, on_error: Callable) -> None:
    try:
        argv = planned_argv(real, args, inv, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        on_error(real, list(args), exc)
        return
    proc.exec_docker(real, argv)


def planned_argv(real: str, args: Sequence[str], inv: Invocation, environ: Mapping[str, str]) -> list[str]:
    plan, facts = plan_for(real, args, inv, environ)
    ref = parse_exec(inv.argv, inv.args_start).container or ""
    if plan.dirs and facts is not None and not prepare(real, inv, environ, facts.id, ref, plan):
        return list(args)
    return list(plan.argv)


def plan_for(real: str, args: Sequence[str], inv: Invocation,
             environ: Mapping[str, str]) -> tuple[ExecPlan, Container | None]:
    """The plan (`explain` shows it) and what the inspect said; makes nothing."""
    ex = parse_exec(inv.argv, inv.args_start)
    if ex.user is None or ex.container is None or ex.unknown:
        return plan_exec(args, ex, None), None
    facts = inspect(real, inv, ex.container, environ)
    return plan_exec(args, ex, facts, _env_file_names(ex)), facts


def inspect(real: str, inv: Invocation, ref: str, environ: Mapping[str, str]) -> Container | None:
    """The container's id, our label and its variables; None when it cannot be told."""
    from shim.core.daemon import socket_path

    sock = socket_path(inv.host, inv.context, environ)
    data = _from_socket(sock, ref) if sock else None
    if data is None:
        res = proc.run_docker(real, [*inv.globals, "container", "inspect", "--format", "{{json .}}", ref])
        if res.returncode != 0:
            return None
        try:
            data = json.loads(res.stdout)
        except ValueError:
            return None
    config = data.get("Config") or {}
    return Container(str(data.get("Id", "")), (config.get("Labels") or {}).get(LABEL),
                     tuple(config.get("Env") or ()), bool((data.get("State") or {}).get("Running", True)))


def _from_socket(sock: str, ref: str) -> dict | None:
    from urllib.parse import quote

    from shim.core.engineapi import request

    got = request(sock, "GET", f"/containers/{quote(ref, safe='')}/json")
    if got is None or got[0] != 200:
        return None  # 404 and the rest: the CLI says it in its own words (or finds it elsewhere)
    try:
        data = json.loads(got[1])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def prepare(real: str, inv: Invocation, environ: Mapping[str, str], cid: str, ref: str, plan: ExecPlan) -> bool:
    """The user's dirs, made by root and handed to the user, once per container."""
    from shim.core.daemon import daemon_key
    from shim.core.notice import say
    from shim.core.state import State, state_dir

    state = State(state_dir(environ))
    daemon = daemon_key(inv.host, inv.context, environ)
    done = state.get(PREPARED, daemon, cid) or {}
    if all(d in done.get("dirs", []) for d in plan.dirs):
        return True
    script = 'u=$1; shift; mkdir -p -- "$@" && chown -- "$u" "$@"'
    res = proc.run_docker(real, [*inv.globals, "exec", "-u", "0", ref, "sh", "-c", script, "sh",
                                 plan.user, *plan.dirs])
    if res.returncode != 0:
        last = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        say(f"could not give {plan.user} its own caches in {ref} ({last[0][:160]}); exec runs unchanged")
        return False
    state.put(PREPARED, daemon, cid, {"dirs": sorted({*done.get("dirs", []), *plan.dirs})})
    return True


def _env_file_names(ex: ExecArgs) -> frozenset[str]:
    names = set()
    for path in ex.env_files:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                names.update(ln.split("=", 1)[0].strip() for ln in fh if ln.strip() and not ln.startswith("#"))
        except OSError:
            continue  # docker reports a missing file itself
    return frozenset(names)
