"""Cache-mount contents in the build store, with the layer store's guarantees.

`ROOT/mounts/NAME.GEN.tgz` holds one saved generation of one mount (NAME: the build key's
scope + mount id + platform, `mount_name`), packed: a seed sends it to BuildKit as one
file and unpacks it inside the step. Measured on the engine pair for a 47 MB go-build
cache (592 files): 0.9 s to send the tree file by file, 6 MB packed and sent at no
measurable cost, unpacked in ~0.3 s; compression (gzip level 1, ~8x on compiler output)
is paid by the detached save. `ROOT/mounts/index.json` says which generation is current,
its size on disk and when it was last used. A save fills a private dir under `ROOT/tmp`;
`publish` packs it there, renames the pack in and rewrites the index atomically under the
store's lock; the generation it replaces is deleted under the same lock. A seed reads a
`snapshot`: hard links to the current generation, made under the lock, so a publish or
prune meanwhile cannot empty it. Stores written before packing hold `NAME.GEN/` trees;
they are read as they are. The store's size cap and LRU prune count
these entries beside the layer keys (store.py calls the lock-free helpers below).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from shim.core.records import dataclass
from pathlib import Path

from shim.build.store import layout
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
    packed: bool = False  # NAME.GEN.tgz; False: a NAME.GEN/ tree from before packing

    @property
    def dirname(self) -> str:
        """The generation's name under ROOT/mounts (a file when packed)."""
        return f"{self.name}.{self.gen}" + (PACKED_SUFFIX if self.packed else "")


PACKED_SUFFIX = ".tgz"
PACKED_NAME = "m.tgz"  # its name in a seed's build context
PACK_LEVEL = 1  # gzip: most of the size gain on compiler output at a fraction of level 6's time


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def pack(src: Path, dest: Path) -> None:
    """src's contents (owners, modes, links kept) as a gzip tar at dest."""
    import tarfile

    with tarfile.open(dest, "w:gz", compresslevel=PACK_LEVEL, format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(os.listdir(src)):
            tar.add(src / child, child)


def unpack(src: Path, dest: Path) -> None:
    """The other way, for a base image without tar or gzip (its files only: no links out)."""
    import tarfile

    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src, "r:gz") as tar:
        if hasattr(tarfile, "tar_filter"):  # Python 3.11.4+ (and the 3.8-3.10 security releases)
            tar.extractall(dest, filter="tar")
        else:  # Debian 12's python3 is 3.11.2: the "tar" filter's refusals by hand
            tar.extractall(dest, members=[_safe(m, dest) for m in tar.getmembers()])


def _safe(member, dest: Path):
    """What the "tar" extraction filter lets through: nothing outside `dest` (by name or by
    link), no device files, no setuid/setgid/sticky or group/other write bits."""
    import stat
    import tarfile

    root = os.path.realpath(dest)
    name = os.path.normpath(os.path.join(root, member.name))
    link = member.linkname
    to = os.path.normpath(os.path.join(os.path.dirname(name) if member.issym() else root, link)) if link else root
    if os.path.isabs(member.name) or os.path.commonpath([root, name]) != root \
            or os.path.isabs(link) or os.path.commonpath([root, to]) != root or member.isdev():
        raise tarfile.TarError(f"refused to unpack {member.name!r}: outside the cache mount or a device")
    if member.mode is not None:
        member.mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH)
    return member


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
            remove_path(root / "mounts" / gone.dirname)
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
        """(dir to remove afterwards, name -> (linked copy of its generation: `top/i/m.tgz`
        when packed, else the tree `top/i`, and the generation))."""
        with self.store._lock():
            entries = read_index(self.root)
            have = [n for n in names if n in entries and (self.root / "mounts" / entries[n].dirname).exists()]
            if not have:
                return None, {}
            top = self.store._private_dir("snapshots", "dockcache-mountsnap")
            out = {}
            for i, name in enumerate(have):
                src = self.root / "mounts" / entries[name].dirname
                if entries[name].packed:
                    (top / str(i)).mkdir()
                    layout.link_or_copy(src, top / str(i) / PACKED_NAME)
                    out[name] = (top / str(i) / PACKED_NAME, entries[name].gen)
                else:
                    _link_tree(src, top / str(i))
                    out[name] = (top / str(i), entries[name].gen)
            self._touch(entries, have)
            return top, out

    def publish(self, name: str, src: Path, *, key: str, mount_id: str, platform: str) -> MountEntry:
        """Make `src` (a private dir under the store root) the current generation of `name`."""
        _size, files = tree_size(src)
        gen = f"{int(time.time() * 1000):x}{os.urandom(3).hex()}"
        packed = src.with_name(src.name + PACKED_SUFFIX)
        try:
            pack(src, packed)
            size = packed.stat().st_size
            with self.store._lock():
                entries = read_index(self.root)
                old = entries.get(name)
                now = time.time()
                entry = MountEntry(name, gen, size, files, old.created if old else now, now, key, mount_id, platform,
                                   packed=True)
                (self.root / "mounts").mkdir(parents=True, exist_ok=True)
                os.rename(packed, self.root / "mounts" / entry.dirname)
                entries[name] = entry
                write_index(self.root, entries)
                if old:
                    remove_path(self.root / "mounts" / old.dirname)
                return entry
        finally:
            shutil.rmtree(src, ignore_errors=True)
            remove_path(packed)

    def drop(self, names: Sequence[str]) -> int:
        with self.store._lock():
            return drop_locked(self.root, names)

    def _touch(self, entries: dict[str, MountEntry], names: Sequence[str]) -> None:
        now = time.time()
        for n in names:
            entries[n] = MountEntry(**{**entries[n].__dict__, "last_used": now})
        write_index(self.root, entries)
