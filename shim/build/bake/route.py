"""Bake on the host's shared BuildKit (the I/O side of bakeshared.py): whether this bake
goes there, and its targets' docker builds, each through dockcache's own build flow as a
child (routing, thin load, metrics and fail-open are the build's), as compose's service
builds run (compose/command.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shim.build.bake.shared import TargetBuild, builds_on_another, dockerfile_path, plan_target_builds
from shim.core import proc
from shim.core.config import Config
from shim.core.grammar import BakeArgs, Invocation
from shim.core.notice import say


def route(real: str, inv: Invocation, bake: BakeArgs, config: Config, resolved: Mapping[str, Mapping],
          environ: Mapping[str, str], dry_run: bool) -> tuple[list[TargetBuild], str | None]:
    """(one docker build per target on the shared builder, the reason), or ([], why the bake
    stays on this engine; None when there is nothing to say)."""
    from shim.build.shared.builder import prepare_run, reachable_target

    if bake.builder or environ.get("BUILDX_BUILDER"):
        return [], None  # the user chose a builder: left on it
    target, why = reachable_target(config)
    if target is None:
        if why and "unreachable" in why and not dry_run:
            say(why)
        return [], why
    builds, why = plan_target_builds(bake, resolved)
    why = why or builds_on_another(resolved, _dockerfiles(resolved))
    where = target.address or target.name
    if why or not builds:
        return [], f"shared builder {where}: {why or 'no target to build'}; the targets take the store path"
    if prepare_run(real, inv, target, environ, dry_run=dry_run) is None:
        return [], None
    return builds, (f"targets on the shared builder {where}: one docker build each "
                    f"({', '.join(b.target for b in builds)}), side by side, loading only what changed; "
                    "bake itself does not run")


def _dockerfiles(resolved: Mapping[str, Mapping]) -> dict[str, str]:
    """Each target's Dockerfile text, where it is a local file dockcache can read."""
    out = {}
    for name, t in resolved.items():
        path = dockerfile_path(t)
        try:
            with open(path or "", encoding="utf-8", errors="replace") as fh:
                out[name] = fh.read(1_000_000)
        except OSError:
            continue
    return out


def run_builds(real: str, inv: Invocation, builds: Sequence[TargetBuild], environ: Mapping[str, str]) -> int:
    """The builds; one alone keeps the terminal, several run side by side with each output
    line named by its target. The first failure's exit code."""
    if len(builds) == 1:
        return proc.run_child(*proc.through_shim(real, [*inv.globals, *builds[0].argv], environ))
    from shim.core.parallel import Job, run_all

    jobs = []
    for b in builds:
        program, argv, env = proc.through_shim(real, [*inv.globals, *b.argv], environ)
        jobs.append(Job(b.target, (program, *argv), env, frozenset()))
    return run_all(jobs, 0)
