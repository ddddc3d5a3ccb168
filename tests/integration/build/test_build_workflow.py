"""The build cache on a developer's real day (engine pair, a Debian base of real size):
edits between builds, a new session after the edit, variants of one repository, and a
warm build that writes nothing the store already has."""

import json
import uuid
from pathlib import Path

import pytest

from shim.build.progress import step_named
from tests.conftest import DEVTOOLS
from tests.integration.helpers import keep_previous, shim

pytestmark = pytest.mark.engine


def workflow_project(tmp_path, *, arg: bool = False) -> tuple[Path, str]:
    """FROM a ~200 MB Debian image; an expensive RUN, then a COPY of the file we edit."""
    d = tmp_path / "wf"
    d.mkdir()
    token = uuid.uuid4().hex
    d.joinpath("Dockerfile").write_text(
        f"FROM {DEVTOOLS}\n" + ("ARG V=0\n" if arg else "") +
        f"RUN echo {token}{' $V' if arg else ''} > /slow && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n"
        "COPY app.txt /app/app.txt\n"
        "RUN cat /app/app.txt > /app/out\n")
    edit(d)
    return d, token


def edit(ctx: Path) -> None:
    ctx.joinpath("app.txt").write_text(uuid.uuid4().hex)


def build(env, engine, ctx, tag, *extra):
    keep_previous(engine, tag)
    engine.images.append(tag)
    cp = shim(env, "build", "--network", "none", "--progress", "plain", "-t", tag, *extra, str(ctx),
              extra={"DOCKER_HOST": engine.host})
    assert cp.returncode == 0, cp.stderr[-2000:]
    return cp


def last_build(env) -> dict:
    lines = (Path(env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if '"build"' in x][-1]


def test_an_edit_then_a_new_session_hits_every_step_before_the_changed_copy(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, token = workflow_project(tmp_path)
    tag = f"{a.prefix}/app:1"
    assert not step_named(build(shim_env, a, ctx, tag).stderr, token).cached
    edit(ctx)
    assert step_named(build(shim_env, a, ctx, tag).stderr, token).cached  # edited rebuild, same session
    edit(ctx)
    cp = build(shim_env, b, ctx, tag)  # a new session after a further edit
    assert step_named(cp.stderr, token).cached
    assert not step_named(cp.stderr, "COPY app.txt").cached


def test_a_warm_build_writes_no_blob_the_store_already_has(shim_env, engines, tmp_path):
    a = engines["a"]
    ctx, _token = workflow_project(tmp_path)
    tag = f"{a.prefix}/app:1"
    build(shim_env, a, ctx, tag)
    cold = last_build(shim_env)
    assert cold["export_written"] < 1_000_000  # the base image's layers stay out (baselayers.py)
    build(shim_env, a, ctx, tag)  # nothing it reads changed since that export: docker runs it as typed
    same = last_build(shim_env)
    assert same["as_typed"] and not same["export"] and "export_written" not in same  # no --cache-to
    build(shim_env, a, ctx, tag, "--label", "x=1")  # another argument: exported, nothing new written
    warm = last_build(shim_env)
    assert warm["export_written"] < 100_000
    assert warm["imports"] == []  # this daemon built every stored build: its own cache serves it
    edit(ctx)
    build(shim_env, a, ctx, tag)
    edited = last_build(shim_env)
    assert edited["export_written"] < 1_000_000 and edited["store_changed"]


def test_two_variants_built_alternately_both_hit_in_full_on_a_new_session(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, token = workflow_project(tmp_path, arg=True)
    tag = f"{a.prefix}/app:1"
    for v in ("0", "1", "0", "1"):
        build(shim_env, a, ctx, tag, "--build-arg", f"V={v}")
    for v in ("0", "1"):
        cp = build(shim_env, b, ctx, tag, "--build-arg", f"V={v}")
        assert step_named(cp.stderr, token).cached, f"variant V={v} missed on B"
        assert step_named(cp.stderr, "COPY app.txt").cached


def test_variants_through_the_registry_backend_both_hit_on_a_new_host(shim_env, engines, tmp_path):
    """The registry keeps a key's builds as KEY, KEY--h1, ...: a new host with an empty
    state dir imports them all."""
    import os

    from shim.build.store.registry import Registry

    a, b = engines["a"], engines["b"]
    repo = f"{os.environ.get('DOCKCACHE_TEST_REGISTRY', 'localhost:5000')}/{a.prefix}-wf"
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo}
    ctx, token = workflow_project(tmp_path, arg=True)
    tag = f"{a.prefix}/app:1"
    for v in ("0", "1", "0", "1"):
        build({**env, "DOCKCACHE_STATE_DIR": str(tmp_path / f"s-a{v}")}, a, ctx, tag, "--build-arg", f"V={v}")
    key = f"{a.prefix}-app"
    assert {key, f"{key}--h1"} <= set(Registry(repo).tags())
    for v in ("0", "1"):
        fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / f"s-b{v}")}
        cp = build(fresh, b, ctx, tag, "--build-arg", f"V={v}")
        assert step_named(cp.stderr, token).cached, f"variant V={v} missed on the new host"


def test_after_a_builder_prune_the_same_daemon_imports_again(shim_env, engines, tmp_path):
    """The daemon that made a key skips the import (its own BuildKit holds the records);
    `docker builder prune` through the shim empties that BuildKit, so the next build must
    import the key again — and hits, where it would otherwise run every step."""
    a = engines["a"]
    ctx, token = workflow_project(tmp_path)
    tag = f"{a.prefix}/app:1"
    build(shim_env, a, ctx, tag)
    assert step_named(build(shim_env, a, ctx, tag).stderr, token).cached
    assert last_build(shim_env)["imports"] == []
    pruned = shim(shim_env, "builder", "prune", "-af", extra={"DOCKER_HOST": a.host})
    assert pruned.returncode == 0, pruned.stderr
    cp = build(shim_env, a, ctx, tag)
    assert last_build(shim_env)["imports"] and step_named(cp.stderr, token).cached
