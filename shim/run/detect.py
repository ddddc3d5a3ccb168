"""Which project a container works on, and which package managers it uses.

Two kinds of evidence, both reported so `explain` can say why: marker files in a
bind-mounted project dir (preferring the mount that `-w` points into), and the
executables named in the container's command (also inside `sh -c "..."` strings).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from shim.core.records import dataclass

from shim.core.managers import BY_NAME, MANAGERS, Manager, Marker


@dataclass(frozen=True)
class Detection:
    manager: str
    reason: str
    strong: bool = True


@dataclass(frozen=True)
class Project:
    host_dir: str
    target: str  # where it is mounted in the container


def projects(mounts: Iterable, workdir: str | None, cwd: str) -> list[Project]:
    """Bind-mounted host dirs that exist here, the one holding the workdir first."""
    found = []
    for m in mounts:
        if m.type != "bind" or not m.source:
            continue
        src = os.path.normpath(os.path.join(cwd, os.path.expanduser(m.source)))
        if os.path.isdir(src):
            found.append(Project(src, m.target))
    if workdir:
        wd = posixpath.normpath(workdir)

        def depth(p: Project) -> int:
            inside = wd == p.target or wd.startswith(p.target.rstrip("/") + "/")
            return -len(p.target) if inside else 1
        found.sort(key=depth)
    return found


def marker_dirs(project: Project, workdir: str | None) -> list[str]:
    """Host dirs whose markers count, nearest first: where `-w` points inside the mount and
    each parent up to the mount's root (`-v $PWD:/repo -w /repo/web` is the web app's
    project), else the mount's root alone."""
    if workdir:
        wd, top = posixpath.normpath(workdir), posixpath.normpath(project.target).rstrip("/")
        if wd.startswith(top + "/"):
            parts = [p for p in wd[len(top):].split("/") if p]
            return [os.path.join(project.host_dir, *parts[:i]) for i in range(len(parts), 0, -1)] + [project.host_dir]
    return [project.host_dir]


def scan_dir(host_dir: str, table: Sequence[Manager] = MANAGERS) -> list[Detection]:
    """Managers whose markers stand in `host_dir` (top level, plus .cargo/config.toml)."""
    try:
        names = os.listdir(host_dir)
    except OSError:
        return []
    out = []
    for mgr in table:
        for marker in mgr.markers:
            hit = _marker_hit(host_dir, names, marker)
            if hit:
                out.append(Detection(mgr.name, f"{hit} in {host_dir}", marker.strong))
                break
    return out


def _marker_hit(host_dir: str, names: Sequence[str], marker: Marker) -> str | None:
    if "/" in marker.glob:
        candidates = [marker.glob] if os.path.exists(os.path.join(host_dir, marker.glob)) else []
    else:
        candidates = fnmatch.filter(names, marker.glob)
    for name in candidates:
        if marker.contains is None and marker.lacks is None:
            return name
        text = _head(os.path.join(host_dir, name))
        if marker.contains is not None and marker.contains not in text:
            continue
        if marker.lacks is not None and marker.lacks in text:
            continue
        return name
    return None


def _head(path: str, limit: int = 65536) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return ""


_WORD_SPLIT = re.compile(r"[\s;&|()`'\"]+")


def scan_command(command: Sequence[str], table: Sequence[Manager] = MANAGERS) -> list[Detection]:
    """Managers whose executables appear in the command (basename match, any word)."""
    by_exe = {exe: m.name for m in reversed(table) for exe in m.commands}  # the built-in row wins
    out, seen = [], set()
    for token in command:
        for word in _WORD_SPLIT.split(token):
            name = by_exe.get(posixpath.basename(word))
            if name and name not in seen:
                seen.add(name)
                out.append(Detection(name, f"command runs '{posixpath.basename(word)}'"))
    return out


def combine(found: Sequence[Detection]) -> list[Detection]:
    """First reason per manager; a weak marker yields to a more specific tool."""
    first: dict[str, Detection] = {}
    for d in found:
        if d.manager not in first or (d.strong and not first[d.manager].strong):
            first[d.manager] = d
    names = set(first)
    return [d for d in first.values()
            if d.strong or d.manager not in BY_NAME or not (set(BY_NAME[d.manager].yields_to) & names)]


def always_on(table: Sequence[Manager]) -> list[Detection]:
    """[caches.NAME] without markers or commands: in every container, as before they had any."""
    return [Detection(m.name, "[caches] entry without markers or commands: always on") for m in table if m.always]
