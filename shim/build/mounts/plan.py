"""Which cache mounts to seed before a build and save after it, and the two tiny builds
that do it (../shared/BUILDKIT.md "Cache mounts"). Pure: facts in, plan and text out.

Seed: one step on the image at the root of a mount's own stage (the build is about to
need it anyway; `scratch` has no `cp`), `USER 0` whatever the base says, each mount's
stored contents bound in from a named build context and copied into a cache mount with
the same id, sharing, uid, gid and mode; ownership and mode are put back after the copy
because a build context arrives owned by root. Save: the same mount copied out to a
`--output type=local` dir. A new `DOCKCACHE_BUST` each time makes the step run: never
`--no-cache`, under which BuildKit hands the step an empty mount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from shim.core.records import dataclass, replace

from shim.build.mounts.parse import CacheMount, Found
from shim.build.mounts.store import PACKED_NAME, mount_name

SEED_AT, SAVE_FROM, OUT = "/dockcache-m", "/dockcache-s", "/dockcache-out"


@dataclass(frozen=True)
class Planned:
    mount: CacheMount
    name: str  # in the store (mountstore.mount_name)
    seed: bool
    save: bool
    stored: str | None = None  # the generation the store holds


@dataclass(frozen=True)
class MountPlan:
    mounts: tuple[Planned, ...] = ()
    reasons: tuple[str, ...] = ()
    platform: str | None = None  # the user's --platform, passed on to seed and save

    @property
    def seeds(self) -> tuple[Planned, ...]:
        return tuple(p for p in self.mounts if p.seed)

    @property
    def saves(self) -> tuple[Planned, ...]:
        return tuple(p for p in self.mounts if p.save)


def unusable(*, caps_mode: str, generation: str | None, no_cache: bool, enabled: bool) -> str | None:
    """Why this build's cache mounts are left to the daemon, or None."""
    if not enabled:
        return "cache mounts: not carried (build.cache_mounts is off)"
    if caps_mode != "full":
        return "cache mounts: this engine/builder cannot seed and save them; they stay in this daemon"
    if generation is None:
        return ("cache mounts: carried only for the docker driver on a local socket "
                "(this builder's identity is unknown); they stay in this daemon")
    if no_cache:
        return "cache mounts: --no-cache gives every step an empty mount; nothing seeded or saved"
    return None


def plan_mounts(found: Found, *, key: str, platform: str, user_platform: str | None,
                stored: Mapping[str, str], held: Mapping[str, str], why_not: str | None) -> MountPlan:
    """stored: store name -> current generation; held: store name -> generation this daemon
    was seeded with or saved (absent: it never had this mount from dockcache)."""
    if found.reason:
        return MountPlan(reasons=(f"cache mounts: {found.reason}",))
    reasons = [f"cache mounts: {s}" for s in found.skipped]
    if not found.mounts:
        return MountPlan(reasons=tuple(reasons))
    if why_not:
        ids = ", ".join(m.id for m in found.mounts)
        return MountPlan(reasons=(f"cache mounts found: {ids}", *reasons, why_not))
    if base_of(found.mounts) is None:
        return MountPlan(reasons=(*reasons, "cache mounts: every stage using them starts FROM scratch "
                                  "(no image with `cp` to seed and save them with); not carried"))
    out = []
    base = base_of(found.mounts)
    for m in (replace(m, base=m.base or base) for m in found.mounts):
        name = mount_name(key, m.id, platform)
        gen = stored.get(name)
        problem = _unsafe(m)
        if problem:
            out.append(Planned(m, name, False, False, gen))
            reasons.append(f"cache mount {m.id}: {problem}; not carried")
            continue
        # Once per daemon: its own contents are warm for its own work, and re-seeding
        # whenever another session published would cost a seed on every alternation.
        seed = gen is not None and name not in held
        state = ("seeded from the store before the build" if seed else
                 "already in this daemon" if gen is not None else "nothing stored yet")
        reasons.append(f"cache mount {m.id} -> {m.target}: {state}; saved after the build")
        out.append(Planned(m, name, seed, True, gen))
    return MountPlan(tuple(out), tuple(reasons), user_platform)


def _unsafe(m: CacheMount) -> str | None:
    if any(c in m.id or c in (m.base or "") for c in ",\"'\\$ \t\n"):
        return "its id or base image has characters the seed step would have to quote"
    return None


def _option(m: CacheMount, at: str) -> str:
    fields = [f"id={m.id}", f"target={at}", f"sharing={m.sharing}"]
    fields += [f"uid={m.uid}"] if m.uid is not None else []
    fields += [f"gid={m.gid}"] if m.gid is not None else []
    fields += [f"mode={m.mode}"] if m.mode is not None else []
    return "--mount=type=cache," + ",".join(fields)


def _restore(m: CacheMount, at: str) -> str:
    owner = f" && chown -R {m.uid or 0}:{m.gid or 0} {at}" if m.uid or m.gid else ""
    return f"{owner} && chmod {m.mode or '0755'} {at}"


def seed_context(i: int) -> str:
    return f"dockcache-seed-{i}"


def base_of(mounts: Sequence[CacheMount]) -> str | None:
    """One image for the whole step: any base with `sh` and `cp` serves every mount."""
    return next((m.base for m in mounts if m.base), None)


NO_UNPACK = 75  # the seed step's exit code when the base image cannot unpack a packed mount


def seed_dockerfile(mounts: Sequence[CacheMount], packed: Sequence[bool] = ()) -> str:
    """One step: named context `dockcache-seed-i` into mount i (`--output type=cacheonly`),
    unpacked when packed (mountstore.py), else copied. One step, not a stage per mount: a
    stage per mount cost 3-4 s more on a 1.5 GB base (measured on the engine pair)."""
    flags = " ".join(f"{_option(m, f'{SEED_AT}{i}')} --mount=type=bind,from={seed_context(i)},target={SAVE_FROM}{i}"
                     for i, m in enumerate(mounts))
    fills = " && ".join(_fill(m, i, bool(packed[i:i + 1] and packed[i])) for i, m in enumerate(mounts))
    return f"FROM {base_of(mounts)}\nUSER 0\nARG DOCKCACHE_BUST\nRUN {flags} {fills}\n"


def _fill(m: CacheMount, i: int, packed: bool) -> str:
    at, src = f"{SEED_AT}{i}", f"{SAVE_FROM}{i}"
    put = (f"{{ tar -xzf {src}/{PACKED_NAME} -C {at} || exit {NO_UNPACK}; }}" if packed
           else f"cp -a {src}/. {at}/")
    return put + _restore(m, at)


def save_dockerfile(mounts: Sequence[CacheMount]) -> str:
    """Mount i's contents land in `DEST/i` with `--output type=local,dest=DEST`."""
    flags = " ".join(_option(m, f"{SEED_AT}{i}") for i, m in enumerate(mounts))
    copies = " && ".join(f"mkdir -p {OUT}/{i} && cp -a {SEED_AT}{i}/. {OUT}/{i}/" for i in range(len(mounts)))
    return (f"FROM {base_of(mounts)} AS dockcache\nUSER 0\nARG DOCKCACHE_BUST\nRUN {flags} {copies}\n"
            f"FROM scratch\nCOPY --from=dockcache {OUT} /\n")
