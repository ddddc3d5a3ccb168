"""Argv whose meaning the rewrite used to change (a differential audit against the real
CLI found each class); every test here failed before its fix."""

from __future__ import annotations

import pytest

from shim.core.grammar import parse_invocation, parse_run
from shim.run import command
from tests.unit.run.test_runplan import plan


def user_tokens_kept(before, after):
    """The user's tokens, in order, with only ours inserted in one place."""
    extra = len(after) - len(before)
    return any(list(after[:i]) + list(after[i + extra:]) == list(before) for i in range(len(before) + 1))


def test_end_of_options_marker_keeps_our_flags_before_it():
    argv = ["run", "--rm", "--", "node:20", "npm", "ci"]
    p = plan(argv)
    assert p.mounts and user_tokens_kept(argv, p.argv)
    dd = p.argv.index("--")
    assert p.argv[dd + 1:] == ("node:20", "npm", "ci")  # after `--` nothing but the user's


@pytest.mark.parametrize("flag", ["--some-new-flag", "--hidden-opt"])
def test_an_unknown_flag_leaves_the_command_alone(flag):
    argv = ["run", flag, "value", "img", "npm", "ci"]
    p = plan(argv)
    assert p.argv == tuple(argv) and p.mounts == ()
    assert any("unknown option" in r for r in p.reasons)


def test_an_unknown_flag_is_said_in_one_line_and_help_in_none():
    for argv, lines in ((["run", "--newflag", "v", "img", "npm"], 1), (["run", "--help"], 0),
                        (["run", "--newflag", "--help"], 0), (["run", "--rm", "img", "npm"], 0)):
        inv = parse_invocation(argv)
        _p, _cfg, notes = command.build_plan("/bin/false", argv, inv, {"HOME": "/nonexistent"}, dry_run=True)
        assert len([n for n in notes if "unknown option" in n]) == lines, (argv, notes)


def test_unknown_flags_ask_docker_nothing(monkeypatch):
    monkeypatch.setattr(command.proc, "run_docker", lambda *a, **k: pytest.fail("asked docker"))
    for argv in (["run", "--newflag", "v", "img", "npm"], ["run", "--help"], ["run", "-h", "x", "img"]):
        inv = parse_invocation(argv)
        p, _cfg, _notes = command.build_plan("/bin/false", argv, inv, {"HOME": "/nonexistent"})
        assert p.argv == tuple(argv)


@pytest.mark.parametrize("argv,image", [
    (["run", "-t=true", "img", "npm"], "img"),
    (["run", "-i=false", "-t=true", "img"], "img"),
    (["run", "-e=A=1", "img"], "img"),
])
def test_short_flags_with_equals(argv, image):
    r = parse_run(parse_invocation(argv))
    assert r.image == image and not r.unknown


def test_short_flag_with_equals_value_is_read_whole():
    r = parse_run(parse_invocation(["run", "-e=A=1", "img"]))
    assert r.env == (("A", "1"),)


def test_a_quoted_mount_field_is_one_field():
    r = parse_run(parse_invocation(["run", "--mount", 'type=bind,"source=/a,b",target=/root/.npm', "img"]))
    assert r.mounts[0].source == "/a,b" and r.mounts[0].target == "/root/.npm" and r.mounts[0].type == "bind"


@pytest.mark.parametrize("mount", ["mine:/root/.npm", "/host/npm:/root/.npm", "h:/root"])
def test_the_users_own_cache_at_the_tools_default_path_is_used(mount):
    p = plan(["run", "-v", mount, "img", "npm", "ci"])
    assert "npm" not in [m.manager for m in p.mounts]
    assert not any(tok.startswith("npm_config_cache=") for tok in p.argv)


def test_a_project_mount_elsewhere_in_home_blocks_nothing():
    p = plan(["run", "-v", "/src:/root/app", "img", "npm", "ci"])
    assert "npm" in [m.manager for m in p.mounts]


def test_an_unknown_flag_says_nothing_when_run_caching_is_off(tmp_path):
    argv = ["run", "--newflag", "v", "img", "npm"]
    (tmp_path / "off.toml").write_text("enabled = false\n")
    for off in ({"DOCKCACHE_CONFIG": str(tmp_path / "off.toml")}, {"DOCKCACHE_RUN": "0"}):
        inv = parse_invocation(argv)
        _p, _cfg, notes = command.build_plan("/bin/false", argv, inv, {"HOME": str(tmp_path), **off}, dry_run=True)
        assert notes == [], off


def test_a_cache_that_cannot_be_made_says_docker_s_reason_and_no_user_when_there_is_none(monkeypatch, tmp_path):
    """An unreachable engine: the note named 'user None' and not why."""
    from shim.core.proc import Result
    from shim.run.plan import CacheMount

    err = "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"
    monkeypatch.setattr(command.proc, "run_docker", lambda real, argv, **kw: Result(tuple(argv), 1, "", err + "\n"))
    argv = ["run", "--rm", "img", "npm", "ci"]
    inv = parse_invocation(argv)
    ctx = command._Context("/bin/false", inv, parse_run(inv), {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path)})
    notes: list[str] = []
    failed = ctx.prepare([CacheMount("npm", "dockcache-npm", "/dockcache/npm", "volume", None, ())], notes)
    assert failed == ["dockcache-npm"]
    assert notes == [f"could not prepare cache dockcache-npm ({err}); npm runs without it"]
