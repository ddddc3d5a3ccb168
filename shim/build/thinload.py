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
is seeded with hard links to the blobs of the most recent others (same base image ->
nothing sent again), and after each build only the current image's blobs are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tarfile
from pathlib import Path

from shim.core.state import short_hash

SEED_FROM = 3  # sibling layouts a new one links blobs from


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
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f"{self.dir.name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield self

    def blob_names(self) -> set[str]:
        try:
            return {f"sha256:{n}" for n in os.listdir(self.blobs)}
        except OSError:
            return set()

    def seed(self) -> None:
        """Hard links to the blobs of the newest sibling layouts, so a new tag on the same
        base sends nothing BuildKit already sent for another."""
        if (self.dir / "index.json").exists():
            return
        siblings = sorted((d for d in self.dir.parent.iterdir() if d.is_dir() and d != self.dir
                           and (d / "index.json").exists()), key=lambda d: d.stat().st_mtime, reverse=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        for other in siblings[:SEED_FROM]:
            for name in os.listdir(other / "blobs" / "sha256"):
                with contextlib.suppress(OSError):
                    os.link(other / "blobs" / "sha256" / name, self.blobs / name)

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

    def _blob(self, digest: str) -> Path:
        return self.blobs / digest.split(":", 1)[1]

    def write_tar(self, path: str, entry: dict, manifest: dict, omit: set[str]) -> None:
        """oci-layout, an index of this image only, its manifest, config and the layers not in `omit`."""
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [entry]}).encode()
        wanted = [entry["digest"], manifest["config"]["digest"],
                  *(layer["digest"] for layer in manifest["layers"] if layer["digest"] not in omit)]
        with tarfile.open(path, "w") as tar:
            tar.add(self.dir / "oci-layout", "oci-layout")
            info = tarfile.TarInfo("index.json")
            info.size = len(index)
            import io
            tar.addfile(info, io.BytesIO(index))
            for digest in wanted:
                tar.add(self._blob(digest), f"blobs/sha256/{digest.split(':', 1)[1]}")

    def keep_only(self, manifest_digest: str, manifest: dict) -> None:
        """Drop the blobs of earlier builds of this tag (the layout holds one image)."""
        keep = {manifest_digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
        for name in self.blob_names() - keep:
            with contextlib.suppress(OSError):
                os.unlink(self._blob(name))


def layers(manifest: dict) -> list[str]:
    return [layer["digest"] for layer in manifest.get("layers", [])]
