"""A compose service's build runs without the store export only while nothing it reads
changed (compose/plan.py `_inputs`, build/inputs.py): what compose passes to the build
besides the service's build section counts too."""

from __future__ import annotations

import pytest

from shim.build import inputs as reads
from shim.build.store.local import LocalBuilds
from shim.compose import files
from shim.compose import plan as compose_plan
from shim.core.engine import BuildCaps
from shim.core.state import State


class _Store:
    def lineage(self, key):
        return ("sha256:d",)


@pytest.fixture
def same(tmp_path, monkeypatch):
    """same(argv, service) -> is the service's export left out, after this daemon exported
    it from `compose build` (no options) of the plain service?"""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("ARG BASE=base:1\nFROM $BASE\n")
    monkeypatch.setattr(reads, "base_ids", lambda real, g, images, sock=None: {i: f"sha256:{i}" for i in images})
    monkeypatch.setattr(reads, "asking_bases", lambda v, *a, **k: v)
    local = LocalBuilds(State(tmp_path / "state"), "/run/docker.sock|1|2")
    src = compose_plan.Sources(BuildCaps("full", "test", "docker"), _Store(), local=local)
    plain = {"build": {"context": str(ctx)}, "image": "web"}

    def check(argv, service=plain):
        call = files.split("docker", ["compose", *argv])
        found, kept = compose_plan._inputs("docker", call, {"web": service}, {"web": "k"}, src, {})
        return "k" in kept

    found, _ = compose_plan._inputs("docker", files.split("docker", ["compose", "build"]), {"web": plain},
                                    {"web": "k"}, src, {})
    local.state.put(reads.KIND, local.generation, "k",
                    {"fp": found["k"]["fp"], "bases": {"base:1": "sha256:base:1"}, "digest": "sha256:d"})
    check.plain = plain
    return check


def test_an_unchanged_service_is_not_exported(same):
    assert same(["build"]) and same(["up", "--build"])


def test_compose_builds_own_build_arg_counts(same):
    """`compose build --build-arg V=2` reaches the build (and may name its FROM): the same
    service section with another argument exported nothing, the store kept the old chain."""
    assert not same(["build", "--build-arg", "V=2"])
    assert not same(["build", "--build-arg", "BASE=base:2"])


def test_the_services_platform_counts(same):
    """compose builds a service for its `platform:` (outside the build section)."""
    assert not same(["build"], {**same.plain, "platform": "linux/arm64"})


def test_a_bare_build_arg_compose_may_take_from_dotenv_is_not_certain(same):
    assert not same(["build", "--build-arg", "NOT_SET_HERE"])
