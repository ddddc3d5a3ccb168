"""The local build store: key history, seeded export dirs, no-op publishes, locking."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shim.build.store.layout import LockTimeout
from shim.build.store.cachestore import CacheStore
from shim.build.store.local import LocalBuilds, daemon_generation
from shim.core.state import State

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.buildkit.cacheconfig.v0"


def _blob(d: Path, data: bytes, media: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (d / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (d / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}


def export(store: CacheStore, key: str, *layers: bytes, seeded: bool = True) -> Path:
    """What BuildKit leaves in a private export dir: layers, a cache config, a manifest."""
    d = store.new_export_dir() if seeded else store._private_dir("tmp", "dockcache-export")
    blobs = d / "blobs" / "sha256"
    descs = []
    for data in layers:
        digest = hashlib.sha256(data).hexdigest()
        if (blobs / digest).exists():  # BuildKit skips a blob the destination has
            descs.append({"mediaType": LAYER, "digest": f"sha256:{digest}", "size": len(data)})
        else:
            descs.append(_blob(d, data, LAYER))
    cfg = _blob(d, json.dumps({"layers": [x["digest"] for x in descs]}).encode(), CONFIG)
    man = _blob(d, json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [*descs, cfg]}).encode(), INDEX)
    man["annotations"] = {"org.opencontainers.image.ref.name": key}
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    return d


@pytest.fixture
def store(tmp_path) -> CacheStore:
    return CacheStore(tmp_path / "store", lock_timeout=2, history=3)


BASE = b"B" * 100_000  # the base image's layer every build of the project shares


def test_a_key_keeps_its_last_builds_and_imports_them_all(store):
    for variant in (b"dev", b"prod"):
        store.publish(export(store, "app", BASE, variant), "app")
    snap = store.snapshot(["app"])
    try:
        assert snap.import_tags("app") == ("app", "app~1")
        index = json.loads((snap.src / "index.json").read_text())
        assert len(index["manifests"]) == 2
    finally:
        snap.release()
    assert list(store.keys()) == ["app"]  # history is not listed as keys of its own


def test_history_is_bounded_and_unreachable_blobs_are_collected(store):
    for n in range(6):
        store.publish(export(store, "app", BASE, b"edit %d" % n), "app")
    assert len(store.lineage("app")) == 3
    assert len(BASE) < store.size() < len(BASE) + 3000  # the base once, three builds' small blobs


def test_republishing_the_same_build_changes_nothing(store):
    first = store.publish(export(store, "app", BASE, b"x"), "app")
    again = store.publish(export(store, "app", BASE, b"x"), "app")
    assert first.changed and not again.changed
    assert again.digest == first.digest and store.lineage("app") == (first.digest,)


def test_an_older_build_built_again_moves_to_the_front_once(store):
    dev = store.publish(export(store, "app", BASE, b"dev"), "app").digest
    prod = store.publish(export(store, "app", BASE, b"prod"), "app").digest
    store.publish(export(store, "app", BASE, b"dev"), "app")
    assert store.lineage("app") == (dev, prod)


def test_seeded_export_dirs_make_buildkit_write_only_new_blobs(store):
    first = store.publish(export(store, "app", BASE, b"a"), "app")
    assert first.written >= len(BASE)
    second = store.publish(export(store, "app", BASE, b"b"), "app")
    assert second.written < 2000  # the base layer was a link to the store's blob


def test_an_unseeded_export_writes_everything(store):
    store.publish(export(store, "app", BASE, b"a"), "app")
    assert store.publish(export(store, "app", BASE, b"b", seeded=False), "app").written >= len(BASE)


def test_a_blob_pruned_while_a_seeded_export_runs_is_put_back(store):
    store.publish(export(store, "app", BASE, b"a"), "app")
    d = export(store, "other", BASE, b"o")
    store.drop_keys(["app"])  # the base blob leaves the store; the export dir's link keeps it
    store.publish(d, "other")
    snap = store.snapshot(["other"])
    assert snap.keys == ("other",)
    snap.release()


def test_prune_and_drop_take_a_keys_history_along(store):
    for n in range(3):
        store.publish(export(store, "app", BASE, b"%d" % n), "app")
    store.publish(export(store, "lib", b"L" * 10, b"l"), "lib")
    store.drop_keys(["app"])
    assert store.lineage("app") == () and list(store.keys()) == ["lib"]
    assert store.size() < 10_000
    res = store.prune(max_size=0)
    assert res.removed_keys == ("lib",) and store.size() == 0


def test_a_lock_held_by_filelock_blocks_the_store_until_the_timeout(store, tmp_path):
    store.publish(export(store, "app", BASE, b"a"), "app")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock; "
        f"l = FileLock({str(store.root / '.lock')!r}); l.acquire(); print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        with pytest.raises(LockTimeout):
            store.snapshot(["app"])
        assert time.monotonic() - t >= 1.9
    finally:
        holder.kill()
        holder.wait()
    store.snapshot(["app"]).release()  # free again once the holder is gone


def test_the_daemon_generation_changes_when_the_socket_is_made_again(tmp_path):
    path = tmp_path / "d.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    first = daemon_generation(f"unix://{path}", None, {})
    assert first and daemon_generation(None, None, {"DOCKER_HOST": f"unix://{path}"}) == first
    s.close()
    os.unlink(path)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    try:
        assert daemon_generation(f"unix://{path}", None, {}) not in (None, first)
    finally:
        s.close()
    assert daemon_generation("tcp://127.0.0.1:2375", None, {}) is None


def test_the_daemon_generation_follows_a_named_context(tmp_path):
    path = tmp_path / "ctx.sock"
    path.touch()
    meta = tmp_path / "cfg" / "contexts" / "meta" / hashlib.sha256(b"mine").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": f"unix://{path}"}}}))
    env = {"DOCKER_CONFIG": str(tmp_path / "cfg")}
    assert daemon_generation(None, "mine", env).startswith(str(path))
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({"currentContext": "mine"}))
    assert daemon_generation(None, None, env).startswith(str(path))


def test_local_builds_hold_a_key_only_when_every_stored_build_came_from_this_daemon(tmp_path):
    mine = LocalBuilds(State(tmp_path / "state"), "gen-1")
    assert not mine.holds("app", ())
    mine.remember("app", "sha256:a")
    assert mine.holds("app", ("sha256:a",))
    assert not mine.holds("app", ("sha256:a", "sha256:other-daemon"))
    assert not LocalBuilds(State(tmp_path / "state"), "gen-2").holds("app", ("sha256:a",))


@pytest.mark.parametrize("argv", [["builder", "prune", "-af"], ["system", "prune"], ["buildx", "prune", "-f"]])
def test_a_buildkit_prune_makes_the_daemon_import_again(tmp_path, argv):
    from shim.build.store.local import forget_daemon
    from shim.core.grammar import parse_invocation

    sock = tmp_path / "d.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    env = {"DOCKER_HOST": f"unix://{sock}", "DOCKCACHE_STATE_DIR": str(tmp_path / "state")}
    try:
        mine = LocalBuilds(State(tmp_path / "state"), daemon_generation(None, None, env))
        mine.remember("app", "sha256:a")
        inv = parse_invocation(argv)
        assert inv.kind == "prune"
        forget_daemon(inv, env)
        assert not mine.holds("app", ("sha256:a",))
    finally:
        s.close()


def test_a_publish_the_lock_keeps_waiting_is_handed_to_a_worker_that_publishes_once_free(store, tmp_path, monkeypatch):
    """The user's command waits at most handoff.WAIT for the lock; the export dir survives
    the timeout and a detached worker publishes it when the holder lets go."""
    import fcntl

    from shim.build.store import handoff

    spawned = []
    monkeypatch.setattr("shim.core.proc.spawn_job", lambda argv, env=None: spawned.append(argv) or os.getpid())
    monkeypatch.setattr(handoff, "WAIT", 0.05)
    store.publish(export(store, "app", BASE, b"a"), "app")
    d = export(store, "app", BASE, b"b")
    with open(store.root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another process's long prune
        assert handoff.publish(store, d, "app", max_size=10**9) is None
    (kept,) = (store.root / "tmp").glob(f"dockcache-export-{os.getpid()}-*")
    assert store.lock_timeout == 2  # kept for the worker (named by its pid); the store's timeout is back
    (argv,) = spawned
    monkeypatch.setattr(sys, "argv", [argv[-3], argv[-1]])  # as `python -S -c CODE ROOT PAYLOAD` gives it
    before = store.lineage("app")
    handoff.main()
    assert store.lineage("app")[0] != before[0] and len(store.lineage("app")) == 2 and not kept.exists()


def test_a_handed_off_export_outlives_the_build_that_made_it(store, monkeypatch):
    """The build's process exits once the worker is started; the prune holding the lock ends
    by removing export dirs whose process is gone (_clean_stale). The export was named by
    the build's pid, so that prune took it and the worker had nothing to publish."""
    import fcntl

    from shim.build.store import handoff
    from shim.build.store import layout

    worker = 4_000_000  # no such process here: only the fakes below say it lives
    spawned = []
    monkeypatch.setattr("shim.core.proc.spawn_job", lambda argv, env=None: spawned.append(argv) or worker)
    monkeypatch.setattr(handoff, "WAIT", 0.05)
    store.publish(export(store, "app", BASE, b"a"), "app")
    with open(store.root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another process's long prune
        assert handoff.publish(store, export(store, "app", BASE, b"b"), "app", max_size=10**9) is None
        monkeypatch.setattr(layout, "alive", lambda pid: pid == worker)  # the build has exited
        store._clean_stale()  # the end of that prune
    before = store.lineage("app")
    monkeypatch.setattr(sys, "argv", [spawned[0][-3], spawned[0][-1]])
    monkeypatch.setattr(os, "getpid", lambda: worker)
    handoff.main()
    assert store.lineage("app")[0] != before[0]
    assert not list((store.root / "tmp").glob("dockcache-export-*"))


def test_a_publish_that_gets_the_lock_publishes_here(store):
    from shim.build.store import handoff

    done = handoff.publish(store, export(store, "app", BASE, b"a"), "app", max_size=10**9)
    assert done is not None and done.changed and store.lineage("app") == (done.digest,)


def test_a_key_its_daemon_serves_is_marked_used_once_an_hour_and_only_when_the_lock_is_free(store):
    store.publish(export(store, "app", BASE, b"a"), "app")
    store.publish(export(store, "lib", BASE, b"l"), "lib")
    meta = json.loads((store.root / "keys.json").read_text())
    meta["app"]["last_used"] = meta["lib"]["last_used"] - 7200  # app: the older, so the first the LRU prune takes
    (store.root / "keys.json").write_text(json.dumps(meta))
    from shim.build.store.lock import Held
    with Held(str(store.root / ".lock"), 1.0, store.root):
        store.used("app")  # the lock is held: no wait, no mark
    assert store.keys()["app"].last_used == meta["app"]["last_used"]
    store.used("app")
    marked = store.keys()["app"].last_used
    assert marked > meta["lib"]["last_used"]
    store.used("app")  # marked within the hour: not written again
    assert store.keys()["app"].last_used == marked
    assert store.prune(max_size=store.size() - 1).removed_keys == ("lib",)


@pytest.mark.parametrize("meta", [
    {"app": 5},  # an entry that is not a record
    {"app": {"created": "yesterday", "last_used": None}},  # fields of the wrong type
    {"app": ["created", 1.0]},
])
def test_a_keys_file_of_the_wrong_shape_is_read_as_no_record(store, meta):
    """keys.json is valid JSON but not what dockcache wrote (a hand edit, another version):
    the store still publishes and lists (it failed every publish with 'int' object has no
    attribute 'get', for good, and `cache list` exited 3)."""
    store.publish(export(store, "app", BASE, b"v1"), "app")
    (store.root / "keys.json").write_text(json.dumps(meta))
    store.used("app")  # a build its daemon served marks the key
    done = store.publish(export(store, "app", BASE, b"v2"), "app")
    assert done.changed
    info = store.keys()["app"]
    assert isinstance(info.created, float) and isinstance(info.last_used, float) and info.last_used > 0
    assert store.prune(max_size=0) is not None


def test_a_store_that_cannot_be_written_says_why_and_creates_nothing(tmp_path, monkeypatch):
    assert CacheStore(tmp_path / "new" / "store").unwritable() is None
    assert not (tmp_path / "new").exists()
    (tmp_path / "afile").write_text("x")
    assert "is not a directory" in CacheStore(tmp_path / "afile" / "store").unwritable()
    assert "is not a directory" in CacheStore(tmp_path / "afile").unwritable()
    ro = tmp_path / "ro"
    (ro / "tmp").mkdir(parents=True)
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != ro / "tmp")  # a read-only mount (root too)
    assert CacheStore(ro).unwritable() == f"build store {ro} is not writable"


def test_the_prune_after_a_publish_waits_for_the_lock_no_longer_than_the_publish(store, monkeypatch):
    """Over max_size the publish prunes; that prune waited the full lock timeout (30 s) and,
    timed out, read 'build cache not published' for a build that was published (and its
    daemon's records were not kept). Now it waits WAIT and leaves the prune to the next one."""
    from shim.build.store import handoff

    waited = []

    def locked(**_kw):
        waited.append(store.lock_timeout)
        raise LockTimeout("build cache store is locked by another process")
    monkeypatch.setattr(store, "prune", locked)
    done = handoff.publish(store, export(store, "app", BASE, b"a"), "app", max_size=1)
    assert done is not None and store.lineage("app") == (done.digest,)
    assert waited == [handoff.WAIT]
