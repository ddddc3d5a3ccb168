"""Planning the seed and save of cache mounts (pure), and the store that keeps them."""

import os
import time

import pytest

from shim.build.mounts.plan import NO_UNPACK, plan_mounts, save_dockerfile, seed_dockerfile, unusable
from shim.build.mounts.parse import CacheMount, Found, find
from shim.build.mounts.store import MountStore, mount_name, pack, read_index, unpack
from shim.build.store.cachestore import MOUNT, CacheStore

GO = CacheMount("/root/.cache/go-build", "/root/.cache/go-build", base="golang:1.22")
MOD = CacheMount("mod", "/go/pkg/mod", "locked", 1000, 1000, "0770", "golang:1.22")


def plan(found, stored=None, held=None, why_not=None):
    return plan_mounts(found, key="app", platform="linux/amd64", user_platform=None,
                       stored=stored or {}, held=held or {}, why_not=why_not)


def test_seed_only_what_the_store_has_and_this_daemon_lacks():
    go, mod = mount_name("app", GO.id, "linux/amd64"), mount_name("app", MOD.id, "linux/amd64")
    p = plan(Found((GO, MOD)), stored={go: "g2", mod: "m1"}, held={mod: "m1"})
    assert [x.mount.id for x in p.seeds] == [GO.id]
    # a daemon that holds an older generation keeps its own (no seed on every alternation)
    assert plan(Found((GO,)), stored={go: "g2"}, held={go: "g1"}).seeds == ()
    assert len(p.saves) == 2
    assert any("seeded from the store" in r for r in p.reasons) and any("already in this daemon" in r for r in p.reasons)
    assert plan(Found((GO,))).seeds == () and "nothing stored yet" in plan(Found((GO,))).reasons[0]


def test_names_keep_projects_ids_and_platforms_apart():
    names = {mount_name(k, i, p) for k in ("a", "b") for i in ("/x", "/y", "/X") for p in ("linux/amd64", "linux/arm64")}
    assert len(names) == 12


def test_what_cannot_be_carried_says_why():
    assert plan(Found(reason="remote build context")).reasons == ("cache mounts: remote build context",)
    p = plan(Found((GO,)), why_not=unusable(caps_mode="import-only", generation="g", no_cache=False, enabled=True))
    assert p.mounts == () and "cannot seed and save" in p.reasons[-1]
    assert "--no-cache" in unusable(caps_mode="full", generation="g", no_cache=True, enabled=True)
    assert "local socket" in unusable(caps_mode="full", generation=None, no_cache=False, enabled=True)
    assert unusable(caps_mode="full", generation="g", no_cache=False, enabled=True) is None


def test_seed_and_save_builds_keep_the_mount_options_and_run_as_root():
    seed = seed_dockerfile([GO, MOD])
    assert seed.startswith("FROM golang:1.22\nUSER 0\nARG DOCKCACHE_BUST\nRUN ")
    assert "--mount=type=cache,id=mod,target=/dockcache-m1,sharing=locked,uid=1000,gid=1000,mode=0770" in seed
    assert "from=dockcache-seed-1,target=/dockcache-s1" in seed
    assert "chown -R 1000:1000 /dockcache-m1 && chmod 0770 /dockcache-m1" in seed
    packed = seed_dockerfile([GO, MOD], [True, False])
    assert f"tar -xzf /dockcache-s0/m.tgz -C /dockcache-m0 || exit {NO_UNPACK}" in packed
    assert "cp -a /dockcache-s1/. /dockcache-m1/" in packed
    save = save_dockerfile([GO])
    assert save.endswith("FROM scratch\nCOPY --from=dockcache /dockcache-out /\n")
    # the generated file is a Dockerfile whose mounts are the user's own again
    again = find(seed, target=None, build_args={}, platform="linux/amd64")
    assert [(m.id, m.sharing, m.uid, m.gid, m.mode) for m in again.mounts] == [
        (GO.id, "shared", None, None, None), ("mod", "locked", 1000, 1000, "0770")]


def test_a_mount_in_a_scratch_stage_is_seeded_with_another_stage_base():
    p = plan(Found((CacheMount("/s", "/s", base=None), GO)))
    assert len(p.saves) == 2 and seed_dockerfile([x.mount for x in p.saves]).startswith("FROM golang:1.22")
    none = plan(Found((CacheMount("/s", "/s", base=None),)))
    assert none.saves == () and "FROM scratch" in none.reasons[-1]


def test_ids_the_seed_step_would_have_to_quote_are_not_carried():
    for odd in ("a,b", 'a"b', "a b", "$x"):
        p = plan(Found((CacheMount(odd, "/t", base="x"),)))
        assert p.saves == () and "quote" in p.reasons[0]


def _filled(store: CacheStore, files: dict[str, str]):
    ms = MountStore(store)
    d = ms.private_dir()
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return ms, d


def test_publish_replaces_a_generation_whole_and_a_snapshot_survives_it(tmp_path):
    store = CacheStore(tmp_path / "s")
    ms, d = _filled(store, {"a": "1", "sub/b": "22"})
    first = ms.publish("n", d, key="app", mount_id="/c", platform="linux/amd64")
    stored = store.root / "mounts" / first.dirname
    assert first.packed and stored.is_file() and (first.size, first.files) == (stored.stat().st_size, 2)
    top, dirs = ms.snapshot(["n", "missing"])
    ms2, d2 = _filled(store, {"c": "333"})
    second = ms2.publish("n", d2, key="app", mount_id="/c", platform="linux/amd64")
    assert second.gen != first.gen and read_index(store.root)["n"].gen == second.gen
    assert sorted(os.listdir(store.root / "mounts")) == ["index.json", second.dirname]
    unpack(dirs["n"][0], tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "b").read_text() == "22" and dirs["n"][1] == first.gen
    assert list(dirs) == ["n"] and top.is_dir()
    assert store.size() == second.size  # no layer blobs yet: the mount's bytes on disk


def test_packing_keeps_modes_links_and_empty_dirs(tmp_path):
    src = tmp_path / "src"
    (src / "empty").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o750)
    os.symlink("run.sh", src / "link")
    pack(src, tmp_path / "m.tgz")
    unpack(tmp_path / "m.tgz", tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "empty").is_dir() and os.readlink(out / "link") == "run.sh"
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o750


def test_without_the_extraction_filter_the_same_refusals_hold(tmp_path, monkeypatch):
    """Debian 12's python3 (3.11.2) has no `filter=` for extractall (issue 34: cache mounts failed
    there with a TypeError); the fallback lets through what the "tar" filter does, nothing else."""
    import io
    import tarfile

    monkeypatch.delattr(tarfile, "tar_filter", raising=False)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "d" / "run.sh", 0o4775)
    os.symlink("../d/run.sh", src / "d" / "up")
    pack(src, tmp_path / "ok.tgz")
    unpack(tmp_path / "ok.tgz", tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "d" / "up") == "../d/run.sh"
    assert os.stat(tmp_path / "out" / "d" / "run.sh").st_mode & 0o7777 == 0o755  # no setuid, no group write
    for bad in ({"name": "../escape", "type": tarfile.REGTYPE}, {"name": "/abs", "type": tarfile.REGTYPE},
                {"name": "l", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
                {"name": "d/l", "type": tarfile.SYMTYPE, "linkname": "../../x"},
                {"name": "h", "type": tarfile.LNKTYPE, "linkname": "../x"},
                {"name": "dev", "type": tarfile.CHRTYPE}):
        path = tmp_path / f"bad-{len(bad)}-{bad['type']!r}.tgz"
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo(bad["name"])
            info.type, info.linkname = bad["type"], bad.get("linkname", "")
            tar.addfile(info, io.BytesIO(b"") if bad["type"] == tarfile.REGTYPE else None)
        with pytest.raises(tarfile.TarError):
            unpack(path, tmp_path / "refused")
    assert not (tmp_path / "escape").exists() and not any((tmp_path / "refused").iterdir())


def test_a_tree_from_before_packing_is_still_snapshotted_and_dropped(tmp_path):
    from shim.build.mounts.store import MountEntry, write_index

    store = CacheStore(tmp_path / "s")
    old = MountEntry("n", "g0", 1, 1, 0.0, 0.0, "app", "/c", "p")
    (store.root / "mounts" / old.dirname).mkdir(parents=True)
    (store.root / "mounts" / old.dirname / "f").write_text("1")
    write_index(store.root, {"n": old})
    top, dirs = MountStore(store).snapshot(["n"])
    assert (dirs["n"][0] / "f").read_text() == "1"
    assert MountStore(store).drop(["n"]) == 1 and not (store.root / "mounts" / old.dirname).exists()


def test_prune_is_lru_across_keys_and_mounts(tmp_path):
    store = CacheStore(tmp_path / "s")
    for name, size in (("old", 100), ("new", 100)):
        ms, d = _filled(store, {"f": "x" * size})
        ms.publish(name, d, key="k", mount_id=name, platform="p")
        time.sleep(0.01)
    one = read_index(store.root)["new"].size  # packed: its bytes on disk
    res = store.prune(max_size=one + 10)
    assert res.removed_keys == (f"{MOUNT}old",) and list(read_index(store.root)) == ["new"]
    assert store.prune(older_than=0).removed_keys == (f"{MOUNT}new",) and store.size() == 0
