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
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REF = "org.opencontainers.image.ref.name"
HIST = "~"  # KEY~1 is the build before KEY's; keys are sanitized to [a-z0-9._-], so never clash
SEED_LIMIT = 20000  # above this many store blobs, an export dir gets links to the imported keys' only
_WALK = ("manifest", "index")  # media types whose blobs list further descriptors


class StoreError(Exception):
    """A store problem, phrased as one line."""


class LockTimeout(StoreError):
    pass


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
                 tags: dict[str, tuple[str, ...]] | None = None, blobs: Iterable[str] = ()):
        self.src, self.keys, self.problems = src, tuple(keys), tuple(problems)
        self.tags = tags or {k: (k,) for k in self.keys}  # key -> index tags to import (key, KEY~1, ...)
        self.blobs = frozenset(blobs)

    def import_tags(self, key: str) -> tuple[str, ...]:
        return self.tags.get(key, ())

    def release(self) -> None:
        if self.src is not None:
            shutil.rmtree(self.src, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class CacheStore:
    def __init__(self, root: Path, *, lock_timeout: float = 30.0, history: int = 3):
        self.root = Path(root)
        self.oci = self.root / "oci"
        self.blobs = self.oci / "blobs" / "sha256"
        self.lock_timeout = lock_timeout
        self.history = max(1, history)

    # ------------------------------------------------------------ locking and files
    def _lock(self):
        """The store's blocking lock, with a timeout.

        fcntl.flock, the same lock filelock takes on Unix (so either can hold it); not
        filelock itself because importing it (plus site-packages) costs ~40 ms on every
        build, a fifth of what a warm build through dockcache may add."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        return _Held(str(self.root / ".lock"), self.lock_timeout, self.root)

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
        _atomic_json(self.oci / "index.json", {"schemaVersion": 2,
                     "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})

    def _read_meta(self) -> dict:
        try:
            data = json.loads((self.root / "keys.json").read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, meta: dict) -> None:
        _atomic_json(self.root / "keys.json", meta)

    # ------------------------------------------------------------ reachability
    def _reach(self, desc: dict, blob_dir: Path, seen: set[str]) -> bool:
        """Add every digest reachable from desc to seen; False if a blob is missing."""
        digest = str(desc.get("digest", ""))
        if not digest.startswith("sha256:"):
            return False
        hexd = digest[7:]
        path = blob_dir / hexd
        if not path.is_file():
            return False
        if hexd in seen:
            return True
        seen.add(hexd)
        if not any(w in str(desc.get("mediaType", "")) for w in _WALK):
            return True
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        children = [*doc.get("manifests", []), *doc.get("layers", []), *doc.get("blobs", [])]
        if isinstance(doc.get("config"), dict):
            children.append(doc["config"])
        return all(self._reach(c, blob_dir, seen) for c in children if isinstance(c, dict))

    def _entries(self, manifests: list[dict]) -> dict[str, dict]:
        return {str(m.get("annotations", {}).get(REF, "latest")): m for m in manifests}

    # ------------------------------------------------------------ public API
    def keys(self) -> dict[str, KeyInfo]:
        """Every key (its history entries counted in its size, not listed)."""
        manifests, _ = self._read_index()
        meta = self._read_meta()
        entries = self._entries(manifests)
        out = {}
        for key, desc in entries.items():
            if HIST in key:
                continue
            seen: set[str] = set()
            for tag in _lineage(key, entries):
                self._reach(entries[tag], self.blobs, seen)
            m = meta.get(key, {})
            out[key] = KeyInfo(key, str(desc.get("digest", "")), m.get("created", 0.0),
                               m.get("last_used", 0.0), self._size_of(seen))
        return out

    def size(self) -> int:
        return self._size_of(p.name for p in self.blobs.glob("*")) if self.blobs.exists() else 0

    def _size_of(self, hexes: Iterable[str]) -> int:
        total = 0
        for h in hexes:
            try:
                total += (self.blobs / h).stat().st_size
            except OSError:
                pass
        return total

    def snapshot(self, wanted: Sequence[str]) -> Snapshot:
        """Private view holding the wanted keys that exist intact; drops broken ones."""
        with self._lock():
            manifests, problems = self._read_index()
            entries = self._entries(manifests)
            tags: dict[str, tuple[str, ...]] = {}
            links: set[str] = set()
            broken: list[str] = []
            for key in wanted:
                intact = []
                for tag in _lineage(key, entries):
                    seen: set[str] = set()
                    if self._reach(entries[tag], self.blobs, seen):
                        intact.append(tag)
                        links |= seen
                if intact:
                    tags[key] = tuple(intact)
                elif key in entries:
                    broken.append(key)
            if broken or problems:
                self._drop(manifests, broken)
                problems += [f"key {k} had missing blobs and was dropped" for k in broken]
            if not tags:
                return Snapshot(None, (), problems)
            src = self._private_dir("snapshots", "dockcache-snap")
            (src / "blobs" / "sha256").mkdir(parents=True)
            for h in links:
                _link_or_copy(self.blobs / h, src / "blobs" / "sha256" / h)
            (src / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            listed = [entries[t] for ts in tags.values() for t in ts]
            _atomic_json(src / "index.json", {"schemaVersion": 2, "manifests": listed})
            self._touch(list(tags))
            return Snapshot(src, list(tags), problems, tags, links)

    def new_export_dir(self, hint: Snapshot | None = None) -> Path:
        """A private export dir, seeded with links to blobs the store holds.

        No lock: a blob pruned meanwhile just fails to link (BuildKit writes it), and a
        link keeps its data even if the store's copy goes."""
        path = self._private_dir("tmp", "dockcache-export")
        blobs = path / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        try:
            names = [p.name for p in os.scandir(self.blobs) if not p.name.startswith(".")]
        except OSError:
            names = []
        if len(names) > SEED_LIMIT:
            names = sorted(hint.blobs) if hint else []
        for name in names:
            try:
                os.link(self.blobs / name, blobs / name)
            except OSError:
                pass
        return path

    def lineage(self, key: str) -> tuple[str, ...]:
        """Manifest digests of the key's builds, newest first (no lock: index.json is
        replaced atomically, so a reader sees one whole version)."""
        manifests, _ = self._read_index()
        entries = self._entries(manifests)
        return tuple(str(entries[t].get("digest", "")) for t in _lineage(key, entries))

    def publish(self, export_dir: Path, key: str) -> Published:
        """Make one build's export the newest build of `key`.

        The key's earlier builds stay as KEY~1.. (up to `history` in all); an export equal
        to a build the key already holds only moves it to the front."""
        try:
            manifests, _ = _read_json_index(export_dir / "index.json")
            entries = self._entries(manifests)
            desc = entries.get(key) or (manifests[-1] if manifests else None)
            seen: set[str] = set()
            if desc is None or not self._reach(desc, export_dir / "blobs" / "sha256", seen):
                raise StoreError(f"build export in {export_dir} is incomplete; not published")
            written = _written(export_dir / "blobs" / "sha256", seen)
            with self._lock():
                current, _ = self._read_index()
                lineage = [self._entries(current)[t] for t in _lineage(key, self._entries(current))]
                digest = str(desc.get("digest"))
                if lineage and lineage[0].get("digest") == digest:
                    self._touch([key])
                    return Published(digest, 0, False, written)
                added = self._move_blobs(export_dir, seen)
                builds = [desc, *(d for d in lineage if d.get("digest") != desc.get("digest"))]
                named = [_named(d, key if i == 0 else f"{key}{HIST}{i}")
                         for i, d in enumerate(builds[: self.history])]
                kept = [m for m in current if _base(_ref(m)) != key]
                self._write_index([*kept, *named])
                self._record(key, str(desc.get("digest")))
                if len(builds) > self.history:
                    self._collect([*kept, *named])
                return Published(digest, added, True, written)
        finally:
            shutil.rmtree(export_dir, ignore_errors=True)

    def prune(self, *, max_size: int | None = None, older_than: float | None = None,
              now: float | None = None) -> PruneResult:
        now = time.time() if now is None else now
        with self._lock():
            before = self.size()
            manifests, _ = self._read_index()
            meta = self._read_meta()
            order = sorted({_base(_ref(m)) for m in manifests}, key=lambda k: meta.get(k, {}).get("last_used", 0.0))
            gone = [k for k in order if older_than is not None
                    and now - meta.get(k, {}).get("last_used", 0.0) > older_than]
            kept = [k for k in order if k not in gone]
            while max_size is not None and kept and self._size_for(manifests, kept) > max_size:
                gone.append(kept.pop(0))
            self._drop(manifests, gone)
            count = self._collect([m for m in manifests if _base(_ref(m)) not in gone])
            self._clean_stale()
            after = self.size()
            return PruneResult(tuple(gone), count, before - after, before, after)

    def drop_keys(self, keys: Sequence[str]) -> int:
        """Remove keys and the blobs only they reached; returns blobs removed."""
        with self._lock():
            manifests, _ = self._read_index()
            self._drop(manifests, keys)
            return self._collect([m for m in manifests if _base(_ref(m)) not in keys])

    def check(self) -> list[str]:
        manifests, problems = self._read_index()
        for key, desc in self._entries(manifests).items():
            if not self._reach(desc, self.blobs, set()):
                problems.append(f"key {key} has missing blobs")
        return problems

    # ------------------------------------------------------------ internals (lock held)
    def _move_blobs(self, export_dir: Path, hexes: set[str]) -> int:
        added = 0
        for h in hexes:
            dst = self.blobs / h
            if dst.exists():
                continue
            src = export_dir / "blobs" / "sha256" / h
            tmp = self.blobs / f".{h}.{os.urandom(16).hex()}.tmp"
            try:
                os.rename(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # content-addressed: a blob appears whole or not at all
            added += dst.stat().st_size
        return added

    def _drop(self, manifests: list[dict], keys: Sequence[str]) -> None:
        self._write_index([m for m in manifests if _base(_ref(m)) not in keys])
        meta = self._read_meta()
        for k in keys:
            meta.pop(k, None)
        self._write_meta(meta)

    def _collect(self, manifests: list[dict]) -> int:
        """Delete blobs no listed manifest reaches (snapshots hold their own links)."""
        live: set[str] = set()
        for desc in manifests:
            self._reach(desc, self.blobs, live)
        removed = 0
        for path in self.blobs.glob("*"):
            if path.name not in live and not path.name.startswith("."):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _size_for(self, manifests: list[dict], keys: Sequence[str]) -> int:
        live: set[str] = set()
        for desc in manifests:
            if _base(_ref(desc)) in keys:
                self._reach(desc, self.blobs, live)
        return self._size_of(live)

    def _record(self, key: str, digest: str) -> None:
        meta = self._read_meta()
        now = time.time()
        meta[key] = {"created": meta.get(key, {}).get("created", now), "last_used": now, "digest": digest}
        self._write_meta(meta)

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
        """Export and snapshot dirs whose process is gone (killed builds)."""
        for kind in ("tmp", "snapshots"):
            for path in (self.root / kind).glob("dockcache-*"):
                pid = path.name.split("-")[-2]
                if pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(path, ignore_errors=True)


class _Held:
    def __init__(self, path: str, timeout: float, root: Path):
        import fcntl

        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise LockTimeout(f"build cache store {root} is locked by another process "
                                      f"for more than {timeout:g} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing the descriptor releases the flock


def _ref(desc: dict) -> str:
    return str(desc.get("annotations", {}).get(REF, "latest"))


def _base(ref: str) -> str:
    """The key an index entry belongs to (KEY~2 -> KEY)."""
    return ref.split(HIST, 1)[0]


def _lineage(key: str, entries: dict[str, dict]) -> list[str]:
    """KEY, KEY~1, KEY~2, ... as far as the index holds them, newest first."""
    out = [key] if key in entries else []
    i = 1
    while out and f"{key}{HIST}{i}" in entries:
        out.append(f"{key}{HIST}{i}")
        i += 1
    return out


def _written(blob_dir: Path, hexes: Iterable[str]) -> int:
    """Bytes of the blobs BuildKit wrote itself: a seeded link has a second name."""
    total = 0
    for h in hexes:
        try:
            st = (blob_dir / h).stat()
        except OSError:
            continue
        total += st.st_size if st.st_nlink == 1 else 0
    return total


def _named(desc: dict, ref: str) -> dict:
    return {**desc, "annotations": {**desc.get("annotations", {}), REF: ref}}


def _read_json_index(path: Path) -> tuple[list[dict], None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [m for m in data.get("manifests", []) if isinstance(m, dict)], None
    except (OSError, ValueError, AttributeError):
        raise StoreError(f"build export {path} has no readable index.json; not published") from None


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(16).hex()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
