"""What a build reads, and when its export can be left out (shim/build/inputs.py)."""

from __future__ import annotations

import os

import pytest

from shim.build import inputs
from shim.core.grammar import parse_build, parse_invocation


def fp(argv, cwd, environ=None):
    inv = parse_invocation(argv)
    return inputs.fingerprint(inv.argv, inv.args_start, parse_build(inv), str(cwd), environ or {})


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


def test_a_context_bigger_than_the_limit_has_no_fingerprint(ctx, monkeypatch):
    monkeypatch.setattr(inputs, "LIMIT", 2)
    assert fp(ARGV, ctx.parent) is None


def test_from_images_and_those_named_by_an_arg():
    assert inputs.bases("FROM golang:1.22 AS build\nFROM build\nFROM scratch\n") == ["golang:1.22"]
    assert inputs.bases("ARG V=1\nFROM base:${V}\n") is None
    assert inputs.bases("FROM --platform=$BUILDPLATFORM golang:1.22 AS b\nFROM b\n") == ["golang:1.22"]


def test_unchanged_needs_the_same_inputs_bases_and_newest_build():
    mine = {"fp": "f", "bases": {"b": "sha256:1"}, "digest": "sha256:d"}
    assert inputs.unchanged(mine, "f", {"b": "sha256:1"}, "sha256:d")
    assert not inputs.unchanged(mine, "g", {"b": "sha256:1"}, "sha256:d")  # a file changed
    assert not inputs.unchanged(mine, "f", {"b": "sha256:2"}, "sha256:d")  # the base was pulled anew
    assert not inputs.unchanged(mine, "f", None, "sha256:d")  # the base is gone
    assert not inputs.unchanged(mine, "f", {"b": "sha256:1"}, "sha256:other")  # another session published since
    assert not inputs.unchanged(None, "f", {"b": "sha256:1"}, "sha256:d")
