"""The docker CLI's argv grammar, as data, and pure parsers over it. No I/O.

Flag tables come from `docker --help`, `docker run --help` (CLI 28.2) and
`docker buildx build --help` (buildx 0.13) plus the legacy builder's flags. A run/create
flag that is not in the tables (a hidden or newer one) may take a value, so the image
position after it is unknown: `RunArgs.unknown` names it and the run planner then leaves
the whole command alone. Options end at the image or at `--`; dockcache inserts its own
flags there (`RunArgs.insert_at`), before the `--`. Nothing here raises on any argv.

Long on purpose (~330 lines): the whole grammar, its tables and the parsers that read them,
stays in one module so a flag is added in exactly one place.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from shim.core.records import dataclass


def _flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


GLOBAL_VALUE_FLAGS = _flags("--config -c --context -H --host -l --log-level --tlscacert --tlscert --tlskey")
GLOBAL_BOOL_FLAGS = _flags("-D --debug --tls --tlsverify -v --version -h --help")

RUN_VALUE_FLAGS = _flags("""
--add-host --annotation -a --attach --blkio-weight --blkio-weight-device --cap-add --cap-drop
--cgroup-parent --cgroupns --cidfile --cpu-count --cpu-percent --cpu-period --cpu-quota
--cpu-rt-period --cpu-rt-runtime -c --cpu-shares --cpus --cpuset-cpus --cpuset-mems
--detach-keys --device --device-cgroup-rule --device-read-bps --device-read-iops
--device-write-bps --device-write-iops --dns --dns-option --dns-search --domainname
--entrypoint -e --env --env-file --expose --gpus --group-add --health-cmd --health-interval
--health-retries --health-start-interval --health-start-period --health-timeout -h --hostname
--io-maxbandwidth --io-maxiops --ip --ip6 --ipc --isolation --kernel-memory -l --label
--label-file --link --link-local-ip --log-driver --log-opt --mac-address -m --memory
--memory-reservation --memory-swap --memory-swappiness --mount --name --network --net
--network-alias --net-alias --oom-score-adj --pid --pids-limit --platform -p --publish --pull
--restart --runtime --security-opt --shm-size --stop-signal --stop-timeout --storage-opt
--sysctl --tmpfs --ulimit -u --user --userns --uts -v --volume --volume-driver
--volumes-from -w --workdir
""")
RUN_BOOL_FLAGS = _flags("""
-d --detach --disable-content-trust --help --init -i --interactive --no-healthcheck
--oom-kill-disable --privileged -P --publish-all -q --quiet --read-only --rm --sig-proxy
-t --tty --use-api-socket
""")
BUILD_VALUE_FLAGS = _flags("""
--add-host --allow --annotation --attest --build-arg --build-context --builder --cache-from
--cache-to --cgroup-parent -f --file --iidfile --label --metadata-file --network
--no-cache-filter -o --output --platform --progress --provenance --sbom --secret --shm-size
--ssh -t --tag --target --ulimit --call --cpu-period --cpu-quota -c --cpu-shares
--cpuset-cpus --cpuset-mems --isolation -m --memory --memory-swap --security-opt
""")
BUILD_BOOL_FLAGS = _flags("""
--load --no-cache --pull --push -q --quiet --check --compress --disable-content-trust
--force-rm --rm --squash --help
""")
BUILDX_VALUE_FLAGS = _flags("--builder")
EXEC_VALUE_FLAGS = _flags("--detach-keys -e --env --env-file -u --user -w --workdir")
EXEC_BOOL_FLAGS = _flags("-d --detach --help -i --interactive --privileged -t --tty")
BUILD_KNOWN = BUILD_VALUE_FLAGS | BUILD_BOOL_FLAGS | BUILDX_VALUE_FLAGS | {"-h"}
# `docker buildx bake --help` (buildx 0.13 and 0.19, tests/integration/test_grammar_parity.py)
# plus what later releases added (--list, --var): a flag not here may take a value, so the
# targets are not certain.
BAKE_VALUE_FLAGS = _flags("""
--builder -f --file --metadata-file --progress --provenance --sbom --set --allow --call --list --var
""")
BAKE_BOOL_FLAGS = _flags("--load --no-cache --print --pull --push --check --help -h -D --debug")
BAKE_LOOKS = _flags("--print --list --check")  # bake only prints or checks: nothing to cache

RUN_KNOWN = RUN_VALUE_FLAGS | RUN_BOOL_FLAGS

LONG_NAMES = {"-a": "--attach", "-c": "--cpu-shares", "-d": "--detach", "-e": "--env",
              "-h": "--hostname", "-i": "--interactive", "-l": "--label", "-m": "--memory",
              "-p": "--publish", "-P": "--publish-all", "-q": "--quiet", "-t": "--tty",
              "-u": "--user", "-v": "--volume", "-w": "--workdir", "--net": "--network",
              "--net-alias": "--network-alias"}
BUILD_LONG_NAMES = {"-f": "--file", "-o": "--output", "-t": "--tag", "-q": "--quiet",
                    "-c": "--cpu-shares", "-m": "--memory"}

RUN_COMMANDS = {("run",), ("create",), ("container", "run"), ("container", "create")}
BUILD_COMMANDS = {("build",), ("image", "build"), ("builder", "build")}
EXEC_COMMANDS = {("exec",), ("container", "exec")}
PRUNE_COMMANDS = {("builder", "prune"), ("system", "prune"), ("buildx", "prune")}  # drop BuildKit's cache
BUILDX_BUILD_WORDS = {"build", "b"}
BUILDX_BAKE_WORDS = {"bake", "f"}  # `f` is bake's alias (`b` is build's)
PULL_COMMANDS = {("pull",), ("image", "pull")}  # routed through the host's image caches (shim/images)
PULL_VALUE_FLAGS = _flags("--platform")
PULL_KNOWN = PULL_VALUE_FLAGS | _flags("-a --all-tags -q --quiet --disable-content-trust --help")


@dataclass(frozen=True)
class Invocation:
    argv: tuple[str, ...]
    globals: tuple[str, ...]
    command: tuple[str, ...]
    args_start: int
    kind: str  # "run" | "build" | "bake" | "compose" | "exec" | "prune" | "pull" | "passthrough"
    host: str | None = None
    context: str | None = None
    builder: str | None = None


@dataclass(frozen=True)
class Mount:
    source: str | None
    target: str
    type: str
    readonly: bool = False


@dataclass(frozen=True)
class RunArgs:
    options: tuple[tuple[str, str | None], ...]
    image_index: int | None
    image: str | None
    command: tuple[str, ...]
    mounts: tuple[Mount, ...]
    env: tuple[tuple[str, str | None], ...]
    env_files: tuple[str, ...]
    volumes_from: tuple[str, ...]
    workdir: str | None
    user: str | None
    network: str | None
    labels: tuple[str, ...]
    help: bool
    entrypoint: str | None
    insert_at: int | None = None  # where added options go: before `--` or the image
    unknown: tuple[str, ...] = ()  # flags the tables don't know: the image position is a guess


@dataclass(frozen=True)
class BuildArgs:
    options: tuple[tuple[str, str | None], ...]
    context_index: int | None
    context: str | None
    tags: tuple[str, ...]
    file: str | None
    cache_from: tuple[str, ...]
    cache_to: tuple[str, ...]
    no_cache: bool
    outputs: tuple[str, ...]
    load: bool
    push: bool
    iidfile: str | None
    builder: str | None
    help: bool
    misread: str | None = None  # why the context cannot be told for sure: then dockcache adds nothing


# ------------------------------------------------------------------ option scanning

def scan_options(argv: Sequence[str], start: int, value_flags: frozenset[str],
                 *, interspersed: bool) -> tuple[list[tuple[str, str | None]], list[int]]:
    """Options from argv[start:] as (flag, value) pairs, and the indices of positionals.

    Without `interspersed` (docker run), the first positional ends option parsing.
    """
    opts: list[tuple[str, str | None]] = []
    positionals: list[int] = []
    i, n = start, len(argv)
    while i < n:
        tok = argv[i]
        if tok == "--":
            positionals.extend(range(i + 1, n))
            break
        if tok.startswith("--") and len(tok) > 2:
            i = _long(argv, i, value_flags, opts)
        elif tok.startswith("-") and len(tok) > 1:
            i = _short(argv, i, value_flags, opts)
        else:
            positionals.append(i)
            if not interspersed:
                positionals.extend(range(i + 1, n))
                break
            i += 1
    return opts, positionals


def _long(argv, i, value_flags, opts) -> int:
    tok = argv[i]
    if "=" in tok:
        name, value = tok.split("=", 1)
        opts.append((name, value))
        return i + 1
    if tok in value_flags:
        opts.append((tok, argv[i + 1] if i + 1 < len(argv) else None))
        return i + 2
    opts.append((tok, None))
    return i + 1


def _short(argv, i, value_flags, opts) -> int:
    """-itd, -ite FOO=1, -eFOO=1, -v/a:/b: booleans until a letter that takes a value."""
    tok = argv[i]
    if len(tok) > 2 and tok[2] == "=":  # -t=true, -e=A=1: pflag's one-letter `=` form
        opts.append((tok[:2], tok[3:]))
        return i + 1
    for pos in range(1, len(tok)):
        flag = "-" + tok[pos]
        if flag in value_flags:
            rest = tok[pos + 1:]
            if rest:
                opts.append((flag, rest[1:] if rest.startswith("=") else rest))
                return i + 1
            opts.append((flag, argv[i + 1] if i + 1 < len(argv) else None))
            return i + 2
        opts.append((flag, None))
    return i + 1


# ------------------------------------------------------------------ invocation

def parse_invocation(argv: Sequence[str]) -> Invocation:
    argv = tuple(str(a) for a in argv)
    opts, pos = scan_options(argv, 0, GLOBAL_VALUE_FLAGS, interspersed=False)
    if not pos:
        return Invocation(argv, argv, (), len(argv), "passthrough", *_endpoint(opts))
    sub = pos[0]
    host, context = _endpoint(opts)
    first = argv[sub]
    if first in ("container", "image", "builder", "system") and sub + 1 < len(argv):
        words = (first, argv[sub + 1])
        kind = ("run" if words in RUN_COMMANDS else "build" if words in BUILD_COMMANDS
                else "prune" if words in PRUNE_COMMANDS else "pull" if words in PULL_COMMANDS
                else "exec" if words in EXEC_COMMANDS else "passthrough")
        return Invocation(argv, argv[:sub], words, sub + 2, kind, host, context)
    if first == "buildx":
        return _buildx(argv, sub, host, context)
    kind = ("run" if (first,) in RUN_COMMANDS else "build" if (first,) in BUILD_COMMANDS
            else "compose" if first == "compose" else "pull" if (first,) in PULL_COMMANDS
            else "exec" if (first,) in EXEC_COMMANDS else "passthrough")
    return Invocation(argv, argv[:sub], (first,), sub + 1, kind, host, context)


def config_dir(docker_globals: Sequence[str]) -> str | None:
    """The `--config DIR` among docker's global options (where its login lives), or None."""
    opts, _ = scan_options(docker_globals, 0, GLOBAL_VALUE_FLAGS, interspersed=True)
    return next((v for k, v in reversed(opts) if k == "--config" and v), None)


def _endpoint(opts) -> tuple[str | None, str | None]:
    host = next((v for k, v in reversed(opts) if k in ("-H", "--host")), None)
    ctx = next((v for k, v in reversed(opts) if k in ("-c", "--context")), None)
    return host, ctx


def _buildx(argv, sub, host, context) -> Invocation:
    opts, pos = scan_options(argv, sub + 1, BUILDX_VALUE_FLAGS, interspersed=False)
    builder = next((v for k, v in reversed(opts) if k == "--builder"), None)
    if pos and argv[pos[0]] in BUILDX_BUILD_WORDS:
        return Invocation(argv, argv[:sub], ("buildx", argv[pos[0]]), pos[0] + 1, "build",
                          host, context, builder)
    if pos and argv[pos[0]] == "prune":
        return Invocation(argv, argv[:sub], ("buildx", "prune"), pos[0] + 1, "prune", host, context, builder)
    if pos and argv[pos[0]] in BUILDX_BAKE_WORDS:
        return Invocation(argv, argv[:sub], ("buildx", argv[pos[0]]), pos[0] + 1, "bake", host, context, builder)
    return Invocation(argv, argv[:sub], ("buildx",), sub + 1, "passthrough", host, context, builder)


# ------------------------------------------------------------------ run / create

def parse_run(inv: Invocation) -> RunArgs:
    argv = inv.argv
    opts, pos = scan_options(argv, inv.args_start, RUN_VALUE_FLAGS, interspersed=False)
    unknown = tuple(dict.fromkeys(k for k, _v in opts if k not in RUN_KNOWN))
    opts = [(LONG_NAMES.get(k, k), v) for k, v in opts]
    image_index = pos[0] if pos else None
    insert_at = image_index
    if image_index is not None and image_index - 1 >= inv.args_start and argv[image_index - 1] == "--":
        insert_at = image_index - 1  # after `--` every token is the image or its command

    def values(*names):
        return tuple(v for k, v in opts if k in names and v is not None)

    return RunArgs(
        options=tuple(opts), image_index=image_index,
        image=argv[image_index] if image_index is not None else None,
        command=argv[image_index + 1:] if image_index is not None else (),
        mounts=tuple(_mounts(opts)), env=tuple(_env_pair(v) for v in values("--env")),
        env_files=values("--env-file"), volumes_from=values("--volumes-from"),
        workdir=_last(values("--workdir")), user=_last(values("--user")),
        network=_last(values("--network")), labels=values("--label"),
        help=any(k == "--help" for k, _ in opts), entrypoint=_last(values("--entrypoint")),
        insert_at=insert_at, unknown=unknown,
    )


def _last(vals: tuple[str, ...]) -> str | None:
    return vals[-1] if vals else None


def _env_pair(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition("=")
    return (name, value if sep else None)


def _mounts(opts) -> list[Mount]:
    out = []
    for key, value in opts:
        if value is None:
            continue
        m = (_volume_flag(value) if key == "--volume" else _mount_flag(value) if key == "--mount"
             else _tmpfs_flag(value) if key == "--tmpfs" else None)
        if m is not None:
            out.append(m)
    return out


def _norm(path: str) -> str:
    return posixpath.normpath(path) if path else path


def _volume_flag(value: str) -> Mount | None:
    parts = value.split(":")
    if len(parts) == 1:
        return Mount(None, _norm(parts[0]), "anonymous")
    src, dst, opts = parts[0], parts[1], parts[2:]
    if not dst:
        return None
    kind = "bind" if src.startswith(("/", ".", "~")) else "volume"
    ro = any("ro" in o.split(",") for o in opts)
    return Mount(src, _norm(dst), kind, ro)


def _mount_flag(value: str) -> Mount | None:
    fields: dict[str, str] = {}
    for part in _csv_fields(value):
        key, _, val = part.partition("=")
        fields[key.strip().lower()] = val.strip()
    target = fields.get("target") or fields.get("dst") or fields.get("destination")
    if not target:
        return None
    src = fields.get("source") or fields.get("src")
    ro = "readonly" in fields or "ro" in fields
    if ro and fields.get("readonly", fields.get("ro", "")).lower() in ("false", "0"):
        ro = False
    return Mount(src or None, _norm(target), fields.get("type", "volume"), ro)


def _csv_fields(value: str) -> list[str]:
    """`--mount` is one CSV record to docker (encoding/csv): a field may be quoted,
    `"source=/a,b",target=/x`, and a quote inside doubled."""
    if '"' not in value:
        return value.split(",")
    import csv  # only for the rare quoted form

    try:
        return next(csv.reader([value], skipinitialspace=False), [])
    except csv.Error:
        return value.split(",")


def _tmpfs_flag(value: str) -> Mount | None:
    target = value.split(":")[0]
    return Mount(None, _norm(target), "tmpfs") if target else None


# ------------------------------------------------------------------ pull

@dataclass(frozen=True)
class PullArgs:
    image: str | None
    platform: str | None
    quiet: bool
    all_tags: bool
    help: bool
    unknown: tuple[str, ...] = ()  # flags the table does not know: the image is not certain


def parse_pull(inv: Invocation) -> PullArgs:
    """`docker pull [OPTIONS] NAME[:TAG|@DIGEST]`: exactly one name, or no image."""
    opts, pos = scan_options(inv.argv, inv.args_start, PULL_VALUE_FLAGS, interspersed=True)
    names = [k for k, _v in opts]
    unknown = tuple(k for k in names if k not in PULL_KNOWN and k != "-h")
    return PullArgs(image=inv.argv[pos[0]] if len(pos) == 1 else None,
                    platform=next((v for k, v in reversed(opts) if k == "--platform"), None),
                    quiet=any(k in ("-q", "--quiet") for k in names),
                    all_tags=any(k in ("-a", "--all-tags") for k in names),
                    help=any(k in ("--help", "-h") for k in names), unknown=unknown)


# ------------------------------------------------------------------ exec

@dataclass(frozen=True)
class ExecArgs:
    """`docker exec` (and compose's: `SERVICE` in the container's place)."""

    container: str | None
    user: str | None
    env: tuple[tuple[str, str | None], ...]
    env_files: tuple[str, ...]
    insert_at: int | None  # where added options go: right before the container
    unknown: tuple[str, ...] = ()  # flags the tables don't know: the container position is a guess


def parse_exec(argv: Sequence[str], start: int, value_flags: frozenset[str] = EXEC_VALUE_FLAGS,
               known: frozenset[str] = EXEC_VALUE_FLAGS | EXEC_BOOL_FLAGS) -> ExecArgs:
    """Options from argv[start:] up to the container (docker's options end at it)."""
    opts, pos = scan_options(argv, start, value_flags, interspersed=False)
    unknown = tuple(dict.fromkeys(k for k, _v in opts if k not in known))
    opts = [(LONG_NAMES.get(k, k), v) for k, v in opts]
    at = pos[0] if pos else None
    if at is not None and at - 1 >= start and argv[at - 1] == "--":
        at -= 1
    values = [v for k, v in opts if k == "--user" and v is not None]
    return ExecArgs(container=argv[pos[0]] if pos else None, user=values[-1] if values else None,
                    env=tuple(_env_pair(v) for k, v in opts if k == "--env" and v is not None),
                    env_files=tuple(v for k, v in opts if k == "--env-file" and v is not None),
                    insert_at=at, unknown=unknown)


# ------------------------------------------------------------------ build

def parse_build(inv: Invocation) -> BuildArgs:
    argv = inv.argv
    opts, pos = scan_options(argv, inv.args_start, BUILD_VALUE_FLAGS, interspersed=True)
    opts = [(BUILD_LONG_NAMES.get(k, k), v) for k, v in opts]

    def values(name):
        return tuple(v for k, v in opts if k == name and v is not None)

    def flag(name):
        return any(k == name and (v is None or v.lower() in ("true", "1")) for k, v in opts)

    ctx = pos[0] if pos else None
    help_only = flag("--help") or flag("-h")
    return BuildArgs(
        options=tuple(opts), context_index=ctx, context=argv[ctx] if ctx is not None else None,
        tags=values("--tag"), file=_last(values("--file")), cache_from=values("--cache-from"),
        cache_to=values("--cache-to"), no_cache=flag("--no-cache"), outputs=values("--output"),
        load=flag("--load"), push=flag("--push"), iidfile=_last(values("--iidfile")),
        builder=_last(values("--builder")) or inv.builder, help=help_only,
        # docker only prints help: whatever else the argv says, there is no context to misread
        misread=None if help_only else _build_misread(argv, inv.args_start, pos),
    )


def _build_misread(argv: Sequence[str], start: int, pos: list[int]) -> str | None:
    """A build takes exactly one context. An option the tables don't know (hidden, newer)
    right before it may take a value, and then the context is the next word, not this one."""
    before = [argv[i - 1] for i in pos if i - 1 >= start]
    unknown = [t for t in before if t.startswith("-") and t != "--" and "=" not in t and not _known_build_flag(t)]
    if unknown:
        return f"unknown option {unknown[0]}: it may take a value, so the build context is not certain"
    if len(pos) != 1:
        return f"docker build takes one context; this command has {len(pos)} arguments"
    return None


def without_switch(argv: Sequence[str], start: int, value_flags: frozenset[str], name: str) -> tuple[str, ...]:
    """argv without the long switch `name` (bare or `name=…`) where it stands as an option
    from `start` on: not a value of another option, not after `--`. For a build whose
    switch dockcache carries out another way (a user's `--load` on the thin load)."""
    out, i, n = list(argv[:start]), start, len(argv)
    while i < n:
        tok = argv[i]
        if tok == "--":
            out.extend(argv[i:])
            break
        if tok == name or tok.startswith(name + "="):
            i += 1
            continue
        if tok.startswith("--") and len(tok) > 2:
            nxt = _long(argv, i, value_flags, [])
        elif tok.startswith("-") and len(tok) > 1:
            nxt = _short(argv, i, value_flags, [])
        else:
            nxt = i + 1
        out.extend(argv[i:nxt])
        i = nxt
    return tuple(out)


def _known_build_flag(tok: str) -> bool:
    """A long flag in the tables, or a short cluster of known letters: `-q`, `-qt`, and
    `-tapp:1` / `-f-` (pflag's value attached to its letter: the rest is that value)."""
    if tok.startswith("--"):
        return tok in BUILD_KNOWN
    for letter in tok[1:]:
        flag = "-" + letter
        if flag not in BUILD_KNOWN:
            return False
        if flag in BUILD_VALUE_FLAGS:
            return True
    return True


def insert_before(argv: Sequence[str], index: int, tokens: Sequence[str]) -> tuple[str, ...]:
    """argv with `tokens` inserted at `index`: the only way dockcache adds flags."""
    argv = tuple(argv)
    index = max(0, min(index, len(argv)))
    return argv[:index] + tuple(tokens) + argv[index:]


# ------------------------------------------------------------------ bake

@dataclass(frozen=True)
class BakeArgs:
    options: tuple[tuple[str, str | None], ...]
    targets: tuple[str, ...]
    files: tuple[str, ...]
    sets: tuple[str, ...]  # `--set PATTERN.KEY=VALUE`, as given
    no_cache: bool
    load: bool
    push: bool
    builder: str | None
    pull: bool = False
    looks: str | None = None  # bake only prints, lists or checks (or --help): left alone, silently
    misread: str | None = None  # why the targets or files cannot be told for sure: then dockcache adds nothing


_TRUE = ("1", "t", "true")  # pflag's ParseBool, lower-cased


def parse_bake(inv: Invocation) -> BakeArgs:
    """`docker buildx bake [OPTIONS] [TARGET...]`: options and targets interleave (cobra)."""
    argv = inv.argv
    opts, pos = scan_options(argv, inv.args_start, BAKE_VALUE_FLAGS, interspersed=True)
    opts = [("--file" if k == "-f" else "--help" if k == "-h" else k, v) for k, v in opts]

    def values(name):
        return tuple(v for k, v in opts if k == name and v is not None)

    def flag(name):
        return any(k == name and (v is None or v.lower() in _TRUE) for k, v in opts)

    targets = tuple(argv[i] for i in pos)
    return BakeArgs(
        options=tuple(opts), targets=targets, files=values("--file"), sets=values("--set"),
        no_cache=flag("--no-cache"), load=flag("--load"), push=flag("--push"),
        builder=_last(values("--builder")) or inv.builder, pull=flag("--pull"), looks=_bake_looks(opts, flag),
        misread=_bake_misread(opts, targets))


def _bake_looks(opts, flag) -> str | None:
    if flag("--help"):
        return "--help: docker only prints help"
    calls = [v for k, v in opts if k == "--call"]
    if flag("--print") or flag("--check") or any(k == "--list" for k, _v in opts) or (calls and calls[-1] != "build"):
        return "bake only prints, lists or checks the definition: nothing is built"
    return None


def _bake_misread(opts, targets: tuple[str, ...]) -> str | None:
    unknown = [k for k, _v in opts if k not in BAKE_VALUE_FLAGS and k not in BAKE_BOOL_FLAGS]
    if unknown:
        return f"unknown bake option {unknown[0]}: it may take a value, so the targets are not certain"
    bare = [k for k, v in opts if v is None and k in BAKE_VALUE_FLAGS]
    if bare:
        return f"bake option {bare[0]} has no value"
    if any(v == "-" for k, v in opts if k == "--file"):
        return "a bake file from stdin (-f -): it can be read once only"
    if targets and ("://" in targets[0] or targets[0].startswith("git@")):
        return f"a remote bake definition ({targets[0]}): its files are not on this host"
    return None
