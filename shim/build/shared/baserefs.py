"""The images a build reads from outside the context: pure, from the Dockerfile text.

The host's shared BuildKit takes every image a build names from a registry; the
session's engine takes the one it holds under that name. So whether a build may go to
the shared builder depends on these names (resolvable.py asks about each): the FROM
lines of the stages the target reaches (an ARG before the first FROM expanded as BuildKit
does), `COPY --from=IMAGE`, `RUN --mount=…,from=IMAGE`, the `# syntax=` frontend, and
`--build-context NAME=docker-image://REF`. A stage's name or index is not an image; a
name a `--build-context` gives is that context (a local dir names no image). A name
that cannot be told here (an ARG with no value known) is in `unknown`: such a build
still goes to the shared builder, and a failure to resolve it is retried on the engine
(fallback.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from shim.core.records import dataclass, field

DOCKER_IMAGE = "docker-image://"


@dataclass(frozen=True)
class Refs:
    images: tuple[str, ...] = ()  # as written (expanded), in order, each once
    unknown: tuple[str, ...] = ()  # words naming an image that could not be expanded here


@dataclass
class _Stage:
    name: str
    base: str  # an image, another stage, or "" (unknown)
    deps: list[str] = field(default_factory=list)  # --from / from= values: stages or images


def build_refs(text: str, *, build_args: Mapping[str, str], contexts: Mapping[str, str],
               target: str | None = None) -> Refs:
    """The images a build of `target` (default: the last stage) reads from outside."""
    from shim.build.mounts.parse import directives

    stages, unknown = _stages(_instructions(text), build_args)
    images: list[str] = []
    syntax = directives(text).get("syntax")
    if syntax and syntax not in contexts:
        images.append(syntax)
    for value in contexts.values():
        if value.startswith(DOCKER_IMAGE):
            images.append(value[len(DOCKER_IMAGE):])
    for i in _reachable(stages, target):
        st = stages[i]
        for word in [st.base, *st.deps]:
            if word and not _stage_of(stages[:i], word) and word not in contexts and word.lower() != "scratch":
                images.append(word)
    return Refs(tuple(dict.fromkeys(images)), tuple(dict.fromkeys(unknown)))


def contexts_of(options: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    """`--build-context NAME=VALUE` options as {NAME: VALUE}."""
    out = {}
    for k, v in options:
        if k == "--build-context" and v and "=" in v:
            name, _, value = v.partition("=")
            out[name] = value
    return out


def _instructions(text: str) -> list[list[str]]:
    """Logical lines as words: continuations joined (the `# escape=` character), comments
    and blank lines left out. Heredoc bodies are not told apart (they rarely start with an
    instruction of interest)."""
    from shim.build.mounts.parse import directives

    escape = directives(text).get("escape", "\\")[:1] or "\\"
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith(escape):
            pending += line[:-1] + " "
            continue
        words = (pending + line).split()
        pending = ""
        if words:
            out.append(words)
    if pending.split():
        out.append(pending.split())
    return out


def _stages(lines: list[list[str]], build_args: Mapping[str, str]) -> tuple[list[_Stage], list[str]]:
    from shim.build.mounts.parse import mount_fields

    scope: dict[str, str | None] = {}
    stages: list[_Stage] = []
    unknown: list[str] = []
    for words in lines:
        op, flags, rest = words[0].upper(), [w for w in words[1:] if w.startswith("--")], \
            [w for w in words[1:] if not w.startswith("--")]
        if op == "ARG" and not stages:
            _declare(rest, scope, build_args)
        elif op == "FROM" and rest:
            base = _expanded(rest[0], scope)
            if base is None:
                unknown.append(rest[0])
            name = rest[2].lower() if len(rest) >= 3 and rest[1].upper() == "AS" else ""
            stages.append(_Stage(name, base or ""))
        elif stages and op in ("COPY", "ADD"):
            stages[-1].deps += [_flag_value(f) for f in flags if f.lower().startswith("--from=")]
        elif stages and op == "RUN":
            for f in flags:
                if f.lower().startswith("--mount="):
                    stages[-1].deps += [v for k, v in mount_fields(_flag_value(f)).items() if k == "from"]
    for st in stages:  # a `$` left in a --from or from= is known only to the daemon
        unknown += [d for d in st.deps if "$" in d]
        st.deps = [d for d in st.deps if d and "$" not in d]
    return stages, unknown


def _flag_value(flag: str) -> str:
    value = flag.split("=", 1)[1]
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _declare(decls: Sequence[str], scope: dict, build_args: Mapping[str, str]) -> None:
    """Global ARGs: `--build-arg`, else the default, else empty; BuildKit's platform ARGs
    (filled in by the daemon) unknown."""
    from shim.build.mounts.parse import platform_args

    for decl in decls:
        name, has, default = decl.partition("=")
        if name in build_args:
            scope[name] = build_args[name]
        elif has:
            scope[name] = _expanded(default, scope)
        else:
            scope[name] = None if name in platform_args("") else ""


def _expanded(word: str, scope: Mapping[str, str | None]) -> str | None:
    """`word` with $X expanded from the global ARGs, quotes off; None when not known here."""
    from shim.build.mounts.parse import Unknown, expand

    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        word = word[1:-1]
    if "$" not in word:
        return word
    try:
        out = expand(word, scope)
    except Unknown:
        return None
    return out if out and "$" not in out else None  # `${X:?msg}` and the like: BuildKit's to expand


def _stage_of(earlier: list[_Stage], word: str) -> bool:
    """Does `word` name one of the stages before (by name or index)?"""
    word = word.lower()
    return bool(word) and any(st.name == word or str(i) == word for i, st in enumerate(earlier))


def _reachable(stages: list[_Stage], target: str | None) -> list[int]:
    """Indexes of the stages a build of `target` runs (all of them when the target is unknown)."""
    if not stages:
        return []
    start = len(stages) - 1
    if target:
        found = [i for i, st in enumerate(stages) if st.name == target.lower()]
        if not found:
            return list(range(len(stages)))
        start = found[0]
    seen, todo = set(), [start]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for word in filter(None, [stages[i].base, *stages[i].deps]):
            word = word.lower()
            todo += [j for j, st in enumerate(stages[:i]) if st.name == word or str(j) == word]
    return sorted(seen)
