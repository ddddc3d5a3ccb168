"""The store keeps a zero-byte placeholder for each layer of a build's FROM images
(baselayers.py): BuildKit skips writing them, and a build that needs them imports only where
the engine holds them."""

from __future__ import annotations

import hashlib
import json

import pytest

from shim.build.store import baselayers
from shim.build.store.cachestore import CacheStore
from tests.unit.build.test_cachestore import LAYER, export

BASE = b"B" * 100_000
HEX = hashlib.sha256(BASE).hexdigest()


@pytest.fixture
def store(tmp_path) -> CacheStore:
    return CacheStore(tmp_path / "store", lock_timeout=2, history=3)


def exported_on_base(store: CacheStore, key: str, own: bytes):
    d = store.new_export_dir(bases=[HEX])
    assert (d / "blobs" / "sha256" / HEX).exists()  # BuildKit finds it there and skips it
    return export_into(d, key, own)


def export_into(d, key, own):
    from tests.unit.build.test_cachestore import _blob, CONFIG, INDEX
    base = {"mediaType": LAYER, "digest": f"sha256:{HEX}", "size": len(BASE)}
    descs = [base, _blob(d, own, LAYER)]
    cfg = _blob(d, json.dumps({"n": key}).encode(), CONFIG)
    man = _blob(d, json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [*descs, cfg]}).encode(), INDEX)
    man["annotations"] = {"org.opencontainers.image.ref.name": key}
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    return d


def test_the_base_is_a_placeholder_and_imports_only_where_the_engine_holds_it(store):
    done = store.publish(exported_on_base(store, "app", b"own"), "app")
    assert done.added < 1000 and (store.blobs / HEX).stat().st_size == 0
    with store.snapshot(["app"]) as snap:  # no engine facts: the cached step would fail the build
        assert snap.keys == () and snap.lacking == ("app",)
    assert "app" in store.keys()  # not dropped as broken
    with store.snapshot(["app"], lambda h: False) as snap:
        assert snap.keys == ()
    with store.snapshot(["app"], lambda h: h == HEX) as snap:
        assert snap.import_tags("app") == ("app",)
        assert not (snap.src / "blobs" / "sha256" / HEX).exists()  # BuildKit takes it from the engine


def test_an_export_never_gets_the_stores_placeholders_and_a_real_blob_replaces_one(store):
    store.publish(exported_on_base(store, "app", b"own"), "app")
    d = store.new_export_dir()
    assert not (d / "blobs" / "sha256" / HEX).exists()  # a build whose own layer it is writes it
    store.publish(export(store, "base-image", BASE, b"x"), "base-image")
    assert (store.blobs / HEX).read_bytes() == BASE
    with store.snapshot(["app", "base-image"]) as snap:  # the real blob serves both now
        assert set(snap.keys) == {"app", "base-image"}
    store.publish(exported_on_base(store, "app", b"own2"), "app")
    assert (store.blobs / HEX).read_bytes() == BASE  # a placeholder never replaces a real blob


def test_layers_of_an_index_and_its_manifests(tmp_path):
    def put(doc) -> str:
        data = json.dumps(doc).encode()
        h = hashlib.sha256(data).hexdigest()
        (tmp_path / h).write_bytes(data)
        return h
    man = put({"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest": "sha256:" + "c" * 64},
               "layers": [{"digest": "sha256:" + "a" * 64}, {"digest": "sha256:" + "b" * 64}]})
    idx = put({"mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [{"digest": f"sha256:{man}"}, {"digest": "sha256:" + "d" * 64}]})  # one not held
    assert baselayers.layers(tmp_path, [f"sha256:{idx}"]) == {"a" * 64, "b" * 64}
    assert baselayers.layers(tmp_path, ["sha256:" + "e" * 64]) == frozenset()
    assert baselayers.holder(None) is None and baselayers.holder(tmp_path)(man)


class _Pulls:
    """docker pull, faked: records the argv, fails for the names in `bad`."""
    def __init__(self, bad=()):
        self.argv, self.bad = [], set(bad)

    def __call__(self, real, argv, **kw):
        from shim.core.proc import Result
        self.argv.append(list(argv))
        return Result((real, *argv), 1 if argv[-1] in self.bad else 0, "", "")


@pytest.fixture
def pulls(monkeypatch, tmp_path):
    from shim.core import engineapi, proc
    from shim.images import command

    fake = _Pulls()
    monkeypatch.setattr(proc, "run_docker", fake)
    monkeypatch.setattr(command, "ensure", lambda *a, **k: {})  # no host image cache
    monkeypatch.setattr(engineapi, "image_id", lambda sock, name: "sha256:x" if name == "have:1" else None)
    monkeypatch.setattr("shim.build.inputs.socket_of", lambda local: "/s")
    return fake


def test_a_first_build_pulls_only_the_bases_the_engine_lacks(pulls, tmp_path):
    got = baselayers.pull_absent("docker", ["-H", "unix:///s"], ["have:1", "new:1", "new:1"], "linux/amd64", {},
                                 object(), tmp_path)
    assert pulls.argv == [["-H", "unix:///s", "pull", "--platform", "linux/amd64", "new:1"]]
    assert got and "new:1" in got and "have:1" not in got


def test_no_pull_where_placeholders_cannot_work_or_the_platform_is_many(pulls, tmp_path):
    assert baselayers.pull_absent("docker", [], ["new:1"], None, {}, object(), None) is None
    assert baselayers.pull_absent("docker", [], ["new:1"], "linux/amd64,linux/arm64", {}, object(), tmp_path) is None
    assert pulls.argv == []


def test_a_failed_pull_is_no_note_and_the_build_goes_on(pulls, tmp_path):
    pulls.bad = {"gone:1"}
    assert baselayers.pull_absent("docker", [], ["gone:1"], None, {}, object(), tmp_path) is None
    assert baselayers.pull_absent("docker", [], ["gone:1", "new:1"], None, {}, object(), tmp_path).startswith(
        "pulled new:1 ")
    assert all("-q" in a for a in pulls.argv[1:])  # several side by side: no progress bars over each other


def test_only_the_bases_the_target_reaches_are_pulled(tmp_path, monkeypatch):
    from shim.core.grammar import parse_build, parse_invocation

    (tmp_path / "Dockerfile").write_text("ARG V=1\nFROM big:$V AS dev\nFROM small:1 AS prod\nCOPY --from=tool:1 / /\n"
                                         "FROM prod\n")
    monkeypatch.chdir(tmp_path)
    build = parse_build(parse_invocation(["build", "--target", "prod", "--build-arg", "V=2", "."]))
    assert baselayers.reached(build, {}) == ["small:1"]
    assert baselayers.reached(parse_build(parse_invocation(["build", "--build-arg", "V=2", "."])), {}) == ["small:1"]
    assert baselayers.reached(parse_build(parse_invocation(["build", "--target", "dev", "--build-arg", "V=2",
                                                            "."])), {}) == ["big:2"]


def test_a_base_pinned_to_another_platform_is_left_to_buildkit(tmp_path, monkeypatch):
    from shim.core.grammar import parse_build, parse_invocation

    (tmp_path / "Dockerfile").write_text("FROM --platform=linux/s390x tool:1 AS t\nFROM --platform=$BUILDPLATFORM go:1 AS b\n"
                                         "FROM --platform=linux/amd64 run:1\nCOPY --from=t / /\nCOPY --from=b / /\n")
    monkeypatch.chdir(tmp_path)
    assert baselayers.reached(parse_build(parse_invocation(["build", "--platform", "linux/amd64", "."])), {}) == [
        "go:1", "run:1"]
    assert baselayers.reached(parse_build(parse_invocation(["build", "--platform", "linux/s390x", "."])), {}) == [
        "tool:1"]  # go:1 is this machine's variant: not what a pull for s390x takes


def test_a_base_named_by_an_arg_and_pinned_to_another_platform_is_left_to_buildkit(tmp_path, monkeypatch):
    from shim.core.grammar import parse_build, parse_invocation

    (tmp_path / "Dockerfile").write_text("ARG TOOL=tool:1\nFROM --platform=linux/s390x ${TOOL} AS t\n"
                                         "FROM --platform=linux/amd64 run:1\nCOPY --from=t / /\n")
    monkeypatch.chdir(tmp_path)
    build = parse_build(parse_invocation(["build", "--platform", "linux/amd64", "--build-arg", "TOOL=tool:2", "."]))
    assert baselayers.reached(build, {}) == ["run:1"]
    assert baselayers.dockerfile_images((tmp_path / "Dockerfile").read_text(), {"TOOL": "tool:3"}) == ["run:1"]
