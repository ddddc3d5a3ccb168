"""`docker buildx bake`: the grammar's reading of its argv and the pure plan of our `--set`s."""

import pytest

from shim.build.bake.plan import BakeTarget, plan_bake, user_sets
from shim.core.engine import BuildCaps
from shim.core.grammar import parse_bake, parse_invocation

FULL = BuildCaps("full", "test", "docker")
OLD = BuildCaps("import-only", "classic store", "docker")
SNAP = "/s/snapshots/dockcache-snap-1"
TARGETS = (BakeTarget("api", "org-api"), BakeTarget("web", "ctx-web", ("org-main",)))


def plan(argv, targets=TARGETS, caps=FULL, tags=None, dests=None, **kw):
    inv = parse_invocation(argv)
    tags = {"org-api": ("org-api", "org-api~1"), "org-main": ("org-main",)} if tags is None else tags
    dests = {"api": "/s/tmp/dockcache-export-a", "web": "/s/tmp/dockcache-export-w"} if dests is None else dests
    return plan_bake(argv, inv, parse_bake(inv), caps, targets, import_src=SNAP, import_tags=tags,
                     export_dests=dests, **kw)


@pytest.mark.parametrize("argv,kind,command", [
    (["buildx", "bake"], "bake", ("buildx", "bake")),
    (["buildx", "f", "web"], "bake", ("buildx", "f")),
    (["-H", "unix:///x", "buildx", "--builder", "bx", "bake", "-f", "a.hcl"], "bake", ("buildx", "bake")),
    (["buildx", "b", "."], "build", ("buildx", "b")),
    (["buildx", "ls"], "passthrough", ("buildx",)),
])
def test_bake_is_its_own_kind(argv, kind, command):
    inv = parse_invocation(argv)
    assert (inv.kind, inv.command) == (kind, command)


def test_options_and_targets_interleave():
    b = parse_bake(parse_invocation(["buildx", "bake", "api", "-f", "x.hcl", "--set=*.platform=a", "--load",
                                     "web", "--file=y.json", "--no-cache", "-fz.hcl"]))
    assert b.targets == ("api", "web") and b.files == ("x.hcl", "y.json", "z.hcl")
    assert b.sets == ("*.platform=a",) and b.load and b.no_cache and not b.push
    assert b.looks is None and b.misread is None


@pytest.mark.parametrize("argv,looks", [
    (["buildx", "bake", "--print"], True), (["buildx", "bake", "-h"], True), (["buildx", "bake", "--help"], True),
    (["buildx", "bake", "--list=targets"], True), (["buildx", "bake", "--call", "check"], True),
    (["buildx", "bake", "--check"], True), (["buildx", "bake", "--call=build"], False),
    (["buildx", "bake", "--print=false"], False),
])
def test_what_only_prints_or_checks(argv, looks):
    assert (parse_bake(parse_invocation(argv)).looks is not None) is looks


@pytest.mark.parametrize("argv,why", [
    (["buildx", "bake", "--frobnicate", "x", "api"], "unknown bake option --frobnicate"),
    (["buildx", "bake", "-f", "-"], "stdin"),
    (["buildx", "bake", "https://example.invalid/r.git#main", "api"], "remote bake definition"),
    (["buildx", "bake", "git@example.invalid:o/r.git"], "remote bake definition"),
    (["buildx", "bake", "api", "--set"], "has no value"),
])
def test_argv_not_read_for_sure(argv, why):
    assert why in (parse_bake(parse_invocation(argv)).misread or "")


def test_sets_import_and_export_after_the_bake_word():
    p = plan(["buildx", "bake", "--progress", "plain", "api", "web"])
    assert p.argv == ("buildx", "bake",
                      "--set", f"api.cache-from=type=local,src={SNAP},tag=org-api",
                      "--set", f"api.cache-from=type=local,src={SNAP},tag=org-api~1",
                      "--set", "api.cache-to=type=local,dest=/s/tmp/dockcache-export-a,mode=max,tag=org-api,ignore-error=true",
                      "--set", f"web.cache-from=type=local,src={SNAP},tag=org-main",
                      "--set", "web.cache-to=type=local,dest=/s/tmp/dockcache-export-w,mode=max,tag=ctx-web,ignore-error=true",
                      "--progress", "plain", "api", "web")
    assert p.imports == ("org-api", "org-main") and p.keys == ("org-api", "ctx-web")
    assert p.exports == (("api", "org-api", "/s/tmp/dockcache-export-a"), ("web", "ctx-web", "/s/tmp/dockcache-export-w"))


def test_a_target_with_cache_entries_of_its_own_keeps_them():
    targets = (BakeTarget("api", "org-api", own_from=True), BakeTarget("web", "ctx-web", own_to=True, no_cache=True))
    p = plan(["buildx", "bake"], targets=targets)
    assert not any(v.startswith(("api.cache-from", "web.cache-from", "web.cache-to")) for v in p.argv)
    assert any(v.startswith("api.cache-to") for v in p.argv)
    assert [e[0] for e in p.exports] == ["api"]


def test_user_set_patterns_reach_targets_as_globs():
    b = parse_bake(parse_invocation(["buildx", "bake", "--set", "*.cache-to=type=inline", "--set", "a?i.cache-from=x"]))
    assert user_sets(b, "web", "cache-to") and user_sets(b, "api", "cache-from")
    assert not user_sets(b, "web", "cache-from") and not user_sets(b, "api", "cache-fromx")


def test_old_engine_imports_only_none_passes_and_nested_adds_nothing():
    p = plan(["buildx", "bake"], caps=OLD)
    assert "cache-to" not in " ".join(p.argv) and p.exports == () and p.imports == ("org-api", "org-main")
    assert plan(["buildx", "bake"], caps=BuildCaps("none", "no buildx")).argv == ("buildx", "bake")
    once = plan(["buildx", "bake", "api"])
    assert plan(list(once.argv)).argv == once.argv


def test_registry_backend_imports_existing_tags_and_exports_to_a_build_tag():
    p = plan(["buildx", "bake"], tags={}, dests={}, registry="localhost:5000/c",
             registry_imports={"org-api": ("org-api",)}, registry_tags={"org-api": "org-api--b1", "ctx-web": "ctx-web"})
    joined = " ".join(p.argv)
    assert "api.cache-from=type=registry,ref=localhost:5000/c:org-api " in joined + " "
    assert "api.cache-to=type=registry,ref=localhost:5000/c:org-api--b1,mode=max,ignore-error=true" in joined
    assert "web.cache-to=type=registry,ref=localhost:5000/c:ctx-web,mode=max" in joined
    assert p.moves == (("org-api", "org-api--b1"),) and p.exports == ()


def test_looks_and_misread_pass_through():
    assert plan(["buildx", "bake", "--print"]).argv == ("buildx", "bake", "--print")
    assert plan(["buildx", "bake", "--wat", "api"]).argv == ("buildx", "bake", "--wat", "api")


def test_an_unchanged_target_exports_nothing_to_the_store():
    p = plan(["buildx", "bake"], dests={"web": "/s/tmp/dockcache-export-w"}, unchanged=frozenset({"org-api"}))
    assert [e[0] for e in p.exports] == ["web"] and not any(v.startswith("api.cache-to") for v in p.argv)
    assert any("nothing it reads changed" in r for r in p.reasons if r.startswith("api:"))


def test_a_target_read_as_a_compose_build_section():
    from shim.build.bake.inputs import as_build_section

    section = as_build_section({"context": "api", "dockerfile": "Dockerfile", "no-cache": True,
                                "contexts": {"x": "target:y"}, "cache-from": ["a"], "tags": ["t"]}, "/w")
    assert section == {"context": "/w/api", "dockerfile": "Dockerfile", "no_cache": True,
                       "additional_contexts": {"x": "target:y"}, "tags": ["t"]}
    assert as_build_section({"context": "https://example.invalid/r.git"}, "/w") is None


def test_targets_as_docker_builds_for_the_shared_builder():
    from shim.build.bake.shared import plan_target_builds

    resolved = {"web": {"context": "web", "dockerfile": "Dockerfile.web", "tags": ["o/web:1"], "args": {"A": "1", "B": None},
                        "target": "prod", "platforms": ["linux/amd64"], "output": ["type=docker"]},
                "api": {"context": "api", "dockerfile": "Dockerfile", "no-cache": True}}
    builds, why = plan_target_builds(parse_bake(parse_invocation(["buildx", "bake", "--load", "--progress=plain"])), resolved)
    assert why is None and [b.target for b in builds] == ["api", "web"]
    assert builds[0].argv == ("build", "--no-cache", "--progress", "plain", "api")
    assert builds[1].argv == ("build", "-f", "web/Dockerfile.web", "-t", "o/web:1", "--build-arg", "A=1",
                              "--target", "prod", "--platform", "linux/amd64", "--progress", "plain", "web")


@pytest.mark.parametrize("argv,target,why", [
    (["buildx", "bake", "--push"], {"context": "."}, "--push"),
    (["buildx", "bake", "--metadata-file", "m.json"], {"context": "."}, "--metadata-file"),
    (["buildx", "bake", "--progress=quiet"], {"context": "."}, "quiet"),
    (["buildx", "bake"], {"context": ".", "contexts": {"b": "target:base"}}, "contexts"),
    (["buildx", "bake"], {"context": ".", "output": ["type=registry"]}, "output"),
    (["buildx", "bake"], {"context": ".", "platforms": ["linux/amd64", "linux/arm64"]}, "platforms"),
    (["buildx", "bake"], {"context": "https://example.invalid/r.git"}, "remote"),
])
def test_what_a_docker_build_cannot_say_stays_with_bake(argv, target, why):
    from shim.build.bake.shared import plan_target_builds

    builds, reason = plan_target_builds(parse_bake(parse_invocation(argv)), {"t": target})
    assert builds == [] and why in reason


def test_a_target_from_another_targets_image_keeps_the_store_path():
    from shim.build.bake.shared import builds_on_another

    resolved = {"base": {"tags": ["o/base:1"]}, "app": {"tags": ["o/app:1"]}}
    assert "app builds FROM o/base:1" in builds_on_another(resolved, {"app": "FROM o/base:1\nRUN true\n"})
    assert builds_on_another(resolved, {"app": "FROM busybox\n"}) is None
