"""Compose service builds said as docker builds (pure): what compose's own build would get,
or why the command keeps the store path; and the compose command that runs afterwards."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shim.compose.files import split
from shim.compose.sharedbuild import KNOWN, compose_after, plan_builds, service_argv

CFG = {"name": "shop", "secrets": {"tok": {"file": "/run/tok"}, "env": {"environment": "API_KEY"}},
       "services": {}}


def argv_of(spec, sub=("build",)):
    planned, why = plan_builds(split("docker", ["compose", *sub]), {"app": spec}, CFG, "shop", "2.26.1")
    assert why is None, why
    return list(planned[0].argv)


def test_a_full_build_spec_becomes_the_docker_build_compose_would_run():
    spec = {"image": "reg.example/app:1", "platform": "linux/amd64", "build": {
        "context": "/src/app", "dockerfile": "docker/Dockerfile", "args": {"A": "1", "UNSET": None},
        "target": "prod", "labels": {"team": "x"}, "tags": ["app:extra"], "cache_from": ["type=local,src=/c"],
        "no_cache": True, "pull": True, "network": "none", "extra_hosts": ["db:10.0.0.1"], "shm_size": 1048576,
        "secrets": [{"source": "tok"}, {"source": "env", "target": "env"}], "ssh": ["default"],
        "additional_contexts": {"shared": "/src/shared"}}}
    argv = argv_of(spec)
    assert argv[:3] == ["build", "-f", "/src/app/docker/Dockerfile"] and argv[-1] == "/src/app"
    pairs = list(zip(argv, argv[1:]))
    for pair in [("-t", "reg.example/app:1"), ("-t", "app:extra"), ("--build-arg", "A=1"), ("--target", "prod"),
                 ("--label", "team=x"), ("--label", "com.docker.compose.project=shop"),
                 ("--label", "com.docker.compose.service=app"), ("--label", "com.docker.compose.version=2.26.1"),
                 ("--cache-from", "type=local,src=/c"), ("--network", "none"), ("--add-host", "db:10.0.0.1"),
                 ("--shm-size", "1048576"), ("--platform", "linux/amd64"), ("--secret", "id=tok,src=/run/tok"),
                 ("--secret", "id=env,env=API_KEY"), ("--ssh", "default"), ("--build-context", "shared=/src/shared")]:
        assert pair in pairs, pair
    assert "--no-cache" in argv and "--pull" in argv and not any("UNSET" in a for a in argv)
    assert argv.index("-t") < argv.index("--target")  # compose's own image name first: the load's tag


def test_an_unnamed_image_is_project_dash_service_and_cli_options_reach_every_build():
    argv = argv_of({"build": {"context": "/p"}}, sub=("--progress", "plain", "build", "--no-cache",
                                                       "--build-arg", "X=2", "app"))
    assert argv[argv.index("-t") + 1] == "shop-app"
    assert ["--progress", "plain"] == argv[argv.index("--progress"):argv.index("--progress") + 2]
    assert "--no-cache" in argv and ("--build-arg", "X=2") in list(zip(argv, argv[1:]))


@pytest.mark.parametrize("spec,sub,why", [
    ({"context": "/p", "dockerfile_inline": "FROM x"}, ("build",), "dockerfile_inline"),
    ({"context": "/p", "privileged": True}, ("build",), "privileged"),
    ({"context": "/p", "platforms": ["linux/amd64", "linux/arm64"]}, ("build",), "several platforms"),
    ({"context": "/p", "additional_contexts": {"b": "service:base"}}, ("build",), "another service"),
    ({"context": "/p", "secrets": [{"source": "tok", "target": "other"}]}, ("build",), "another id"),
    ({"context": "/p", "secrets": [{"source": "nowhere"}]}, ("build",), "neither a file"),
    ({"context": "/p"}, ("build", "--push"), "--push"),
    ({"context": "/p"}, ("build", "-q"), "-q"),
    # docker build --progress quiet prints the image id on stdout; compose prints nothing
    ({"context": "/p"}, ("--progress", "quiet", "build"), "--progress quiet"),
    ({"context": "/p"}, ("--progress=quiet", "up", "--build"), "--progress quiet"),
])
def test_what_a_docker_build_cannot_say_keeps_the_store_path(spec, sub, why):
    planned, reason = plan_builds(split("docker", ["compose", *sub]), {"app": {"build": spec}}, CFG, "shop", "2")
    assert planned == [] and why in reason


@pytest.mark.parametrize("args,after", [
    (["compose", "up", "--build", "-d", "web"], ["compose", "up", "--no-build", "-d", "web"]),
    (["-H", "unix:///x", "compose", "-f", "a.yml", "up", "--build"],
     ["-H", "unix:///x", "compose", "-f", "a.yml", "up", "--no-build"]),
    (["compose", "run", "--build", "--rm", "app", "sh", "-c", "echo --build"],
     ["compose", "run", "--rm", "app", "sh", "-c", "echo --build"]),
    (["compose", "create", "--build"], ["compose", "create", "--no-build"]),
    (["compose", "build", "app"], None),
])
def test_compose_runs_afterwards_without_building(args, after):
    assert compose_after(split("docker", args)) == after


@given(st.lists(st.sampled_from(["-d", "--build", "--wait", "web", "db", "--scale", "web=2", "-t", "5"]),
                max_size=8))
def test_compose_after_keeps_every_other_argument_in_order(rest):
    call = split("docker", ["compose", "up", *rest])
    after = compose_after(call)
    assert after[:3] == ["compose", "up", "--no-build"]
    source = iter(rest)
    assert all(a in source for a in after[3:])  # the user's arguments, in their order
    missing = list(rest)
    for a in after[3:]:
        missing.remove(a)
    assert all(a == "--build" for a in missing)  # and only `--build` left out


def test_every_known_key_is_translated():
    spec = {"build": {k: None for k in KNOWN} | {"context": "/p"}}
    assert isinstance(service_argv("app", spec, CFG, "shop", "2", []), list)


def _plan_with(builds, compose_runs=True, after=None):
    from shim.compose.plan import ComposePlan
    from shim.compose.sharedbuild import ServiceBuild

    return ComposePlan(["compose", "up", "--no-build"], {}, compose_runs=compose_runs,
                       service_builds=[ServiceBuild(s, ("build", "-t", s, "."), frozenset((after or {}).get(s, ())))
                                       for s in builds])


def test_service_builds_stop_at_the_first_failure_and_a_dockcache_bug_runs_compose_unchanged(
        monkeypatch, capfd, tmp_path):
    """Real children (a shell each, standing for the child docker build): a fails, so c,
    which depends on a, never starts; b, beside a, is cancelled; compose does not run."""
    from shim.compose import command

    codes, ran = {"a": 3, "b": 0, "c": 0}, []
    monkeypatch.setattr(command.proc, "through_shim", lambda docker, argv, env: (
        "/bin/sh", ["-c", f"echo built {argv[2]} >> {tmp_path}/log; exit {codes[argv[2]]}"], dict(env)))
    monkeypatch.setattr(command.proc, "run_child", lambda real, argv, env=None: ran.append(tuple(argv)) or 0)
    args = ["compose", "up", "--build"]
    plan = _plan_with(["a", "b", "c"], after={"c": {"a"}})
    assert command._service_builds("/bin/docker", "docker", args, {}, plan) == 17  # compose's code for it
    built = (tmp_path / "log").read_text().splitlines()
    assert "built a" in built and "built c" not in built and ran == []  # b: cancelled, perhaps after its echo
    (tmp_path / "log").unlink()
    assert command._service_builds("/bin/docker", "docker", args, {}, _plan_with(["a"], compose_runs=False)) == 0
    assert ran == [("-c", f"echo built a >> {tmp_path}/log; exit 3")]  # one build alone: the terminal's child
    ran.clear()
    codes["a"] = 0
    assert command._service_builds("/bin/docker", "docker", args, {}, _plan_with(["a", "b"])) == 0
    assert ran == [("compose", "up", "--no-build")]  # then compose, once

    def broken(*a):
        raise OSError("no python")
    monkeypatch.setattr(command.proc, "through_shim", broken)
    ran.clear()
    assert command._service_builds("/bin/docker", "docker", args, {}, _plan_with(["a", "b"])) == 0
    assert ran == [tuple(args)] and "running compose unchanged" in capfd.readouterr().err


def test_explain_says_how_the_builds_run():
    from shim.compose.sharedbuild import ServiceBuild, order_note

    one, two = ServiceBuild("api", ("build",)), ServiceBuild("web", ("build",), frozenset({"api", "db"}))
    assert order_note([one], 0) == "alone"
    assert order_note([one, two], 0) == "side by side (web after api, db)"
    assert order_note([one, two], 1) == "one at a time (web after api, db)"
    assert order_note([one, ServiceBuild("x", ("build",))], 3) == "side by side, at most 3 at once"


@pytest.mark.parametrize("rc, code", [(0, 0), (1, 17), (125, 17), (130, 130), (143, 143)])
def test_a_failed_build_exits_as_compose_would(rc, code):
    from shim.compose.sharedbuild import compose_code

    assert compose_code(rc) == code  # docker build says 1; compose says 17 for any failed build


def test_builds_wait_for_what_compose_would_build_first():
    from shim.compose.sharedbuild import built_before

    services = {"web": {"depends_on": {"api": {"condition": "service_started"}}, "build": {}},
                "api": {"links": ["db:database"], "build": {}},
                "db": {"network_mode": "service:cache"},  # builds nothing, but its own edge counts
                "cache": {"build": {}, "volumes_from": ["container:x", "service:web:ro"]},
                "solo": {"build": {}, "depends_on": ["solo"]}}
    builds = {s: v for s, v in services.items() if "build" in v}
    # web -> api -> db -> cache -> web: a cycle compose itself would refuse; parallel.py runs it in order
    assert built_before("web", services, builds) == {"api", "cache"}
    assert built_before("api", services, builds) == {"cache", "web"}
    del services["cache"]["volumes_from"]
    assert built_before("web", services, builds) == {"api", "cache"}  # through db, which builds nothing
    assert built_before("api", services, builds) == {"cache"}
    assert built_before("cache", services, builds) == frozenset()
    assert built_before("solo", services, builds) == frozenset()


@pytest.mark.parametrize("globals_, env, limit", [
    ([], {}, 0), (["--parallel", "2"], {}, 2), ([], {"COMPOSE_PARALLEL_LIMIT": "3"}, 3),
    (["--parallel=-1"], {"COMPOSE_PARALLEL_LIMIT": "3"}, 0), (["--progress", "tty"], {}, 1),
    ([], {"BUILDKIT_PROGRESS": "tty"}, 1), (["--progress", "plain"], {"BUILDKIT_PROGRESS": "tty"}, 0),
    ([], {"COMPOSE_PARALLEL_LIMIT": "x"}, 0)])
def test_the_build_limit_is_composes(globals_, env, limit):
    from shim.compose.files import split
    from shim.compose.sharedbuild import build_limit

    assert build_limit(split("docker", ["compose", *globals_, "build"]), env) == limit


def test_a_service_built_from_another_services_image_keeps_the_store_path():
    from shim.compose.sharedbuild import builds_on_another

    builds = {"base": {"build": {"context": "/b"}}, "app": {"build": {"context": "/a"}, "image": "reg/app:2"}}
    assert builds_on_another(builds, "shop", {"app": "FROM shop-base\nRUN x\n"}) == \
        "service app builds FROM shop-base, another service's image"
    assert builds_on_another(builds, "shop", {"base": "FROM reg/app:2 AS x\n"}) is not None
    assert builds_on_another(builds, "shop", {"app": "FROM debian:12\nFROM shop-base-other\n"}) is None
    builds["app"]["build"]["additional_contexts"] = {"base": "docker-image://shop-base:latest"}
    assert "as a build context" in builds_on_another(builds, "shop", {})


@pytest.mark.parametrize("rc, sig, code", [(1, 2, 130), (1, 15, 130), (17, 2, 130), (0, 2, 0), (1, None, 17)])
def test_an_interrupted_build_exits_as_compose_s_cancel(rc, sig, code):
    from shim.compose.sharedbuild import compose_code

    assert compose_code(rc, sig) == code  # ^C: the cancelled docker build says 1, compose says 130


@pytest.mark.parametrize("version, label", [("2.26.1", "2.26.1"), ("2.26.1-4", "2.26.1"),
                                            ("v2.27.0-desktop.1", "2.27.0"), ("2.26", "2.26.0"), ("dev", "dev")])
def test_the_version_label_is_compose_s_own(version, label):
    """compose labels its images with its version's core (a Debian build says 2.26.1-4 to
    `version --short` but labels 2.26.1)."""
    from shim.compose.sharedbuild import label_version

    assert label_version(version) == label


def test_a_sigint_during_the_builds_stops_compose_from_running_afterwards(monkeypatch):
    """`compose up --build` and ^C while its images build: compose cancels and exits 130; a
    build that still ended well must not be followed by `compose up` starting containers."""
    import signal

    from shim.compose import command

    ran = []
    monkeypatch.setattr(command.proc, "_SEEN", [])

    def build_interrupted(real, argv, env=None):
        ran.append(tuple(argv))
        if argv[:1] != ["compose"]:
            command.proc.seen(signal.SIGINT)  # the ^C reached us while the build ran; it ended well
        return 0

    monkeypatch.setattr(command.proc, "run_child", build_interrupted)
    assert command._service_builds("/bin/docker", "docker", ["compose", "up", "--build"], {}, _plan_with(["a"])) == 130
    assert len(ran) == 1 and ran[0][0] != "compose"
    monkeypatch.setattr(command.proc, "_SEEN", [])
    ran.clear()
    assert command._service_builds("/bin/docker", "docker", ["compose", "build"], {},
                                   _plan_with(["a"], compose_runs=False)) == 0  # built all the same: as compose
