"""`docker compose build|up|run --build|create --build` and `docker-compose`: run compose
with the plan's override as a child, then publish each service's private export into
the shared store and move registry keys. Compose's exit code is returned unchanged;
nothing after it may change it (after_docker).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence

from shim.compose.plan import ComposePlan, plan
from shim.compose.sharedbuild import CANCELED, compose_code
from shim.core import proc
from shim.core.notice import after_docker, say

def _docker(real: str, name: str, environ: Mapping[str, str]) -> str:
    """The seed and save builds need docker itself, also under the docker-compose launcher."""
    if name == "docker":
        return real
    from shim.core.realdocker import find_real
    return find_real("docker", environ) or real


def execute(real: str, name: str, args: Sequence[str], environ: Mapping[str, str], *, on_error) -> None:
    from shim.compose.execuser import execute_exec

    execute_exec(real, name, args, environ, on_error=on_error)  # `exec -u`: the user's own caches
    _images_first(real, name, args, environ)
    try:
        p = plan(real, name, args, environ)
    except Exception as exc:  # noqa: BLE001 - fail open
        on_error(real, list(args), exc)
        return
    if p is None:
        return
    if p.service_builds:
        _with_service_builds(real, name, args, environ, p)
    if p.argv == list(args) and not p.env:
        for r in p.reasons:
            say(r)
        return
    rc, started = 1, time.monotonic()
    try:
        _seed_mounts(_docker(real, name, environ), p, environ)
        rc = proc.run_child(real, p.argv, env={**environ, **p.env})
        if rc == 0:
            after_docker(_publish, p)
            after_docker(_move_keys, p)
            after_docker(_save_mounts, _docker(real, name, environ), p, environ)
    finally:
        after_docker(_record, p, environ, rc, time.monotonic() - started)
        after_docker(cleanup, p)
    sys.exit(rc)


def _images_first(real: str, name: str, args: Sequence[str], environ: Mapping[str, str]) -> None:
    """`up|create|run|pull`: the service images the engine lacks (every one for `pull`, `--pull
    always` or `pull_policy: always`) through the host's image cache, side by side (shim/images).
    A `compose pull` whose every image came that way is done; anything else runs compose as typed."""
    from shim.compose.files import invocation, only_looks, reads_stdin, split
    from shim.compose.plan import selected_config
    from shim.images.command import caches_up, ensure

    try:
        call = split(name, args)
        if call.sub not in ("up", "create", "run", "pull", "build") or reads_stdin(call) or only_looks(call):
            return
        if not caches_up(environ):
            return
        cfg = selected_config(real, call, environ) or {"services": {}}
        opts = _options(call.rest)
        flag = next((v for k, v in opts if k == "--pull"), None)
        images, asked = {}, set()
        builds = call.sub == "build" or any(k == "--build" for k, _ in opts)
        bases = _build_bases(call, cfg["services"], environ) if builds else []
        for svc_name, svc in cfg["services"].items():
            if call.sub == "build" or not isinstance(svc, dict) or not svc.get("image") or svc.get("build"):
                continue  # compose builds it: nothing to pull
            policy = flag or svc.get("pull_policy") or "missing"
            if policy in ("never", "build"):
                continue
            images[svc_name] = str(svc["image"])
            if call.sub == "pull" or policy == "always":
                asked.add(images[svc_name])
        inv = invocation(call)
        done = ensure(inv.host, inv.context, [*images.values(), *bases], environ, asked=asked)
    except Exception:  # noqa: BLE001 - compose pulls as it always did
        return
    if call.sub == "pull" and images and all(done.get(i) for i in images.values()):
        for svc_name in images:
            sys.stderr.write(f" ✔ {svc_name} Pulled\n")
        sys.exit(0)


def _build_bases(call, services: Mapping[str, object], environ: Mapping[str, str]) -> list[str]:
    """The FROM images of the services compose will build: pulled through the host's cache
    before the plan, so their layers stay out of the build store (baselayers.py) and the next
    session pulls them from the host instead of unpacking them from the store."""
    from shim.compose.plan import _from_images  # the plan reads them the same way (its build args too)

    return list(dict.fromkeys(i for svc in services.values()
                              if isinstance(svc, dict) and isinstance(svc.get("build"), dict)
                              for i in _from_images(call, environ, svc["build"])))


def _options(rest: Sequence[str]) -> list[tuple[str, str | None]]:
    from shim.core.grammar import scan_options
    from shim.compose.services import sub_values

    opts, _ = scan_options(rest, 1, sub_values(rest[0] if rest else None), interspersed=True)
    return opts


def _with_service_builds(real: str, name: str, args: Sequence[str], environ: Mapping[str, str],
                         p: ComposePlan) -> None:
    """Each service's docker build (on the shared builder), then compose, if anything is left
    for it; exits with the code compose's own build and run would give."""
    rc, started = 1, time.monotonic()
    try:
        rc = _service_builds(real, name, args, environ, p)
    finally:
        p.usage["service_builds"] = [b.service for b in p.service_builds]
        after_docker(_record, p, environ, rc, time.monotonic() - started)
        after_docker(cleanup, p)
    sys.exit(rc)


def _service_builds(real: str, name: str, args: Sequence[str], environ: Mapping[str, str], p: ComposePlan) -> int:
    """The builds side by side in compose's dependency order (one alone keeps the terminal);
    the first failing build ends the command with its code; a dockcache bug runs compose
    as the user typed it."""
    docker = _docker(real, name, environ)
    try:
        if len(p.service_builds) == 1:
            rc = proc.run_child(*proc.through_shim(docker, [*p.docker_globals, *p.service_builds[0].argv], environ))
        else:
            from shim.core.parallel import Job, run_all

            jobs = []
            for b in p.service_builds:
                program, argv, env = proc.through_shim(docker, [*p.docker_globals, *b.argv], environ)
                jobs.append(Job(b.service, (program, *argv), env, b.after))
            rc = run_all(jobs, p.build_limit)
    except Exception as exc:  # noqa: BLE001 - fail open
        say(f"service builds: internal error ({type(exc).__name__}: {exc}); running compose unchanged")
        return proc.run_child(real, list(args))
    if rc != 0:
        return compose_code(rc, proc.interrupted())
    if p.compose_runs and proc.interrupted() is not None:  # compose's cancel: no `up` after a ^C in its builds
        return CANCELED
    return proc.run_child(real, p.argv, env={**environ, **p.env}) if p.compose_runs else 0



def _record(p: ComposePlan, environ: Mapping[str, str], rc: int, seconds: float) -> None:
    """Compose runs count like builds and runs: the keys its services used, what they
    imported and published, the package caches its containers got."""
    from shim.core.state import State, state_dir

    State(state_dir(environ)).append_log("metrics", {"kind": "compose", "published": [], **p.usage,
                                                     "rc": rc, "ms": round(seconds * 1000, 2)})


def _seed_mounts(real: str, p: ComposePlan, environ: Mapping[str, str]) -> None:
    """Before compose: each service's cache mounts this daemon lacks. Whatever fails here is
    one line; compose runs regardless."""
    try:
        _seed_each(real, p, environ)
    except Exception as exc:  # noqa: BLE001 - fail open: the stack builds with what the daemon has
        say(f"cache mounts not seeded: {type(exc).__name__}: {exc}")


def _seed_each(real: str, p: ComposePlan, environ: Mapping[str, str]) -> None:
    from shim.build.command import open_store
    from shim.build.mounts.sync import say_failed_save, seed
    from shim.core.config import load
    from shim.core.state import State, state_dir

    state = State(state_dir(environ))
    for key, m in p.mounts.items():
        if m.plan.mounts:
            say_failed_save(state, key)
    todo = {k: m for k, m in p.mounts.items() if m.plan.seeds}
    if not todo:
        return
    store = open_store(load(environ, os.getcwd()))
    for key, m in todo.items():
        try:
            seed(real, p.docker_globals, m.plan, store, state, m.generation)
        except Exception as exc:  # noqa: BLE001 - fail open: the service builds with what it has
            say(f"cache mounts of {key} not seeded: {type(exc).__name__}: {exc}")


def _save_mounts(real: str, p: ComposePlan, environ: Mapping[str, str]) -> None:
    from shim.build.mounts.sync import save_later
    from shim.core.config import load

    config = load(environ, os.getcwd())
    for key, m in p.mounts.items():
        if m.plan.saves:
            save_later(real, p.docker_globals, m.plan, key=key, config=config, environ=environ,
                       generation=m.generation, tag=m.image)


def _publish(p: ComposePlan) -> None:
    from shim.build.store import handoff
    from shim.build.inputs import remember
    from shim.core.config import load

    max_size = load(os.environ, os.getcwd())["build.max_size"]
    for key, dest in list(p.exports.items()):
        if not (dest / "index.json").exists():
            continue  # compose did not build this service (image already present)
        try:
            done = handoff.publish(p.store, dest, key, max_size=max_size)
            if done is None:  # the store stays locked: a detached worker publishes it
                del p.exports[key]
                continue
            p.usage.setdefault("published", []).append(key)
            if p.local:
                p.local.remember(key, done.digest)
                remember(p.local, key, p.inputs.get(key), done.digest)
        except Exception as exc:  # noqa: BLE001 - the stack is up; only the cache is lost
            say(f"build cache for {key} not published: {exc}")


def _move_keys(p: ComposePlan) -> None:
    if not p.moves or not p.registry:
        return
    from shim.build.store.registry import RegistryError, RegistryUnreachable

    for key, tag in p.moves.items():
        try:
            p.registry.move(tag, key, history=p.history)
        except RegistryError as exc:
            if exc.code != 404:  # 404: compose did not build this service
                say(f"registry key {key} not updated: {exc}")
        except RegistryUnreachable as exc:
            say(f"registry key {key} not updated: {exc}")


def cleanup(p: ComposePlan) -> None:
    if p.snapshot:
        p.snapshot.release()
    for dest in p.exports.values():
        if dest.name.startswith("dockcache-export"):
            shutil.rmtree(dest, ignore_errors=True)
    if p.tmpdir:
        shutil.rmtree(p.tmpdir, ignore_errors=True)
