"""Pulls through the host's image caches: the one I/O step the run, build and compose flows
call before docker (`ensure`), and `docker pull` itself (`execute_pull`).

Fail-open and quiet: an image whose registry has no cache, a cache that is down or cannot
read the image (a private repository), an engine that is not on this host's unix socket,
any error: nothing changes and the engine pulls as it always did, with at most one line.
The steady state adds no docker call: an image seen in the engine is remembered per
daemon (`imgseen` in the state dir) for a day.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence

from shim.images.route import Route, decide, wanted

SEEN = "imgseen"
SEEN_TTL = 24 * 3600.0


class Engine:
    """The daemon a command reaches: its unix socket (None: not on this host) and its key."""

    def __init__(self, host: str | None, context: str | None, environ: Mapping[str, str]):
        from shim.core.daemon import daemon_key, socket_path

        path = socket_path(host, context, environ)
        self.socket = path if path and os.path.exists(path) else None
        self.key = daemon_key(host, context, environ)


def caches_up(environ: Mapping[str, str]) -> dict[str, dict]:
    """registry -> the cache's index entry (address, dir), for the caches that are up; {} when images are off."""
    from shim.core.config import load
    from shim.images.caches import up

    config = load(environ, os.getcwd())
    if not (config["enabled"] and config["images.enabled"]):
        return {}
    return up(config["images.root"])


def ensure(host: str | None, context: str | None, images: Iterable[str], environ: Mapping[str, str], *,
           asked: Iterable[str] = (), platform: str | None = None, style: str = "quiet") -> dict[str, bool]:
    """Pull each image the engine lacks (and each in `asked`) through its registry's cache.
    image -> pulled through the cache; never raises. style: quiet | run (docker run's stderr lines)."""
    try:
        caches = caches_up(environ)
        if not caches:
            return {}
        engine = Engine(host, context, environ)
        routes = plan_routes(engine, images, caches, set(asked), environ)
        return pull_all(engine, routes, caches, environ, platform=platform, style=style)
    except Exception as exc:  # noqa: BLE001 - the engine pulls as it always did
        from shim.core.config import ConfigError

        if not isinstance(exc, ConfigError):  # the flow after this one says that line
            _say(f"image cache not used ({type(exc).__name__}: {exc})")
        return {}


def plan_routes(engine: Engine, images: Iterable[str], caches: Mapping[str, dict], asked: set[str],
                environ: Mapping[str, str]) -> list[Route]:
    """The routes through a cache, after the engine was asked only about those candidates."""
    addresses = {k: str(v["address"]) for k, v in caches.items()}
    routes = [decide(i, addresses, present=None, asked=i in asked, local=engine.socket is not None)
              for i in dict.fromkeys(images)]
    out = []
    for r in wanted(routes):
        if r.image in asked or not _present(engine, r.image, environ):
            out.append(r)
    return out


def _present(engine: Engine, image: str, environ: Mapping[str, str]) -> bool:
    """Remembered, else one image inspect on the socket; unsure counts as present (pull nothing)."""
    from shim.core import engineapi
    from shim.core.state import State, state_dir

    state = State(state_dir(environ))
    if state.get(SEEN, engine.key, image, max_age=SEEN_TTL):
        return True
    try:
        found = engineapi.inspect(engine.socket, image)
    except engineapi.Unanswered:
        return True
    if found is not None:
        state.put(SEEN, engine.key, image, {"id": found["Id"]})
    return found is not None


def pull_all(engine: Engine, routes: Sequence[Route], caches: Mapping[str, dict], environ: Mapping[str, str], *,
             platform: str | None, style: str) -> dict[str, bool]:
    """The pulls side by side (compose's services, a build's stages), those sharing a layer
    one after the other (shim/images/order.py); results per image."""
    if not routes:
        return {}
    from shim.images.pull import Pulled

    results: dict[str, Pulled] = {}
    if len(routes) == 1:
        results[routes[0].image] = _one(engine, routes[0], caches, platform, style)
    else:
        _side_by_side(engine, routes, caches, platform, results)
    _after(engine, routes, results, environ)
    return {r.image: results.get(r.image) is not None and results[r.image].ok for r in routes}


def _side_by_side(engine: Engine, routes: Sequence[Route], caches: Mapping[str, dict], platform: str | None,
                  results: dict) -> None:
    """Every manifest first (which layers each image has), then each pull once those it waits for are done."""
    import threading

    from shim.images.order import layers_of, waits

    manifests: dict[str, object] = {}
    _each(routes, lambda r: manifests.__setitem__(r.image, _manifest(r, platform)))
    after = waits({r.image: layers_of(m) if isinstance(m := manifests.get(r.image), dict) else [] for r in routes})
    done = {r.image: threading.Event() for r in routes}

    def work(r: Route) -> None:
        def wait() -> None:
            for image in after.get(r.image, ()):
                done[image].wait()
        try:
            got = manifests.get(r.image)
            results[r.image] = got if not isinstance(got, dict) else _one(engine, r, caches, platform, "quiet", got,
                                                                           before_pull=wait)
        finally:
            done[r.image].set()
    _each(routes, work)


def _each(routes: Sequence[Route], work) -> None:
    import threading

    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in routes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _manifest(route: Route, platform: str | None):
    """The manifest the engine will pull, or the Pulled failure that ends this route."""
    from shim.images.prefetch import Unavailable, image_manifest
    from shim.images.pull import Pulled

    try:
        return image_manifest(route.via, route.ref.path, route.ref.tag, platform=platform)
    except Unavailable as exc:  # private, unknown, or a cache that does not answer
        return Pulled(False, str(exc), down="cache at" in str(exc))
    except Exception as exc:  # noqa: BLE001 - a thread must not take the command down
        return Pulled(False, f"{type(exc).__name__}: {exc}")


def _one(engine: Engine, route: Route, caches: Mapping[str, dict], platform: str | None, style: str,
         manifest: dict | None = None, *, before_pull=None):
    """Fill the cache with the image (where it must be filled first), then the engine's pull;
    `before_pull` waits for the pulls this one waits for (a fill does not)."""
    from shim.images.prefetch import Unavailable, warm
    from shim.images.pull import Pulled, pull
    from shim.images.progress import Printer

    try:
        printer = Printer(route, style)
        entry = caches[route.ref.registry]
        try:
            warm(route.via, route.ref.path, route.ref.tag, os.path.join(str(entry.get("dir")), "data"),
                 platform=platform, fill=entry.get("fill") != "stream", manifest=manifest)
        except Unavailable as exc:  # private, unknown, or a cache that does not answer
            return Pulled(False, str(exc), down="cache at" in str(exc))
        if before_pull is not None:
            before_pull()
        printer.start()
        return pull(engine.socket, route, platform=platform, show=printer.show)
    except Exception as exc:  # noqa: BLE001 - a thread must not take the command down
        return Pulled(False, f"{type(exc).__name__}: {exc}")


def _after(engine: Engine, routes: Sequence[Route], results: Mapping, environ: Mapping[str, str]) -> None:
    """Remember what is now present, say one line for a cache that is down, record metrics."""
    from shim.core import engineapi
    from shim.core.state import State, state_dir

    state = State(state_dir(environ))
    pulled, failed, size = [], [], 0
    for r in routes:
        got = results.get(r.image)
        if got is not None and got.ok:
            found = engineapi.inspect_all(engine.socket, [r.image])
            info = (found or [None])[0] or {}
            size += int(info.get("Size") or 0)
            if info:
                state.put(SEEN, engine.key, r.image, {"id": info.get("Id")})
            pulled.append(r.image)
        else:
            failed.append({"image": r.image, "why": getattr(got, "why", "")[:200]})
    down = [r for r in routes if getattr(results.get(r.image), "down", False)]
    if down:
        _say(f"image cache for {down[0].ref.registry} at {down[0].via} did not answer; the engine pulls directly")
    state.append_log("metrics", {"kind": "images", "pulled": pulled, "bytes": size, "failed": failed})


def _say(message: str) -> None:
    sys.stderr.write(f"dockcache: {message}\n")
    sys.stderr.flush()


def explain(host: str | None, context: str | None, image: str, environ: Mapping[str, str], *, asked: bool) -> str:
    """How the image would be pulled, for `dockcache explain` (one inspect at most; pulls nothing)."""
    from shim.core import engineapi

    caches = caches_up(environ)
    engine = Engine(host, context, environ)
    addresses = {k: str(v["address"]) for k, v in caches.items()}
    route = decide(image, addresses, present=None, asked=asked, local=engine.socket is not None)
    if route.via and not asked:
        try:
            if engineapi.inspect(engine.socket, image) is not None:
                return f"image {image}: the engine has it"
        except engineapi.Unanswered:
            return f"image {image}: the engine did not answer; pulled as docker pulls it"
    how = route.reason if route.via else f"{'' if asked else 'if absent, '}pulled directly by the engine ({route.reason})"
    return f"image {image}: {how}"


# ------------------------------------------------------------------ the hooks


def before_run(inv, environ: Mapping[str, str]) -> None:
    """`docker run|create IMAGE`: an absent image (or `--pull always`) through its cache first."""
    from shim.core.grammar import parse_run

    run = parse_run(inv)
    if run.image is None or run.help or run.unknown:
        return
    policy = next((v for k, v in reversed(run.options) if k == "--pull"), "missing") or "missing"
    if policy == "never":
        return
    platform = next((v for k, v in reversed(run.options) if k == "--platform"), None)
    ensure(inv.host, inv.context, [run.image], environ, asked=[run.image] if policy == "always" else [],
           platform=platform, style="run")


def execute_pull(real: str, args: Sequence[str], inv, environ: Mapping[str, str]) -> None:
    """`docker pull IMAGE` through its cache; returns (docker runs unchanged) when it is not."""
    try:
        _pull_command(inv, environ)
    except Exception as exc:  # noqa: BLE001 - fail open: docker pulls as typed
        _say(f"image cache not used ({type(exc).__name__}: {exc})")


def _pull_command(inv, environ: Mapping[str, str]) -> None:
    from shim.core.grammar import parse_pull

    pa = parse_pull(inv)
    if pa.image is None or pa.help or pa.all_tags or pa.unknown:
        return
    caches = caches_up(environ)
    if not caches:
        return
    engine = Engine(inv.host, inv.context, environ)
    addresses = {k: str(v["address"]) for k, v in caches.items()}
    route = decide(pa.image, addresses, present=None, asked=True, local=engine.socket is not None)
    if route.via is None:
        return
    done = pull_all(engine, [route], caches, environ, platform=pa.platform, style="quiet" if pa.quiet else "pull")
    if not done.get(route.image):
        return  # the engine pulls directly, as typed
    sys.stdout.write(f"{route.ref.repository()}:{route.ref.tag}\n")
    sys.stdout.flush()
    sys.exit(0)
