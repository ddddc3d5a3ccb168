"""What a build reads, and when its export can be left out (shim/build/inputs.py)."""

from __future__ import annotations

import os

import pytest

from shim.build import inputs
from shim.core.grammar import parse_build, parse_invocation


def fp(argv, cwd, environ=None):
    inv = parse_invocation(argv)
    got = inputs.build_inputs(inv.argv, inv.args_start, parse_build(inv), str(cwd), environ or {})
    return got[0] if got else None


@pytest.fixture
def ctx(tmp_path):
    d = tmp_path / "ctx"
    (d / "src").mkdir(parents=True)
    (d / "Dockerfile").write_text("FROM base:1\nCOPY . /app\n")
    (d / "src" / "main.go").write_text("package main\n")
    return d


ARGV = ["build", "-t", "app:1", "ctx"]


def test_the_same_tree_gives_the_same_fingerprint_and_any_change_another(ctx):
    first = fp(ARGV, ctx.parent)
    assert first and fp(ARGV, ctx.parent) == first
    seen = {first}
    (ctx / "src" / "main.go").write_text("package main // edited\n")  # size and mtime
    seen.add(fp(ARGV, ctx.parent))
    st = os.stat(ctx / "src" / "main.go")
    os.utime(ctx / "src" / "main.go", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a touch
    seen.add(fp(ARGV, ctx.parent))
    (ctx / "new.txt").write_text("x")
    seen.add(fp(ARGV, ctx.parent))
    (ctx / "Dockerfile").write_text("FROM base:1\nCOPY . /srv\n")
    seen.add(fp(ARGV, ctx.parent))
    seen.add(fp(["build", "-t", "app:1", "--build-arg", "V=2", "ctx"], ctx.parent))
    assert len(seen) == 6 and None not in seen


def test_a_bare_build_arg_reads_its_value_from_the_environment(ctx):
    argv = ["build", "--build-arg", "TOKEN", "ctx"]
    assert fp(argv, ctx.parent, {"TOKEN": "a"}) != fp(argv, ctx.parent, {"TOKEN": "b"})


def test_the_environment_docker_builds_from_counts(ctx):
    """DOCKER_DEFAULT_PLATFORM (the platform built) and SOURCE_DATE_EPOCH (the image's
    timestamps) change what the same argv makes: an arm64 build after an amd64 one ran as
    typed and the store never got it. Unset, the fingerprint is what it was."""
    plain = fp(ARGV, ctx.parent, {"HOME": "/h"})
    amd, arm = (fp(ARGV, ctx.parent, {"DOCKER_DEFAULT_PLATFORM": p}) for p in ("linux/amd64", "linux/arm64"))
    epoch = fp(ARGV, ctx.parent, {"SOURCE_DATE_EPOCH": "0"})
    assert len({plain, amd, arm, epoch}) == 4 and plain == fp(ARGV, ctx.parent)
    service = {"context": str(ctx)}
    assert (inputs.compose_service(service, "img", False, False, {"DOCKER_DEFAULT_PLATFORM": "linux/arm64"})[0]
            != inputs.compose_service(service, "img", False, False, {})[0])


def test_a_dir_the_dockerignore_leaves_out_is_not_walked(ctx):
    (ctx / "node_modules" / "x").mkdir(parents=True)
    (ctx / ".dockerignore").write_text("node_modules\n# a comment\n")
    before = fp(ARGV, ctx.parent)
    (ctx / "node_modules" / "x" / "big.js").write_text("...")
    assert fp(ARGV, ctx.parent) == before
    (ctx / ".dockerignore").write_text("node_modules\n!node_modules/keep.js\n")  # an exception: walk it all
    with_exception = fp(ARGV, ctx.parent)
    (ctx / "node_modules" / "x" / "big.js").write_text("changed")
    assert fp(ARGV, ctx.parent) != with_exception


@pytest.mark.parametrize("argv", [
    ["build", "-"], ["build", "-f", "-", "ctx"], ["build", "https://example.invalid/repo.git"],
    ["build", "--pull", "ctx"], ["build", "--no-cache", "ctx"], ["build", "--build-context", "x=dir", "ctx"],
    ["build", "missing-dir"],
])
def test_what_cannot_be_told_for_sure_has_no_fingerprint(ctx, argv):
    assert fp(argv, ctx.parent) is None


def test_a_context_bigger_than_the_limit_or_slower_than_the_budget_has_no_fingerprint(ctx, monkeypatch):
    assert fp(ARGV, ctx.parent) is not None
    monkeypatch.setattr(inputs, "LIMIT", 2)
    assert fp(ARGV, ctx.parent) is None
    monkeypatch.setattr(inputs, "LIMIT", 20_000)
    monkeypatch.setattr(inputs, "BUDGET", -1.0)
    assert fp(ARGV, ctx.parent) is None


def test_the_dockerfiles_own_ignore_file_replaces_dockerignore(ctx):
    """BuildKit reads Dockerfile.dockerignore instead of .dockerignore: a dir only the
    latter names is sent, so a change there must count."""
    (ctx / "node_modules").mkdir()
    (ctx / ".dockerignore").write_text("node_modules\n")
    (ctx / "Dockerfile.dockerignore").write_text("dist\n")
    before = fp(ARGV, ctx.parent)
    (ctx / "node_modules" / "x.js").write_text("sent")
    assert fp(ARGV, ctx.parent) != before
    (ctx / "Dockerfile.dockerignore").unlink()
    without = fp(ARGV, ctx.parent)
    (ctx / "node_modules" / "x.js").write_text("not sent")
    assert fp(ARGV, ctx.parent) == without


def test_a_compose_services_inline_dockerfile_counts_and_a_relative_context_is_not_certain(ctx):
    one = inputs.compose_service({"context": str(ctx), "dockerfile_inline": "FROM a:1\n"}, "img", False, False, {})
    two = inputs.compose_service({"context": str(ctx), "dockerfile_inline": "FROM a:2\n"}, "img", False, False, {})
    assert one and two and one[0] != two[0] and one[1] == "FROM a:1\n"
    assert inputs.compose_service({"context": "rel"}, "img", False, False, {}) is None
    assert inputs.compose_service({"context": str(ctx)}, "img", False, True, {}) is None  # --pull


def test_from_images_and_those_named_by_an_arg():
    assert inputs.bases("FROM golang:1.22 AS build\nFROM build\nFROM scratch\n") == ["golang:1.22"]
    assert inputs.bases("FROM --platform=$BUILDPLATFORM golang:1.22 AS b\nFROM b\n") == ["golang:1.22"]


def test_a_from_named_by_a_global_arg_is_its_default_or_the_build_arg():
    """`ARG GO=1.22` / `FROM golang:${GO}`: the image is known (every such build exported,
    even an unchanged rebuild); an ARG whose value cannot be told keeps it unknown."""
    text = "ARG GO=1.22\nARG BASE=\"busybox\" OS\nFROM golang:${GO}-alpine AS b\nFROM $BASE\nCOPY --from=b / /\n"
    assert inputs.bases(text) == ["golang:1.22-alpine", "busybox"]
    assert inputs.bases(text, {"GO": "1.23"}) == ["golang:1.23-alpine", "busybox"]
    assert inputs.bases("ARG V\nFROM base:${V:-2}\n") == ["base:2"]  # declared, no value: empty
    assert inputs.bases("ARG IMG=a\nFROM ${IMG} AS s\nFROM s\n") == ["a"]
    assert inputs.bases("FROM base:${V}\n") is None  # not declared before the first FROM
    assert inputs.bases("ARG V\nFROM ${V}\n") is None  # empty: not an image
    assert inputs.bases("FROM a\nARG V=1\nFROM base:${V}\n") is None  # a stage ARG is not in FROM's scope
    assert inputs.bases("ARG A=$B\nFROM x:${A}\n") is None
    assert inputs.bases("ARG P=$BUILDPLATFORM\nFROM x:${P}\n") is None
    assert inputs.bases("ARG TARGETARCH\nFROM x-${TARGETARCH}\n") is None  # BuildKit fills it in, not empty
    assert inputs.bases("ARG BUILD_ID\nFROM x${BUILD_ID}\n") == ["x"]


def test_unchanged_needs_the_same_inputs_bases_and_newest_build():
    mine = {"fp": "f", "bases": {"b": "sha256:1"}, "digest": "sha256:d"}
    assert inputs.unchanged(mine, "f", {"b": "sha256:1"}, "sha256:d")
    assert not inputs.unchanged(mine, "g", {"b": "sha256:1"}, "sha256:d")  # a file changed
    assert not inputs.unchanged(mine, "f", {"b": "sha256:2"}, "sha256:d")  # the base was pulled anew
    assert not inputs.unchanged(mine, "f", None, "sha256:d")  # the base is gone
    assert not inputs.unchanged(mine, "f", {"b": "sha256:1"}, "sha256:other")  # another session published since
    assert not inputs.unchanged(None, "f", {"b": "sha256:1"}, "sha256:d")


def _serve_once(path, answer: bytes, seen: list):
    import socket
    import threading

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def reply():
        conn, _ = server.accept()
        seen.append(conn.recv(65536))
        conn.sendall(answer)
        conn.close()
        server.close()
    threading.Thread(target=reply, daemon=True).start()


def test_the_from_ids_come_from_the_engine_api_on_its_socket_and_from_the_cli_otherwise(tmp_path, monkeypatch):
    from shim.core import proc

    sock, seen = tmp_path / "d.sock", []
    _serve_once(sock, b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"Id": "sha256:ab", "Size": 1}', seen)
    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: pytest.fail("no CLI when the socket answers"))
    assert inputs.base_ids("/bin/docker", [], ["reg:5000/org/base:1"], str(sock)) == {"reg:5000/org/base:1": "sha256:ab"}
    assert seen[0].startswith(b"GET /images/reg:5000/org/base:1/json HTTP/1.0\r\n")
    missing = tmp_path / "m.sock"
    _serve_once(missing, b'HTTP/1.1 404 Not Found\r\n\r\n{"message": "No such image"}', [])
    calls = []
    monkeypatch.setattr(proc, "run_docker", lambda real, argv, **k: calls.append(argv) or proc.Result(
        tuple(argv), 0, "sha256:cd\n", ""))
    assert inputs.base_ids("/bin/docker", ["-H", "x"], ["base:1"], str(missing)) == {"base:1": "sha256:cd"}
    assert calls == [["-H", "x", "image", "inspect", "--format", "{{.Id}}", "base:1"]]


def test_an_edit_of_a_dockerignore_that_names_itself_counts(ctx):
    """`.dockerignore` listing itself (common, with `Dockerfile`) left its own changes out of
    the walk: dropping `*.md` sends the README, yet the rebuild ran without its export."""
    (ctx / "README.md").write_text("docs\n")
    (ctx / ".dockerignore").write_text(".dockerignore\n*.md\n")
    before = fp(ARGV, ctx.parent)
    (ctx / ".dockerignore").write_text(".dockerignore\n")
    assert fp(ARGV, ctx.parent) != before


def test_a_from_arg_is_expanded_where_it_names_the_image_not_inside_a_flag():
    """`$IMG` is also the start of `$IMG_PLATFORM` in the --platform flag: the expansion went
    there, the image stayed `$IMG` and was left out of the FROM ids (a base pulled anew
    went unseen)."""
    text = "ARG IMG=alpine:3\nARG IMG_PLATFORM=linux/amd64\nFROM --platform=$IMG_PLATFORM $IMG\n"
    assert inputs.bases(text) == ["alpine:3"]


def test_a_dockerfile_copied_to_a_new_temp_path_for_each_build_is_the_same_build(ctx, tmp_path):
    """The dev containers CLI writes the Dockerfile to a new temp dir every time: its text
    counts, not its path."""
    got = []
    for n, form in enumerate((["-f", "{}"], ["--file={}"], ["-f{}"])):
        written = tmp_path / f"devcontainercli-{n}" / "Dockerfile"
        written.parent.mkdir()
        written.write_text((ctx / "Dockerfile").read_text())
        got.append(fp(["buildx", "build", *(w.format(written) for w in form), "-t", "app:1", "ctx"], ctx.parent))
    assert got[0] and len(set(got)) <= 2  # -f PATH and -fPATH / --file=PATH
    other = tmp_path / "devcontainercli-x" / "Dockerfile"
    other.parent.mkdir()
    other.write_text("FROM base:2\n")
    assert fp(["buildx", "build", "-f", str(other), "-t", "app:1", "ctx"], ctx.parent) != got[0]
