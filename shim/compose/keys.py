"""Each built service's cache keys: the candidates a `docker build` of it would have (key.py),
named by its service, so a new session's checkout in a directory of another name imports.

Compose's project name comes from the directory (`-p`, `name:` and COMPOSE_PROJECT_NAME
aside), so `<project>-<service>` is not the same in a fresh clone called something else.
Most stable first:
- `tag`: the service's own `image:` (a repository without a long hex part), as a build's;
- `clone` / `content`: as a build of its context and Dockerfile (key.py), each with
  `-<service>` after it (two services may build one Dockerfile: each keeps its own key);
- `project`: `<project>-<service>`, the key before these rules (stores that hold it import).
  A project name that is not a directory's (`name:` in the file, `-p`, COMPOSE_PROJECT_NAME)
  survives a new checkout: then it is the first candidate, and an edited Dockerfile keeps
  exporting to the key it always had (a `content` key would change with the edit).
The first is exported to; every other one the store holds is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from shim.build.key import Candidate, Keys, candidates, names_a_path, pick, sanitize


def service_keys(builds: Mapping[str, Mapping], project: str, cwd: str, key_template: str,
                 fallbacks: Sequence[str], named: bool = False) -> dict[str, Keys]:
    """Service -> its keys (builds: services with a `build:` section, as compose resolved them;
    named: the project's name is not a directory's, see `named_project`)."""
    raw = {svc: _candidates(svc, spec, project, cwd, named) for svc, spec in builds.items()}
    tags = [c.key for cs in raw.values() for c in cs if c.kind == "tag"]
    out = {}
    for svc, cs in raw.items():
        # one image named by two services: neither exports under it (their builds differ)
        kept = [c for c in cs if c.kind != "tag" or tags.count(c.key) == 1]
        b = builds[svc].get("build") or {}
        out[svc] = pick(kept, str(b.get("context") or cwd), key_template, fallbacks)
    return out


def _candidates(svc: str, spec: Mapping, project: str, cwd: str, named: bool) -> list[Candidate]:
    b = spec.get("build") or {}
    context = str(b.get("context") or ".")
    image = spec.get("image")
    tags = [str(image)] if isinstance(image, str) and image else []
    target = b.get("target") if isinstance(b.get("target"), str) else None
    found: list[Candidate] = []
    if "://" not in context and not context.startswith("git@") and "dockerfile_inline" not in b:
        name = str(b.get("dockerfile") or "Dockerfile")
        dockerfile = name if os.path.isabs(name) else os.path.join(cwd, context, name)
        for c in candidates([], context, dockerfile, cwd, target):
            if c.kind in ("clone", "content"):
                found.append(Candidate(c.kind, sanitize(f"{c.key}-{svc}")))
    tag = [c for c in candidates(tags, None, "-", cwd) if c.kind == "tag"] if tags else []  # key.py's rule
    first = [c for c in tag if not names_a_path(c.key)]
    last = [c for c in tag if names_a_path(c.key)]
    own = Candidate("project", sanitize(f"{project}-{svc}"))
    return [*first, own, *found, *last] if named else [*first, *found, *last, own]


_NOT_IN_NAME = re.compile(r"[^a-z0-9_-]+")


def named_project(project: str, dirs: Iterable[str]) -> bool:
    """Was the project named by the user (`name:`, `-p`, COMPOSE_PROJECT_NAME), not after one
    of these directories (the working dir, the project dir, the files' dirs) or a parent of
    theirs? Compose's own rule for a directory's name: lowercased, only [a-z0-9_-], no
    leading `_`/`-`."""
    derived = set()
    for d in dirs:
        here = os.path.abspath(d)
        while True:
            derived.add(_NOT_IN_NAME.sub("", os.path.basename(here).lower()).lstrip("_-"))
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    return bool(project) and project not in derived
