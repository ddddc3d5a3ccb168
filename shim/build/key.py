"""Build cache keys: several candidates per build, the most stable one exported.

A build's project is named by whatever survives a new session (another daemon, the
project cloned or copied to another path, a client that names images per path):
- `tag`: the first tag's repository (`reg.example:5000/org/app:feature` -> `org-app`);
  a repository with a long hex part (`vsc-proj-<sha256 of the workspace path>`, the dev
  containers CLI's) names the path, not the project: it is kept, last;
- `clone`: inside a git clone with an `origin`, when the Dockerfile is in the clone too:
  `ctx-<repo>-<hash>` of the origin and the context's and Dockerfile's paths in the clone;
- `content`: otherwise (a Dockerfile a client writes to a fresh temp path, no clone) a hash
  of the Dockerfile's text, the `--target` and the context's identity (its origin and path
  in a clone, else the names at its top);
- `path`: an untagged build's absolute context and Dockerfile paths (the key before these
  rules: stores that hold it still import).
Every candidate the store holds is imported; the first one is exported to. When none is
stored, `kin` adds the newest stored `content` key of the same Dockerfile and target (a file
added or removed at the context's top changed only its second half). Keys may be
templated in config with `{repo}` (a candidate) and `{branch}` (the context's git branch,
read from .git/HEAD without running git), so `key = "{repo}-{branch}"` with
`fallback_keys = ["{repo}-main"]` starts a new branch warm. docs/build.md has the rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from shim.core.records import dataclass
from shim.build.store.layout import HIST
from shim.core.state import short_hash

_BAD = re.compile(r"[^a-z0-9._-]+")
_PATH_HASH = re.compile(r"(^|[-_.])[0-9a-f]{32,}($|[-_.])")  # vsc-proj-<64 hex>[-uid]
TOP_NAMES = 500  # a context's identity reads at most this many names at its top


@dataclass(frozen=True)
class Candidate:
    kind: str  # tag | clone | content | path
    key: str


@dataclass(frozen=True)
class Keys:
    own: str  # exported to
    imports: tuple[str, ...]  # every other key to import from, when the store holds it
    candidates: tuple[Candidate, ...]  # rendered, most stable first (explain)


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
    """The most stable candidate's key (see `candidates`)."""
    return candidates(tags, context, dockerfile, cwd)[0].key


def candidates(tags, context: str | None, dockerfile: str | None, cwd: str,
               target: str | None = None) -> list[Candidate]:
    """Every key this build's project may be stored under, most stable first."""
    out: list[Candidate] = []
    tag = sanitize(repo_of(tags[0]).replace("/", "-")) if tags else None
    if tag and not names_a_path(tag):
        out.append(Candidate("tag", tag))
    ctx = os.path.abspath(os.path.join(cwd, context or "."))
    file = os.path.abspath(os.path.join(cwd, dockerfile)) if dockerfile else os.path.join(ctx, "Dockerfile")
    clone = git_clone(ctx) if context and "://" not in context and context != "-" else None
    if clone and _inside(file, clone[0]):
        root, origin = clone
        inside = f"{os.path.relpath(ctx, root)}|{os.path.relpath(file, root)}"
        out.append(Candidate("clone", f"ctx-{_name(origin)}-{short_hash(origin + '|' + inside)}"))
    elif dockerfile != "-":
        content = _content_key(file, target, ctx, clone)
        if content:
            out.append(Candidate("content", content))
    if tag and names_a_path(tag):
        out.append(Candidate("tag", tag))
    if not tags:
        out.append(Candidate("path", f"ctx-{short_hash(ctx + '|' + (dockerfile or 'Dockerfile'))}"))
    return out or [Candidate("path", f"ctx-{short_hash(ctx + '|' + (dockerfile or 'Dockerfile'))}")]


def names_a_path(repo: str) -> bool:
    """A repository with a long hex part is a hash (of a path, as the dev containers CLI's
    `vsc-<folder>-<hash>`): another session at another path names the same project otherwise."""
    return bool(_PATH_HASH.search(repo))


def _name(origin: str) -> str:
    return sanitize(origin.rsplit("/", 1)[-1])[:40]


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _content_key(dockerfile: str, target: str | None, ctx: str, clone) -> str | None:
    """`df-<hash>` of the Dockerfile's text, the target and the context's identity: its origin
    and path in a clone, else the names at its top (a copy elsewhere has the same); None when
    the Dockerfile cannot be read."""
    import hashlib

    try:
        with open(dockerfile, "rb") as fh:
            text = fh.read(2_000_000)
    except OSError:
        return None
    recipe = hashlib.sha256(text + b"\0" + (target or "").encode() + b"\0")
    h = recipe.copy()
    if clone:
        h.update(f"{clone[1]}|{os.path.relpath(ctx, clone[0])}".encode())
    else:
        try:
            names = sorted(e.name for _i, e in zip(range(TOP_NAMES), os.scandir(ctx)))
        except OSError:
            names = []
        h.update("\0".join(names).encode("utf-8", "surrogateescape"))
    # the recipe's own half first: `kin` finds the same Dockerfile's other contexts by it
    return f"df-{recipe.hexdigest()[:8]}{h.hexdigest()[:8]}"


_KIN = re.compile(r"^(df-[0-9a-f]{8})[0-9a-f]{8}(.*)$")


def kin(keys: Sequence[str], last_used: Mapping[str, float]) -> str | None:
    """When none of a build's keys is stored: the most recently used stored key that differs
    from its `content` key only in the context's identity (a file added or removed at the
    top): same Dockerfile text and target, same service and template around it. BuildKit's
    own step keys then hit every step before the first that reads a changed file. None
    when a key of its own is stored, or it has no `content` key."""
    if any(k in last_used for k in keys):
        return None
    for k in keys:
        m = _KIN.match(k)
        if m:
            same = [s for s in last_used if HIST not in s and (x := _KIN.match(s)) and x.groups() == m.groups()]
            return max(same, key=last_used.__getitem__, default=None)
    return None


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
    keys = choose(tags, context, dockerfile, cwd, key_template, fallbacks)
    return keys.own, list(keys.imports)


def choose(tags, context, dockerfile, cwd, key_template: str, fallbacks: Sequence[str],
           target: str | None = None) -> Keys:
    """The key to export to (the template over the most stable candidate) and every other
    candidate and fallback to import from."""
    raw = candidates(tags, context, dockerfile, cwd, target)
    return pick(raw, os.path.join(cwd, context or "."), key_template, fallbacks)


def pick(raw: Sequence[Candidate], ctx_dir: str, key_template: str, fallbacks: Sequence[str]) -> Keys:
    """Keys from candidates (most stable first): the template over each, the first exported,
    every other one and each fallback (over the first) imported. compose/keys.py gives its own."""
    template = key_template or "{repo}"
    found: dict[str, Candidate] = {}
    for c in raw:  # a key once, at its first place
        found.setdefault(render(template, c.key, ctx_dir), Candidate(c.kind, render(template, c.key, ctx_dir)))
    own, *others = found
    rest = [*others, *(render(t, raw[0].key, ctx_dir) for t in fallbacks)]
    return Keys(own, tuple(k for k in dict.fromkeys(rest) if k != own), tuple(found.values()))
