"""Which stored builds this very daemon made: their records are in its own BuildKit cache.

Importing a key the daemon built itself only costs time (~0.2 s per build here), and a
step matched through an import is re-exported from the imported records instead of the
builder's own (moby/buildkit#1906, ../shared/BUILDKIT.md "Re-exporting after a partly
cached build"). So while every build the store keeps for a key came from this daemon,
the import is left out. A daemon is told apart from the next one on the same socket
path (every session its own dockerd) by the socket file itself: a restarted daemon
makes a new one. Engines reached over TCP or through a non-default builder always import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shim.core.daemon import daemon_generation  # noqa: F401 - where build code has always found it
from shim.core.state import State, state_dir

TRUST = 24 * 3600.0  # BuildKit's GC may drop unused records: after a day, import again
REMEMBERED = 16  # digests kept per key and daemon


def forget_daemon(inv, environ: Mapping[str, str]) -> None:
    """`docker builder|buildx|system prune` empties BuildKit's cache: what this daemon was
    remembered to hold is gone, so its next builds import again. Returns (docker runs the
    command unchanged) whatever happens here: the prune itself is what matters."""
    if inv.builder or environ.get("BUILDX_BUILDER"):
        return  # another builder's cache: the daemon's own is untouched
    try:
        generation = daemon_generation(inv.host, inv.context, environ)
        if generation:
            state = State(state_dir(environ))
            for kind in ("localbuilds", "mountseeds", "mountsaved"):  # mountsync.py: cache mounts are gone too
                state.forget_all(kind, generation)
    except Exception as exc:  # noqa: BLE001 - the prune runs regardless; say what was missed
        from shim.core.notice import say
        say(f"could not forget this daemon's build records ({type(exc).__name__}: {exc}); "
            "its next build may not import the shared cache")


def for_engine(inv, driver: str, builder: str | None, environ: Mapping[str, str]) -> "LocalBuilds | None":
    """What this daemon's own BuildKit holds: only knowable for the docker driver on a
    local socket (`inv` names docker's -H/--context; `builder` any builder chosen)."""
    if driver != "docker" or builder or environ.get("BUILDX_BUILDER"):
        return None
    generation = daemon_generation(inv.host, inv.context, environ)
    return LocalBuilds(State(state_dir(environ)), generation) if generation else None


class LocalBuilds:
    def __init__(self, state: State, generation: str):
        self.state, self.generation = state, generation

    def _digests(self, key: str) -> list[str]:
        got = self.state.get("localbuilds", self.generation, key, max_age=TRUST)
        return list(got.get("digests", [])) if got else []

    def holds(self, key: str, lineage: Sequence[str]) -> bool:
        """True when every stored build of the key was made by this daemon."""
        mine = set(self._digests(key))
        return bool(lineage) and all(d in mine for d in lineage)

    def remember(self, key: str, digest: str) -> None:
        digests = [digest, *(d for d in self._digests(key) if d != digest)][:REMEMBERED]
        self.state.put("localbuilds", self.generation, key, {"digests": digests})
