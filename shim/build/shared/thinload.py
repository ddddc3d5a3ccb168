"""The thin load: into a containerd-store engine, only the layers it lacks.

`--load` streams the whole image, base layers included, builder -> CLI -> engine, even
when one small layer changed (docker/buildx#626; ~9 s for a 320 MB image on these
machines). Instead the build exports an OCI layout into a directory of ours
(`--output type=oci,tar=false`): BuildKit sends only the blobs the directory lacks
(0.6 s instead of 7.7 s for that image, measured). A tar of the layout without the layers
the engine already holds is then `docker load`ed: Engine 26's containerd image store
takes them from its own content store. A layer it turns out not to hold leaves no image
(and load still says "Loaded"), so the tag is checked against the manifest, and the
full layout is loaded instead. The classic image store cannot load a layout: it keeps
`--load` (builder.py).

One layout directory per tag, beside the build store (`<build.store>-load/`); a new one
is seeded with hard links to the blobs of the layout that last held each of its FROM
images (`.bases/`, host-wide like the layouts) and of the most recent others (same base
image -> nothing sent again), and after each build only the current image's blobs are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from shim.core.state import short_hash

SEED_FROM = 3  # sibling layouts a new one links blobs from
KEEP_LAYOUTS = 64  # layouts kept beside the store: a new one beyond them removes the oldest
KEEP_DAYS = 30  # ... and any not built into for this long
BASES = ".bases"  # FROM image -> the layout that last held its blobs
UNFINISHED_AGE = 3600.0  # a layout without an image (a failed build) is removed after this
INPUTS = "inputs"  # in a layout: the fingerprint of what its image was built from (inputs.py)
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


class Layout:
    def __init__(self, root: Path, tag: str):
        self.dir = root / short_hash(tag, 16)
        self.tag = tag

    @property
    def blobs(self) -> Path:
        return self.dir / "blobs" / "sha256"

    @contextlib.contextmanager
    def locked(self):
        """One build of a tag at a time writes its layout (a second waits)."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        fd = _lock_file(self.dir.parent / f"{self.dir.name}.lock", wait=True)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            yield self
        finally:
            os.close(fd)

    def blob_names(self) -> set[str]:
        try:
            return {f"sha256:{n}" for n in os.listdir(self.blobs)}
        except OSError:
            return set()

    def seed(self, bases: Sequence[str] = ()) -> None:
        """Hard links to the blobs of the layouts that last held these FROM images and of
        the newest siblings, so a new tag on a base sends nothing BuildKit already sent for
        another (a 320 MB base: 1.7 s of export)."""
        if (self.dir / "index.json").exists():
            return
        others = [d for d in self.dir.parent.iterdir() if d.is_dir() and d != self.dir and not d.name.startswith(".")]
        siblings = sorted((d for d in others if (d / "index.json").exists()), key=_mtime, reverse=True)
        siblings = _pruned(siblings)
        _drop_unfinished([d for d in others if d not in siblings and not (d / "index.json").exists()])
        held = [d for d in (self._holder(b) for b in bases) if d is not None and d in siblings]
        self.blobs.mkdir(parents=True, exist_ok=True)
        for other in dict.fromkeys([*held, *siblings[:SEED_FROM]]):
            try:
                names = os.listdir(other / "blobs" / "sha256")
            except OSError:  # another session's prune removed it since the listing: fewer links
                continue
            for name in names:
                with contextlib.suppress(OSError):
                    os.link(other / "blobs" / "sha256" / name, self.blobs / name)

    def _holder(self, base: str) -> Path | None:
        try:
            name = (self.dir.parent / BASES / short_hash(base, 16)).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return self.dir.parent / name if name and "/" not in name else None

    def holds(self, bases: Sequence[str]) -> None:
        """Remember this layout as the one that holds these FROM images' blobs now."""
        folder = self.dir.parent / BASES
        with contextlib.suppress(OSError):
            folder.mkdir(exist_ok=True)
            for base in bases:
                tmp = folder / f".{short_hash(base, 16)}.{os.getpid()}"
                tmp.write_text(self.dir.name, encoding="utf-8")
                os.replace(tmp, folder / short_hash(base, 16))

    def image(self) -> tuple[dict, dict] | None:
        """(the index entry, the manifest) of the image just exported."""
        try:
            index = json.loads((self.dir / "index.json").read_text())
            entry = index["manifests"][-1]
            manifest = json.loads(self._blob(entry["digest"]).read_text())
            manifest["config"]["digest"], [layer["digest"] for layer in manifest["layers"]]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None  # also an index (a user's --provenance/--sbom): the caller loads the plain way
        return entry, manifest

    def built_from(self) -> str | None:
        """The inputs fingerprint of the build that exported the layout's image, if known."""
        try:
            return (self.dir / INPUTS).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def remember_inputs(self, fp: str | None) -> None:
        """After an export: what it was built from (none known: nothing, so nothing is predicted)."""
        path = self.dir / INPUTS
        with contextlib.suppress(OSError):
            if not fp:
                path.unlink(missing_ok=True)
                return
            tmp = self.dir / f".{INPUTS}.{os.getpid()}"
            tmp.write_text(fp, encoding="utf-8")
            os.replace(tmp, path)

    def _blob(self, digest: str) -> Path:
        return self.blobs / digest.split(":", 1)[1]

    def write_tar(self, path: str, entry: dict, manifest: dict, omit: set[str]) -> None:
        """oci-layout, an index of this image only, its manifest, config and the layers not in `omit`.
        Read while a build may export into the layout: only blobs (content-addressed, kept
        until `keep_only`), never its oci-layout or index.json files."""
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [entry]}).encode()
        wanted = [entry["digest"], manifest["config"]["digest"],
                  *(layer["digest"] for layer in manifest["layers"] if layer["digest"] not in omit)]
        import io

        with tarfile.open(path, "w") as tar:
            for name, data in (("oci-layout", OCI_LAYOUT), ("index.json", index)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for digest in wanted:
                tar.add(self._blob(digest), f"blobs/sha256/{digest.split(':', 1)[1]}")

    def keep_only(self, manifest_digest: str, manifest: dict) -> None:
        """Drop the blobs of earlier builds of this tag (the layout holds one image)."""
        keep = {manifest_digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
        for name in self.blob_names() - keep:
            with contextlib.suppress(OSError):
                os.unlink(self._blob(name))


def _mtime(d: Path) -> float:
    """0 for a layout removed since the listing (_pruned then drops it)."""
    try:
        return d.stat().st_mtime
    except OSError:
        return 0.0


def _pruned(siblings: list[Path]) -> list[Path]:
    """The layouts left after the oldest beyond KEEP_LAYOUTS and those unused for KEEP_DAYS
    are removed (newest first in, newest first out). One being written (its lock held) stays."""
    import shutil
    import time

    cutoff = time.time() - KEEP_DAYS * 86400
    kept = []
    for i, d in enumerate(siblings):
        try:
            old = i >= KEEP_LAYOUTS or d.stat().st_mtime < cutoff
        except OSError:
            continue
        if not old or not _remove_unless_busy(d, shutil.rmtree):
            kept.append(d)
    return kept


def _drop_unfinished(dirs: list[Path]) -> None:
    """Layouts with no image (their build failed) hold only links to others' blobs, and
    would keep those on disk for ever: gone once an hour old, unless a build writes one."""
    import shutil
    import time

    cutoff = time.time() - UNFINISHED_AGE
    for d in dirs:
        made = _mtime(d)
        if made and made < cutoff:
            _remove_unless_busy(d, shutil.rmtree)


def _remove_unless_busy(d: Path, remove) -> bool:
    try:
        fd = _lock_file(d.parent / f"{d.name}.lock", wait=False)
    except OSError:
        return False
    if fd is None:
        return False
    try:
        remove(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(d.parent / f"{d.name}.lock")
        return True
    finally:
        os.close(fd)


def _lock_file(path: Path, *, wait: bool) -> int | None:
    """The lock file's descriptor, flocked; None when busy and not `wait`. A remover
    unlinks the file while holding it: a lock taken on the unlinked file is no lock (the
    next comer makes a new file), so it is taken again until it holds the file at `path`."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except BlockingIOError:
            os.close(fd)
            return None
        except FileNotFoundError:
            current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            return fd
        os.close(fd)


def usage(root: Path) -> tuple[int, int]:
    """(layouts, bytes on disk) beside the store; a blob linked into several layouts counts once."""
    seen: dict[tuple[int, int], int] = {}
    count = 0
    with contextlib.suppress(OSError):
        for d in root.iterdir():
            if not (d / "index.json").exists():
                continue
            count += 1
            with contextlib.suppress(OSError):
                for entry in os.scandir(d / "blobs" / "sha256"):
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        seen[(st.st_dev, st.st_ino)] = st.st_size
    return count, sum(seen.values())


def layers(manifest: dict) -> list[str]:
    return [layer["digest"] for layer in manifest.get("layers", [])]
