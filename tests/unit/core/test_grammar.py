"""Table-driven examples of the docker argv grammar."""

import pytest

from shim.core.grammar import Mount, insert_before, parse_build, parse_invocation, parse_run


@pytest.mark.parametrize("argv,kind,command", [
    (["ps"], "passthrough", ("ps",)),
    (["run", "alpine"], "run", ("run",)),
    (["create", "alpine"], "run", ("create",)),
    (["container", "run", "alpine"], "run", ("container", "run")),
    (["container", "create", "alpine"], "run", ("container", "create")),
    (["container", "ls"], "passthrough", ("container", "ls")),
    (["-H", "unix:///x", "run", "alpine"], "run", ("run",)),
    (["--host=unix:///x", "-D", "--context", "ctx", "run", "a"], "run", ("run",)),
    (["--config", "run", "ps"], "passthrough", ("ps",)),  # "run" is --config's value
    (["build", "."], "build", ("build",)),
    (["image", "build", "."], "build", ("image", "build")),
    (["builder", "build", "."], "build", ("builder", "build")),
    (["buildx", "build", "."], "build", ("buildx", "build")),
    (["buildx", "b", "."], "build", ("buildx", "b")),
    (["buildx", "--builder", "x", "build", "."], "build", ("buildx", "build")),
    (["buildx", "ls"], "passthrough", ("buildx",)),
    (["compose", "up"], "compose", ("compose",)),
    (["--version"], "passthrough", ()),
    ([], "passthrough", ()),
])
def test_invocation_kind(argv, kind, command):
    inv = parse_invocation(argv)
    assert inv.kind == kind
    assert inv.command == command


def test_globals_and_endpoint():
    inv = parse_invocation(["-H", "tcp://h:1", "--context=c1", "--tls", "run", "img"])
    assert inv.globals == ("-H", "tcp://h:1", "--context=c1", "--tls")
    assert inv.host == "tcp://h:1" and inv.context == "c1"
    assert parse_invocation(["buildx", "--builder=bx", "build", "."]).builder == "bx"


def run(*argv):
    return parse_run(parse_invocation(["run", *argv]))


@pytest.mark.parametrize("argv,image,command", [
    (["alpine"], "alpine", ()),
    (["-it", "alpine", "sh"], "alpine", ("sh",)),
    (["-itd", "--rm", "alpine", "sh", "-c", "x"], "alpine", ("sh", "-c", "x")),
    (["-e", "A=1", "alpine"], "alpine", ()),
    (["-eA=1", "alpine"], "alpine", ()),
    (["-ite", "A=1", "alpine"], "alpine", ()),
    (["-ieA=1", "alpine"], "alpine", ()),
    (["-itv", "/a:/b", "alpine"], "alpine", ()),
    (["--env=A=1", "alpine", "-e", "X"], "alpine", ("-e", "X")),
    (["--name", "n", "-w", "/src", "img", "--rm"], "img", ("--rm",)),
    (["--", "img", "x"], "img", ("x",)),
    (["--pull", "never", "img"], "img", ()),
    (["-h", "host1", "img"], "img", ()),
    (["--unknown-bool", "img"], "img", ()),
    (["--unknown=val", "img"], "img", ()),
    (["--help"], None, ()),
    (["-e"], None, ()),
])
def test_image_and_command(argv, image, command):
    r = run(*argv)
    assert r.image == image
    assert r.command == command
    if image is not None:
        assert ["run", *argv][r.image_index] == image


def test_mounts_env_user_workdir():
    r = run("-v", "/host:/src:ro", "-v", "vol:/data/", "-v", "/anon", "--mount",
            "type=bind,src=/h,dst=/x,readonly", "--mount", "type=volume,target=/y",
            "--tmpfs", "/t:size=1m", "-e", "A=1", "-e", "B", "--env-file", "f.env",
            "-u", "1000:1000", "-w", "/src", "--volumes-from", "c1", "img")
    assert r.mounts == (
        Mount("/host", "/src", "bind", True), Mount("vol", "/data", "volume", False),
        Mount(None, "/anon", "anonymous"), Mount("/h", "/x", "bind", True),
        Mount(None, "/y", "volume", False), Mount(None, "/t", "tmpfs"))
    assert r.env == (("A", "1"), ("B", None))
    assert r.env_files == ("f.env",) and r.volumes_from == ("c1",)
    assert r.user == "1000:1000" and r.workdir == "/src"


def test_relative_bind_source_is_bind():
    assert run("-v", "./proj:/app", "img").mounts[0].type == "bind"
    assert run("-v", "~/proj:/app", "img").mounts[0].type == "bind"


def test_container_words_not_parsed_as_flags():
    r = run("img", "-v", "/a:/b", "-e", "X=1")
    assert r.mounts == () and r.env == ()


def build(*argv):
    return parse_build(parse_invocation(["build", *argv]))


def test_build_flags_interspersed():
    b = build(".", "-t", "reg.io/org/app:1", "--tag=x", "-f", "D", "--no-cache",
              "--cache-from", "type=local,src=/c", "--cache-to=type=inline", "--load", "--iidfile", "i")
    assert b.context == "." and b.tags == ("reg.io/org/app:1", "x") and b.file == "D"
    assert b.no_cache and b.load and not b.push and b.iidfile == "i"
    assert b.cache_from == ("type=local,src=/c",) and b.cache_to == ("type=inline",)


def test_build_no_cache_filter_is_not_no_cache():
    b = build("--no-cache-filter", "stage", ".")
    assert not b.no_cache and b.context == "."


def test_buildx_builder_flag():
    inv = parse_invocation(["buildx", "build", "--builder", "bx", "-o", "type=docker", "ctx"])
    b = parse_build(inv)
    assert b.builder == "bx" and b.outputs == ("type=docker",) and b.context == "ctx"


@pytest.mark.parametrize("argv,why", [
    (["--root", "/x", "."], "unknown option --root"),  # hidden buildx flag with a value: "/x" is not the context
    (["--some-new", "."], "unknown option --some-new"),  # may take "." as its value
    ([".", "extra"], "this command has 2 arguments"),
    (["-t", "app"], "this command has 0 arguments"),
])
def test_a_build_whose_context_is_not_certain_is_misread(argv, why):
    assert why in (build(*argv).misread or "")


@pytest.mark.parametrize("argv", [
    ["--some-new=1", "."], [".", "--some-new"], ["-q", "--pull", "--load", "-"], ["--", "."],
    ["-t", "a", "--check", "ctx"],
])
def test_a_build_with_one_certain_context_is_read(argv):
    assert build(*argv).misread is None


@pytest.mark.parametrize("argv", [["-tapp:1", "."], ["-fDockerfile.dev", "."], ["-f-", "."], ["-qtapp", "."]])
def test_a_known_short_flag_with_its_value_attached_is_not_unknown(argv):
    """pflag's `-tapp:1` is `-t app:1`: the context after it is certain."""
    b = build(*argv)
    assert b.misread is None and b.context == "."


@pytest.mark.parametrize("argv", [["-x", "."], ["-qx", "."]])
def test_an_unknown_short_flag_before_the_context_is_still_misread(argv):
    assert "unknown option" in (build(*argv).misread or "")


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["-t", "app", "--help"], ["--help", "a", "b"]])
def test_a_help_build_is_not_misread(argv):
    """docker only prints its help: no context to be unsure of, no line to say."""
    b = build(*argv)
    assert b.help and b.misread is None


def test_insert_before():
    assert insert_before(("a", "b"), 1, ["x"]) == ("a", "x", "b")
    assert insert_before(("a",), 9, ["x"]) == ("a", "x")


def test_config_dir_is_found_among_docker_globals_only():
    from shim.core.grammar import config_dir

    assert config_dir(["--config", "/x", "-H", "unix:///s"]) == "/x"
    assert config_dir(["--config=/y"]) == "/y"
    assert config_dir(["-H", "--config"]) is None  # "--config" is -H's value here
    assert config_dir([]) is None
