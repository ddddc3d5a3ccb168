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
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REF = "org.opencontainers.image.ref.name"
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
class PruneResult:
    removed_keys: tuple[str, ...]
    removed_blobs: int
    freed_bytes: int
    size_before: int
    size_after: int


class Snapshot:
    """A consistent, private view of some keys for `--cache-from type=local,src=...`."""

    def __init__(self, src: Path | None, keys: Sequence[str], problems: Sequence[str]):
        self.src, self.keys, self.problems = src, tuple(keys), tuple(problems)

    def release(self) -> None:
        if self.src is not None:
            shutil.rmtree(self.src, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class CacheStore:
    def __init__(self, root: Path, *, lock_timeout: float = 30.0):
        self.root = Path(root)
        self.oci = self.root / "oci"
        self.blobs = self.oci / "blobs" / "sha256"
        self.lock_timeout = lock_timeout

    # ------------------------------------------------------------ locking and files
    def _lock(self):
        try:
            from filelock import FileLock, Timeout  # only builds pay for this import
        except ImportError:  # the launcher starts Python with -S; site-packages on demand
            import site
            site.main()
            from filelock import FileLock, Timeout

        self.blobs.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".lock"), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise LockTimeout(f"build cache store {self.root} is locked by another process "
                              f"for more than {self.lock_timeout:g} s") from None
        return _Held(lock)

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
        manifests, _ = self._read_index()
        meta = self._read_meta()
        out = {}
        for key, desc in self._entries(manifests).items():
            seen: set[str] = set()
            self._reach(desc, self.blobs, seen)
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
            keep, links, broken = [], set(), []
            for key in wanted:
                seen: set[str] = set()
                if key in entries and self._reach(entries[key], self.blobs, seen):
                    keep.append(key)
                    links |= seen
                elif key in entries:
                    broken.append(key)
            if broken or problems:
                self._drop(manifests, broken)
                problems += [f"key {k} had missing blobs and was dropped" for k in broken]
            if not keep:
                return Snapshot(None, (), problems)
            src = self._private_dir("snapshots", "dockcache-snap")
            (src / "blobs" / "sha256").mkdir(parents=True)
            for h in links:
                _link_or_copy(self.blobs / h, src / "blobs" / "sha256" / h)
            (src / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            _atomic_json(src / "index.json", {"schemaVersion": 2, "manifests": [entries[k] for k in keep]})
            self._touch(keep)
            return Snapshot(src, keep, problems)

    def new_export_dir(self) -> Path:
        return self._private_dir("tmp", "dockcache-export")

    def publish(self, export_dir: Path, key: str) -> int:
        """Move one build's export into the store as `key`; returns bytes newly added."""
        try:
            manifests, _ = _read_json_index(export_dir / "index.json")
            entries = self._entries(manifests)
            desc = entries.get(key) or (manifests[-1] if manifests else None)
            seen: set[str] = set()
            if desc is None or not self._reach(desc, export_dir / "blobs" / "sha256", seen):
                raise StoreError(f"build export in {export_dir} is incomplete; not published")
            desc = {**desc, "annotations": {**desc.get("annotations", {}), REF: key}}
            with self._lock():
                added = self._move_blobs(export_dir, seen)
                current, _ = self._read_index()
                old = self._entries(current).get(key)
                kept = [m for m in current if m.get("annotations", {}).get(REF, "latest") != key]
                self._write_index([*kept, desc])
                self._record(key, str(desc.get("digest")))
                if old is not None:
                    self._collect([*kept, desc])
                return added
        finally:
            shutil.rmtree(export_dir, ignore_errors=True)

    def prune(self, *, max_size: int | None = None, older_than: float | None = None,
              now: float | None = None) -> PruneResult:
        now = time.time() if now is None else now
        with self._lock():
            before = self.size()
            manifests, _ = self._read_index()
            meta = self._read_meta()
            order = sorted(self._entries(manifests), key=lambda k: meta.get(k, {}).get("last_used", 0.0))
            gone = [k for k in order if older_than is not None
                    and now - meta.get(k, {}).get("last_used", 0.0) > older_than]
            kept = [k for k in order if k not in gone]
            while max_size is not None and kept and self._size_for(manifests, kept) > max_size:
                gone.append(kept.pop(0))
            self._drop(manifests, gone)
            count = self._collect([m for m in manifests if _ref(m) not in gone])
            self._clean_stale()
            after = self.size()
            return PruneResult(tuple(gone), count, before - after, before, after)

    def drop_keys(self, keys: Sequence[str]) -> int:
        """Remove keys and the blobs only they reached; returns blobs removed."""
        with self._lock():
            manifests, _ = self._read_index()
            self._drop(manifests, keys)
            return self._collect([m for m in manifests if _ref(m) not in keys])

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
            tmp = self.blobs / f".{h}.{uuid.uuid4().hex}.tmp"
            try:
                os.rename(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # content-addressed: a blob appears whole or not at all
            added += dst.stat().st_size
        return added

    def _drop(self, manifests: list[dict], keys: Sequence[str]) -> None:
        self._write_index([m for m in manifests if _ref(m) not in keys])
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
            if _ref(desc) in keys:
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
        path = base / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.lock.release()


def _ref(desc: dict) -> str:
    return str(desc.get("annotations", {}).get(REF, "latest"))


def _read_json_index(path: Path) -> tuple[list[dict], None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [m for m in data.get("manifests", []) if isinstance(m, dict)], None
    except (OSError, ValueError, AttributeError):
        raise StoreError(f"build export {path} has no readable index.json; not published") from None


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
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
