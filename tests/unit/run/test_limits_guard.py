"""Run-flow side of size limits and the disk guard: tool limits as variables, the guard's
once-only line, the hourly background-prune window, shorter plan memory with limits set."""

import os
from collections import namedtuple

from shim.core.config import load
from shim.core.grammar import parse_invocation, parse_run
from shim.core.state import State
from shim.core import diskspace
from shim.run import diskguard, plancache, upkeep
from shim.run.detect import Detection
from shim.run.plan import Facts, plan_run

VFS = namedtuple("VFS", "f_bavail f_frsize f_blocks")


def plan(argv, env, manager="ccache", facts_kw=None):
    cfg = load({"HOME": "/nonexistent", **env})
    return plan_run(argv, parse_run(parse_invocation(argv)), cfg,
                    Facts(detections=(Detection(manager, "t"),), **(facts_kw or {})))


def test_ccache_and_sccache_limits_become_their_variables(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[managers.ccache]\nmax_size = "5GiB"\n[managers.sccache]\nmax_size = "512MiB"\n')
    p = plan(["run", "img", "ccache", "gcc"], {"DOCKCACHE_CONFIG": str(cfg)})
    assert "CCACHE_MAXSIZE=5368M" in p.argv  # ccache's M is 10^6
    p = plan(["run", "img", "sccache"], {"DOCKCACHE_CONFIG": str(cfg)}, manager="sccache")
    assert "SCCACHE_CACHE_SIZE=512M" in p.argv  # sccache's M is 2^20


def test_a_limit_you_or_the_image_set_wins(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[managers.ccache]\nmax_size = "5GiB"\n')
    env = {"DOCKCACHE_CONFIG": str(cfg)}
    mine = plan(["run", "-e", "CCACHE_MAXSIZE=1G", "img", "ccache"], env)
    assert mine.argv.count("-e") == 2 and "CCACHE_MAXSIZE=1G" in mine.argv
    image = plan(["run", "img", "ccache"], env, facts_kw={"image_env": (("CCACHE_MAXSIZE", "2G"),)})
    assert not any(a.startswith("CCACHE_MAXSIZE=") for a in image.argv)
    assert not any(a.startswith("CCACHE_MAXSIZE=") for a in plan(["run", "img", "ccache"], {}).argv)


def test_low_space_by_bytes_or_percent(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(100, 1024 ** 2, 10_000))  # 100 MiB of ~9.8 GiB
    assert diskspace.low_space(str(tmp_path / "not" / "yet"), 2 * 1024 ** 3, 5.0).endswith(" has 100 MiB free of 9.8 GiB (1.0 %)")
    assert diskspace.low_space(str(tmp_path), 1024, 0.5) is None
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(9_000, 1024 ** 2, 10_000))
    assert diskspace.low_space(str(tmp_path), 2 * 1024 ** 3, 5.0) is None


def test_guard_says_so_once_until_space_is_back(monkeypatch, tmp_path):
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_BIND_ROOT": str(tmp_path / "root")})
    state = State(tmp_path / "state")
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(1, 4096, 10_000))
    notes = []
    assert diskguard.Guard(state, "d", cfg, None).blocks("bind", notes) and len(notes) == 1
    assert "no new caches" in notes[0]
    assert diskguard.Guard(state, "d", cfg, None).blocks("bind", notes) and len(notes) == 1  # said already
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(9_000, 1024 ** 2, 10_000))
    assert not diskguard.Guard(state, "d", cfg, None).blocks("bind", notes)
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(1, 4096, 10_000))
    assert diskguard.Guard(state, "d", cfg, None).blocks("bind", notes) and len(notes) == 2  # low again: said again


def test_guard_asks_the_daemon_root_once_and_skips_an_invisible_one(tmp_path):
    calls = []

    def docker(*args, timeout=0):
        calls.append(args)
        return type("R", (), {"returncode": 0, "stdout": "/nowhere/docker\n"})()

    cfg, state = load({"HOME": "/nonexistent"}), State(tmp_path / "state")
    assert not diskguard.Guard(state, "d", cfg, docker).blocks("volume", [])
    assert not diskguard.Guard(state, "d", cfg, docker).blocks("volume", [])
    assert len(calls) == 1


def test_background_prune_window(tmp_path):
    state = State(tmp_path / "state")
    none = load({"HOME": "/nonexistent"})
    limited = load({"HOME": "/nonexistent", "DOCKCACHE_MAX_SIZE": "1GiB"})
    assert not upkeep.due(state, "d", none, now=1000.0)
    assert upkeep.due(state, "d", limited, now=10_000.0)  # never measured
    assert not upkeep.due(state, "d", limited, now=10_001.0)  # claimed: one run starts it
    state.put("limits", "run", "d", {"checked": 10_000.0, "over": True})
    assert not upkeep.due(state, "d", limited, now=10_000.0 + 60)
    assert upkeep.due(state, "d", limited, now=10_000.0 + upkeep.RETRY_OVER)  # over: retried sooner
    state.put("limits", "run", "d", {"checked": 20_000.0, "over": False})
    assert not upkeep.due(state, "d", limited, now=20_000.0 + upkeep.RETRY_OVER)
    assert upkeep.due(state, "d", limited, now=20_000.0 + upkeep.MEASURE_EVERY)


def test_limits_of_leaves_tool_limits_to_the_tools(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nmax_size = "10GiB"\n[managers.npm]\nmax_size = "1GiB"\n[managers.ccache]\nmax_size = "1GiB"\n')
    assert upkeep.limits_of(load({"HOME": "/nonexistent", "DOCKCACHE_CONFIG": str(cfg)})) == (10 * 1024 ** 3,
                                                                                            {"npm": 1024 ** 3})


def test_plan_memory_is_shorter_with_limits(tmp_path, monkeypatch):
    env = {"DOCKCACHE_STATE_DIR": str(tmp_path)}
    plancache.store("docker", ["run", "x"], env, "/", ["run", "x"], [], '{"a":1}', ttl=60.0)
    assert plancache.lookup("docker", ["run", "x"], env, "/") == ["run", "x"]
    real = plancache.time.time
    monkeypatch.setattr(plancache.time, "time", lambda: real() + 61)
    assert plancache.lookup("docker", ["run", "x"], env, "/") is None
