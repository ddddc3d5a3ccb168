"""What build caching an engine can do, detected once per endpoint and builder, cached.

buildx's `docker` driver exports local/registry cache only on the containerd image
store; buildx itself decides by the worker label
`org.mobyproject.buildkit.worker.snapshotter`, and so do we (../shared/BUILDKIT.md).
Other drivers (docker-container, remote, kubernetes) export to every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from shim.core.records import asdict, dataclass

from shim.core.state import State

CAPS_TTL = 3600.0
SNAPSHOTTER_LABEL = "org.mobyproject.buildkit.worker.snapshotter"


@dataclass(frozen=True)
class BuildCaps:
    mode: str  # "full" (import + export) | "import-only" | "none"
    reason: str
    driver: str = ""
    buildx: str = ""


def legacy_reason(environ: Mapping[str, str]) -> str | None:
    if environ.get("DOCKER_BUILDKIT", "").strip().lower() in ("0", "false"):
        return "DOCKER_BUILDKIT=0 selects the legacy builder, which cannot use a BuildKit cache"
    return None


def detect(docker: Callable, builder: str | None) -> BuildCaps:
    """`docker` runs a docker command (argv tail) and returns a proc.Result.

    The two calls run side by side: each is a CLI plus plugin start (~70 ms here), paid by
    the first build of every new session."""
    import threading

    got: dict = {}
    inspect = threading.Thread(target=lambda: got.setdefault(
        "inspect", docker("buildx", "inspect", *(["--builder", builder] if builder else []))))
    inspect.start()
    ver = docker("buildx", "version")
    inspect.join()
    if ver.returncode != 0:
        return BuildCaps("none", "buildx is not installed: the legacy builder cannot use a BuildKit cache")
    buildx = ver.stdout.split()[1] if len(ver.stdout.split()) > 1 else ver.stdout.strip()
    res = got["inspect"]
    if res.returncode != 0:
        return BuildCaps("none", f"buildx inspect failed: {_first_line(res.stderr)}", buildx=buildx)
    driver = _field(res.stdout, "Driver")
    if driver != "docker":
        return BuildCaps("full", f"buildx driver '{driver}' exports cache", driver, buildx)
    if SNAPSHOTTER_LABEL in res.stdout:
        return BuildCaps("full", "docker driver on the containerd image store exports cache", driver, buildx)
    return BuildCaps("import-only", "docker driver on the classic image store cannot export cache "
                     "(\"Cache export is not supported for the docker driver\"); importing only",
                     driver, buildx)


def cached_caps(state: State, endpoint: str, builder: str | None, docker: Callable) -> BuildCaps:
    key = f"{endpoint}|{builder or ''}"
    hit = state.get("engine", endpoint, key, max_age=CAPS_TTL)
    if hit:
        return BuildCaps(hit["mode"], hit["reason"], hit.get("driver", ""), hit.get("buildx", ""))
    caps = detect(docker, builder)
    if not caps.reason.startswith("buildx inspect failed"):
        state.put("engine", endpoint, key, asdict(caps))
    return caps


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]
