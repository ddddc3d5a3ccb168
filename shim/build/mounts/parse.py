"""Which `RUN --mount=type=cache` mounts a build will use: pure, from the Dockerfile text.

BuildKit's own parser does the instruction level (continuations, comments, the escape
directive, heredocs, JSON vs shell form): the `dockerfile` package wraps its Go code.
It is imported only here, only for a Dockerfile that mentions `--mount` at all, so
neither passthrough nor a build without mounts pays for it. What is left is BuildKit's
meaning: the stages reachable from the target, `ARG`/`ENV` expansion of the mount
options (a variable the base image may set is unknown here: that mount is skipped,
with the reason), `id` defaulting to `target`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from shim.core.records import dataclass, field

# The frontends whose RUN --mount grammar we know; any other `# syntax=` may mean anything.
KNOWN_SYNTAX = re.compile(r"^(docker\.io/)?docker/dockerfile(-upstream)?(:1(\.\d+){0,2}(-labs)?)?(@sha256:[0-9a-f]+)?$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_SHARING = ("shared", "private", "locked")


class Unknown(Exception):
    """A value that depends on something only the daemon knows (e.g. the base image's ENV)."""


@dataclass(frozen=True)
class CacheMount:
    id: str
    target: str
    sharing: str = "shared"
    uid: int | None = None
    gid: int | None = None
    mode: str | None = None  # octal text as written, e.g. "0755"
    base: str | None = None  # the image at the root of the mount's stage (None: scratch)
    stage: str = ""


@dataclass(frozen=True)
class Found:
    mounts: tuple[CacheMount, ...] = ()
    skipped: tuple[str, ...] = ()  # one reason per mount left out
    reason: str | None = None  # the whole Dockerfile was left alone, and why


@dataclass
class _Stage:
    name: str
    base: str  # image reference or another stage's name/index
    env: dict[str, str | None] = field(default_factory=dict)  # None: declared, value unknown here
    envs_set: set[str] = field(default_factory=set)  # ENV names (a child stage inherits ENV and ARG values)
    deps: set[str] = field(default_factory=set)
    mounts: list[CacheMount] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def directives(text: str) -> dict[str, str]:
    """Parser directives (`# syntax=…`, `# escape=…`): leading comment lines only."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _DIRECTIVE.match(line.strip())
        if not m:
            break
        out.setdefault(m.group(1).lower(), m.group(2))
    return out


def may_have_cache_mounts(text: str) -> bool:
    """Cheap pre-check: no `--mount` anywhere means no parse (and no import) at all."""
    return "--mount" in text.lower()


def expand(word: str, env: Mapping[str, str | None]) -> str:
    """Shell-style `$X`, `${X}`, `${X:-d}`, `${X:+a}` as BuildKit expands flags; a name not
    declared in the Dockerfile raises Unknown (the base image may define it)."""
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(4)
        if env.get(name) is None:
            raise Unknown(name)
        value, op, word_ = env[name], m.group(2), m.group(3) or ""
        if op in (":-", "-"):
            return value if value or op == "-" else expand(word_, env)
        if op in (":+", "+"):
            return expand(word_, env) if value or op == "+" else ""
        return value
    escaped = word.split("\\$")
    return "$".join(_VAR.sub(one, part) for part in escaped)


def mount_fields(value: str) -> dict[str, str]:
    """`type=cache,target=/x,ro` → fields (keys lower-case; a bare word is `word=true`)."""
    import csv

    out: dict[str, str] = {}
    for item in next(csv.reader([value]), []):
        key, _, val = item.partition("=")
        out[key.strip().lower()] = val.strip() if _ else "true"
    return out


def find(text: str, *, target: str | None, build_args: Mapping[str, str], platform: str,
         parse: Callable[[str], Sequence] | None = None) -> Found:
    """The cache mounts of the stages a build of `target` runs (all stages reachable from it)."""
    syntax = directives(text).get("syntax")
    if syntax and not KNOWN_SYNTAX.match(syntax):
        return Found(reason=f"Dockerfile frontend {syntax} is not one whose mounts dockcache knows")
    if not may_have_cache_mounts(text):
        return Found()
    parse = parse or buildkit_parser()
    stages, problem = _stages(parse(text), build_args, platform)
    if problem:
        return Found(reason=problem)
    if not stages:
        return Found(reason="the Dockerfile has no FROM")
    want = _target_stage(stages, target)
    if want is None:
        return Found(reason=f"target stage {target} is not in the Dockerfile")
    mounts: dict[str, CacheMount] = {}
    skipped: list[str] = []
    for st in _reachable(stages, want):
        base = _root_image(stages, st)
        for m in st.mounts:
            mounts.setdefault(m.id, CacheMount(**{**m.__dict__, "base": base}))
        skipped += st.skipped
    return Found(tuple(mounts.values()), tuple(skipped))


def buildkit_parser() -> Callable[[str], Sequence]:
    """`dockerfile.parse_string` (the optional `mounts` extra). bin/docker starts Python with
    -S (no site-packages scan on the hot path): the site dirs are added only here, once a
    Dockerfile mentions `--mount`."""
    try:
        import dockerfile
    except ImportError:
        import site
        import sys

        if not sys.flags.no_site:
            raise
        site.main()
        import dockerfile
    return dockerfile.parse_string


def _stages(commands: Sequence, build_args: Mapping[str, str], platform: str) -> tuple[list[_Stage], str | None]:
    global_args: dict[str, str | None] = {}
    stages: list[_Stage] = []
    for cmd in commands:
        name = cmd.cmd.upper()
        if name == "ARG" and not stages:
            declare(cmd.value, global_args, build_args, {})
        elif name == "FROM":
            words = list(cmd.value)
            try:
                image = expand(words[0], {**platform_args(platform), **global_args}) if words else ""
            except Unknown as exc:
                return [], f"FROM uses ${exc}, which is not declared"
            alias = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            st = _Stage(alias, image)
            parent = _lookup(stages, image)
            if parent is not None:  # BuildKit: a stage FROM another inherits its ENV and its ARGs
                st.env.update(parent.env)
                st.envs_set = set(parent.envs_set)
            st.deps.add(image.lower())
            stages.append(st)
        elif stages:
            _instruction(stages[-1], cmd, name, global_args, build_args, platform)
    return stages, None


def _instruction(st: _Stage, cmd, name: str, global_args, build_args, platform: str) -> None:
    if name == "ARG":
        declare(cmd.value, st.env, build_args, {**platform_args(platform), **global_args})
    elif name == "ENV":
        _env(st, cmd.value)
    elif name in ("COPY", "ADD"):
        st.deps |= {f.split("=", 1)[1].lower() for f in cmd.flags if f.lower().startswith("--from=")}
    elif name == "RUN":
        for flag in cmd.flags:
            if flag.lower().startswith("--mount="):
                _mount(st, flag.split("=", 1)[1])


def declare(values: Sequence[str], scope: dict, build_args: Mapping[str, str], inherited: Mapping) -> None:
    for item in values:
        key, has, default = item.partition("=")
        if key in build_args:
            scope[key] = build_args[key]
        elif has:
            try:
                scope[key] = expand(default, scope)
            except Unknown:
                scope[key] = None  # a later use says so
        elif key in inherited:
            scope[key] = inherited[key]
        else:  # `ARG X` alone keeps what a parent stage gave X (BuildKit appends no value)
            scope[key] = scope.get(key, "")


def _env(st: _Stage, values: Sequence[str]) -> None:
    # the package gives `ENV a=b c=d` and `ENV a b` alike as key, value, key, value, ...
    pairs = list(values)
    for key, val in zip(pairs[0::2], pairs[1::2]):
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        try:
            st.env[key] = expand(val, st.env)
        except Unknown:
            st.env[key] = None
        st.envs_set.add(key)


def _mount(st: _Stage, raw: str) -> None:
    try:
        f = {k: expand(v, st.env) for k, v in mount_fields(raw).items()}
    except Unknown as exc:
        st.skipped.append(f"a mount in stage {st.name} uses ${exc}, whose value is only known to the daemon")
        return
    if f.get("type", "bind") != "cache":
        if f.get("from"):
            st.deps.add(f["from"].lower())
        return
    target = f.get("target") or f.get("dst") or f.get("destination")
    if not target:
        return
    mid = f.get("id") or target
    if f.get("from"):
        st.skipped.append(f"cache mount {mid}: from={f['from']} keys it to that stage's files; not carried")
        st.deps.add(f["from"].lower())
        return
    sharing = f.get("sharing", "shared").lower()
    try:
        uid = int(f["uid"]) if "uid" in f else None
        gid = int(f["gid"]) if "gid" in f else None
        mode = f"{int(f['mode'], 8):04o}" if "mode" in f else None
    except ValueError:
        st.skipped.append(f"cache mount {mid}: uid/gid/mode not numbers")
        return
    if sharing not in _SHARING:
        st.skipped.append(f"cache mount {mid}: unknown sharing={sharing}")
        return
    st.mounts.append(CacheMount(mid, target, sharing, uid, gid, mode, stage=st.name))


def platform_args(platform: str) -> dict[str, str]:
    """BuildKit's automatic platform ARGs (visible once declared)."""
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    return {"TARGETPLATFORM": platform, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant,
            "BUILDPLATFORM": platform, "BUILDOS": os_, "BUILDARCH": arch, "BUILDVARIANT": variant}


def _lookup(stages: list[_Stage], ref: str) -> _Stage | None:
    ref = ref.lower()
    for i, st in enumerate(stages):
        if st.name == ref or str(i) == ref:
            return st
    return None


def _target_stage(stages: list[_Stage], target: str | None) -> _Stage | None:
    return stages[-1] if not target else _lookup(stages, target)


def _reachable(stages: list[_Stage], start: _Stage) -> list[_Stage]:
    seen: list[_Stage] = []
    todo = [start]
    while todo:
        st = todo.pop()
        if any(st is s for s in seen):
            continue
        seen.append(st)
        todo += [d for d in (_lookup(stages[: stages.index(st)], dep) for dep in st.deps) if d is not None]
    return sorted(seen, key=stages.index)


def _root_image(stages: list[_Stage], st: _Stage) -> str | None:
    hops = 0
    while hops <= len(stages):
        parent = _lookup(stages[: stages.index(st)], st.base)
        if parent is None:
            return None if st.base.lower() == "scratch" else st.base
        st, hops = parent, hops + 1
    return None
