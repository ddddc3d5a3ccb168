"""Once docker has run, nothing dockcache does afterwards may change its exit code."""

import pytest

from shim.build.store import registry as registrycache
from shim.compose import command as compose
from shim.core import proc


def test_a_failing_key_move_after_compose_keeps_composes_exit_code(monkeypatch, capsys):
    plan = compose.ComposePlan(argv=["compose", "up", "--build"], env={"X": "1"},
                               registry=registrycache.Registry("localhost:1/r"), moves={"k": "k--b1700000000-abcdef"})
    monkeypatch.setattr(compose, "plan", lambda *a: plan)
    monkeypatch.setattr(proc, "run_child", lambda real, argv, env=None: 0)

    def broken(self, tag, key, **_kw):
        raise RuntimeError("boom")
    monkeypatch.setattr(registrycache.Registry, "move", broken)
    with pytest.raises(SystemExit) as done:
        compose.execute("/bin/false", "docker", ["compose", "up", "--build"], {}, on_error=None)
    assert done.value.code == 0
    err = capsys.readouterr().err
    assert err.count("dockcache:") == 1 and "move keys failed: boom" in err


def test_no_registry_means_no_registry_calls(monkeypatch):
    plan = compose.ComposePlan(argv=["compose", "build"], env={"X": "1"})
    monkeypatch.setattr(compose, "plan", lambda *a: plan)
    monkeypatch.setattr(proc, "run_child", lambda real, argv, env=None: 0)
    monkeypatch.setattr(registrycache.Registry, "__init__", lambda *a, **k: pytest.fail("no registry configured"))
    with pytest.raises(SystemExit) as done:
        compose.execute("/bin/false", "docker", ["compose", "build"], {}, on_error=None)
    assert done.value.code == 0


def test_a_seed_that_breaks_before_compose_is_one_line_and_compose_still_runs(monkeypatch, capsys, tmp_path):
    """Before docker too: a failing cache-mount seed (here the store cannot be opened) never
    keeps compose from running, nor changes its exit code."""
    from types import SimpleNamespace

    import shim.build.command as build

    mounts = {"k": SimpleNamespace(plan=SimpleNamespace(mounts=["m"], seeds=["m"], saves=[]), generation=None)}
    plan = compose.ComposePlan(argv=["compose", "build"], env={"X": "1"}, mounts=mounts)
    ran = []
    monkeypatch.setattr(compose, "plan", lambda *a: plan)
    monkeypatch.setattr(proc, "run_child", lambda real, argv, env=None: ran.append(argv) or 3)

    def broken(_config):
        raise OSError("store not writable")
    monkeypatch.setattr(build, "open_store", broken)
    with pytest.raises(SystemExit) as done:
        compose.execute("/bin/false", "docker", ["compose", "build"], {"HOME": str(tmp_path)}, on_error=None)
    assert done.value.code == 3 and ran == [["compose", "build"]]
    err = capsys.readouterr().err
    assert err.count("dockcache:") == 1 and "cache mounts not seeded: OSError: store not writable" in err


def test_a_build_its_daemon_serves_runs_as_typed_and_is_still_counted(monkeypatch, tmp_path):
    """No import, no export: docker is exec'd unchanged, and metrics still see the build."""
    import json

    import shim.build.command as build
    from shim.build.plan import BuildPlan
    from shim.core.engine import BuildCaps
    from shim.core.grammar import parse_invocation as parse

    args = ["build", "-t", "app", "."]
    prep = build.Prepared(BuildPlan(tuple(args), "app"), store=object(), snapshot=None, export_dir=None,
                          config={}, caps=BuildCaps("full", "ok"))
    monkeypatch.setattr(build, "prepare", lambda *a: prep)
    monkeypatch.setattr(proc, "run_child", lambda *a, **k: pytest.fail("the caller execs docker itself"))
    environ = {"DOCKCACHE_STATE_DIR": str(tmp_path)}
    assert build.execute("/bin/false", args, parse(args), environ, on_error=None) is None
    rec = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert rec["kind"] == "build" and rec["key"] == "app" and rec["as_typed"] and rec["rc"] is None


@pytest.mark.parametrize("unchanged", [True, False])
def test_only_a_build_that_may_change_the_image_forgets_what_run_remembered_of_it(monkeypatch, tmp_path, unchanged):
    """The image's USER owns `docker run`'s caches, so a build of its name forgets it (and the
    run plans that used it); a rebuild whose inputs are those of the last export tags the
    same image, and a `build && run` loop keeps its remembered plan (no inspect, no replan)."""
    import shim.build.command as build
    from shim.build.plan import BuildPlan
    from shim.core.engine import BuildCaps
    from shim.core.grammar import parse_invocation
    from shim.core.state import IMAGES, State, endpoint_id

    args = ["build", "-t", "app", "."]
    environ = {"DOCKCACHE_STATE_DIR": str(tmp_path), "DOCKER_HOST": "unix:///x.sock"}
    state, engine = State(tmp_path), endpoint_id(None, None, environ)
    state.put(IMAGES, engine, "app", {"env": [], "user": "", "arch": "amd64", "id": "sha256:1"})
    prep = build.Prepared(BuildPlan(tuple(args), "app"), store=object(), snapshot=None, export_dir=None,
                          config={}, caps=BuildCaps("full", "ok"), unchanged=unchanged)
    monkeypatch.setattr(build, "prepare", lambda *a: prep)
    build.execute("/bin/false", args, parse_invocation(args), environ, on_error=None)
    assert (state.get(IMAGES, engine, "app") is not None) == unchanged
