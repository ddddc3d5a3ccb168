"""The shared BuildKit cache store: one OCI layout, one tag per key, shared blobs.

BuildKit's own local exporter rewrites index.json in place under a non-blocking lock
(docker/buildx#2593) and never deletes anything (moby/buildkit#1896), and importing a
tag that index.json lacks fails the build. So builds never touch this layout directly:
- a build exports into a private dir; `publish` moves its blobs in (content-addressed)
  and replaces index.json atomically, under one blocking lock;
- a build imports from a snapshot: its own index.json listing only keys that really
  exist, blobs hard-linked, so a prune running meanwhile cannot pull a blob from under
  it (the link keeps the data);
- `prune` and the per-publish clean-up delete blobs no kept key reaches, under the lock.

A key keeps its last few distinct builds (`KEY`, `KEY~1`, `KEY~2`, ...), all imported:
with one manifest per key, builds of one repository with other build args or targets
replace each other's records (the last publisher wins), and a record that one export
leaves out is lost for good. A rebuild whose export is the key's manifest already
changes nothing. Export dirs start with hard links to the store's blobs: BuildKit skips
a blob the destination already holds, so a warm build writes only what is new
(a 270 MB base layer costs 2.3 s to write again, a link costs microseconds).

Longer than most (~360 lines): snapshot, publish, prune and check share one locking and
reachability discipline; the layout helpers live in layout.py, the lock in lock.py. Never
runs docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from shim.core.records import dataclass
from pathlib import Path

from shim.build.store import layout
from shim.build.mounts import store as mountstore
from shim.build.store.layout import LockTimeout, StoreError
from shim.build.store.lock import Held

MOUNT = "mount:"  # prune results name saved cache mounts MOUNT + their store name
SEED_LIMIT = 20000  # above this many store blobs, an export dir gets links to the imported keys' only


@dataclass(frozen=True)
class KeyInfo:
    key: str
    digest: str
    created: float
    last_used: float
    size: int


@dataclass(frozen=True)
class Published:
    digest: str  # the manifest now first in the key
    added: int  # bytes of blobs the store did not hold
    changed: bool  # False: the store already had this very build first
    written: int = 0  # bytes BuildKit wrote into the export dir (blobs that are not our links)


@dataclass(frozen=True)
class PruneResult:
    removed_keys: tuple[str, ...]
    removed_blobs: int
    freed_bytes: int
    size_before: int
    size_after: int


class Snapshot:
    """A consistent, private view of some keys for `--cache-from type=local,src=...`."""

    def __init__(self, src: Path | None, keys: Sequence[str], problems: Sequence[str],
                 tags: dict[str, tuple[str, ...]] | None = None, blobs: Iterable[str] = (),
                 lacking: Sequence[str] = ()):
        self.src, self.keys, self.problems = src, tuple(keys), tuple(problems)
        self.tags = tags or {k: (k,) for k in self.keys}  # key -> index tags to import (key, KEY~1, ...)
        self.blobs = frozenset(blobs)
        self.lacking = tuple(lacking)  # tags left out: they need base layers this engine lacks

    def import_tags(self, key: str) -> tuple[str, ...]:
        return self.tags.get(key, ())

    def release(self) -> None:
        if self.src is not None:
            shutil.rmtree(self.src, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _empty(entry: os.DirEntry) -> bool:
    """A placeholder (layout.placeholder), from a scandir entry."""
    try:
        return entry.stat().st_size == 0 and entry.name != layout.EMPTY
    except OSError:
        return True


class CacheStore:
    def __init__(self, root: Path, *, lock_timeout: float = 30.0, history: int = 3):
        self.root = Path(root)
        self.oci = self.root / "oci"
        self.blobs = self.oci / "blobs" / "sha256"
        self.lock_timeout = lock_timeout
        self.history = max(1, history)

    # ------------------------------------------------------------ locking and files
    @contextlib.contextmanager
    def waiting_at_most(self, seconds: float):
        """Within: the lock is waited for `seconds` at most (not longer than lock_timeout),
        where the user's command waits for it (handoff.py)."""
        full, self.lock_timeout = self.lock_timeout, min(self.lock_timeout, seconds)
        try:
            yield self
        finally:
            self.lock_timeout = full

    def _lock(self):
        """The store's blocking lock, with a timeout.

        fcntl.flock, the same lock filelock takes on Unix (so either can hold it); not
        filelock itself because importing it (plus site-packages) costs ~40 ms on every
        build, a fifth of what a warm build through dockcache may add."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        return Held(str(self.root / ".lock"), self.lock_timeout, self.root)

    def _read_index(self) -> tuple[list[dict], list[str]]:
        path = self.oci / "index.json"
        if not path.exists():
            return [], []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            manifests = data["manifests"]
            assert isinstance(manifests, list) and all(isinstance(m, dict) for m in manifests)
            return manifests, []
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            return [], [f"{path} was unreadable; the store index was reset"]

    def _write_index(self, manifests: list[dict]) -> None:
        (self.oci / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        layout.atomic_json(self.oci / "index.json", {"schemaVersion": 2,
                     "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})

    def _read_meta(self) -> dict:
        """key -> {created, last_used, digest}. A record of another shape (a hand edit, a
        half-understood file) counts as none: every reader may rely on the shape."""
        try:
            data = json.loads((self.root / "keys.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): {f: v for f, v in m.items()
                         if f not in ("created", "last_used") or (isinstance(v, (int, float)) and not isinstance(v, bool))}
                for k, m in data.items() if isinstance(m, dict)}

    def _write_meta(self, meta: dict) -> None:
        layout.atomic_json(self.root / "keys.json", meta)

    def _entries(self, manifests: list[dict]) -> dict[str, dict]:
        return {str(m.get("annotations", {}).get(layout.REF, "latest")): m for m in manifests}

    # ------------------------------------------------------------ public API
    def recency(self) -> dict[str, float]:
        """key -> when a build last used it, from keys.json alone (no blob walk): cheap
        enough for every build's plan."""
        return {k: float(m.get("last_used", m.get("created", 0.0))) for k, m in self._read_meta().items()}

    def keys(self) -> dict[str, KeyInfo]:
        """Every key (its history entries counted in its size, not listed)."""
        manifests, _ = self._read_index()
        meta = self._read_meta()
        entries = self._entries(manifests)
        out = {}
        for key, desc in entries.items():
            if layout.HIST in key:
                continue
            seen: set[str] = set()
            for tag in layout.lineage(key, entries):
                layout.reach(entries[tag], self.blobs, seen)
            m = meta.get(key, {})
            out[key] = KeyInfo(key, str(desc.get("digest", "")), m.get("created", 0.0),
                               m.get("last_used", 0.0), self._size_of(seen))
        return out

    def size(self) -> int:
        """Bytes held: layer blobs plus saved cache-mount contents (mountstore.py)."""
        blobs = self._size_of(p.name for p in self.blobs.glob("*")) if self.blobs.exists() else 0
        return blobs + mountstore.total_size(self.root)

    def unwritable(self) -> str | None:
        """Why no build can use the store (even an import writes a snapshot dir into it): a
        read-only mount, no permission, a file in its place; None when it can. Creates nothing."""
        path = self.root / "tmp"
        while not path.exists() and path != path.parent:
            path = path.parent  # the dir its mkdir would start from
        if not path.is_dir():
            return f"build store {self.root} cannot be made ({path} is not a directory)"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"build store {self.root} is not writable"
        return None

    def _size_of(self, hexes: Iterable[str]) -> int:
        total = 0
        for h in hexes:
            try:
                total += (self.blobs / h).stat().st_size
            except OSError:
                pass
        return total

    def snapshot(self, wanted: Sequence[str], holds: Callable[[str], bool] | None = None) -> Snapshot:
        """Private view holding the wanted keys that exist intact; drops broken ones.

        A build that reaches base-layer placeholders is in it only when `holds` says this
        engine has every such layer (baselayers.py: a cached step on a daemon without them
        fails the build); the placeholders themselves are not linked."""
        with self._lock():
            manifests, problems = self._read_index()
            entries = self._entries(manifests)
            tags: dict[str, tuple[str, ...]] = {}
            links: set[str] = set()
            broken: list[str] = []
            lacking: list[str] = []
            for key in wanted:
                intact = []
                for tag in layout.lineage(key, entries):
                    seen: set[str] = set()
                    if layout.reach(entries[tag], self.blobs, seen):
                        bases = {h for h in seen if layout.placeholder(self.blobs / h)}
                        if bases and not (holds and all(holds(h) for h in bases)):
                            lacking.append(tag)
                            continue
                        intact.append(tag)
                        links |= seen - bases
                if intact:
                    tags[key] = tuple(intact)
                elif key in entries and not any(layout.base(t) == key for t in lacking):
                    broken.append(key)
            if broken or problems:
                self._drop(manifests, broken)
                problems += [f"key {k} had missing blobs and was dropped" for k in broken]
            if not tags:
                return Snapshot(None, (), problems, lacking=lacking)
            src = self._private_dir("snapshots", "dockcache-snap")
            (src / "blobs" / "sha256").mkdir(parents=True)
            for h in links:
                layout.link_or_copy(self.blobs / h, src / "blobs" / "sha256" / h)
            (src / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            listed = [entries[t] for ts in tags.values() for t in ts]
            layout.atomic_json(src / "index.json", {"schemaVersion": 2, "manifests": listed})
            self._touch(list(tags))
            return Snapshot(src, list(tags), problems, tags, links, lacking)

    def new_export_dir(self, hint: Snapshot | None = None, bases: Iterable[str] = ()) -> Path:
        """A private export dir, seeded with links to blobs the store holds, and a
        placeholder for each layer of the build's FROM images (`bases`, hex digests) that
        the store has no real blob of: BuildKit writes none of those (baselayers.py).

        No lock: a blob pruned meanwhile just fails to link (BuildKit writes it), and a
        link keeps its data even if the store's copy goes. The store's own placeholders are
        not linked: a layer that is one build's base may be another's own (an image built
        here and used FROM elsewhere), which that build must write."""
        path = self._private_dir("tmp", "dockcache-export")
        blobs = path / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        try:
            names = [p.name for p in os.scandir(self.blobs)
                     if not p.name.startswith(".") and not _empty(p)]
        except OSError:
            names = []
        if len(names) > SEED_LIMIT:
            names = sorted(hint.blobs) if hint else []
        for name in names:
            try:
                os.link(self.blobs / name, blobs / name)
            except OSError:
                pass
        for name in bases:
            if name != layout.EMPTY and len(name) == 64:
                with contextlib.suppress(OSError):
                    os.close(os.open(blobs / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o444))
        return path

    def lineage(self, key: str) -> tuple[str, ...]:
        """Manifest digests of the key's builds, newest first (no lock: index.json is
        replaced atomically, so a reader sees one whole version)."""
        manifests, _ = self._read_index()
        entries = self._entries(manifests)
        return tuple(str(entries[t].get("digest", "")) for t in layout.lineage(key, entries))

    def publish(self, export_dir: Path, key: str, *, keep_if_locked: bool = False) -> Published:
        """Make one build's export the newest build of `key`.

        The key's earlier builds stay as KEY~1.. (up to `history` in all); an export equal
        to a build the key already holds only moves it to the front. The export dir is
        removed afterwards, unless the lock timed out and `keep_if_locked` (handoff.py
        publishes it later)."""
        keep = False
        try:
            manifests, _ = layout.read_json_index(export_dir / "index.json")
            entries = self._entries(manifests)
            desc = entries.get(key) or (manifests[-1] if manifests else None)
            seen: set[str] = set()
            if desc is None or not layout.reach(desc, export_dir / "blobs" / "sha256", seen):
                raise StoreError(f"build export in {export_dir} is incomplete; not published")
            written = layout.written(export_dir / "blobs" / "sha256", seen)
            try:
                held = self._lock()
            except LockTimeout:
                keep = keep_if_locked
                raise
            with held:
                current, _ = self._read_index()
                lineage = [self._entries(current)[t] for t in layout.lineage(key, self._entries(current))]
                digest = str(desc.get("digest"))
                if lineage and lineage[0].get("digest") == digest:
                    self._touch([key])
                    return Published(digest, 0, False, written)
                added = self._move_blobs(export_dir, seen)
                builds = [desc, *(d for d in lineage if d.get("digest") != desc.get("digest"))]
                named = [layout.named(d, key if i == 0 else f"{key}{layout.HIST}{i}")
                         for i, d in enumerate(builds[: self.history])]
                kept = [m for m in current if layout.base(layout.ref(m)) != key]
                self._write_index([*kept, *named])
                self._record(key, str(desc.get("digest")))
                if len(builds) > self.history:
                    self._collect([*kept, *named])
                return Published(digest, added, True, written)
        finally:
            if not keep:
                shutil.rmtree(export_dir, ignore_errors=True)

    def prune(self, *, max_size: int | None = None, older_than: float | None = None,
              now: float | None = None) -> PruneResult:
        """Drop keys and saved cache mounts (`mount:NAME`), least recently used first."""
        now = time.time() if now is None else now
        with self._lock():
            before = self.size()
            manifests, _ = self._read_index()
            meta = self._read_meta()
            mounts = mountstore.read_index(self.root)
            used = {k: meta.get(k, {}).get("last_used", 0.0) for k in {layout.base(layout.ref(m)) for m in manifests}}
            used.update({f"{MOUNT}{n}": e.last_used for n, e in mounts.items()})
            order = sorted(used, key=used.get)
            gone = [k for k in order if older_than is not None and now - used[k] > older_than]
            kept = [k for k in order if k not in gone]
            while max_size is not None and kept and self._kept_size(manifests, mounts, kept) > max_size:
                gone.append(kept.pop(0))
            keys = [k for k in gone if not k.startswith(MOUNT)]
            mountstore.drop_locked(self.root, [k[len(MOUNT):] for k in gone if k.startswith(MOUNT)])
            self._drop(manifests, keys)
            count = self._collect([m for m in manifests if layout.base(layout.ref(m)) not in keys])
            self._clean_stale()
            after = self.size()
            return PruneResult(tuple(gone), count, before - after, before, after)

    def _kept_size(self, manifests: list[dict], mounts: dict, kept: Sequence[str]) -> int:
        return (self._size_for(manifests, [k for k in kept if not k.startswith(MOUNT)])
                + sum(mounts[k[len(MOUNT):]].size for k in kept if k.startswith(MOUNT)))

    def drop_keys(self, keys: Sequence[str]) -> int:
        """Remove keys and the blobs only they reached; returns blobs removed."""
        with self._lock():
            manifests, _ = self._read_index()
            self._drop(manifests, keys)
            return self._collect([m for m in manifests if layout.base(layout.ref(m)) not in keys])

    def check(self) -> list[str]:
        manifests, problems = self._read_index()
        for key, desc in self._entries(manifests).items():
            if not layout.reach(desc, self.blobs, set()):
                problems.append(f"key {key} has missing blobs")
        return problems

    # ------------------------------------------------------------ internals (lock held)
    def _move_blobs(self, export_dir: Path, hexes: set[str]) -> int:
        """Blobs into the store; a real blob replaces a placeholder of it, never the reverse."""
        added = 0
        for h in hexes:
            dst = self.blobs / h
            src = export_dir / "blobs" / "sha256" / h
            if dst.exists() and not (layout.placeholder(dst) and not layout.placeholder(src)):
                continue
            tmp = self.blobs / f".{h}.{os.urandom(16).hex()}.tmp"
            try:
                os.rename(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # content-addressed: a blob appears whole or not at all
            added += dst.stat().st_size
        return added

    def _drop(self, manifests: list[dict], keys: Sequence[str]) -> None:
        self._write_index([m for m in manifests if layout.base(layout.ref(m)) not in keys])
        meta = self._read_meta()
        for k in keys:
            meta.pop(k, None)
        self._write_meta(meta)

    def _collect(self, manifests: list[dict]) -> int:
        """Delete blobs no listed manifest reaches (snapshots hold their own links)."""
        live: set[str] = set()
        for desc in manifests:
            layout.reach(desc, self.blobs, live)
        removed = 0
        for path in self.blobs.glob("*"):
            if path.name not in live and not path.name.startswith("."):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _size_for(self, manifests: list[dict], keys: Sequence[str]) -> int:
        live: set[str] = set()
        for desc in manifests:
            if layout.base(layout.ref(desc)) in keys:
                layout.reach(desc, self.blobs, live)
        return self._size_of(live)

    def _record(self, key: str, digest: str) -> None:
        meta = self._read_meta()
        now = time.time()
        meta[key] = {"created": meta.get(key, {}).get("created", now), "last_used": now, "digest": digest}
        self._write_meta(meta)

    def used(self, key: str, *, every: float = 3600.0) -> None:
        """Mark `key` used by a build that imported nothing and exported nothing (its daemon's
        own cache served it): the LRU prune must not take the key in daily use first. Written
        at most once per `every` seconds, and only when the lock is free at once."""
        if time.time() - self._read_meta().get(key, {}).get("last_used", 0.0) < every:
            return
        try:
            with self.waiting_at_most(0.0), self._lock():
                self._touch([key])
        except LockTimeout:
            pass  # someone is writing the store: the next build marks it

    def _touch(self, keys: Sequence[str]) -> None:
        meta = self._read_meta()
        for k in keys:
            meta.setdefault(k, {"created": time.time()})["last_used"] = time.time()
        self._write_meta(meta)

    def _private_dir(self, kind: str, prefix: str) -> Path:
        base = self.root / kind
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"{prefix}-{os.getpid()}-{os.urandom(4).hex()}"
        path.mkdir()
        return path

    def _clean_stale(self) -> None:
        """Export and snapshot dirs whose process is gone (killed builds), and mount
        generations the mount index no longer names."""
        listed = {e.dirname for e in mountstore.read_index(self.root).values()}
        for path in (self.root / "mounts").glob("*.*"):
            if path.name not in listed and (path.is_dir() or path.name.endswith(mountstore.PACKED_SUFFIX)):
                mountstore.remove_path(path)
        for kind in ("tmp", "snapshots"):
            for path in (self.root / kind).glob("dockcache-*"):
                pid = path.name.split("-")[-2]
                if pid.isdigit() and not layout.alive(int(pid)):
                    mountstore.remove_path(path)
