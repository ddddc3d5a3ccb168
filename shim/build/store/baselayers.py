"""The layers of the images a build starts FROM: never copied into the build store.

BuildKit's `--cache-to mode=max` exports the FROM image's layers with the build's own: a
project's first build into a fresh store wrote a 3.8 GB dev container base again (13.4 s
for one blob; cold `devcontainer up` 28.1 s against 14.7 s with plain docker). Every
daemon that can use those records has the image already (pulled from its registry, or
made by the engine), so the store keeps a zero-byte placeholder per base layer instead:
- before the build, the private export dir gets a placeholder named by each base layer's
  digest: BuildKit's local exporter skips a blob its destination already has (containerd's
  local content store only looks for the path), so it writes none of them (seen on
  Engine 26 / BuildKit 0.13: `writing layer sha256:… 0.0s done`);
- importing needs those layers only on a daemon that holds them: one whose engine has the
  base imports every step CACHED from a store without its blobs, while a daemon that lacks
  it fails the build ("content sha256:… not found"). So a stored build that reaches a
  placeholder is imported only when this engine's content store holds every such layer
  (store.py's snapshot asks `holder`).
The layers are read from the engine's containerd content store on disk: in the containerd
image store an image's id is its manifest's (or index's) digest. Where that store cannot be
read (another user's daemon, a remote or classic engine), nothing changes: the build
exports its base as before and imports only what has no placeholder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

KIND = "contentstore"  # state kind: daemon generation -> {"dir": the content store's blob dir or ""}
_CONTENT = "io.containerd.content.v1.content/blobs/sha256"
_INDEX = ("manifest.list", "image.index")
_REF_TYPE = "vnd.docker.reference.type"


def content_dir(socket_path: str | None, state, generation: str | None) -> Path | None:
    """The blob dir of the daemon's containerd content store when this process can read it
    (remembered per daemon generation: one /info request per daemon)."""
    if not socket_path or not generation:
        return None
    known = state.get(KIND, generation, "dir")
    if known is None:
        known = {"dir": _find(socket_path) or ""}
        state.put(KIND, generation, "dir", known)
    found = known.get("dir") or ""
    return Path(found) if found and os.access(found, os.R_OK | os.X_OK) else None


def _find(socket_path: str) -> str | None:
    """dockerd's own containerd (`<data-root>/containerd/daemon`), else the system's."""
    from shim.core.engineapi import request

    got = request(socket_path, "GET", "/info")
    try:
        info = json.loads(got[1]) if got and got[0] == 200 else {}
    except ValueError:
        return None
    status = json.dumps(info.get("DriverStatus") or [])
    if "io.containerd.snapshotter" not in status:
        return None  # the classic image store: no content store, BuildKit exports its own blobs
    root = str(info.get("DockerRootDir") or "")
    for candidate in (os.path.join(root, "containerd", "daemon", _CONTENT) if root else "",
                      os.path.join("/var/lib/containerd", _CONTENT)):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.R_OK | os.X_OK):
            return candidate
    return None


def layers(content: Path, image_ids: Iterable[str]) -> frozenset[str]:
    """The layer digests (hex) of these images, every platform the engine holds."""
    out: set[str] = set()
    for image_id in image_ids:
        out |= _walk(content, image_id.removeprefix("sha256:"), depth=0)
    return frozenset(out)


def _walk(content: Path, hexd: str, depth: int) -> set[str]:
    try:
        doc = json.loads((content / hexd).read_bytes()[:4_000_000])
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict):
        return set()
    if any(k in str(doc.get("mediaType", "")) for k in _INDEX) or "manifests" in doc:
        found: set[str] = set()
        for m in doc.get("manifests", []) if depth < 2 else []:
            if not isinstance(m, dict) or (m.get("annotations") or {}).get(_REF_TYPE) == "attestation-manifest":
                continue  # provenance, not layers a build starts from
            digest = str(m.get("digest", ""))
            if digest.startswith("sha256:"):
                found |= _walk(content, digest[7:], depth + 1)
        return found
    return {str(x.get("digest", ""))[7:] for x in doc.get("layers", [])
            if isinstance(x, dict) and str(x.get("digest", "")).startswith("sha256:")}


def holder(content: Path | None) -> Callable[[str], bool] | None:
    """Does this engine hold a blob (hex digest)? None when its content store cannot be read."""
    if content is None:
        return None
    return lambda hexd: (content / hexd).is_file()


# ------------------------------------------------------------ one build (command.py)

def content_store(local) -> Path | None:
    """The engine's content store, when its own BuildKit builds here (`local`: LocalBuilds)."""
    from shim.build.inputs import socket_of

    if local is None:
        return None
    return content_dir(socket_of(local), local.state, local.generation)


def of_build(build, environ: Mapping[str, str], local, content: Path | None) -> frozenset[str]:
    """The layers of this build's FROM images that the engine holds: placeholders in its export dir."""
    if content is None:
        return frozenset()
    return of_images(from_images(build, environ), local, content)


def of_dockerfile(text: str, build_args: Mapping[str, str], local, content: Path | None) -> frozenset[str]:
    """The same for a Dockerfile's text and its build args (a compose service, a bake target)."""
    if content is None or not text:
        return frozenset()
    return of_images(dockerfile_images(text, build_args), local, content)


def dockerfile_images(text: str | None, build_args: Mapping[str, str]) -> list[str]:
    """The FROM images of a Dockerfile's text (none when they cannot be told)."""
    from shim.build.inputs import bases

    if not text:
        return []
    other = pinned_elsewhere(text, None, build_args)
    return [i for i in dict.fromkeys(bases(text, build_args) or []) if i not in other]


def of_images(images: Iterable[str], local, content: Path | None) -> frozenset[str]:
    """The layers of these images (names) that the engine holds, every platform."""
    from shim.build.inputs import socket_of
    from shim.core.engineapi import image_id

    images = list(images)
    socket = socket_of(local)
    if content is None or not socket or not images:
        return frozenset()
    return layers(content, [i for i in (image_id(socket, name) for name in images) if i])


def read_dockerfile(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1_000_000)
    except OSError:
        return None


def from_images(build, environ: Mapping[str, str]) -> list[str]:
    """The FROM images of the Dockerfile this build reads (none when it cannot be told)."""
    from shim.build.inputs import bases
    from shim.build.mounts.sync import build_args

    text = _text(build)
    return list(dict.fromkeys(bases(text, build_args(build.options, environ)) or [])) if text else []


def reached(build, environ: Mapping[str, str]) -> list[str]:
    """Those of them the stages `--target` reaches start FROM: what the build pulls."""
    from shim.build.mounts.sync import build_args, option
    from shim.build.shared.baserefs import build_refs, contexts_of

    text = _text(build)
    if not text:
        return []
    froms = from_images(build, environ)
    refs = build_refs(text, build_args=build_args(build.options, environ), contexts=contexts_of(build.options),
                      target=option(build.options, "--target"))
    other = pinned_elsewhere(text, option(build.options, "--platform"), build_args(build.options, environ))
    return [i for i in refs.images if i in froms and i not in other]


def pinned_elsewhere(text: str, platform: str | None, build_args: Mapping[str, str] | None = None) -> set[str]:
    """Images a FROM line pins to a platform (`--platform=…`) other than the one a pull takes
    (the build's --platform, else this machine's): a pull would fetch the wrong variant, so
    BuildKit pulls them. `$BUILDPLATFORM` is this machine's, `$TARGETPLATFORM` the build's;
    another ARG is not known here. The image word is read as `bases` reads it (an ARG-named
    base expanded), so the names match those the pulls are asked for."""
    import platform as _platform

    from shim.build.inputs import from_lines
    from shim.images.prefetch import ARCH

    host = f"linux/{ARCH.get(_platform.machine(), _platform.machine())}"
    want = platform or host
    known = {"$BUILDPLATFORM": host, "${BUILDPLATFORM}": host, "$TARGETPLATFORM": want, "${TARGETPLATFORM}": want}
    out = set()
    lines = from_lines(text, build_args)
    for line in text.splitlines() if lines is None else lines:
        words = line.split()
        if len(words) < 3 or words[0].upper() != "FROM":
            continue
        pins = [w.split("=", 1)[1] for w in words[1:] if w.startswith("--platform=")]
        if pins and known.get(pins[-1], pins[-1]) != want:
            out.add(next((w for w in words[1:] if not w.startswith("--")), ""))
    return out


def _text(build) -> str | None:
    if build.file == "-":
        return None
    ctx = os.path.join(os.getcwd(), build.context or ".")
    return read_dockerfile(os.path.join(os.getcwd(), build.file) if build.file else os.path.join(ctx, "Dockerfile"))


def pull_missing(real: str, docker_globals: Sequence[str], build, environ: Mapping[str, str], local,
                 content: Path | None, snap, snapshot_again: Callable):
    """(the snapshot to import, a note). Stored builds were left out because this engine lacks
    their base layers: a new session's daemon has not pulled the base yet. The build would
    pull it anyway (a cold build needs every layer), so the FROM images the engine lacks are
    pulled first (docker pull, its output on stderr) and the snapshot is taken again: the
    records then import. A pull that fails leaves them out; the build then pulls (or fails)
    as it would have."""
    from shim.build.mounts.sync import option

    if snap is None or not snap.lacking or content is None:
        return snap, None
    return pull_first(real, docker_globals, from_images(build, environ), option(build.options, "--platform"),
                      environ, local, snap, snapshot_again)


def pull_first(real: str, docker_globals: Sequence[str], images: Sequence[str], platform: str | None,
               environ: Mapping[str, str], local, snap, snapshot_again: Callable):
    """pull_missing for the FROM images of a compose service or bake target whose stored
    builds were left out: those the engine lacks are pulled, then the snapshot is taken again."""
    missing = absent(images, local)
    if snap is None or not snap.lacking or not missing:
        return snap, None
    failed = _pull(real, docker_globals, missing, platform, environ, quiet=False)
    if failed:
        return snap, f"pull of {failed[0]} failed: the stored builds on it are not imported"
    snap.release()
    return snapshot_again(), f"pulled {', '.join(missing)} first: the stored builds need its layers"


def pull_absent(real: str, docker_globals: Sequence[str], images: Sequence[str], platform: str | None,
                environ: Mapping[str, str], local, content: Path | None, *, quiet: bool = False) -> str | None:
    """A first build on an engine that lacks its FROM images pulls them inside the build, and
    the export then writes every base layer into the store (a 1 GB+ base, again, on every
    project's first build). The build downloads them either way, so those the engine lacks
    are pulled first (the host's image cache, else docker pull): the export dir then gets
    placeholders for them. Only where placeholders work (`content`: the engine's content
    store can be read). A failed pull changes nothing: the build pulls (or fails) as it
    would have. The images stay in the engine, as a pull leaves them. A note for explain."""
    if content is None or (platform and "," in platform):
        return None
    missing = absent(images, local)
    if not missing:
        return None
    failed = _pull(real, docker_globals, missing, platform, environ, quiet=quiet)
    done = [i for i in missing if i not in failed]
    return f"pulled {', '.join(done)} before the build: its layers stay out of the store" if done else None


def absent(images: Iterable[str], local) -> list[str]:
    """Those of these images the engine does not hold (none when it cannot be asked)."""
    from shim.build.inputs import socket_of
    from shim.core.engineapi import image_id

    socket = socket_of(local)
    return [i for i in dict.fromkeys(images) if socket and not image_id(socket, i)]


def _pull(real: str, docker_globals: Sequence[str], images: Sequence[str], platform: str | None,
          environ: Mapping[str, str], *, quiet: bool) -> list[str]:
    """Pull through the host's image cache where one is up, the rest with docker pull (side
    by side; its progress on stderr when there is one image and the user watches). The
    images that failed."""
    from concurrent.futures import ThreadPoolExecutor

    from shim.core import proc
    from shim.core.grammar import parse_invocation
    from shim.images.command import ensure  # docs/images.md

    inv = parse_invocation(list(docker_globals))
    through_cache = ensure(inv.host, inv.context, images, environ, platform=platform)
    rest = [i for i in images if not through_cache.get(i)]
    shown = len(rest) == 1 and not quiet
    argv = ["pull", *(["--platform", platform] if platform else [])]

    def one(image: str) -> bool:
        got = proc.run_docker(real, [*docker_globals, *argv, *(["-q"] if not shown else []), image],
                              timeout=3600, progress=shown)
        return got.returncode == 0

    if len(rest) > 1 and not quiet:
        from shim.core.notice import say

        say(f"pulling {', '.join(rest)} before the build")
    with ThreadPoolExecutor(max_workers=4) as pool:
        ok = list(pool.map(one, rest))
    return [i for i, good in zip(rest, ok) if not good]


def note(bases: frozenset[str], snap, pulled: str | None) -> str | None:
    """explain: what stays out of the export, what was pulled, what was not imported."""
    parts = [pulled] if pulled else []
    if bases:
        parts.append(f"{len(bases)} layer(s) of the FROM images stay out of the export (this engine has them)")
    if snap and snap.lacking:
        parts.append(f"not imported: {', '.join(snap.lacking)} (their base layers are not in this engine)")
    return "; ".join(parts) or None
