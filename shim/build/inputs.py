"""Has anything a build reads changed since this daemon last exported its key?

An unchanged rebuild exports nothing the store lacks (`store.publish` then only touches
the key), but BuildKit still prepares the whole cache chain for `--cache-to` — ~0.15–0.3 s
on a fully cached build of a 320 MB image, the whole difference to plain docker. So the
inputs of each exported build are remembered per daemon and key: the build's arguments,
the Dockerfile, every file of the context by (path, mode, size, mtime) and the FROM
images' ids. While all of them, and the key's newest stored build, are what this daemon
last exported, the build runs without `--cache-to`.

Skipping wrongly can only leave the store one build behind (the next session imports an
older chain and runs more steps); it never changes the user's image. So anything not
certain — a context from stdin or a URL, `--pull`, `--no-cache`, `--build-context`, a FROM
named by an ARG whose value is not known here, a context of more than LIMIT entries — exports as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

LIMIT = 20_000  # context entries walked at most: a bigger one is not fingerprinted
BUDGET = 0.1  # ... and seconds spent walking (a slow filesystem): then the build exports
KIND = "exportedinputs"  # state kind: daemon generation -> key -> the last export's inputs
# Read from the environment by docker, buildx and compose; they change what the same
# argv builds (the platform, the image's timestamps).
ENVIRONMENT = ("DOCKER_DEFAULT_PLATFORM", "SOURCE_DATE_EPOCH")


def build_inputs(argv: Sequence[str], start: int, build, cwd: str,
                 environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(a digest of what a `docker build` reads, its Dockerfile's text); None when it cannot
    be told for sure."""
    if not _certain(build):
        return None
    ctx = os.path.abspath(os.path.join(cwd, build.context))
    dockerfile = os.path.abspath(os.path.join(cwd, build.file)) if build.file else os.path.join(ctx, "Dockerfile")
    words = _file_named_once(list(argv[start:]), build.file)
    words += [f"{v}={environ.get(v, '')}" for k, v in build.options  # `--build-arg NAME`: from the environment
              if k == "--build-arg" and v and "=" not in v]
    return _read(ctx, dockerfile, words + _environment(environ))


def _file_named_once(words: list[str], file: str | None) -> list[str]:
    """The argv with the Dockerfile's path left out: its text (and its own ignore file) is
    read below, and a client that copies it to a new temp path for every build (the dev
    containers CLI) builds the same thing each time."""
    if not file or file == "-":
        return words
    out = []
    for word in words:
        if word == file:
            word = "<dockerfile>"
        elif word in (f"--file={file}", f"-f{file}", f"-f={file}"):
            word = "--file=<dockerfile>"
        out.append(word)
    return out


def _environment(environ: Mapping[str, str]) -> list[str]:
    """The ENVIRONMENT variables set (none set: no word, the fingerprint is as before)."""
    return [f"{name}={environ[name]}" for name in ENVIRONMENT if name in environ]


def compose_service(build: Mapping, image: str, no_cache: bool, pull: bool,
                    environ: Mapping[str, str], extra: Sequence[str] = ()) -> tuple[str, str] | None:
    """The same for a compose service's build, as compose resolved it (absolute context);
    `extra`: what compose adds to the build section (compose/plan.py)."""
    import json

    ctx = str(build.get("context") or "")
    if (not ctx or "://" in ctx or ctx.startswith("git@") or not os.path.isabs(ctx) or no_cache or pull
            or build.get("no_cache") or build.get("pull") or build.get("additional_contexts")):
        return None
    asked = {k: v for k, v in build.items() if k not in ("cache_from", "cache_to")}
    words = [json.dumps(asked, sort_keys=True, default=str), image, *extra, *_environment(environ)]
    inline = build.get("dockerfile_inline")
    if inline is not None:
        return _read(ctx, None, [*words, str(inline)], str(inline))
    return _read(ctx, os.path.join(ctx, str(build.get("dockerfile") or "Dockerfile")), words)


def _read(ctx: str, dockerfile: str | None, words: Sequence[str], text: str | None = None) -> tuple[str, str] | None:
    """(the digest of `words` (how the build is asked for), the Dockerfile and its own ignore
    file, and every entry of the context; the Dockerfile's text — `text` when inline)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for word in words:
        h.update(word.encode("utf-8", "surrogateescape") + b"\0")
    own_ignore = None
    if dockerfile:
        try:
            with open(dockerfile, "rb") as fh:
                data = fh.read()
            text = data[:1_000_000].decode("utf-8", "replace")
            h.update(data + b"\0")
            with open(f"{dockerfile}.dockerignore", "rb") as fh:
                own_ignore = fh.read()
                h.update(own_ignore + b"\0")
        except FileNotFoundError:
            h.update(b"-\0")  # no Dockerfile-specific ignore file (a missing Dockerfile: no text, below)
        except OSError:
            return None
    ignore = own_ignore if own_ignore is not None else _context_ignore(ctx)
    if own_ignore is None and ignore is not None:
        # hashed as the Dockerfile's own one is: a `.dockerignore` that names itself is not
        # walked, and a pattern it drops (`*.md`) changes what is sent, not what is walked
        h.update(b".dockerignore\0" + ignore + b"\0")
    if text is None or not _walk(ctx, h, ignore):
        return None
    return h.hexdigest(), text


def _context_ignore(ctx: str) -> bytes | None:
    """The context's `.dockerignore` (its first 100 kB), None when there is none."""
    try:
        with open(os.path.join(ctx, ".dockerignore"), "rb") as fh:
            return fh.read(100_000)
    except OSError:
        return None


def _certain(build) -> bool:
    ctx = build.context
    if not ctx or ctx == "-" or build.file == "-" or "://" in ctx or ctx.startswith("git@") or build.no_cache:
        return False
    for k, v in build.options:
        if k == "--build-context" or (k == "--pull" and (v is None or v.lower() in ("true", "1"))):
            return False
    return True


def _walk(root: str, h, ignore: bytes | None) -> bool:
    """Feed every entry under root (path, mode, size, mtime); False past LIMIT entries or
    BUDGET seconds (a context that big exports as before) or on an error."""
    import time

    skip = _ignored_dirs(ignore)
    deadline = time.monotonic() + BUDGET
    stack, seen = [""], 0
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(root, rel)), key=lambda e: e.name)
        except OSError:
            return False
        if time.monotonic() > deadline:
            return False
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if path in skip:
                continue
            seen += 1
            if seen > LIMIT:
                return False
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                return False
            h.update(f"{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
            if entry.is_dir(follow_symlinks=False):
                stack.append(path)
    return True


def _ignored_dirs(ignore: bytes | None) -> set[str]:
    """Plain top-level names the build's ignore file (the Dockerfile's own `NAME.dockerignore`,
    else `.dockerignore`, as in BuildKit) leaves out (`node_modules`, `/.git`, `dist/`): what
    changes there never reaches the build. Patterns are not read (what they name is walked:
    at worst one export too many); with an exception (`!x`) nothing is skipped."""
    if ignore is None:
        return set()
    lines = ignore[:100_000].decode("utf-8", "replace").splitlines()
    if any(line.strip().startswith("!") for line in lines):
        return set()  # an exception may bring back a file inside an ignored dir
    names = {line.strip().removeprefix("./").strip("/") for line in lines}
    return {n for n in names if n and not any(c in n for c in "*?[]\\/") and not n.startswith("#")}


def bases(dockerfile_text: str, build_args: Mapping[str, str] | None = None) -> list[str] | None:
    """The FROM images, an ARG before the first FROM expanded as BuildKit does (`--build-arg`,
    else its default, else empty); None when one cannot be told for sure."""
    from shim.build.shared.route import from_images

    froms = from_lines(dockerfile_text, build_args)
    return None if froms is None else from_images("\n".join(froms))


def from_lines(dockerfile_text: str, build_args: Mapping[str, str] | None = None) -> list[str] | None:
    """The FROM lines, each image word expanded as `bases` does; None when one cannot be told."""
    from shim.build.mounts.parse import platform_args

    automatic = platform_args("")  # BuildKit's own platform ARGs: their names
    scope: dict[str, str | None] = {}
    froms = []
    for line in dockerfile_text.splitlines():
        words = line.split()
        op = words[0].upper() if words else ""
        if op == "ARG" and not froms:  # only the ARGs before the first FROM reach a FROM line
            for decl in words[1:]:
                name, has, default = decl.partition("=")
                if name in (build_args or {}):
                    scope[name] = build_args[name]
                elif has:
                    scope[name] = _arg_value(default, scope)
                else:  # declared alone: empty, but BuildKit fills in its platform ARGs (not known here)
                    scope[name] = None if name in automatic else ""
        elif op == "FROM":
            at = next((i for i, w in enumerate(words) if i and not w.startswith("--")), None)
            if at is not None and "$" in words[at]:  # `--platform=$BUILDPLATFORM` is fine
                image = _arg_value(words[at], scope)
                if not image:
                    return None
                words[at] = image  # that word, not the first text like it (`$IMG` in `$IMG_PLATFORM`)
            froms.append(" ".join(words))
    return froms


def _arg_value(word: str, scope: Mapping[str, str | None]) -> str | None:
    """`word` with $X/${X} expanded from `scope` and surrounding quotes taken off; None when a
    name has no value known here (or a quote is left: a value split at a space)."""
    from shim.build.mounts.parse import Unknown, expand

    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        word = word[1:-1]
    if "'" in word or '"' in word:
        return None
    try:
        return expand(word, scope)
    except Unknown:
        return None


def base_ids(real: str, docker_globals: Sequence[str], images: Sequence[str],
             socket_path: str | None = None) -> dict[str, str] | None:
    """Each FROM image's id in the engine; None when one is missing (the build pulls it).

    On the daemon's own unix socket the engine API is asked directly (a few ms; the docker
    CLI's start is ~35 ms, most of what an unchanged rebuild then adds); the CLI otherwise,
    and whenever the socket answers anything but the ids."""
    from shim.core import proc

    if not images:
        return {}
    if socket_path:
        from shim.core.engineapi import image_id

        got = {i: image_id(socket_path, i) for i in images}
        if all(got.values()):
            return got
    res = proc.run_docker(real, [*docker_globals, "image", "inspect", "--format", "{{.Id}}", *images], timeout=30)
    ids = res.stdout.split()
    return dict(zip(images, ids)) if res.returncode == 0 and len(ids) == len(images) else None


def remember(local, key: str, inputs: Mapping | None, digest: str) -> None:
    """After a publish: what this build read, so that the same build next time exports nothing.
    The FROM ids were asked beside the build (a thread); unknown ids remember nothing."""
    if not inputs or local is None:
        return
    asking = inputs.get("asking")
    if asking is not None:
        asking.join(10)
    ids = inputs.get("bases")
    if ids is not None:
        local.state.put(KIND, local.generation, key, {"fp": inputs["fp"], "bases": ids, "digest": digest})


def asking_bases(inputs: dict, real: str, docker_globals: Sequence[str], socket_path: str | None = None) -> dict:
    """The FROM images' ids, asked in a thread while the build runs (no CLI start after it)."""
    import threading

    def ask():
        try:
            inputs["bases"] = base_ids(real, docker_globals, inputs["images"], socket_path)
        except Exception:  # noqa: BLE001 - not knowing them only means the next build exports too
            inputs["bases"] = None
    inputs["asking"] = threading.Thread(target=ask, daemon=True)
    inputs["asking"].start()
    return inputs


def socket_of(local) -> str | None:
    """The daemon's socket path from LocalBuilds' generation (`path|inode|ctime`)."""
    generation = getattr(local, "generation", "") or ""
    return generation.split("|", 1)[0] or None


def unchanged(remembered: Mapping | None, fp: str, ids: Mapping[str, str] | None, newest: str | None) -> bool:
    """Same inputs and FROM images as this daemon's last export, which is still the key's newest build."""
    return bool(remembered and fp and ids is not None and newest
                and remembered.get("fp") == fp and remembered.get("bases") == dict(ids)
                and remembered.get("digest") == newest)
