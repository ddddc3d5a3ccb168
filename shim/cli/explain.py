"""`dockcache explain -- docker run …`: what would be detected, added and why. Runs nothing."""

from __future__ import annotations

import json
import os

from shim.core.grammar import parse_invocation
from shim.hot import DISABLE_VALUES

from .context import Ctx
from .output import CliError, emit


def run_explain(ctx: Ctx, argv: list[str], *, as_json: bool) -> None:
    if argv and argv[0] in ("docker", "docker-compose"):
        argv = (["compose"] if argv[0] == "docker-compose" else []) + argv[1:]
    if not ctx.real:
        raise CliError("no real docker found on PATH (set DOCKCACHE_REAL_DOCKER)")
    inv = parse_invocation(argv)
    if ctx.environ.get("DOCKCACHE_DISABLE", "").lower() in DISABLE_VALUES:
        # The shim execs the real docker with the argv as typed (bin/docker, shim/hot.py).
        data = {"kind": inv.kind, "reasons": ["DOCKCACHE_DISABLE is set: dockcache is off, docker runs unchanged"],
                "argv": ["docker", *argv], "disabled": True}
    elif inv.kind == "run":
        from shim.run.command import build_plan
        plan, _cfg, notes = build_plan(ctx.real, argv, inv, ctx.environ, dry_run=True)
        detected = [r for r in plan.reasons if r.startswith("detected")]
        placement = next((r.removeprefix("caches: ") for r in plan.reasons if r.startswith("caches: ")), None)
        data = {"kind": "run", "detected": detected, "reasons": list(plan.reasons), "added": list(plan.added),
                "caches_in": plan.mounts[0].kind if plan.mounts else None, "placement": placement,
                "argv": ["docker", *plan.argv], "notes": notes}
        _image_reason(ctx, inv, data)
    elif inv.kind == "build":
        from shim.build.command import prepare
        prep = prepare(ctx.real, argv, inv, ctx.environ, dry_run=True)
        backend = "shared builder" if prep.shared else prep.config["build.backend"]
        data = {"kind": "build", "key": prep.plan.key, "imports": list(prep.plan.imports),
                "export": prep.plan.export, "engine": prep.caps.mode, "backend": backend,
                "registry": prep.config["build.registry"] or None, "reasons": list(prep.plan.reasons),
                "argv": ["docker", *prep.plan.argv],
                "cache_mounts": [{"id": p.mount.id, "target": p.mount.target, "sharing": p.mount.sharing,
                                  "store_name": p.name, "seed": p.seed, "save": p.save}
                                 for p in prep.mounts.mounts]}
        data["reasons"].insert(0, f"build cache backend: {backend}"
                               + (f" ({data['registry']})" if backend in ("registry", "both") else ""))
    elif inv.kind == "bake":
        from shim.build.bake.command import prepare as prepare_bake
        prep = prepare_bake(ctx.real, argv, inv, ctx.environ, dry_run=True)
        plan = prep.plan
        data = {"kind": "bake", "keys": list(plan.keys), "imports": list(plan.imports),
                "exports": [{"target": t, "key": k} for t, k, _d in plan.exports],
                "reasons": list(plan.reasons), "argv": ["docker", *plan.argv] if not prep.builds else ["(no bake run)"],
                "target_builds": [["docker", *inv.globals, *b.argv] for b in prep.builds]}
    elif inv.kind == "exec":
        from shim.run.execcmd import plan_for
        plan, _facts = plan_for(ctx.real, argv, inv, ctx.environ)
        data = {"kind": "exec", "reasons": list(plan.reasons), "user_dirs": list(plan.dirs),
                "argv": ["docker", *plan.argv]}
    elif inv.kind == "compose" or argv[:1] == ["compose"]:
        data = _compose(ctx, argv)
    elif inv.kind == "pull":
        data = {"kind": "pull", "reasons": [], "argv": ["docker", *argv]}
        _image_reason(ctx, inv, data)
    else:
        data = {"kind": inv.kind, "reasons": ["dockcache does not rewrite this command"], "argv": ["docker", *argv]}
    human = "\n".join([f"command kind: {data['kind']}", *[f"- {r}" for r in data["reasons"]],
                       *(["builds first:"] if data.get("service_builds") else []),
                       *["  " + " ".join(b) for b in data.get("service_builds", [])],
                       *(["builds instead:"] if data.get("target_builds") else []),
                       *["  " + " ".join(b) for b in data.get("target_builds", [])],
                       "final argv:", "  " + " ".join(data["argv"])]
                      + [f"with {k}={v}" for k, v in data.get("env", {}).items()]
                      + (["override file:", json.dumps(data["override"], indent=2, sort_keys=True)]
                         if data.get("override") else []))
    emit(data, as_json=as_json, human=human)


def _image_reason(ctx: Ctx, inv, data: dict) -> None:
    """Where the image of a run or pull would come from (the host's image cache or the registry)."""
    from shim.core.grammar import parse_pull, parse_run
    from shim.images.command import explain

    if inv.kind == "pull":
        image, asked = parse_pull(inv).image, True
    else:
        run = parse_run(inv)
        policy = next((v for k, v in reversed(run.options) if k == "--pull"), "missing")
        image, asked = (None if policy == "never" else run.image), policy == "always"
    if image:
        data["image"] = explain(inv.host, inv.context, image, ctx.environ, asked=asked)
        data["reasons"].append(data["image"])


def _compose(ctx: Ctx, argv: list[str]) -> dict:
    """The override compose would get; nothing is created, snapshotted or built."""
    from shim.compose import command as compose

    p = compose.plan(ctx.real, "docker", argv, ctx.environ, dry_run=True)
    if p is None:
        return {"kind": "compose", "reasons": ["no service builds and no package caches to add"],
                "argv": ["docker", *argv]}
    def shown(text: str) -> str:  # the temp file is gone once explain returns
        return text.replace(os.path.join(p.tmpdir, "dockcache.override.json"), "<override>") if p.tmpdir else text
    builds = [["docker", *p.docker_globals, *b.argv] for b in p.service_builds]
    try:
        return {"kind": "compose", "reasons": p.reasons or ["nothing to add"], "override": p.override,
                "env": {k: shown(v) for k, v in p.env.items()}, "service_builds": builds,
                "argv": ["docker", *map(shown, p.argv)] if p.compose_runs else ["(no compose run)"]}
    finally:
        compose.cleanup(p)
