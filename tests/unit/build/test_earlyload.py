"""The early load (earlyload.py) against a faked docker CLI and a fake engine socket."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from shim.build.shared import builder
from shim.build.shared import earlyload
from shim.core import engineapi, proc
from shim.core.state import State
from tests.unit.build.test_shared_routing import TARGET, _layout_with_image, args


def _serve(path, answers: list[bytes], seen: list[bytes]):
    """A unix socket answering one request per entry of `answers`, in order."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def reply():
        for answer in answers:
            conn, _ = server.accept()
            seen.append(_whole_request(conn))
            conn.sendall(answer)
            conn.close()
        server.close()
    threading.Thread(target=reply, daemon=True).start()


def _whole_request(conn) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got:
        got += conn.recv(65536)
    head = got.split(b"\r\n\r\n", 1)[0]
    size = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0)
    while len(got) - len(head) - 4 < size:
        got += conn.recv(65536)
    return got


@pytest.mark.parametrize("ref,parts", [
    ("app", ("app", "latest")), ("app:1", ("app", "1")), ("reg:5000/org/app", ("reg:5000/org/app", "latest")),
    ("reg:5000/org/app:2.1", ("reg:5000/org/app", "2.1")), ("app@sha256:ab", None), ("", None), (":1", None)])
def test_a_reference_splits_into_name_and_tag_as_docker_tag_reads_it(ref, parts):
    assert engineapi.split_ref(ref) == parts


def test_a_tag_on_the_socket_posts_repo_and_tag_and_takes_201_only(tmp_path):
    sock, seen = tmp_path / "d.sock", []
    _serve(sock, [b"HTTP/1.1 201 Created\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n\r\n{}"], seen)
    assert engineapi.tag(str(sock), "sha256:ab", "reg:5000/app:1")
    assert seen[0].startswith(b"POST /images/sha256:ab/tag?repo=reg%3A5000%2Fapp&tag=1 HTTP/1.0\r\n")
    assert not engineapi.tag(str(sock), "sha256:cd", "app")
    assert not engineapi.tag(str(tmp_path / "none.sock"), "sha256:ab", "app")  # nobody there


class Engine:
    """The docker CLI for an early load: images present, loads and tags it sees."""

    def __init__(self, present=()):
        self.present, self.calls = set(present), []

    def __call__(self, real, argv, timeout=None, **_k):
        self.calls.append(tuple(argv))
        if argv[0] == "load":
            return subprocess.CompletedProcess(argv, 0, "Loaded image ID: x\n", "")
        if argv[:2] == ["image", "inspect"]:
            ids = [i for i in argv[4:] if i in self.present]
            return subprocess.CompletedProcess(argv, 0 if len(ids) == len(argv[4:]) else 1, "\n".join(ids), "")
        if argv[0] == "tag":
            self.present.add(argv[2])
        return subprocess.CompletedProcess(argv, 0, "", "")


def _early(tmp_path, monkeypatch, fp="fp1", built_from="fp1", has_image=False, ids=()):
    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"base", b"app"])
    lay.remember_inputs(built_from)
    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1", fingerprint=lambda: fp)
    engine = Engine([entry["digest"]] if has_image else [])
    monkeypatch.setattr(proc, "run_docker", engine)
    monkeypatch.setattr(proc, "spawn_background", lambda argv, env: engine.calls.append(tuple(argv[1:])))
    asking = threading.Thread(target=lambda: None)
    asking.start()
    inv, _b = args(["build", "-t", "x:1", "."])
    facts = {"ids": list(ids), "held": set(), "asked": set(), "base_diffs": set()}
    return earlyload.start("/bin/docker", inv, run, lay, asking, facts, steps=builder), (lay, entry, manifest, run, engine, inv)


def test_a_build_of_what_the_layout_was_built_from_loads_its_image_nameless_and_tags_it_after(tmp_path, monkeypatch):
    early, (lay, entry, manifest, run, engine, inv) = _early(tmp_path, monkeypatch)
    assert early is not None
    early.join()
    loads = [c for c in engine.calls if c[0] == "load"]
    assert len(loads) == 1 and not [c for c in engine.calls if c[0] == "tag"]  # no tag before the build ends
    assert early.finish("/bin/docker", inv, run, ["x:1"], lay, entry, manifest)
    assert ("tag", entry["digest"], "x:1") in engine.calls
    assert run.early is True and run.loaded is True
    assert run.state.get("sharedloads", "daemon-1", "x:1")["id"] == entry["digest"]
    early.discard("/bin/docker", inv, run)
    assert not [c for c in engine.calls if c[:2] == ("image", "rm")]  # the user's image now


def test_the_nameless_load_carries_no_name_annotation(tmp_path, monkeypatch):
    import json
    import tarfile

    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"app"])
    named = {**entry, "annotations": {"io.containerd.image.name": "x:1"}}
    early = earlyload.EarlyLoad("fp1", (named, manifest))
    lay.write_tar(str(tmp_path / "t.tar"), early.entry, manifest, set())
    with tarfile.open(tmp_path / "t.tar") as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"] == [entry] and early.digest == entry["digest"]


def test_another_result_or_a_failed_build_removes_the_image_the_early_load_added(tmp_path, monkeypatch):
    """Removed after the build's own load, which may leave out the layers it brought (an
    image removed first lets the engine drop them while that load still counts on them)."""
    from shim.build.shared.thinload import layers

    early, (lay, entry, manifest, run, engine, inv) = _early(tmp_path, monkeypatch)
    removed = []
    monkeypatch.setattr(proc, "spawn_background", lambda argv, env: removed.append(tuple(argv)))
    other = {**entry, "digest": "sha256:" + "f" * 64}
    assert not early.finish("/bin/docker", inv, run, ["x:1"], lay, other, manifest)
    assert removed == [] and run.early is False
    assert early.held() == set(layers(manifest))
    assert entry["digest"] not in builder._loaded(run)  # never remembered as the engine's
    early.discard("/bin/docker", inv, run)
    early.discard("/bin/docker", inv, run)
    assert removed == [("/bin/docker", "image", "rm", entry["digest"])]  # once, off the user's clock


def test_the_builds_own_image_is_never_removed_when_its_tag_fails(tmp_path, monkeypatch):
    early, (lay, entry, manifest, run, engine, inv) = _early(tmp_path, monkeypatch)
    removed = []
    monkeypatch.setattr(proc, "spawn_background", lambda argv, env: removed.append(tuple(argv)))
    monkeypatch.setattr(builder, "tag_image", lambda *a: False)
    assert not early.finish("/bin/docker", inv, run, ["x:1"], lay, entry, manifest)  # the usual load tags it
    early.discard("/bin/docker", inv, run)
    assert removed == []


def test_an_image_the_engine_had_is_tagged_without_a_load_and_never_removed(tmp_path, monkeypatch):
    early, (lay, entry, manifest, run, engine, inv) = _early(tmp_path, monkeypatch, has_image=True)
    early.join()
    assert not [c for c in engine.calls if c[0] == "load"]
    assert early.finish("/bin/docker", inv, run, ["x:1"], lay, entry, manifest)
    assert ("tag", entry["digest"], "x:1") in engine.calls
    assert not [c for c in engine.calls if c[:2] == ("image", "rm")]


@pytest.mark.parametrize("fp,built_from", [(None, "fp1"), ("fp2", "fp1"), ("fp1", None)])
def test_no_early_load_unless_the_build_reads_what_the_layout_was_built_from(tmp_path, monkeypatch, fp, built_from):
    early, (_lay, _e, _m, _run, engine, _inv) = _early(tmp_path, monkeypatch, fp=fp, built_from=built_from)
    early.join()
    assert not early.loaded and engine.calls == []
    assert early.fingerprint() == fp  # what the layout remembers after the export


def test_a_build_that_is_not_fingerprinted_starts_no_thread(tmp_path, monkeypatch):
    lay, _e, _m = _layout_with_image(tmp_path / "l", "x:1", [b"app"])
    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1")
    assert earlyload.start("/bin/docker", args(["build", "."])[0], run, lay, None, {}, steps=builder) is None


def test_the_fingerprint_is_taken_beside_the_build_not_before_it(tmp_path, monkeypatch):
    """The walk of a big context (up to inputs.BUDGET) must not delay the build's start."""
    walking = threading.Event()
    first, (lay, entry, manifest, run, engine, inv) = _early(tmp_path, monkeypatch)
    first.join()  # its load must not outlive this test: the next one's fake engine would record it
    run.fingerprint = lambda: walking.wait(5) and "fp1"
    early = earlyload.start("/bin/docker", inv, run, lay, threading.Thread(target=lambda: None), {}, steps=builder)
    assert early is not None and not early.known.is_set()  # start returned while the walk goes on
    walking.set()
    assert early.fingerprint() == "fp1"
    early.join()


def test_no_load_when_the_tag_names_the_image_already(tmp_path, monkeypatch):
    lay = _layout_with_image(tmp_path / "probe", "x:1", [b"base", b"app"])[1]
    early, (_lay, _e, _m, _run, engine, _inv) = _early(tmp_path, monkeypatch, ids=[lay["digest"]])
    early.join()
    assert engine.calls == [] and not early.loaded


def test_the_layout_forgets_what_its_image_was_built_from_when_a_build_is_not_fingerprinted(tmp_path):
    lay, _e, _m = _layout_with_image(tmp_path / "l", "x:1", [b"app"])
    lay.remember_inputs("fp1")
    assert lay.built_from() == "fp1"
    lay.remember_inputs(None)
    assert lay.built_from() is None


def test_the_engine_facts_come_from_the_socket_when_it_answers(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: pytest.fail("no CLI when the socket answers"))
    ok = lambda body: b"HTTP/1.1 200 OK\r\n\r\n" + json.dumps(body).encode()  # noqa: E731
    missing = b"HTTP/1.1 404 Not Found\r\n\r\n{}"
    sock, seen = tmp_path / "d.sock", []
    _serve(sock, [ok({"Id": "sha256:t"}), ok({"Id": "sha256:old"}), missing,
                  ok({"Id": "sha256:b", "RootFS": {"Layers": ["sha256:d1", "sha256:d2"]}})], seen)
    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1", socket=str(sock), bases=("base:1",))
    run.state.put(builder.LOADED, "daemon-1", "images", {"images": {"sha256:old": ["sha256:l1"], "sha256:gone": ["x"]}})
    inv, _b = args(["build", "-t", "x:1", "."])
    facts = builder._engine_facts("/bin/docker", inv, ["x:1"], run)
    assert facts == {"ids": ["sha256:t"], "asked": {"sha256:old", "sha256:gone"}, "held": {"sha256:l1"},
                     "base_diffs": {"sha256:d1", "sha256:d2"}}
    assert [r.split(b" ")[1] for r in seen] == [b"/images/x:1/json", b"/images/sha256:old/json",
                                                b"/images/sha256:gone/json", b"/images/base:1/json"]


def test_a_socket_that_does_not_answer_as_an_engine_sends_the_facts_to_the_cli(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(proc, "run_docker", lambda real, argv, **k: calls.append(argv) or subprocess.CompletedProcess(
        argv, 0, "sha256:t\n", ""))
    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1", socket=str(tmp_path / "none.sock"))
    inv, _b = args(["build", "-t", "x:1", "."])
    assert builder._engine_facts("/bin/docker", inv, ["x:1"], run)["ids"] == ["sha256:t"]
    assert calls[0][-1] == "x:1"


def test_a_load_on_the_socket_sends_the_tar_and_reads_docker_loads_stream(tmp_path):
    tar = tmp_path / "image.tar"
    tar.write_bytes(b"T" * 5000)
    sock, seen = tmp_path / "d.sock", []
    _serve(sock, [b'HTTP/1.1 200 OK\r\n\r\n{"stream":"Loaded image ID: sha256:ab\\n"}\r\n',
                  b'HTTP/1.1 200 OK\r\n\r\n{"errorDetail":{"message":"no"},"error":"no"}\r\n',
                  b"HTTP/1.1 500 Internal Server Error\r\n\r\n{}"], seen)
    assert engineapi.load(str(sock), str(tar), 5) == (True, "Loaded image ID: sha256:ab\n")
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /images/load?quiet=1 HTTP/1.0") and b"Content-Length: 5000" in head
    assert body and set(body) == {ord("T")}
    assert engineapi.load(str(sock), str(tar), 5)[0] is False  # the engine's error, in the stream
    assert engineapi.load(str(sock), str(tar), 5)[0] is False
    assert engineapi.load(str(tmp_path / "none.sock"), str(tar), 5) is None  # nobody there: ask the CLI


def test_a_thin_load_on_the_engines_socket_starts_no_docker_cli(tmp_path, monkeypatch):
    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"base", b"app"])
    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1", socket=str(tmp_path / "d.sock"))
    sent = []
    monkeypatch.setattr(engineapi, "load", lambda s, path, timeout: sent.append(path) or (True, "Loaded image ID: x\n"))
    monkeypatch.setattr(engineapi, "inspect", lambda s, name: {"Id": entry["digest"]})
    monkeypatch.setattr(engineapi, "tag", lambda s, image, ref: True)
    cli = Engine()
    monkeypatch.setattr(proc, "run_docker", cli)
    inv, _b = args(["build", "-t", "x:1", "."])
    base = manifest["layers"][0]["digest"]
    monkeypatch.setattr(builder, "_base_layers", lambda *a: {base})
    assert builder._thin_load("/bin/docker", inv, ["x:1"], run, lay, entry, manifest, set(), set()) == 0
    assert len(sent) == 1 and run.thin is True and cli.calls == []


def test_a_guess_whose_load_broke_off_is_removed_unless_the_build_made_that_image(tmp_path, monkeypatch):
    """A load that raised may have left the image in the engine: removed after a miss,
    never when it is the build's own image (the usual load just put it there)."""
    def broke_off(*_a, **_k):
        raise OSError("connection reset")
    monkeypatch.setattr(builder, "load_lacking", broke_off)
    for own in (True, False):
        early, (lay, entry, manifest, run, engine, inv) = _early(tmp_path / str(own), monkeypatch)
        early.join()
        assert not early.loaded
        built = entry if own else {**entry, "digest": "sha256:" + "e" * 64}
        assert not early.finish("/bin/docker", inv, run, ["x:1"], lay, built, manifest)
        early.discard("/bin/docker", inv, run)
        removed = [c for c in engine.calls if c[:2] == ("image", "rm")]
        assert removed == ([] if own else [("image", "rm", entry["digest"])])
