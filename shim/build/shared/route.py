"""Builds on the host's shared BuildKit: which builder, whether a build may go there, the plan.

Pure: no docker call, no file. Every session on a host builds on one long-lived buildkitd
(`dockcache builder up`), reached through a buildx builder with the `remote` driver, so
layers, cache mounts and concurrency are BuildKit's own and nothing is exported or
imported per build. The image reaches the session's own engine with `--load`, and only
when it changed (builder.py compares). A build that must stay on the session's own
builder keeps today's path, with the reason in `explain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from shim.core.records import dataclass

from shim.build.plan import BuildPlan
from shim.core.engine import BuildCaps
from shim.core.grammar import BuildArgs, Invocation, insert_before
from shim.core.state import short_hash

DEFAULT_SOCKET = "/run/dockcache/buildkitd.sock"  # where `dockcache builder up` listens by default
NAME_PREFIX = "dockcache-shared-"


TLS_FILES = ("ca.pem", "cert.pem", "key.pem")  # build.builder_tls: docker's DOCKER_CERT_PATH layout


@dataclass(frozen=True)
class Target:
    address: str  # unix:///… or tcp://…; "" for a buildx builder an operator named
    name: str  # the buildx builder the build gets (`--builder`)
    setting: str  # build.builder as configured (explain shows it)
    tls: str = ""  # a tcp builder's client certificates (build.builder_tls)


def target_for(setting: str, tls: str = "") -> Target | None:
    """The builder build.builder names, or None for "off"; `tls` counts for tcp:// only."""
    if setting == "off":
        return None
    if setting == "auto":
        setting_address = f"unix://{DEFAULT_SOCKET}"
        return Target(setting_address, builder_name(setting_address), setting)
    if setting.startswith("tcp://"):
        return Target(setting, builder_name(setting, tls), setting, tls)
    if setting.startswith("unix://"):
        return Target(setting, builder_name(setting), setting)
    return Target("", setting, setting)


def builder_name(address: str, tls: str = "") -> str:
    """One buildx builder per shared address and certificates (buildx keeps builders per
    docker config dir; new certificates get a new one)."""
    return NAME_PREFIX + short_hash(address + (f"|tls={tls}" if tls else ""), 12)


def tls_opts(tls: str) -> list[str]:
    """The remote driver's options for a TLS builder (pure: the files are not looked at)."""
    ca, cert, key = (f"{tls.rstrip('/')}/{f}" for f in TLS_FILES)
    return ["--driver-opt", f"cacert={ca},cert={cert},key={key}"]


def socket_of(address: str) -> str | None:
    return address[len("unix://"):] if address.startswith("unix://") else None


def why_local(build: BuildArgs, environ: Mapping[str, str]) -> str | None:
    """Why this build stays on the session's own builder, or None when it may be shared."""
    if build.builder or environ.get("BUILDX_BUILDER"):
        return f"you chose the builder {build.builder or environ['BUILDX_BUILDER']}: left on it"
    if build.outputs:
        return "you set --output: the result goes where you said, from the session's own builder"
    if build.push:
        return "--push: left on the session's builder, which also keeps the image in its engine"
    platforms = [p for k, v in build.options if k == "--platform" and v for p in v.split(",") if p.strip()]
    if len(platforms) > 1:
        return "several --platform values: one engine cannot load them all"
    return None


def from_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile's FROM lines name: not its own stages, not scratch, not a
    name built from an ARG (unknown until BuildKit expands it)."""
    stages: set[str] = set()
    out = []
    for raw in dockerfile.splitlines():
        words = raw.split()
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        rest = [w for w in words[1:] if not w.startswith("--")]
        if not rest:
            continue
        image = rest[0]
        if len(rest) >= 3 and rest[1].upper() == "AS":
            stages.add(rest[2].lower())
        if image.lower() not in stages and image != "scratch" and "$" not in image:
            out.append(image)
    return out


def tag_forms(ref: str) -> tuple[str, ...]:
    """A reference as a user may have tagged it (`x` is `x:latest`)."""
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref or ":" in last:
        return (ref, ref.removesuffix(":latest")) if ref.endswith(":latest") else (ref,)
    return ref, f"{ref}:latest"


def prints_id(build: BuildArgs) -> bool:
    """`-q` (or `--progress quiet`) prints the image id, and nothing else, on stdout."""
    return any(k == "--quiet" or (k == "--progress" and v == "quiet") for k, v in build.options)


def reports_id(build: BuildArgs) -> bool:
    """The image id is printed (`-q`) or written (`--iidfile`)."""
    return bool(build.iidfile or prints_id(build))


def loads_always(build: BuildArgs) -> bool:
    """Build once with --load, no comparison: the build cannot run twice unseen.

    A context or Dockerfile from stdin is read once; `-q` and a user `--iidfile` would show
    a second build; an untagged build has no local image to compare with; a user --load
    already loads."""
    return bool(build.context == "-" or build.file == "-" or build.load or not build.tags or reports_id(build))


def plan_shared(argv, inv: Invocation, build: BuildArgs, target: Target, key: str,
                caps: BuildCaps, *, thin: bool = False) -> BuildPlan:
    """The user's argv plus `--builder NAME` (and `--load` when it cannot be compared first).

    `thin` (a containerd-store engine): every build runs once into dockcache's OCI layout
    and loads only what the engine lacks (builder.py), so nothing needs `--load`: not an
    untagged build, not `-q`/`--iidfile` (the engine's id is reported), not a user's own
    `--load` (carried out by the thin load), not a context from stdin (read once)."""
    always = loads_always(build) and not thin
    added = ["--builder", target.name, *(["--load"] if always and not build.load else [])]
    reasons = [f"cache key {key}", f"engine: {caps.mode} ({caps.reason})",
               f"shared builder {target.address or target.name} (build.builder = {target.setting})"
               + (f", TLS with the certificates in {target.tls}" if target.tls else "") + ": "
               "BuildKit's own cache serves every session; no store import or export",
               "load: always (--load)" if always else _load_note(build, thin)]
    return BuildPlan(insert_before(argv, inv.args_start, added), key, reasons=tuple(reasons),
                     load_check=not always)


def _load_note(build: BuildArgs, thin: bool) -> str:
    if not thin:
        return "load: build first, then --load only if the image differs from this engine's"
    said = ("untagged: a thin load of the layers this engine lacks, every build" if not build.tags else
            "a thin load only if the image differs from this engine's")
    if reports_id(build):
        said += "; -q/--iidfile give this engine's image id"
    if build.load:
        said += "; your --load is that load"
    return f"load: {said}"


def first_and_load(argv, inv: Invocation, metadata: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(a build whose image stays in the builder, its digests in `metadata`; the same build
    with --load).

    `--provenance=false`: an attestation makes the result an index whose digest changes
    with every build (it records the build's times); without it the metadata carries the
    image's config digest, which an unchanged build repeats. A user's own --provenance or
    --attest comes later in argv and wins (then every build loads). The OCI worker keeps no
    image store, so the image is not kept under the user's tag in the shared builder."""
    first = insert_before(argv, inv.args_start,
                          ["--provenance=false", "--output", "type=image", "--metadata-file", metadata])
    return first, insert_before(argv, inv.args_start, ["--load"])


def unchanged(built: str, local_ids: list[str], remembered: Mapping | None) -> bool:
    """Does the engine already hold what the builder built, under every tag?

    `built` is the image config digest from the build's metadata. A classic image store
    names images by that digest; the containerd store by its manifest, so there the last
    load is remembered as (config digest, the id the engine gave it)."""
    if not built or not local_ids or any(not i for i in local_ids):
        return False
    if all(i == built for i in local_ids):
        return True
    return bool(remembered and remembered.get("config") == built
                and all(i == remembered.get("id") for i in local_ids))
