"""The OCI layout BuildKit's local cache uses, as plain functions: reachability of blobs,
index entries and their names, atomic writes. No locking here (see store.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

REF = "org.opencontainers.image.ref.name"
HIST = "~"  # KEY~1 is the build before KEY's; keys are sanitized to [a-z0-9._-], so never clash
_WALK = ("manifest", "index")  # media types whose blobs list further descriptors
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of nothing


def placeholder(path: Path) -> bool:
    """A zero-byte blob named by another digest stands for a layer of an image builds start
    FROM, which the store never holds (baselayers.py)."""
    try:
        return path.stat().st_size == 0 and path.name != EMPTY
    except OSError:
        return False


class StoreError(Exception):
    """A store problem, phrased as one line."""


class LockTimeout(StoreError):
    pass


def reach(desc: dict, blob_dir: Path, seen: set[str]) -> bool:
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
    return all(reach(c, blob_dir, seen) for c in children if isinstance(c, dict))


def ref(desc: dict) -> str:
    return str(desc.get("annotations", {}).get(REF, "latest"))


def base(ref: str) -> str:
    """The key an index entry belongs to (KEY~2 -> KEY)."""
    return ref.split(HIST, 1)[0]


def lineage(key: str, entries: dict[str, dict]) -> list[str]:
    """KEY, KEY~1, KEY~2, ... as far as the index holds them, newest first."""
    out = [key] if key in entries else []
    i = 1
    while out and f"{key}{HIST}{i}" in entries:
        out.append(f"{key}{HIST}{i}")
        i += 1
    return out


def written(blob_dir: Path, hexes: Iterable[str]) -> int:
    """Bytes of the blobs BuildKit wrote itself: a seeded link has a second name."""
    total = 0
    for h in hexes:
        try:
            st = (blob_dir / h).stat()
        except OSError:
            continue
        total += st.st_size if st.st_nlink == 1 else 0
    return total


def named(desc: dict, ref: str) -> dict:
    return {**desc, "annotations": {**desc.get("annotations", {}), REF: ref}}


def read_json_index(path: Path) -> tuple[list[dict], None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [m for m in data.get("manifests", []) if isinstance(m, dict)], None
    except (OSError, ValueError, AttributeError):
        raise StoreError(f"build export {path} has no readable index.json; not published") from None


def atomic_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(16).hex()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
