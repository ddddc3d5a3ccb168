"""Build cache keys: from the first tag's repository, else from context + Dockerfile.

`reg.example:5000/org/app:feature` -> `org-app`; an untagged build of `./svc` with
`Dockerfile.dev` -> `ctx-<hash>`. Keys may be templated in config with `{repo}` and
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
    return f"ctx-{short_hash(ctx + '|' + (dockerfile or 'Dockerfile'))}"


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
