"""Bake on the host's shared BuildKit: each target as a `docker build` of its own, as compose
services are (compose/sharedbuild.py).

Bake given the shared builder with `--load` would stream every image it built into the
engine in full (docker/buildx#626); a `docker build` through dockcache's own flow instead
loads only the layers the engine lacks, none when the image is unchanged, and BuildKit's
own cache serves every session (nothing exported or imported). Only what a docker build
says the same way is translated: a target with any other attribute (named contexts, other
outputs, attestations, secrets, inline Dockerfiles, several platforms, …) or a bake option
that changes what is made (`--push`, `--metadata-file`, `--provenance`, `--sbom`, …)
sends the whole bake the store path. Pure: bake's resolved targets in, argvs out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from shim.core.records import dataclass

from shim.core.grammar import BakeArgs

# target attributes a docker build takes as they are (bake --print's names)
KNOWN = frozenset("context dockerfile args labels tags target platforms no-cache pull output".split())
PASSED = frozenset("--file --set --load --no-cache --pull --progress --var".split())  # resolved or passed on
PROGRESS = frozenset("auto tty plain".split())  # bake's values a docker build shows the same way
LOADS = ([], ["type=docker"])  # the outputs a docker build makes by loading the image into the engine


@dataclass(frozen=True)
class TargetBuild:
    target: str
    argv: tuple[str, ...]  # after docker's globals: ("build", …, context)


def plan_target_builds(bake: BakeArgs, resolved: Mapping[str, Mapping]) -> tuple[list[TargetBuild], str | None]:
    """(one docker build per target, None) or ([], why bake keeps its own build)."""
    passed = [k for k, _v in bake.options if k not in PASSED]
    if passed:
        return [], f"bake {passed[0]}: left to bake"
    progress = [v for k, v in bake.options if k == "--progress" and v]
    if progress and progress[-1] not in PROGRESS:  # docker build's quiet prints the image id; bake's prints nothing
        return [], f"bake --progress {progress[-1]}: left to bake"
    out = []
    for name, t in sorted(resolved.items()):
        argv = target_argv(t, progress[-1:])
        if isinstance(argv, str):
            return [], f"target {name}: {argv}"
        out.append(TargetBuild(name, tuple(argv)))
    return out, None


def target_argv(t: Mapping, progress: list[str]) -> list[str] | str:
    """`build …` for one target, or why it cannot be said as a docker build."""
    unknown = sorted(set(t) - KNOWN)
    if unknown:
        return f"{unknown[0]} is left to bake"
    if list(t.get("output") or []) not in LOADS:
        return "an output of its own is left to bake"
    platforms = list(t.get("platforms") or [])
    if len(platforms) > 1:
        return "several platforms are left to bake"
    context = str(t.get("context") or ".")
    if "://" in context or context.startswith("git@"):
        return "a remote context is left to bake"
    argv = ["build"]
    df = t.get("dockerfile")
    if df and df != "Dockerfile":
        argv += ["-f", str(df) if os.path.isabs(str(df)) else os.path.join(context, str(df))]
    argv += [x for tag in t.get("tags") or [] for x in ("-t", str(tag))]
    argv += [x for k, v in (t.get("args") or {}).items() if v is not None for x in ("--build-arg", f"{k}={v}")]
    argv += [x for k, v in (t.get("labels") or {}).items() if v is not None for x in ("--label", f"{k}={v}")]
    argv += ["--target", str(t["target"])] if t.get("target") else []
    argv += ["--platform", str(platforms[0])] if platforms else []
    argv += ["--no-cache"] if t.get("no-cache") is True else []
    argv += ["--pull"] if t.get("pull") is True else []
    argv += ["--progress", progress[0]] if progress else []
    return [*argv, context]


def builds_on_another(resolved: Mapping[str, Mapping], dockerfiles: Mapping[str, str]) -> str | None:
    """A target whose Dockerfile starts FROM another target's image: that image lives in this
    session's engine (the shared builder pulls FROM images from registries), so the bake
    keeps the store path. `dockerfiles`: target -> its Dockerfile's text (when readable)."""
    from shim.build.shared.route import from_images, tag_forms

    names = {form for t in resolved.values() for tag in t.get("tags") or [] for form in tag_forms(str(tag))}
    for name, text in sorted(dockerfiles.items()):
        for image in from_images(text):
            if any(form in names for form in tag_forms(image)):
                return f"target {name} builds FROM {image}, another target's image"
    return None


def dockerfile_path(t: Mapping) -> str | None:
    """Where a target's Dockerfile is, as a docker build run here reads it (None: not a file)."""
    if t.get("dockerfile-inline") is not None:
        return None
    df = str(t.get("dockerfile") or "Dockerfile")
    return df if os.path.isabs(df) else os.path.join(str(t.get("context") or "."), df)
