"""Cache-mount contents in the build store, with the layer store's guarantees.

`ROOT/mounts/NAME.GEN/` holds one saved generation of one mount (NAME: the build key's
scope + mount id + platform, `mount_name`); `ROOT/mounts/index.json` says which
generation is current, its size and when it was last used. A save fills a private dir
under `ROOT/tmp` and `publish` renames it in and rewrites the index atomically under the
store's lock; the generation it replaces is deleted under the same lock. A seed reads a
`snapshot`: hard links to the current generation's files, made under the lock, so a
publish or prune meanwhile cannot empty it. The store's size cap and LRU prune count
these entries beside the layer keys (store.py calls the lock-free helpers below).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shim.build import layout
from shim.build.key import sanitize
from shim.core.state import short_hash


def mount_name(key: str, mount_id: str, platform: str) -> str:
    """Store name of a mount: readable, and unique per key + id + platform."""
    readable = sanitize(mount_id)[:40]
    return f"{key}--{readable}-{short_hash(mount_id, 8)}--{sanitize(platform)}"


@dataclass(frozen=True)
class MountEntry:
    name: str
    gen: str
    size: int
    files: int
    created: float
    last_used: float
    key: str
    id: str
    platform: str

    @property
    def dirname(self) -> str:
        return f"{self.name}.{self.gen}"


# ------------------------------------------------------------------ lock-free helpers (store.py)

def read_index(root: Path) -> dict[str, MountEntry]:
    try:
        data = json.loads((root / "mounts" / "index.json").read_text(encoding="utf-8"))
        return {n: MountEntry(**e) for n, e in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def write_index(root: Path, entries: dict[str, MountEntry]) -> None:
    (root / "mounts").mkdir(parents=True, exist_ok=True)
    layout.atomic_json(root / "mounts" / "index.json", {n: e.__dict__ for n, e in entries.items()})


def total_size(root: Path) -> int:
    return sum(e.size for e in read_index(root).values())


def drop_locked(root: Path, names: Iterable[str]) -> int:
    """Remove entries and their dirs (the caller holds the store lock); bytes freed."""
    entries, freed = read_index(root), 0
    for name in names:
        gone = entries.pop(name, None)
        if gone:
            shutil.rmtree(root / "mounts" / gone.dirname, ignore_errors=True)
            freed += gone.size
    write_index(root, entries)
    return freed


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under path, symlinks not followed."""
    size = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            try:
                size += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return size, files


def _link_tree(src: Path, dst: Path) -> None:
    """A hard-linked copy (copy where linking fails): a later rmtree of src keeps dst whole."""
    for dirpath, dirs, names in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for d in dirs:
            if os.path.islink(os.path.join(dirpath, d)):
                os.symlink(os.readlink(os.path.join(dirpath, d)), dst / rel / d)
        for n in names:
            s, d = os.path.join(dirpath, n), dst / rel / n
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            else:
                layout.link_or_copy(Path(s), d)


# ------------------------------------------------------------------ the locked operations

class MountStore:
    def __init__(self, store):  # a build.store.CacheStore: its root and its lock
        self.store, self.root = store, store.root

    def entries(self) -> dict[str, MountEntry]:
        return read_index(self.root)

    def private_dir(self) -> Path:
        """Where a save writes: in the store's filesystem, so publish is a rename."""
        return self.store._private_dir("tmp", "dockcache-mount")

    def snapshot(self, names: Sequence[str]) -> tuple[Path | None, dict[str, tuple[Path, str]]]:
        """(dir to remove afterwards, name -> (linked copy of its contents, generation))."""
        with self.store._lock():
            entries = read_index(self.root)
            have = [n for n in names if n in entries and (self.root / "mounts" / entries[n].dirname).is_dir()]
            if not have:
                return None, {}
            top = self.store._private_dir("snapshots", "dockcache-mountsnap")
            out = {}
            for i, name in enumerate(have):
                _link_tree(self.root / "mounts" / entries[name].dirname, top / str(i))
                out[name] = (top / str(i), entries[name].gen)
            self._touch(entries, have)
            return top, out

    def publish(self, name: str, src: Path, *, key: str, mount_id: str, platform: str) -> MountEntry:
        """Make `src` (a private dir under the store root) the current generation of `name`."""
        size, files = tree_size(src)
        gen = f"{int(time.time() * 1000):x}{os.urandom(3).hex()}"
        try:
            with self.store._lock():
                entries = read_index(self.root)
                old = entries.get(name)
                now = time.time()
                entry = MountEntry(name, gen, size, files, old.created if old else now, now, key, mount_id, platform)
                (self.root / "mounts").mkdir(parents=True, exist_ok=True)
                os.rename(src, self.root / "mounts" / entry.dirname)
                entries[name] = entry
                write_index(self.root, entries)
                if old:
                    shutil.rmtree(self.root / "mounts" / old.dirname, ignore_errors=True)
                return entry
        finally:
            shutil.rmtree(src, ignore_errors=True)

    def drop(self, names: Sequence[str]) -> int:
        with self.store._lock():
            return drop_locked(self.root, names)

    def _touch(self, entries: dict[str, MountEntry], names: Sequence[str]) -> None:
        now = time.time()
        for n in names:
            entries[n] = MountEntry(**{**entries[n].__dict__, "last_used": now})
        write_index(self.root, entries)
