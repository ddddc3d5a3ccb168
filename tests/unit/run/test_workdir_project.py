"""The project a container works on is where `-w` points inside a bind mount, not only the
mount's root: `docker run -v $PWD:/repo -w /repo/web node make` in a monorepo."""

import os

from shim.core.grammar import parse_invocation
from shim.run import command, plancache
from shim.run.detect import Project, marker_dirs


def _plan(tmp_path, argv):
    env = {"HOME": str(tmp_path / "home"), "DOCKCACHE_STATE_DIR": str(tmp_path / "state"), "DOCKCACHE_MODE": "volume"}
    plan, _cfg, _notes = command.build_plan("/bin/false", argv, parse_invocation(argv), env, dry_run=True)
    return plan


def _monorepo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "services" / "web").mkdir(parents=True)
    (repo / "services" / "web" / "package-lock.json").write_text("{}")
    (repo / "README.md").write_text("no markers at the root")
    return repo


def test_markers_where_the_workdir_points_inside_the_mount_are_found(tmp_path):
    repo = _monorepo(tmp_path)
    plan = _plan(tmp_path, ["run", "--rm", "-v", f"{repo}:/repo", "-w", "/repo/services/web", "node", "make"])
    assert any(r.startswith("detected npm: package-lock.json in") and r.endswith("services/web") for r in plan.reasons), plan.reasons
    assert "npm_config_cache=/dockcache/npm" in plan.argv
    # the control: the same container with the repo root as workdir has no project markers
    root = _plan(tmp_path, ["run", "--rm", "-v", f"{repo}:/repo", "-w", "/repo", "node", "make"])
    assert "npm_config_cache=/dockcache/npm" not in root.argv


def test_marker_dirs_are_nearest_first_and_stay_inside_the_mount(tmp_path):
    p = Project(str(tmp_path), "/repo")
    assert marker_dirs(p, "/repo/a/b/") == [str(tmp_path / "a" / "b"), str(tmp_path / "a"), str(tmp_path)]
    assert marker_dirs(p, "/repo") == [str(tmp_path)]
    assert marker_dirs(p, "/repository/a") == [str(tmp_path)]  # a sibling path, not inside
    assert marker_dirs(p, "/repo/../etc") == [str(tmp_path)]
    assert marker_dirs(p, None) == [str(tmp_path)]
    assert marker_dirs(Project(str(tmp_path), "/"), "/x") == [str(tmp_path / "x"), str(tmp_path)]


def test_a_marker_appearing_in_the_workdir_invalidates_a_remembered_plan(tmp_path):
    repo = _monorepo(tmp_path)
    os.remove(repo / "services" / "web" / "package-lock.json")
    argv = ["run", "--rm", "-v", f"{repo}:/repo", "-w", "/repo/services/web", "node", "make"]
    run = command.parse_run(parse_invocation(argv))
    env = {"HOME": str(tmp_path / "home"), "DOCKCACHE_STATE_DIR": str(tmp_path / "state")}
    plancache.store("docker", argv, env, str(tmp_path), argv, command.plan_inputs(run, env), "{}")
    assert plancache.lookup("docker", argv, env, str(tmp_path)) == argv
    (repo / "services" / "web" / "package-lock.json").write_text("{}")
    assert plancache.lookup("docker", argv, env, str(tmp_path)) is None
