"""The shared builder's I/O: is it there, the session's buildx builder for it, the smart load.

Fail-open at every step before the build: a builder that is down or unreachable, or a
buildx builder that cannot be made, costs one stderr line and the build takes today's
path on the session's own engine. Once the build runs on the shared builder, its result
is BuildKit's: a builder that dies mid-build fails that build as BuildKit reports, and
the next build finds the socket dead and falls back (or finds it back and reconnects).
Steady state: one socket connect and one stat, no docker call before the build.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from shim.core.records import dataclass

from shim.build.shared.route import (TLS_FILES, Target, first_and_load, from_images, socket_of, tag_forms, target_for,
                               tls_opts, unchanged, why_local)
from shim.core import proc
from shim.core.daemon import daemon_key, socket_path
from shim.core.grammar import BuildArgs, Invocation, config_dir, insert_before
from shim.core.notice import say
from shim.core.state import State, docker_config_dir, short_hash, state_dir

CONNECT_TIMEOUT = 1.0


@dataclass
class SharedRun:
    """What the build needs after planning: where to remember loads."""

    target: Target
    state: State
    daemon: str  # the session's engine (loads are remembered per daemon)
    loaded: bool | None = None  # metrics: None = not compared
    layouts: object = None  # Path: a containerd-store engine gets thin loads (thinload.py)
    thin: bool | None = None  # metrics: the load left out layers the engine held
    bases: tuple = ()  # the Dockerfile's FROM images: their layers are in the engine already
    key: str = ""  # the build's cache key: names the layout of an untagged build
    prints_id: bool = False  # -q / --progress quiet: the thin build prints this engine's id
    iidfile: str | None = None  # the user's --iidfile: the thin build writes this engine's id there
    fingerprint: Callable[[], str | None] | None = None  # what the build reads (inputs.py), asked beside it
    socket: str | None = None  # the engine's unix socket: a tag is an API call, not a CLI start
    early: bool | None = None  # metrics: the image loaded while it built was the build's (earlyload.py); False: another
    tail: str = ""  # the last of what a failed build printed on stderr (fallback.py reads it)


def unreachable(address: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the builder at `address` cannot be reached, or None when a connect succeeds."""
    path = socket_of(address)
    try:
        if path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(path)
            return None
        host, _, port = address[len("tcp://"):].rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return f"{address}: {getattr(exc, 'strerror', None) or exc}"


def choose(config, build: BuildArgs, environ: Mapping[str, str]) -> tuple[Target | None, str | None]:
    """(the shared builder this build goes to, None) or (None, why not; None = nothing to say)."""
    local = why_local(build, environ)
    return (None, local) if local else reachable_target(config)


def reachable_target(config) -> tuple[Target | None, str | None]:
    """build.builder's builder when it answers; else (None, why; None when "auto" finds none)."""
    target = target_for(config["build.builder"], config["build.builder_tls"])
    if target is None:
        return None, "build.builder = off: the session's own builder"
    if target.address:
        problem = unreachable(target.address)
        if problem:
            if config["build.builder"] == "auto":
                return None, None  # no host builder was started: today's path, nothing to say
            return None, f"shared builder unreachable ({problem}); building on this engine"
    return target, None


def instance_path(inv: Invocation, environ: Mapping[str, str], name: str) -> str:
    """Where buildx keeps a builder: per docker config dir, not per daemon."""
    return os.path.join(config_dir(inv.globals) or docker_config_dir(environ), "buildx", "instances", name)


def ensure_builder(real: str, inv: Invocation, target: Target, environ: Mapping[str, str]) -> str | None:
    """The buildx `remote` builder for the shared address, made once; why not, or None."""
    if not target.address:
        return None  # an operator's builder, used by name
    path = instance_path(inv, environ, target.name)
    if _points_at(path, target.address):
        return None  # the steady state: one stat and a small read, no docker call
    missing = [f for f in TLS_FILES if target.tls and not os.path.isfile(os.path.join(target.tls, f))]
    if missing:
        return f"build.builder_tls {target.tls} lacks {', '.join(missing)}"
    if os.path.exists(path):
        proc.run_docker(real, [*inv.globals, "buildx", "rm", target.name], timeout=30)
    res = proc.run_docker(real, [*inv.globals, "buildx", "create", "--driver", "remote",
                                 *(tls_opts(target.tls) if target.tls else []),
                                 "--name", target.name, target.address], timeout=60)
    if res.returncode != 0 and not _points_at(path, target.address):  # a concurrent create won: fine
        return f"docker buildx create --driver remote failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def _points_at(path: str, address: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            nodes = json.load(fh).get("Nodes") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(n, dict) and n.get("Endpoint") == address for n in nodes)


def session_base(build: BuildArgs, run: SharedRun, cwd: str) -> str | None:
    """A FROM image this session's engine got from a shared build: the shared builder
    cannot see the engine's images (it pulls FROM images from registries), so such a build
    stays here. Read from the Dockerfile; a name only in the engine that dockcache never
    loaded (`docker load`, a build with the shared builder off) is not known here."""
    text = dockerfile_text(build, cwd)
    if text is None:
        return None
    run.bases = tuple(from_images(text))
    for image in run.bases:
        if any(run.state.get("sharedloads", run.daemon, t) for t in tag_forms(image)):
            return image
    return None


def dockerfile_text(build: BuildArgs, cwd: str) -> str | None:
    """The Dockerfile a build reads, when it is a local file (its first MB)."""
    if build.context in (None, "-") or build.file == "-" or "://" in (build.context or ""):
        return None
    path = os.path.join(cwd, build.file) if build.file else os.path.join(cwd, build.context, "Dockerfile")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1_000_000)
    except OSError:
        return None


def prepare_run(real: str, inv: Invocation, target: Target, environ: Mapping[str, str],
                *, dry_run: bool) -> SharedRun | None:
    """The run for a routed build, or None (one line said) when the builder cannot be made."""
    if not dry_run:
        problem = ensure_builder(real, inv, target, environ)
        if problem:
            say(f"{problem}; building on this engine")
            return None
    return SharedRun(target, State(state_dir(environ)), daemon_key(inv.host, inv.context, environ),
                     socket=socket_path(inv.host, inv.context, environ))


def build(real: str, inv: Invocation, argv, tags, run: SharedRun) -> int:
    """Build on the shared builder; load into the session's engine only if the image changed.

    A containerd-store engine gets the thin load (`_thin`). Otherwise an engine without the
    tag gets one build with --load, and one with it a build that keeps the image in the
    builder, then --load only when its digest is not the one the engine holds
    (docker/buildx#626: a load streams the whole image, changed or not)."""
    if run.layouts is not None:
        return _thin(real, inv, argv, tags, run)
    loading = insert_before(argv, inv.args_start, ["--load"])
    local = _local_ids(real, inv, tags)
    if not local:
        return _load(real, inv, loading, tags, run, "")
    with tempfile.TemporaryDirectory(prefix="dockcache-shared-") as tmp:
        meta = os.path.join(tmp, "metadata.json")
        first, _ = first_and_load(argv, inv, meta)
        rc = _run(real, first, run)
        if rc != 0:
            return rc
        built = _config_digest(meta)
    if unchanged(built, local, run.state.get("sharedloads", run.daemon, tags[0])):
        run.loaded = False
        say(f"{tags[0]} is unchanged ({built[:19]}): load skipped")
        return 0
    return _load(real, inv, loading, tags, run, built)


def _run(real: str, argv, run: SharedRun, *, stdout=None) -> int:
    """A build on the shared builder, its stderr passed on as it comes; a failed one's last
    lines kept for the decision to build again on this engine (command.py, fallback.py)."""
    rc, tail = proc.run_watched(real, argv, stdout=stdout)
    run.tail = tail if rc != 0 else ""
    return rc


def _load(real: str, inv: Invocation, loading, tags, run: SharedRun, built: str) -> int:
    """The build with --load; remembered as (config digest, the engine's id) for next time."""
    with tempfile.TemporaryDirectory(prefix="dockcache-shared-") as tmp:
        meta = os.path.join(tmp, "metadata.json")
        rc = _run(real, insert_before(loading, inv.args_start, ["--metadata-file", meta]), run)
        built = built or _config_digest(meta)
    run.loaded = rc == 0
    if rc == 0 and built:
        now = _local_ids(real, inv, tags[:1])
        if now:
            run.state.put("sharedloads", run.daemon, tags[0], {"config": built, "id": now[0]})
    return rc


def _thin(real: str, inv: Invocation, argv, tags, run: SharedRun) -> int:
    """One build into our OCI layout, then (if the image changed) a load of only the layers
    this engine lacks; the full layout when that leaves no image. What the engine holds is
    asked while the build runs (no CLI start on the clock after it). An untagged build's
    layout is named by its cache key and loads nameless (a dangling image, as docker's)."""
    import threading

    from shim.build.shared.thinload import Layout

    facts: dict = {}
    asking = threading.Thread(target=_ask, args=(facts, real, inv, tags, run), daemon=True)
    asking.start()
    try:
        layout = Layout(run.layouts, tags[0] if tags else f"untagged {run.key}")
        with (tempfile.TemporaryFile("w+") if run.prints_id else contextlib.nullcontext()) as said:
            rc, engine_id = _thin_build(real, inv, argv, tags, run, layout, asking, facts, said)
            _report_id(run, rc, engine_id, said)
        return rc
    finally:
        asking.join()


def _report_id(run: SharedRun, rc: int, engine_id: str, said) -> None:
    """`-q` and `--iidfile` name this engine's image (its manifest digest on the containerd
    store), not the config digest BuildKit reports for an OCI export."""
    if run.iidfile and rc == 0 and engine_id:
        with contextlib.suppress(OSError):
            with open(run.iidfile, "w", encoding="utf-8") as fh:
                fh.write(engine_id)
    if not run.prints_id:
        return
    if rc == 0 and engine_id:
        sys.stdout.write(engine_id + "\n")
    else:  # what docker printed, as it printed it
        said.seek(0)
        sys.stdout.write(said.read())
    sys.stdout.flush()


LOADED = "loadedimages"  # state kind: daemon -> {"images": {engine id: its layer digests}}, newest last
REMEMBER = 20  # images remembered per daemon


def _loaded(run: SharedRun) -> dict[str, list[str]]:
    got = (run.state.get(LOADED, run.daemon, "images") or {}).get("images")
    return got if isinstance(got, dict) else {}


def _ask(facts: dict, real: str, inv: Invocation, tags, run: SharedRun) -> None:
    """The thread's body: a failure to ask leaves no facts (then the load leaves out only
    what it checks afterwards), never a traceback on the user's terminal."""
    try:
        facts.update(_engine_facts(real, inv, tags, run))
    except Exception:  # noqa: BLE001 - knowing less only costs a bigger load
        pass


def _engine_facts(real: str, inv: Invocation, tags, run: SharedRun) -> dict:
    """The tags' ids, and the layers of images dockcache loaded here that the engine still
    has: an image present in a containerd store keeps every blob its manifest names, so
    those layers can be left out of a load with no check afterwards. On the engine's
    socket when it has one (a few ms each), else three CLI calls."""
    from shim.core import engineapi

    loaded = _loaded(run)
    seen = engineapi.inspect_all(run.socket, [*tags, *loaded, *run.bases])
    if seen is None:
        return _engine_facts_cli(real, inv, tags, run, loaded)
    tagged, images, bases = seen[:len(tags)], seen[len(tags):len(tags) + len(loaded)], seen[len(tags) + len(loaded):]
    present = {i for i, got in zip(loaded, images) if got and got["Id"] == i}
    return {"ids": [got["Id"] for got in tagged] if all(tagged) else [], "asked": set(loaded),
            "held": {d for i in present for d in loaded[i] if isinstance(d, str)},
            "base_diffs": {d for got in bases if got for d in (got.get("RootFS") or {}).get("Layers") or []
                           if isinstance(d, str)}}


def _engine_facts_cli(real: str, inv: Invocation, tags, run: SharedRun, loaded: dict) -> dict:
    facts: dict = {"ids": _local_ids(real, inv, tags) if tags else [], "held": set(), "asked": set(loaded),
                   "base_diffs": _base_diffs(real, inv, run.bases)}
    if loaded:
        res = proc.run_docker(real, [*inv.globals, "image", "inspect", "--format", "{{.Id}}", *loaded], timeout=30)
        present = set(res.stdout.split()) & set(loaded)
        facts["held"] = {d for i in present for d in loaded[i] if isinstance(d, str)}
    return facts


def _thin_build(real: str, inv: Invocation, argv, tags, run: SharedRun, layout, asking, facts: dict,
                said) -> tuple[int, str]:
    """(exit code, this engine's id for the image). `said`: where docker's stdout goes
    (a quiet build's id, replaced by the engine's)."""
    from shim.build.shared import earlyload

    with layout.locked():
        layout.seed(run.bases)
        # this module's load steps: earlyload importing builder would be an import circle
        early = earlyload.start(real, inv, run, layout, asking, facts, steps=sys.modules[__name__])
        try:
            return _export_and_load(real, inv, argv, tags, run, layout, asking, facts, said, early)
        finally:
            if early is not None:
                early.discard(real, inv, run)  # nothing once its image was the build's


def _export_and_load(real: str, inv: Invocation, argv, tags, run: SharedRun, layout, asking, facts: dict,
                     said, early) -> tuple[int, str]:
    from shim.core.grammar import BUILD_VALUE_FLAGS, without_switch

    out = f"type=oci,tar=false,dest={layout.dir}" + (f",name={tags[0]}" if tags else "")
    argv = without_switch(argv, inv.args_start, BUILD_VALUE_FLAGS, "--load")  # the thin load is that load
    rc = _run(real, insert_before(argv, inv.args_start, ["--provenance=false", "--output", out]), run, stdout=said)
    if rc != 0:
        return rc, ""
    got = layout.image()
    if got is None:  # no layout written: load the plain way (it prints its own id)
        run.prints_id = False
        return _load(real, inv, insert_before(argv, inv.args_start, ["--load"]), tags, run, ""), ""
    entry, manifest = got
    layout.remember_inputs(early.fingerprint() if early else None)
    layout.holds(run.bases)
    config = manifest["config"]["digest"]
    asking.join()
    ids = facts.get("ids", [])
    if tags and unchanged(config, ids, run.state.get("sharedloads", run.daemon, tags[0])):
        run.loaded = False
        if not run.prints_id:  # -q: the id alone
            say(f"{tags[0]} is unchanged ({config[:19]}): load skipped")
        layout.keep_only(entry["digest"], manifest)
        return 0, ids[0]
    if early is not None and early.finish(real, inv, run, tags, layout, entry, manifest):
        return 0, entry["digest"]
    with one_load_at_a_time(run):
        held = facts.get("held", set()) | loaded_since(run, facts.get("asked")) | (early.held() if early else set())
        rc = _thin_load(real, inv, tags, run, layout, entry, manifest, held, facts.get("base_diffs"))
    return rc, entry["digest"]


LOAD_WAIT = 120.0  # seconds a load waits for another into the same engine, then goes anyway


@contextlib.contextmanager
def one_load_at_a_time(run: SharedRun):
    """Loads into one engine take turns (compose's services build side by side): the next
    then leaves out the layers the one before it just loaded, instead of each carrying
    the same new base. A lock held too long (a stuck load) is not waited for."""
    from shim.build.store.layout import LockTimeout
    from shim.build.store.lock import Held

    run.state.root.mkdir(parents=True, exist_ok=True)
    try:
        held = Held(str(run.state.root / f"load-{short_hash(run.daemon)}.lock"), LOAD_WAIT, run.state.root)
    except (LockTimeout, OSError):
        yield
        return
    with held:
        yield


def loaded_since(run: SharedRun, asked) -> set[str]:
    """Layers of images loaded into this engine after the engine was asked (by a build
    that loaded while this one ran): just loaded, so present. Nothing when never asked."""
    if asked is None:
        return set()
    return {d for i, ls in _loaded(run).items() if i not in asked for d in ls if isinstance(d, str)}


def _thin_load(real: str, inv: Invocation, tags, run: SharedRun, layout, entry: dict, manifest: dict,
               held: set, base_diffs: set | None = None) -> int:
    """Load the image nameless without the layers the engine holds, then tag and remember it.

    Nameless, because a load that moves the tag lets the engine drop the image the tag
    named, and with it the snapshots of the layers this load left out, while this load
    still unpacks onto them ("parent snapshot … does not exist", seen one run in four)."""
    digest = entry["digest"]
    nameless = {k: v for k, v in entry.items() if k != "annotations"}
    run.loaded, run.thin = load_lacking(real, inv, run, layout, nameless, manifest, held, base_diffs, digest)
    if not (run.loaded and all(tag_image(real, inv, run, digest, t) for t in tags)):
        run.loaded = False
        say(f"{tags[0] if tags else digest}: built on the shared builder, but its load into this engine failed")
        return 1
    remember_load(run, tags, layout, entry, manifest)
    return 0


def tag_image(real: str, inv: Invocation, run: SharedRun, image: str, ref: str) -> bool:
    """`docker tag image ref`: on the engine's socket when it has one (a few ms), else the CLI."""
    from shim.core import engineapi

    if run.socket and engineapi.tag(run.socket, image, ref):
        return True
    return proc.run_docker(real, [*inv.globals, "tag", image, ref], timeout=30).returncode == 0


def load_lacking(real: str, inv: Invocation, run: SharedRun, layout, entry: dict, manifest: dict, held: set,
                 base_diffs: set | None, name: str) -> tuple[bool, bool]:
    """(loaded, thin): a load without the layers the engine holds — those of images
    dockcache loaded that are still there (certain), else those its FROM images hold by
    content (checked after the load) — and the full layout when `name` does not then
    name the image."""
    from shim.build.shared.thinload import layers

    omit = {d for d in layers(manifest) if d in held}
    guessed = set()
    if layers(manifest)[:1] and layers(manifest)[0] not in held:  # a base new to this engine's loads:
        if base_diffs is None:  # not asked during the build
            base_diffs = _base_diffs(real, inv, run.bases)
        guessed = _base_layers(layout, manifest, base_diffs) - omit  # maybe its FROM image holds it
    loaded = _load_layout(real, inv, run, layout, entry, manifest, omit | guessed, name, check=bool(guessed))
    thin = bool(omit | guessed) and loaded
    if not loaded and (omit or guessed):
        loaded = _load_layout(real, inv, run, layout, entry, manifest, set(), name, check=True)
    return loaded, thin


def remember_load(run: SharedRun, tags, layout, entry: dict, manifest: dict) -> None:
    """The tag's image as loaded (the next build skips an unchanged load); the layout keeps it alone."""
    if tags:
        run.state.put("sharedloads", run.daemon, tags[0],
                      {"config": manifest["config"]["digest"], "id": entry["digest"]})
    remember_image(run, entry, manifest)
    layout.keep_only(entry["digest"], manifest)


def remember_image(run: SharedRun, entry: dict, manifest: dict) -> None:
    """An image now in the engine, with its layers: later loads leave them out."""
    from shim.build.shared.thinload import layers

    images = {i: ls for i, ls in _loaded(run).items() if i != entry["digest"]}
    images[entry["digest"]] = layers(manifest)
    run.state.put(LOADED, run.daemon, "images", {"images": dict(list(images.items())[-REMEMBER:])})


def _base_diffs(real: str, inv: Invocation, bases) -> set[str]:
    """The diff ids of the layers the engine's FROM images hold: one `docker image inspect`
    (asked while the build runs); empty when none is there."""
    if not bases:
        return set()
    res = proc.run_docker(real, [*inv.globals, "image", "inspect", "--format", "{{json .RootFS.Layers}}", *bases],
                          timeout=30)
    return {d for line in res.stdout.splitlines() for d in _json_list(line)}


def _base_layers(layout, manifest: dict, held: set[str]) -> set[str]:
    """The image's layers whose content the engine holds as its FROM images' layers
    (same diff id, `held`). Empty when unknown."""
    if not held:
        return set()
    try:
        config = json.loads(layout._blob(manifest["config"]["digest"]).read_text())
        diff_ids = config["rootfs"]["diff_ids"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {layer["digest"] for layer, diff in zip(manifest["layers"], diff_ids) if diff in held}


def _json_list(text: str) -> list[str]:
    try:
        got = json.loads(text)
    except ValueError:
        return []
    return [x for x in got if isinstance(x, str)] if isinstance(got, list) else []


def _load_layout(real: str, inv: Invocation, run: SharedRun, layout, entry: dict, manifest: dict, omit: set,
                 name: str, *, check: bool) -> bool:
    """docker load of the layout without `omit`; True when `name` now names this image.

    A containerd store that lacks an omitted blob still says "Loaded" and leaves no image,
    so a load that left out layers the engine was only guessed to hold is checked with
    `image inspect`; one that left out only certain layers is taken at docker's word. On
    the engine's socket when it has one: no CLI starts beside a build it runs with."""
    with tempfile.TemporaryDirectory(prefix="dockcache-load-") as tmp:
        path = os.path.join(tmp, "image.tar")
        layout.write_tar(path, entry, manifest, omit)
        ok, said = _load_tar(real, inv, run, path)
    if not ok:
        return False
    if check:
        return id_of(real, inv, run, name) == entry["digest"]
    return not omit or "Loaded image" in said


def _load_tar(real: str, inv: Invocation, run: SharedRun, path: str) -> tuple[bool, str]:
    from shim.core import engineapi

    got = engineapi.load(run.socket, path, 900) if run.socket else None
    if got is not None:
        return got
    res = proc.run_docker(real, [*inv.globals, "load", "-q", "-i", path], timeout=900)
    return res.returncode == 0, res.stdout


def id_of(real: str, inv: Invocation, run: SharedRun, name: str) -> str | None:
    """The engine's id for an image (a name, or an id), or None: on its socket, else the CLI."""
    from shim.core import engineapi

    if run.socket:
        try:
            found = engineapi.inspect(run.socket, name)
            return found["Id"] if found else None
        except engineapi.Unanswered:
            pass
    ids = _local_ids(real, inv, [name])
    return ids[0] if ids else None


def _config_digest(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return ""
    if not isinstance(meta, dict):
        return ""
    return str(meta.get("containerimage.config.digest") or meta.get("containerimage.digest") or "")


def _local_ids(real: str, inv: Invocation, tags) -> list[str]:
    """The session engine's image id for each tag; [] when any is missing (then it loads)."""
    res = proc.run_docker(real, [*inv.globals, "image", "inspect", "--format", "{{.Id}}", *tags], timeout=30)
    ids = res.stdout.split()
    return ids if res.returncode == 0 and len(ids) == len(tags) else []
