"""Build cache keys: from the first tag's repository, else from context + Dockerfile.

`reg.example:5000/org/app:feature` -> `org-app`; an untagged build of `./svc` with
`Dockerfile.dev` -> `ctx-<repo>-<hash>` inside a git clone with an `origin` (the origin URL
and the paths inside the clone: a fresh clone elsewhere, in a new session, finds the same
key), else `ctx-<hash>` of the absolute paths. Keys may be templated in config with `{repo}` and
`{branch}` (the context's git branch, read from .git/HEAD without running git), so
`key = "{repo}-{branch}"` with `fallback_keys = ["{repo}-main"]` starts a new branch warm.
"""

from __future__ import annotations

import os
import re

from shim.core.state import short_hash

_BAD = re.compile(r"[^a-z0-9._-]+")


def repo_of(tag: str) -> str:
    """Repository path of an image reference, registry and tag/digest stripped."""
    name = tag.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rfind(":")]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join(parts)


def sanitize(text: str) -> str:
    key = _BAD.sub("-", text.lower()).strip("-._")
    return key[:100] or "default"


def default_repo(tags, context: str | None, dockerfile: str | None, cwd: str) -> str:
    if tags:
        return sanitize(repo_of(tags[0]).replace("/", "-"))
    ctx = os.path.abspath(os.path.join(cwd, context or "."))
    clone = git_clone(ctx)
    if clone:
        root, origin = clone
        file = os.path.abspath(os.path.join(cwd, dockerfile)) if dockerfile else os.path.join(ctx, "Dockerfile")
        inside = f"{os.path.relpath(ctx, root)}|{os.path.relpath(file, root)}"
        return f"ctx-{sanitize(origin.rsplit('/', 1)[-1])[:40]}-{short_hash(origin + '|' + inside)}"
    return f"ctx-{short_hash(ctx + '|' + (dockerfile or 'Dockerfile'))}"


def git_clone(start: str) -> tuple[str, str] | None:
    """(the clone's root, its origin as host/path) for a directory inside a git clone whose
    `origin` remote is set; read from .git/config without running git."""
    here = start
    while True:
        dot = os.path.join(here, ".git")
        if os.path.isdir(dot):
            origin = _origin(os.path.join(dot, "config"))
            return (here, origin) if origin else None
        if os.path.isfile(dot):  # a worktree or submodule: .git names the real git dir
            origin = _origin(_linked_config(dot))
            return (here, origin) if origin else None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _linked_config(dot_file: str) -> str:
    """The config of the git dir a `.git` file points at (a worktree's is its main clone's)."""
    try:
        with open(dot_file, encoding="utf-8") as fh:
            gitdir = os.path.join(os.path.dirname(dot_file), fh.read().strip().removeprefix("gitdir:").strip())
    except OSError:
        return ""
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as fh:
            return os.path.join(gitdir, fh.read().strip(), "config")
    except OSError:
        return os.path.join(gitdir, "config")


_SECTION = re.compile(r'^\s*\[\s*remote\s+"origin"\s*\]')
_URL = re.compile(r"^\s*url\s*=\s*(\S+)\s*$")


def _origin(config_path: str) -> str | None:
    try:
        with open(config_path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read(200_000).splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        if line.lstrip().startswith("["):
            inside = bool(_SECTION.match(line))
        elif inside and _URL.match(line):
            return normalize_url(_URL.match(line).group(1))
    return None


def normalize_url(url: str) -> str:
    """host/path of a git URL, whatever its form: `https://user@Host/org/repo.git`,
    `ssh://git@host:22/org/repo`, `git@host:org/repo.git` -> `host/org/repo`."""
    url = url.strip().rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    if "://" in url:
        rest = url.split("://", 1)[1]
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1].split(":", 1)[0]
    elif ":" in url.split("/", 1)[0]:  # scp-like user@host:path
        host, _, path = url.partition(":")
        host = host.rsplit("@", 1)[-1]
    else:  # a local path
        return os.path.normpath(url)
    return f"{host.lower()}/{path.strip('/')}"


def git_branch(context_dir: str) -> str:
    here = os.path.abspath(context_dir)
    while True:
        head = os.path.join(here, ".git", "HEAD")
        if os.path.isfile(head):
            try:
                with open(head, encoding="utf-8") as fh:
                    ref = fh.read().strip()
            except OSError:
                return "nobranch"
            return ref.rsplit("/", 1)[-1] if ref.startswith("ref:") else "detached"
        parent = os.path.dirname(here)
        if parent == here:
            return "nobranch"
        here = parent


def render(template: str, repo: str, context_dir: str) -> str:
    values = {"repo": repo}
    if "{branch}" in template:
        values["branch"] = git_branch(context_dir)
    out = template
    for k, v in values.items():
        out = out.replace("{" + k + "}", v)
    return sanitize(out)


def keys_for(tags, context, dockerfile, cwd, key_template: str, fallbacks) -> tuple[str, list[str]]:
    """(own key, fallback keys to import from), duplicates removed."""
    repo = default_repo(tags, context, dockerfile, cwd)
    ctx_dir = os.path.join(cwd, context or ".")
    own = render(key_template or "{repo}", repo, ctx_dir)
    rest = [render(t, repo, ctx_dir) for t in fallbacks]
    return own, [k for k in dict.fromkeys(rest) if k != own]
