"""Does the shared builder take every image a build reads to be what this engine would?

The shared BuildKit takes an image a build names (baserefs.py) from a registry; the
session's engine takes the image it holds under that name, and pulls only what it lacks.
So, per image, before a build is routed:

- the engine does not hold it: the builder pulls it as the engine would (a registry
  only the engine reaches fails the build there, and fallback.py retries it here);
- dockcache loaded it into the engine from the shared builder: no registry has it (the
  builder keeps no images): the build stays here;
- the engine holds it: the shared builder is asked once which image the name resolves
  to (a build of `FROM name` that exports nothing: the image's metadata, no layer) and
  its digest compared with the engine's image. A name no registry serves (`docker
  load`, a build with `--builder default`, an earlier compose service) or serves as
  another image keeps the build here; the verdict is remembered per builder, name and
  image id, so the steady state asks the engine's socket for the image id (a few ms),
  never a docker CLI.

A build the shared builder failed and the engine then built (fallback.py) is remembered
too: its cache key, and the name it could not resolve, stay here for a day.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence

from shim.core import proc

KIND = "resolves"  # state kind: builder name -> "NAME@engine image id" -> {"digest", "same"}
FAILED = "-"  # ... "NAME@-": the builder failed to resolve NAME in a build (no image id needed)
MAX_AGE = 24 * 3600.0  # a registry may move a tag: asked again after a day
PROBE_TIMEOUT = 60.0
_FROM_DIGEST = re.compile(r"FROM (\S+?)@(sha256:[0-9a-f]{64})")
_UNSERVED = ("failed to resolve source metadata", "pull access denied", "not found", "insufficient_scope")


def why_here(real: str, inv, run, images: Sequence[str], *, ask: bool = True) -> str | None:
    """Why this build stays on the session's engine (explain's words), or None when the
    shared builder resolves every image as the engine would. `run`: builder.SharedRun.
    Without `ask` (explain before any build made the buildx builder) nothing is probed."""
    from shim.build.shared.route import tag_forms

    state, builder = run.state, run.target.name
    for image in images:
        if any(run.state.get("sharedloads", run.daemon, t) for t in tag_forms(image)):
            return f"{image}: an image dockcache loaded into this engine from the shared builder, which no registry serves"
        if state.get(KIND, builder, f"{image}@{FAILED}", max_age=MAX_AGE):
            return f"{image}: the shared builder could not resolve it in an earlier build"
    held = _held(real, inv, run, images)
    for image in images:
        found = held.get(image)
        if found is None:
            continue  # not in the engine: it would pull it too
        why = _verdict(real, inv, run, image, found, ask=ask)
        if why:
            return why
    return None


def failed_before(run, key: str) -> str | None:
    """Why a build of this cache key stays here: an earlier one failed on the shared builder
    for a reason this engine did not have (a name only the daemon could expand, a registry or
    entitlement only the engine has), or None."""
    known = run.state.get(KIND, run.target.name, f"key:{key}", max_age=MAX_AGE) if key else None
    return f"an earlier build of {key} failed on the shared builder ({known.get('why')})" if known else None


def remember_failed(run, ref: str | None, key: str, why: str) -> None:
    """A build the shared builder failed and this engine built: the next build of its key,
    and of any build naming the image it could not resolve, stays here (for a day)."""
    if key:
        run.state.put(KIND, run.target.name, f"key:{key}", {"why": why})
    if ref:
        run.state.put(KIND, run.target.name, f"{ref}@{FAILED}", {"same": False})
        short = ref.removeprefix("docker.io/").removeprefix("library/")
        if short != ref:
            run.state.put(KIND, run.target.name, f"{short}@{FAILED}", {"same": False})


def _verdict(real: str, inv, run, image: str, found: dict, *, ask: bool) -> str | None:
    key = f"{image}@{found['Id']}"
    known = run.state.get(KIND, run.target.name, key, max_age=MAX_AGE)
    if known is None and not ask:
        return None
    if known is None:
        digest, problem = probe(real, inv, run.target.name, image)
        if problem:
            return f"{image}: held by this engine; {problem}"
        known = {"digest": digest, "same": bool(digest) and digest in _digests(found)}
        if digest:
            run.state.put(KIND, run.target.name, key, known)
    if known.get("same"):
        return None
    if not known.get("digest"):
        return f"{image}: this engine's image, which no registry the shared builder reaches serves"
    return (f"{image}: this engine holds {found['Id'][:19]}, the shared builder resolves it to "
            f"{str(known['digest'])[:19]} (another image)")


def _digests(found: dict) -> set[str]:
    """The digests the engine knows its image by: its id (the manifest or index on a
    containerd store) and its repo digests (where a classic store records a pull)."""
    out = {str(found.get("Id", ""))}
    out |= {str(d).rpartition("@")[2] for d in found.get("RepoDigests") or [] if "@" in str(d)}
    return out - {""}


def _held(real: str, inv, run, images: Sequence[str]) -> dict[str, dict | None]:
    """The engine's image for each name (None: not held): on its socket, else the CLI."""
    from shim.core import engineapi

    got = engineapi.inspect_all(run.socket, images)
    if got is not None:
        return dict(zip(images, got))
    import json

    out: dict[str, dict | None] = {}
    for image in images:
        res = proc.run_docker(real, [*inv.globals, "image", "inspect", "--format", "{{json .}}", image], timeout=30)
        try:
            found = json.loads(res.stdout) if res.returncode == 0 else None
        except ValueError:
            found = None
        out[image] = found if isinstance(found, dict) and found.get("Id") else None
    return out


def probe(real: str, inv, builder: str, image: str) -> tuple[str | None, str | None]:
    """(the digest the shared builder resolves `image` to, or None when no registry it
    reaches serves it; None) — or (None, why it could not be asked)."""
    with tempfile.TemporaryDirectory(prefix="dockcache-probe-") as ctx:
        res = proc.run_docker(real, [*inv.globals, "buildx", "build", "--builder", builder, "--progress", "plain",
                                     "--output", "type=cacheonly", "-f", "-", ctx],
                              stdin=f"FROM {image}\n", timeout=PROBE_TIMEOUT)
    said = res.stdout + res.stderr
    m = _FROM_DIGEST.search(said)
    if res.returncode == 0 and m:
        return m.group(2), None
    if res.returncode != 0 and any(w in said for w in _UNSERVED):
        return None, None
    last = (res.stderr.strip().splitlines() or ["?"])[-1]
    return None, f"the shared builder did not say what it resolves it to ({last[:120]})"
