"""What an image not built yet will say of itself — its `Config.Env`, `Config.User` and
architecture — read from the Dockerfile that builds it and the config of the image its
target stage starts FROM.

The run planner needs them for a compose service whose image `up --build` is about to
make: a non-root USER must own its cache, and a location the image sets (`CARGO_HOME`,
`PIP_NO_CACHE_DIR`) wins over dockcache's. Without them such a service got no cache on the
first `up --build` of every new session. Pure: the text and the base's config in, facts
out; None whenever something cannot be told for sure (an unknown frontend, a `$VAR` only a
build argument nobody gave would fill, a base the engine does not have), and then the
service gets its caches on the next run, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from shim.build.mounts.parse import (KNOWN_SYNTAX, Unknown, buildkit_parser, declare, platform_args, directives,
                               expand)


class _Known(dict):
    """A stage's variables once its base's ENV is known: a name nobody set is empty, as in
    BuildKit; one set to an unknown value (None) still raises Unknown in expand()."""

    def __missing__(self, key):
        return ""

    def get(self, key, default=None):
        return self[key]


def predict(text: str, *, target: str | None, build_args: Mapping[str, str], platform: str,
            base_config: Callable[[str], dict | None], parse: Callable[[str], Sequence] | None = None) -> dict | None:
    """{"env": [[k, v], ...], "user": str, "arch": str, "base": str} of the image a build of
    `target` makes (`base`: the image its root stage starts FROM, which the engine has), or
    None. `base_config(image)` gives an image's config the same way (None: not in the engine)."""
    syntax = directives(text).get("syntax")
    if syntax and not KNOWN_SYNTAX.match(syntax):
        return None
    stages, global_args = _split(parse(text) if parse else buildkit_parser()(text), build_args)
    chain = _chain(stages, target, global_args, platform)
    if not chain:
        return None
    root = chain[0][0]
    base = {"env": [], "user": "", "arch": platform.partition("/")[2].partition("/")[0]} \
        if root.lower() == "scratch" else base_config(root)
    if base is None:
        return None
    env = _Known({k: v for k, v in base["env"]})
    user = base.get("user") or ""
    args: dict = {}
    later: set = set()  # names whose latest value came from an ARG (it hides an earlier ENV)
    inherited = {**platform_args(platform), **global_args}
    try:
        for _image, commands in chain:
            for cmd in commands:
                name = cmd.cmd.upper()
                if name == "ARG":
                    declare(cmd.value, args, build_args, inherited)
                    later |= {k for k, has, _ in (v.partition("=") for v in cmd.value)
                              if has or k in build_args or k in inherited}
                elif name == "ENV":
                    _set_env(env, _words(args, env, later), cmd.value)
                    later -= set(cmd.value[0::2])
                elif name == "USER" and cmd.value:
                    user = expand(cmd.value[0], _words(args, env, later))
    except Unknown:
        return None
    if any(v is None for v in env.values()):
        return None
    return {"env": [[k, v] for k, v in env.items()], "user": user, "arch": base.get("arch") or "", "base": root}


def _split(commands: Sequence, build_args: Mapping[str, str]) -> tuple[list[tuple[list[str], list]], dict]:
    """[(FROM words, the stage's other instructions)], the ARGs before the first FROM."""
    global_args: dict = {}
    stages: list[tuple[list[str], list]] = []
    for cmd in commands:
        name = cmd.cmd.upper()
        if name == "FROM":
            stages.append((list(cmd.value), []))
        elif stages:
            stages[-1][1].append(cmd)
        elif name == "ARG":
            declare(cmd.value, global_args, build_args, {})
    return stages, global_args


def _chain(stages, target: str | None, global_args: Mapping, platform: str) -> list[tuple[str, list]]:
    """The target stage and the stages it is built FROM, root first, as (FROM image, its
    instructions); [] when a FROM cannot be told."""
    names = [(w[2].lower() if len(w) >= 3 and w[1].upper() == "AS" else str(i)) for i, (w, _c) in enumerate(stages)]
    at = len(stages) - 1 if not target else next((i for i, n in enumerate(names) if n == target.lower()), -1)
    chain: list[tuple[str, list]] = []
    while 0 <= at and len(chain) <= len(stages):
        words, commands = stages[at]
        try:
            image = expand(words[0], {**platform_args(platform), **global_args}) if words else ""
        except Unknown:
            return []
        chain.insert(0, (image, commands))
        parent = [i for i, n in enumerate(names[:at]) if n == image.lower()]
        if not parent:
            return chain if image else []
        at = parent[-1]
    return []


def _words(args: Mapping, env: Mapping, later: set) -> "_Known":
    """What `$X` means at this point of the stage: the latest ARG or ENV of that name (seen:
    `ENV U=1000` then `ARG U=5` makes `USER $U` 5; an `ARG U` with no value changes nothing)."""
    return _Known({**args, **env, **{k: args[k] for k in later if k in args}})


def _set_env(env: dict, words: Mapping, values: Sequence[str]) -> None:
    pairs = list(values)  # the parser gives `ENV a=b c=d` and `ENV a b` as key, value, ...
    for key, val in zip(pairs[0::2], pairs[1::2]):
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        try:
            env[key] = expand(val, words)  # `ENV A=1 B=$A`: B gets A's value before this line
        except Unknown:
            env[key] = None


def for_service(build: Mapping, platform: str | None, base_config: Callable[[str], dict | None]) -> dict | None:
    """predict() for a compose service's resolved `build:` section (absolute context)."""
    import os

    text = build.get("dockerfile_inline")
    if text is None:
        path = os.path.join(str(build.get("context") or ""), str(build.get("dockerfile") or "Dockerfile"))
        if not os.path.isabs(path):
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read(1_000_000)
        except (OSError, UnicodeDecodeError):
            return None
    from shim.build.mounts.sync import section_args

    try:
        return predict(str(text), target=build.get("target"), build_args=section_args(build),
                       platform=platform or _native(), base_config=base_config)
    except Exception:  # noqa: BLE001 - BuildKit's parser refused it (the build will say why) or is missing
        return None


def available() -> bool:
    """BuildKit's parser is installed (the `mounts` extra): without it nothing is predicted."""
    try:
        buildkit_parser()
    except ImportError:
        return False
    return True


def _native() -> str:
    from shim.build.mounts.sync import native_platform

    return native_platform()
