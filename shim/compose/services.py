"""Compose services as the run flow sees them: which services a command acts on, the
`docker run` each amounts to (for run's planner: package caches and mirrors), and the
cache volumes they need. Asks docker only for the run planner's facts and one volume
inspect; never runs the user's command."""

from __future__ import annotations

from shim.compose.files import ComposeCall, given, invocation
from shim.core import proc
from shim.core.notice import say
from shim.core.state import State, state_dir


def service_caches(real: str, call: ComposeCall, cfg: dict, project: str, environ, *, dry_run=False) -> dict:
    """Package caches for each service, planned exactly as for `docker run` (see runcmd)."""
    from shim.core.grammar import parse_invocation
    from shim.run.command import build_plan

    out: dict = {}
    docker_globals = call.base[:-1]
    one_off = run_options(call)
    for name, svc in cfg["services"].items():
        argv = as_run_argv(name, svc, project, one_off.get(name, ()))
        inv = parse_invocation([*docker_globals, *argv])
        rebuilt = _rebuilt(svc, call)
        try:
            plan, _c, notes = build_plan(real, inv.argv, inv, environ, pull=False, need_image=True, dry_run=dry_run,
                                         unbuilt=_predictor(svc) if rebuilt else _unbuilt(svc, call), rebuilt=rebuilt)
        except Exception as exc:  # noqa: BLE001 - one service's caches never block the stack
            say(f"{name}: package caches skipped ({type(exc).__name__}: {exc})")
            continue
        for note in notes:
            say(f"{name}: {note}")
        if plan.mounts or plan.mirror.tokens():
            out[name] = plan
    return out


def forget_rebuilt(call: ComposeCall, cfg: dict, project: str, environ) -> None:
    """The images compose builds again now: what dockcache remembered of them (their USER
    owns a container's caches) is the old build's, for `docker run` of them too."""
    from shim.core.state import endpoint_id, forget_images

    inv = invocation(call)
    names = [str(svc.get("image") or f"{project}-{name}") for name, svc in cfg["services"].items()
             if isinstance(svc, dict) and _rebuilt(svc, call)]
    if names:
        forget_images(State(state_dir(environ)), endpoint_id(inv.host, inv.context, environ), names)


def _unbuilt(svc: dict, call: ComposeCall):
    """For a service whose missing image compose will build, from the base the engine has:
    its image's facts from the Dockerfile (imageconfig.py). Not when compose may pull the
    image instead, or pull a newer base (a wrong USER would lock the container out)."""
    build = svc.get("build")
    if not isinstance(build, dict) or build.get("pull") or given(call, "--pull"):
        return None
    if svc.get("image") and not _builds_now(svc, call):
        return None
    return _predictor(svc)


def _predictor(svc: dict):
    from shim.build.imageconfig import for_service

    return lambda base_config: for_service(svc["build"], svc.get("platform"), base_config)


def _rebuilt(svc: dict, call: ComposeCall) -> bool:
    """Compose builds this service's image now even where one of its name exists: that
    image's USER and ENV are the old build's (a Dockerfile that gained `USER node` would get
    a root-owned cache it cannot write); the Dockerfile tells the new ones."""
    if not isinstance(svc.get("build"), dict) or not _builds_now(svc, call):
        return False
    from shim.build.imageconfig import available

    return available()  # without the parser, the image there now is the best word there is


def _builds_now(svc: dict, call: ComposeCall) -> bool:
    """This command builds the service's image whether or not one of its name exists."""
    return call.sub == "build" or given(call, "--build") or svc.get("pull_policy") == "build"


SUB_VALUE = frozenset("--build-arg --builder --ssh -m --memory --progress --scale -t --timeout --exit-code-from "
                      "--pull --wait-timeout --attach --no-attach --attach-dependencies-of".split())
BUILD_VALUE = frozenset("--build-arg --builder --ssh -m --memory --progress".split())  # `compose build --pull` takes none


def sub_values(sub: str | None) -> frozenset[str]:
    """The options of compose's subcommand `sub` that take a value."""
    return BUILD_VALUE if sub == "build" else SUB_VALUE | RUN_VALUE if sub == "run" else SUB_VALUE


def names(call: ComposeCall) -> list[str]:
    """The services named on `compose build|up|run|create`'s command line."""
    from shim.core.grammar import scan_options

    _opts, pos = scan_options(call.rest, 1, sub_values(call.sub), interspersed=call.sub != "run")
    return [call.rest[i] for i in pos[:1 if call.sub == "run" else None]]


def named_services(call: ComposeCall, services: dict) -> dict:
    """The services `compose build|up|run|create SERVICE...` acts on (for up/run/create with
    what they depend on); all of them when none is named (or a name is not a service: then the
    arguments were misread, and more is safer than less)."""
    given = names(call)
    if not given or any(n not in services for n in given):
        return services
    wanted, todo = set(), list(given)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        if call.sub != "build":  # `build X` builds X alone; up/run/create start what X depends on
            deps = (services.get(name) or {}).get("depends_on") or {}
            todo += [d for d in deps if d in services]
    return {k: v for k, v in services.items() if k in wanted}


def forget_vanished(real: str, call: ComposeCall, run_caches: dict, environ) -> bool:
    """Volumes the state dir remembers but the daemon lost (`docker volume rm`, a prune, a
    new daemon with an old state dir): compose would refuse the `external` volume and fail
    the whole command. One inspect of all of them; the missing ones are forgotten so that
    planning again creates them. True when any was missing."""
    names = sorted({m.source for plan in run_caches.values() for m in plan.mounts if m.kind == "volume"})
    if not names:
        return False
    inv = invocation(call)
    res = proc.run_docker(real, [*inv.globals, "volume", "inspect", "--format", "{{.Name}}", *names], timeout=30)
    present = set(res.stdout.split())
    missing = [n for n in names if n not in present]
    if not missing or (res.returncode != 0 and not present and "no such volume" not in res.stderr.lower()):
        return False  # nothing lost, or the daemon did not answer (compose will say so itself)
    from shim.core.daemon import daemon_key

    state = State(state_dir(environ))
    daemon = daemon_key(inv.host, inv.context, environ)
    for name in missing:
        state.forget("volumes", daemon, name)
    say(f"cache volume{'s' if len(missing) > 1 else ''} {', '.join(missing)} vanished outside dockcache: created again")
    return True


RUN_VALUE = frozenset("-e --env -u --user -w --workdir -v --volume -p --publish --name --entrypoint -l "
                      "--label --cap-add --cap-drop --pull --env-from-file".split())


def run_options(call: ComposeCall) -> dict[str, tuple[str, ...]]:
    """`compose run|create SERVICE` options that change what the container is: the user,
    variables, bind mounts and workdir given on the command line (`-u 1000`, `-e A=1`,
    `-v .:/repo -w /repo/web`), as docker run flags for that service (they come after its
    own, so they win as they do for compose)."""
    if call.sub != "run":
        return {}
    from shim.core.grammar import scan_options

    opts, pos = scan_options(call.rest, 1, RUN_VALUE, interspersed=False)
    if not pos:
        return {}
    flags: list[str] = []
    for k, v in opts:
        if k in ("-u", "--user") and v:
            flags += ["--user", v]
        elif k in ("-e", "--env") and v:
            flags += ["-e", v]
        elif k in ("-v", "--volume") and v:
            flags += ["--volume", v]
        elif k in ("-w", "--workdir") and v:
            flags += ["--workdir", v]
    return {call.rest[pos[0]]: tuple(flags)}


def as_run_argv(name: str, svc: dict, project: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The `docker run` a compose service amounts to, for the run planner."""
    argv = ["run"]
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict) and vol.get("target"):
            src = vol.get("source") or ""
            argv += ["--mount", f"type={vol.get('type', 'volume')},src={src},dst={vol['target']}"]
    env = svc.get("environment") or {}
    for key in (env if isinstance(env, dict) else {}):
        argv += ["-e", f"{key}=x"]
    if svc.get("user"):
        argv += ["--user", str(svc["user"])]
    if svc.get("working_dir"):
        argv += ["--workdir", str(svc["working_dir"])]
    argv += extra
    command = svc.get("command") or []
    command = command.split() if isinstance(command, str) else [str(c) for c in command]
    return [*argv, str(svc.get("image") or f"{project}-{name}"), *command]
