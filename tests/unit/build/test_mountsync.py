"""The seed/save I/O around the pure plan, with docker faked (core.proc is the one place)."""

import os

from pathlib import Path

from shim.build.mounts import store as mountstore
from shim.build.mounts import sync as mountsync
from shim.build.mounts import plan as mountplan
from shim.build.mounts.plan import MountPlan, Planned
from shim.build.mounts.parse import CacheMount
from shim.build.mounts.store import MountStore, read_index
from shim.build.store.cachestore import CacheStore
from shim.core.proc import Result
from shim.core.state import State

M = CacheMount("/c", "/c", base="busybox")


def payload(tmp_path, tag=None):
    return {"real": "docker", "globals": ["-H", "unix:///x.sock"], "platform": None, "key": "app",
            "mounts": [{**M.__dict__, "name": "app--c--linux-amd64"}], "store": str(tmp_path / "store"),
            "lock_timeout": 5.0, "max_size": 10**9, "state": str(tmp_path / "state"), "generation": "g1",
            "tag": tag, "key_platform": "linux-amd64"}


def fake_docker(monkeypatch, rc=0, image="sha256:1"):
    calls = []

    def run_docker(real, argv, **kw):
        calls.append(list(argv))
        if "inspect" in argv:
            return Result(tuple(argv), 0, image + "\n", "")
        if rc == 0 and any(a.startswith("type=local,dest=") for a in argv):
            dest = Path(next(a for a in argv if a.startswith("type=local,dest="))[len("type=local,dest="):])
            (dest / "0").mkdir(parents=True)
            (dest / "0" / "warm").write_text("yes")
        return Result(tuple(argv), rc, "", "ERROR: boom\n" if rc else "")
    monkeypatch.setattr(mountsync.proc, "run_docker", run_docker)
    return calls


def test_save_publishes_and_remembers_what_this_daemon_holds(tmp_path, monkeypatch):
    calls = fake_docker(monkeypatch)
    mountsync.save(payload(tmp_path))
    (entry,) = read_index(tmp_path / "store").values()
    mountstore.unpack(tmp_path / "store" / "mounts" / entry.dirname, tmp_path / "out")
    assert (tmp_path / "out" / "warm").read_text() == "yes"
    assert mountsync.held(State(tmp_path / "state"), "g1", [entry.name]) == {entry.name: entry.gen}
    build = calls[-1]
    assert build[:4] == ["-H", "unix:///x.sock", "buildx", "build"] and "--no-cache" not in build
    assert any(a.startswith("DOCKCACHE_BUST=") for a in build) and build[build.index("--network") + 1] == "none"


def test_an_unchanged_image_skips_the_save(tmp_path, monkeypatch):
    fake_docker(monkeypatch)
    mountsync.save(payload(tmp_path, tag="app:1"))
    calls = fake_docker(monkeypatch)
    mountsync.save(payload(tmp_path, tag="app:1"))
    assert [c for c in calls if "build" in c] == []


def test_an_unchanged_rebuild_keeps_what_another_session_published_since(tmp_path, monkeypatch):
    """Daemon g1 saved; daemon g2 published a newer generation (its additions); g1 then
    rebuilds with no step run: its older contents must not replace g2's."""
    fake_docker(monkeypatch)
    mountsync.save(payload(tmp_path, tag="app:1"))
    other = {**payload(tmp_path, tag="app:1"), "generation": "g2"}
    fake_docker(monkeypatch, image="sha256:2")
    mountsync.save(other)
    newest = read_index(tmp_path / "store")["app--c--linux-amd64"].gen
    calls = fake_docker(monkeypatch)
    mountsync.save(payload(tmp_path, tag="app:1"))
    assert [c for c in calls if "build" in c] == []
    assert read_index(tmp_path / "store")["app--c--linux-amd64"].gen == newest
    # a mount the store no longer has (cleared) is saved again
    MountStore(CacheStore(tmp_path / "store", lock_timeout=5.0)).drop(["app--c--linux-amd64"])
    calls = fake_docker(monkeypatch)
    mountsync.save(payload(tmp_path, tag="app:1"))
    assert [c for c in calls if "build" in c] and "app--c--linux-amd64" in read_index(tmp_path / "store")


def test_a_failed_save_keeps_the_store_and_the_next_build_says_it_once(tmp_path, monkeypatch, capsys):
    fake_docker(monkeypatch, rc=1)
    mountsync.save(payload(tmp_path))
    assert read_index(tmp_path / "store") == {}
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    state = State(tmp_path / "state")
    mountsync.say_failed_save(state, "app")
    mountsync.say_failed_save(state, "app")
    err = capsys.readouterr().err
    assert err.count("dockcache:") == 1 and "ERROR: boom" in err


def test_no_save_on_a_nearly_full_disk_nor_beside_another_save_of_the_key(tmp_path, monkeypatch):
    """A save on a full disk hangs in buildx (its local export): the disk guard is asked
    first; and a second save of a busy key leaves the running one alone."""
    import json

    calls = fake_docker(monkeypatch)
    mountsync.save({**payload(tmp_path), "min_free": 1 << 60})  # more than any disk has
    with mountsync._only_save_of(payload(tmp_path)) as alone:
        assert alone
        mountsync.save(payload(tmp_path))
    assert [c for c in calls if "build" in c] == [] and read_index(tmp_path / "store") == {}
    skipped = [json.loads(x)["skipped"] for x in (tmp_path / "state" / "metrics.jsonl").read_text().splitlines()]
    assert skipped[0].startswith("disk nearly full") and skipped[1] == "another save of this key is running"
    mountsync.save(payload(tmp_path))  # the lock is free again: this one saves
    assert len(read_index(tmp_path / "store")) == 1


def published(tmp_path):
    """A store holding one saved generation of mount "n", and a plan that seeds it."""
    store = CacheStore(tmp_path / "store")
    ms = MountStore(store)
    d = ms.private_dir()
    (d / "f").write_text("1")
    entry = ms.publish("n", d, key="app", mount_id="/c", platform="linux-amd64")
    return store, entry, MountPlan((Planned(M, "n", True, True, entry.gen),))


def test_seed_binds_the_snapshot_and_forgets_nothing_on_failure(tmp_path, monkeypatch, capsys):
    store, entry, plan = published(tmp_path)
    state = State(tmp_path / "state")
    calls = fake_docker(monkeypatch, rc=1)
    assert mountsync.seed("docker", [], plan, store, state, "g1") == 0
    assert "not seeded" in capsys.readouterr().err and mountsync.held(state, "g1", ["n"]) == {}
    calls = fake_docker(monkeypatch)
    assert mountsync.seed("docker", [], plan, store, state, "g1") == 1
    ctx = [a for a in calls[-1] if a.startswith("dockcache-seed-0=")]
    assert len(ctx) == 1 and "type=cacheonly" in calls[-1]
    assert mountsync.held(state, "g1", ["n"]) == {"n": entry.gen}
    assert list((tmp_path / "store" / "snapshots").iterdir()) == []  # the snapshot is gone afterwards


def test_which_dockerfile_is_read(tmp_path):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM a\nRUN --mount=type=cache,target=/d true\n")
    (tmp_path / "Other").write_text("FROM a\nRUN --mount=type=cache,target=/o true\n")
    def found(context, dockerfile):
        return mountsync.read_found(context, dockerfile, str(tmp_path), target=None, args={}, platform="linux/amd64")
    assert [m.id for m in found("ctx", None).mounts] == ["/d"]
    assert [m.id for m in found("ctx", "Other").mounts] == ["/o"]
    assert "stdin" in found("-", None).reason and "stdin" in found("ctx", "-").reason
    assert "remote" in found("https://github.com/x/y.git", None).reason
    assert "unreadable" in found("nope", None).reason


def test_build_args_come_from_flags_and_the_environment():
    opts = [("--build-arg", "A=1"), ("--build-arg", "B"), ("--build-arg", "C"), ("--tag", "x")]
    assert mountsync.build_args(opts, {"B": "2"}) == {"A": "1", "B": "2"}


def test_a_base_that_cannot_unpack_gets_the_tree_copied_instead(tmp_path, monkeypatch):
    store, _entry, plan = published(tmp_path)
    calls, sent = [], []

    def run_docker(real, argv, **kw):
        calls.append(list(argv))
        src = next(a for a in argv if a.startswith("dockcache-seed-0=")).split("=", 1)[1]
        sent.append(sorted(os.listdir(src)))
        if len(calls) == 1:  # BuildKit's words for the step's exit code
            return Result(tuple(argv), 1, "", 'ERROR: process "/bin/sh -c ..." did not complete successfully: '
                          f"exit code: {mountplan.NO_UNPACK}\n")
        return Result(tuple(argv), 0, "", "")
    monkeypatch.setattr(mountsync.proc, "run_docker", run_docker)
    assert mountsync.seed("docker", [], plan, store, State(tmp_path / "state"), "g1") == 1
    assert sent == [["m.tgz"], ["f"]]
