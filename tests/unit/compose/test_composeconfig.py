"""compose's resolved config is remembered only while nothing it was read from changed."""

from __future__ import annotations

import os
import time

import pytest

from shim.compose import files, resolved
from shim.compose import plan as compose_plan
from shim.compose import override
from shim.compose import services as compose_services
from shim.core import proc
from shim.core.state import State


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "compose.yaml").write_text("services:\n  app:\n    build: .\n")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def asked(monkeypatch):
    """Fake the one process call: count how often compose itself is asked."""
    calls = []

    def fake(real, argv, **kw):
        calls.append(list(argv))
        return proc.Result(tuple(argv), 0, '{"name": "proj", "services": {"app": {}}}', "")

    monkeypatch.setattr(proc, "run_docker", fake)
    return calls


def resolve(env, *globals_):
    call = files.split("docker", ["compose", *globals_, "up", "--build"])
    return resolved.resolved_config("/bin/true", call, env)


def env_for(tmp_path, **extra):
    return {"DOCKCACHE_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path), **extra}


def touch_later(path, text):
    path.write_text(text)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_unchanged_project_is_asked_once(project, asked, tmp_path):
    env = env_for(tmp_path)
    assert resolve(env) == resolve(env) == {"name": "proj", "services": {"app": {}}}
    assert len(asked) == 1


@pytest.mark.parametrize("change", ["edit", "override appears", "dotenv appears", "environment"])
def test_any_input_compose_reads_asks_again(project, asked, tmp_path, change):
    env = env_for(tmp_path)
    resolve(env)
    if change == "edit":
        touch_later(project / "compose.yaml", "services:\n  app:\n    build: ./other\n")
    elif change == "override appears":
        (project / "compose.override.yaml").write_text("services: {}\n")
    elif change == "dotenv appears":
        (project / ".env").write_text("TAG=2\n")
    else:
        env = {**env, "TAG": "2"}
    resolve(env)
    assert len(asked) == 2


def test_explicit_files_and_env_files_are_watched(project, asked, tmp_path):
    (project / "other.yaml").write_text("services: {}\n")
    (project / "vars.env").write_text("A=1\n")
    env = env_for(tmp_path)
    resolve(env, "-f", "other.yaml", "--env-file", "vars.env")
    resolve(env, "-f", "other.yaml", "--env-file", "vars.env")
    touch_later(project / "vars.env", "A=2\n")
    resolve(env, "-f", "other.yaml", "--env-file", "vars.env")
    assert len(asked) == 2


def test_projects_that_pull_in_other_files_are_always_asked(project, asked, tmp_path):
    (project / "compose.yaml").write_text("include:\n  - other.yaml\nservices: {}\n")
    env = env_for(tmp_path)
    resolve(env)
    resolve(env)
    assert len(asked) == 2


def test_a_project_read_from_stdin_is_left_to_compose_alone(project, asked, tmp_path):
    plan = compose_plan.plan("/bin/true", "docker", ["compose", "-f", "-", "up", "--build"], env_for(tmp_path))
    assert plan is None and asked == []


def test_a_failed_answer_is_not_remembered(project, monkeypatch, tmp_path):
    answers = iter([proc.Result((), 1, "", "bad"), proc.Result((), 0, '{"services": {}}', "")])
    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: next(answers))
    env = env_for(tmp_path)
    assert resolve(env) is None
    assert resolve(env) == {"services": {}}
    assert State(tmp_path / "state").all("compose-config")


@pytest.mark.parametrize("argv", [["compose", "--dry-run", "up", "--build"], ["compose", "up", "--build", "--help"],
                                  ["compose", "build", "-h"], ["compose", "up", "--dry-run", "--build"]])
def test_dry_run_and_help_ask_and_create_nothing(project, asked, tmp_path, argv):
    assert compose_plan.plan("/bin/true", "docker", argv, env_for(tmp_path)) is None
    assert asked == []


def test_compose_run_user_and_env_flags_reach_the_run_planner():
    call = files.split("docker", ["compose", "run", "--rm", "-u", "1000:1000", "-e", "npm_config_cache=/mine",
                                  "web", "npm", "ci"])
    assert compose_services.run_options(call) == {"web": ("--user", "1000:1000", "-e", "npm_config_cache=/mine")}
    argv = compose_services.as_run_argv("web", {"image": "node", "user": "root"}, "p", compose_services.run_options(call)["web"])
    from shim.core.grammar import parse_invocation, parse_run
    run = parse_run(parse_invocation(argv))
    assert run.user == "1000:1000" and ("npm_config_cache", "/mine") in run.env
    assert compose_services.run_options(files.split("docker", ["compose", "up", "-d"])) == {}


def test_a_failure_while_planning_leaves_no_export_dir_behind(project, monkeypatch, tmp_path):
    from shim.build.store.cachestore import CacheStore
    from shim.core.engine import BuildCaps

    store = CacheStore(tmp_path / "store")
    monkeypatch.setattr(compose_plan, "_version_problem", lambda *a: None)
    monkeypatch.setattr(compose_plan, "resolved_config",
                        lambda *a: {"name": "p", "services": {"app": {"build": {"context": "."}}}})
    monkeypatch.setattr(compose_plan, "service_caches", lambda *a, **k: {})
    monkeypatch.setattr(compose_plan, "sources", lambda *a: compose_plan.Sources(BuildCaps("full", "t", "docker"), store))

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(compose_plan, "files_for", boom)
    with pytest.raises(RuntimeError):
        compose_plan.plan("/bin/true", "docker", ["compose", "build"], env_for(tmp_path))
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_the_override_compose_records_in_its_labels_still_exists(tmp_path):
    env = env_for(tmp_path)
    tmpdir, path = override.write_override({"services": {}}, env, dry_run=False)
    assert tmpdir is None and os.path.exists(path) and str(tmp_path / "state") in path
    again = override.write_override({"services": {}}, env, dry_run=False)[1]
    assert again == path  # named by content


@pytest.mark.parametrize("argv,names", [
    (["compose", "build", "backend"], {"backend"}),
    (["compose", "up", "-d", "--build", "web"], {"web", "backend", "db"}),
    (["compose", "build", "--build-arg", "A=1", "db"], {"db"}),
    (["compose", "run", "--rm", "-e", "A=1", "backend", "npm", "ci"], {"backend", "db"}),
    (["compose", "up", "--build"], {"web", "backend", "db", "other"}),
    (["compose", "build", "nosuch"], {"web", "backend", "db", "other"}),
    (["compose", "build", "--pull", "db"], {"db"}),  # a switch for build, a policy for up/run/create
    (["compose", "up", "--pull", "always", "db"], {"db"}),
])
def test_only_the_named_services_and_their_dependencies_are_planned(argv, names):
    services = {"web": {"depends_on": {"backend": {}}}, "backend": {"depends_on": ["db"]}, "db": {}, "other": {}}
    assert set(compose_services.named_services(files.split("docker", argv), services)) == names


def test_the_old_workdir_option_names_the_project_dir_as_compose_takes_it(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "compose.yaml").write_text("services: {}\n")
    call = files.split("docker", ["compose", "--workdir", "sub", "-p", "x", "up", "--build"])
    assert call.sub == "up" and call.globals == ["--workdir", "sub", "-p", "x"]
    assert files.files_for(call, {}, str(tmp_path))[0] == [str(tmp_path / "sub" / "compose.yaml")]


def test_a_named_service_of_a_disabled_profile_is_asked_for_by_name(project, monkeypatch, tmp_path):
    """compose enables the profile of a service named on its command line: the services
    planned are compose's own answer for that name, not the enabled profiles' services."""
    calls = []
    full = '{"name": "proj", "services": {"app": {"build": {"context": "."}}}}'
    named = ('{"name": "proj", "services": {"web": {"build": {"context": "web"}, "depends_on": {"db": {}}}, '
             '"db": {}}}')

    def fake(real, argv, **kw):
        calls.append(list(argv))
        return proc.Result(tuple(argv), 0, named if argv[-1] == "web" else full, "")

    monkeypatch.setattr(proc, "run_docker", fake)
    env = env_for(tmp_path)
    for argv, want in ((["up", "--build", "web"], ["db", "web"]), (["run", "--rm", "web", "sh"], ["db", "web"]),
                       (["up", "--build", "app"], ["app"]), (["up", "--build"], ["app"])):
        call = files.split("docker", ["compose", *argv])
        assert sorted(compose_plan.selected_config("/bin/true", call, env)["services"]) == want, argv
    assert [c[-1] for c in calls if "config" in c].count("web") == 1  # asked once, then remembered


def test_compose_run_binds_and_workdir_reach_the_run_planner():
    call = files.split("docker", ["compose", "run", "--rm", "-v", "/src:/repo", "--workdir=/repo/web", "-u", "1000",
                                  "-e", "A=1", "dev", "sh", "-c", "-w x"])
    assert compose_services.run_options(call) == {
        "dev": ("--volume", "/src:/repo", "--workdir", "/repo/web", "--user", "1000", "-e", "A=1")}
    argv = compose_services.as_run_argv("dev", {"working_dir": "/app"}, "proj", compose_services.run_options(call)["dev"])
    assert argv[-1] == "proj-dev" and argv.index("/repo/web") > argv.index("/app")  # the command line wins


def test_an_unbuilt_image_is_told_from_its_dockerfile_only_when_compose_will_build_it_from_this_base():
    from shim.compose.files import ComposeCall
    from shim.compose.services import _unbuilt

    def call(*rest):
        return ComposeCall(["docker", "compose"], [], list(rest), rest[0])
    named = {"build": {"context": "/src"}, "image": "me/web"}
    assert _unbuilt(named, call("up", "--build")) and _unbuilt(named, call("build"))
    assert _unbuilt({"build": {"context": "/src"}}, call("up"))  # no image name: compose must build it
    assert _unbuilt({**named, "pull_policy": "build"}, call("run", "web"))
    assert _unbuilt(named, call("up")) is None  # compose may pull me/web instead
    assert _unbuilt(named, call("up", "--build", "--pull", "always")) is None  # a newer base may come
    assert _unbuilt({"build": {"context": "/src", "pull": True}}, call("up")) is None
    assert _unbuilt({"image": "me/web"}, call("up", "--build")) is None


def test_a_service_compose_builds_again_is_told_from_its_dockerfile_not_from_the_old_image(tmp_path, monkeypatch):
    """Seen: a dev stack whose Dockerfile gained `USER node` (or switched its target to one
    with it), then `compose up --build`: the service got the root-owned cache the old
    image's USER called for, and `touch $npm_config_cache/x` as node was denied."""
    import sys

    from shim.compose.files import ComposeCall
    from shim.core.grammar import parse_invocation
    from shim.core.state import IMAGES, endpoint_id
    from shim.run.command import build_plan

    real = tmp_path / "docker"  # the old build of the image runs as root
    real.write_text(f"#!{sys.executable}\nimport sys\n"
                    "if sys.argv[1:3] == ['image', 'inspect']:\n"
                    "    print('[\"PATH=/usr/bin\"]\\t\"\"\\tamd64\\tsha256:old')\n")
    real.chmod(0o755)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "package-lock.json").write_text("{}")
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "state"), "DOCKCACHE_MODE": "volume",
           "DOCKER_HOST": "unix:///nonexistent.sock"}
    monkeypatch.chdir(tmp_path)

    def call(*rest):
        return ComposeCall(["docker", "compose"], [], list(rest), rest[0])
    svc = {"build": {"context": str(tmp_path)}, "image": "me/web", "volumes": [
        {"type": "bind", "source": str(tmp_path / "app"), "target": "/app"}], "working_dir": "/app"}
    assert compose_services._rebuilt(svc, call("up", "--build")) and compose_services._rebuilt(svc, call("build"))
    assert compose_services._rebuilt({**svc, "pull_policy": "build"}, call("up"))
    assert not compose_services._rebuilt(svc, call("up")) and not compose_services._rebuilt({"image": "x"}, call("build"))

    argv = compose_services.as_run_argv("web", svc, "proj")
    inv = parse_invocation(argv)

    def plan(told, rebuilt):
        return build_plan(str(real), argv, inv, env, pull=False, need_image=True, unbuilt=lambda _base: told,
                          rebuilt=rebuilt)[0]
    node = {"env": [["PATH", "/usr/bin"]], "user": "node", "arch": "amd64"}
    assert [m.owner for m in plan(node, rebuilt=False).mounts] == [None]  # up: the image there is the one that runs
    assert [m.owner for m in plan(node, rebuilt=True).mounts] == ["node"]  # up --build: the Dockerfile's USER
    untold = plan(None, rebuilt=True)
    assert not untold.mounts and "USER cannot be told" in untold.reasons[0]

    state = State(tmp_path / "state")  # `docker run me/web` after the rebuild asks again
    endpoint = endpoint_id(None, None, env)
    assert state.get(IMAGES, endpoint, "me/web")
    compose_services.forget_rebuilt(call("up", "--build"), {"services": {"web": svc}}, "proj", env)
    assert state.get(IMAGES, endpoint, "me/web") is None


def test_without_the_dockerfile_parser_a_rebuilt_service_keeps_the_facts_of_the_image_there(monkeypatch):
    """Nothing can be predicted then: every up --build would lose its caches otherwise."""
    from shim.build import imageconfig
    from shim.compose.files import ComposeCall
    from shim.compose.services import _rebuilt

    call = ComposeCall(["docker", "compose"], [], ["up", "--build"], "up")
    svc = {"build": {"context": "/src"}, "image": "me/web"}
    assert _rebuilt(svc, call)
    monkeypatch.setattr(imageconfig, "available", lambda: False)
    assert not _rebuilt(svc, call)


def test_a_compose_option_is_given_bare_with_a_value_or_with_an_equals_sign():
    from shim.compose.files import given, split

    def on(*args, flag):
        return given(split("docker", ["compose", *args]), flag)
    assert on("build", "--pull", "web", flag="--pull") and on("build", "--pull=true", flag="--pull")
    assert on("up", "--build", "--pull", "always", flag="--pull") and on("up", "--pull=missing", flag="--pull")
    assert not on("up", "--pull", "never", flag="--pull") and not on("up", "--pull=never", flag="--pull")
    assert not on("build", "--no-cache=false", flag="--no-cache") and on("build", "--no-cache", flag="--no-cache")
    assert not on("up", "web", flag="--build") and on("up", "--build=true", flag="--build")


def test_the_builder_a_compose_build_goes_to_is_its_own_option_then_buildx_builder():
    from shim.compose.files import builder_of, split

    def of(*args, environ=None):
        return builder_of(split("docker", ["compose", *args]), environ or {})
    assert of("build", "--builder", "ci", "web") == "ci" and of("build", "--builder=ci") == "ci"
    assert of("up", "--build", environ={"BUILDX_BUILDER": "remote"}) == "remote"
    assert of("build", "--builder", "ci", environ={"BUILDX_BUILDER": "remote"}) == "ci"
    assert of("up", "--build") is None
