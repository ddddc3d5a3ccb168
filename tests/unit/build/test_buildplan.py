"""Build rewrite decisions, and the remote-builder load check with a faked docker."""

import pytest

from shim.build import command as buildcmd
from shim.core import proc
from shim.build.plan import needs_load, plan_build
from shim.core.config import load
from shim.core.engine import BuildCaps
from shim.core.grammar import parse_build, parse_invocation

FULL = BuildCaps("full", "test", "docker")
REMOTE = BuildCaps("full", "test", "docker-container")
OLD = BuildCaps("import-only", "classic store", "docker")


def plan(argv, caps=FULL, available=("k",)):
    inv = parse_invocation(argv)
    return plan_build(argv, inv, parse_build(inv), caps, key="k", available=available,
                      import_src="/s/dockcache-snap", export_dest="/s/dockcache-export")


def test_import_and_export_added_after_command_words():
    p = plan(["build", "-t", "x", "."])
    assert p.argv == ("build", "--cache-from", "type=local,src=/s/dockcache-snap,tag=k",
                      "--cache-to", "type=local,dest=/s/dockcache-export,mode=max,tag=k,ignore-error=true", "-t", "x", ".")


def test_user_cache_flags():
    p = plan(["build", "--cache-to", "type=inline", "--cache-from", "img", "."])
    assert not p.export and "--cache-from" in p.argv[1:3] and p.argv.count("--cache-to") == 1
    p = plan(["build", "--no-cache", "."])
    assert p.imports == () and p.export


def test_old_engine_imports_only_and_nested_shim_adds_nothing():
    p = plan(["build", "."], caps=OLD)
    assert p.imports == ("k",) and not p.export
    once = plan(["build", "."])
    assert plan(list(once.argv)).argv == once.argv


def test_none_passes_through():
    assert plan(["build", "."], caps=BuildCaps("none", "no buildx")).argv == ("build", ".")


@pytest.mark.parametrize("argv,expected", [
    (["buildx", "build", "-t", "a", "."], True),
    (["buildx", "build", "."], False),
    (["buildx", "build", "-t", "a", "--load", "."], False),
    (["buildx", "build", "-t", "a", "--push", "."], False),
    (["buildx", "build", "-t", "a", "-o", "type=docker", "."], False),
])
def test_needs_load_only_for_untargeted_tagged_remote_builds(argv, expected):
    inv = parse_invocation(argv)
    assert needs_load(parse_build(inv), REMOTE) is expected
    assert needs_load(parse_build(inv), FULL) is False


@pytest.mark.parametrize("local_id,loads", [("sha256:same", False), ("sha256:other", True)])
def test_load_skipped_when_image_unchanged(monkeypatch, local_id, loads):
    calls = []

    def child(real, argv, env=None):
        calls.append(list(argv))
        if "--iidfile" in argv:
            open(argv[argv.index("--iidfile") + 1], "w").write("sha256:same")
        return 0

    monkeypatch.setattr(proc, "run_child", child)
    monkeypatch.setattr(proc, "run_docker", lambda real, argv, timeout=0: proc.Result(tuple(argv), 0, local_id + "\n", ""))
    argv = ["buildx", "build", "-t", "app:1", "."]
    inv = parse_invocation(argv)
    p = plan(argv, caps=REMOTE)
    assert p.load_check
    prep = buildcmd.Prepared(p, None, None, None, None, REMOTE)
    assert buildcmd._build("docker", inv, prep) == 0
    assert ["--load" in c for c in calls] == ([False, True] if loads else [False])


def test_registry_backend_imports_existing_keys_and_exports_own():
    argv = ["build", "-t", "x", "."]
    inv = parse_invocation(argv)
    p = plan_build(argv, inv, parse_build(inv), FULL, key="k", available=(), import_src=None, export_dest=None,
                   registry="localhost:5000/cache", registry_keys=("k", "k-main"))
    assert p.argv[1:7] == ("--cache-from", "type=registry,ref=localhost:5000/cache:k",
                           "--cache-from", "type=registry,ref=localhost:5000/cache:k-main",
                           "--cache-to", "type=registry,ref=localhost:5000/cache:k,mode=max,ignore-error=true")
    old = plan_build(argv, inv, parse_build(inv), OLD, key="k", available=(), import_src=None, export_dest=None,
                     registry="localhost:5000/cache", registry_keys=("k",))
    assert old.argv == tuple(argv)


def test_registry_export_goes_to_the_build_tag_and_is_remembered_for_the_move():
    argv = ["build", "-t", "x", "."]
    inv = parse_invocation(argv)
    p = plan_build(argv, inv, parse_build(inv), FULL, key="k", available=(), import_src=None, export_dest=None,
                   registry="localhost:5000/cache", registry_keys=("k",), registry_tag="k--b2000000000-abcdef")
    assert "type=registry,ref=localhost:5000/cache:k--b2000000000-abcdef,mode=max,ignore-error=true" in p.argv
    assert "type=registry,ref=localhost:5000/cache:k" in p.argv and p.registry_tag == "k--b2000000000-abcdef"
    user_to = ["build", "--cache-to", "type=inline", "-t", "x", "."]
    inv = parse_invocation(user_to)
    p = plan_build(user_to, inv, parse_build(inv), FULL, key="k", available=(), import_src=None,
                   export_dest=None, registry="localhost:5000/cache", registry_tag="k--b2000000000-abcdef")
    assert p.registry_tag is None  # no export of ours: nothing to move


def test_registry_key_tag_move_failure_is_one_line(monkeypatch, capsys):
    from shim.build.store import registry as registrycache

    def refuse(self, source, key, **_kw):
        raise registrycache.RegistryError("localhost:5000/cache:k--b1-abcdef: manifest answered HTTP 404")
    monkeypatch.setattr(registrycache.Registry, "move", refuse)
    argv = ["build", "-t", "x", "."]
    inv = parse_invocation(argv)
    p = plan_build(argv, inv, parse_build(inv), FULL, key="k", available=(), import_src=None, export_dest=None,
                   registry="localhost:5000/cache", registry_tag="k--b1-abcdef")
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_BUILD_REGISTRY": "localhost:5000/cache"})
    buildcmd._move_key_tag(buildcmd.Prepared(p, None, None, None, cfg, FULL, registrycache.Registry(cfg["build.registry"])))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not updated" in err


@pytest.mark.parametrize("argv", [
    ["build", "-t", "a", "-"],  # context from stdin: readable once
    ["build", "-t", "a", "-f", "-", "."],  # Dockerfile from stdin
    ["build", "-q", "-t", "a", "."],  # the id would be printed twice
    ["build", "--iidfile", "/tmp/mine", "-t", "a", "."],  # ours would replace the user's
])
def test_no_two_phase_load_when_building_twice_would_show(argv):
    assert not needs_load(parse_build(parse_invocation(argv)), REMOTE)


def test_build_help_probes_nothing_and_creates_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: pytest.fail("asked docker"))
    env = {"HOME": str(tmp_path), "DOCKCACHE_BUILD_STORE": str(tmp_path / "store")}
    for argv in (["build", "--help"], ["buildx", "build", "-h"]):
        prep = buildcmd.prepare("/bin/false", argv, parse_invocation(argv), env)
        assert prep.plan.argv == tuple(argv)
    assert not (tmp_path / "store").exists()


def test_build_help_says_nothing_of_dockcache(monkeypatch, tmp_path, capsys):
    """docker only prints its help: no "not certain" line before it."""
    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: pytest.fail("asked docker"))
    monkeypatch.chdir(tmp_path)
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "state")}
    for argv in (["build", "--help"], ["buildx", "build", "-h"], ["image", "build", "--help"]):
        buildcmd.execute("/bin/false", argv, parse_invocation(argv), env, on_error=lambda *a: pytest.fail(str(a)))
    assert capsys.readouterr().err == ""


def test_a_misread_build_says_nothing_when_build_caching_is_off(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: pytest.fail("asked docker"))
    monkeypatch.chdir(tmp_path)
    argv = ["build", "--new-flag", ".", "-t", "x"]
    (tmp_path / "off.toml").write_text("enabled = false\n")
    for env in ({}, {"DOCKCACHE_CONFIG": str(tmp_path / "off.toml")}, {"DOCKCACHE_BUILD": "0"}):
        env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "state"), **env}
        buildcmd.execute("/bin/false", argv, parse_invocation(argv), env, on_error=lambda *a: pytest.fail(str(a)))
        said = capsys.readouterr().err
        assert ("unknown option --new-flag" in said) == (len(env) == 2), (env, said)


def test_a_build_its_own_daemon_serves_says_so_instead_of_no_cached_key():
    from shim.build.plan import plan_build
    from shim.core.engine import BuildCaps
    from shim.core.grammar import parse_build, parse_invocation

    inv = parse_invocation(["build", "-t", "app", "."])
    caps = BuildCaps("full", "ok")
    cold = plan_build(inv.argv, inv, parse_build(inv), caps, key="app", available=(), import_src=None, export_dest=None)
    assert "no cached key to import yet" in cold.reasons
    own = plan_build(inv.argv, inv, parse_build(inv), caps, key="app", available=(), import_src=None, export_dest=None,
                     no_import="this daemon made every stored build of app: its own cache serves them, no import")
    assert "no cached key to import yet" not in own.reasons and any("own cache serves" in r for r in own.reasons)
