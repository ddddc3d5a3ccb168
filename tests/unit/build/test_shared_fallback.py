"""Issue 35's pure parts and their I/O with faked docker: which images a build reads
(baserefs), which failures the engine builds again (fallback), the per-image verdict
(resolvable) and the one retry (command._fallback)."""

import pytest

from shim.build.shared import builder
from shim.build.shared import resolvable
from shim.build.shared import route as shared
from shim.build import command as buildcmd
from shim.build.shared.baserefs import build_refs, contexts_of
from shim.build.shared.fallback import failed_ref, last_error, retry_reason
from shim.core import engineapi, proc
from shim.core.engine import BuildCaps
from shim.core.grammar import parse_build, parse_invocation
from shim.core.state import State

TARGET = shared.target_for("unix:///run/x/buildkitd.sock")


def refs(text, build_args=None, contexts=None, target=None):
    return build_refs(text, build_args=build_args or {}, contexts=contexts or {}, target=target)


def test_from_copy_from_mount_from_and_syntax_name_images_stages_do_not():
    text = ("# syntax=docker/dockerfile:1.7\nARG BASE=alpine:3\nFROM $BASE AS build\n"
            "RUN --mount=type=bind,from=tools:1,target=/t \\\n    --mount=type=cache,target=/c make\n"
            "FROM build AS test\nFROM scratch\nCOPY --from=build /out /out\nCOPY --from=0 /x /x\n"
            "COPY --from=busybox:1 /bin/sh /sh\n")
    got = refs(text)
    assert got.images == ("docker/dockerfile:1.7", "alpine:3", "tools:1", "busybox:1") and got.unknown == ()
    assert refs(text, {"BASE": "me/base:2"}).images[1] == "me/base:2"


def test_only_the_stages_the_target_reaches_count():
    text = "FROM a:1 AS one\nFROM b:1 AS two\nCOPY --from=one /x /x\nFROM c:1 AS three\n"
    assert refs(text).images == ("c:1",)
    assert refs(text, target="two").images == ("a:1", "b:1")
    assert refs(text, target="missing").images == ("a:1", "b:1", "c:1")  # unknown target: all of them


def test_build_contexts_replace_names_and_docker_image_contexts_count():
    text = "FROM base\nCOPY --from=tools /t /t\n"
    ctx = contexts_of([("--build-context", "base=docker-image://reg/base:9"), ("--build-context", "tools=./tools"),
                       ("--tag", "x")])
    assert ctx == {"base": "docker-image://reg/base:9", "tools": "./tools"}
    assert refs(text, contexts=ctx).images == ("reg/base:9",)


def test_names_only_the_daemon_can_expand_are_unknown_not_images():
    text = "ARG TARGETARCH\nFROM base-$TARGETARCH\nFROM x AS mid\nCOPY --from=$IMG /a /a\nFROM ${B:?need B}\n"
    got = refs(text)
    assert got.images == () and set(got.unknown) == {"base-$TARGETARCH", "$IMG", "${B:?need"}
    assert refs(text, target="mid").images == ("x",)


PLAIN_RESOLVE = """#2 [internal] load metadata for docker.io/ceo/tools:1
#2 ERROR: failed to do request: Head "https://registry-1.docker.io/v2/ceo/tools/manifests/1": no such host
------
 > [internal] load metadata for docker.io/ceo/tools:1:
------
ERROR: failed to solve: ceo/tools:1: failed to resolve source metadata for docker.io/ceo/tools:1: failed to do request: Head "https://registry-1.docker.io/v2/ceo/tools/manifests/1": no such host
"""
RUN_FAILED = """#5 [2/2] RUN docker pull x || (echo pull access denied; exit 3)
#5 0.07 pull access denied
#5 ERROR: process "/bin/sh -c ..." did not complete successfully: exit code: 3
ERROR: failed to solve: process "/bin/sh -c ..." did not complete successfully: exit code: 3
"""


def test_a_resolve_failure_is_retried_and_names_the_image():
    why = retry_reason(PLAIN_RESOLVE)
    assert why == "the shared builder could not resolve docker.io/ceo/tools:1 (failed to resolve source metadata)"
    assert failed_ref(last_error(PLAIN_RESOLVE)) == "docker.io/ceo/tools:1"


@pytest.mark.parametrize("line,retried", [
    ("ERROR: failed to solve: pull access denied, repository does not exist or may require authorization", True),
    ("ERROR: failed to solve: granting entitlement security.insecure is not allowed by build daemon configuration",
     True),
    ('ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref x: "/app.txt": not found',
     False),
    ("ERROR: failed to solve: dockerfile parse error on line 2: unknown instruction: RUNN", False),
    ("ERROR: failed to solve: Canceled: context canceled", False),
    ("ERROR: failed to solve: rpc error: code = Unavailable desc = error reading from server: EOF", False),
])
def test_which_final_errors_the_engine_builds_again(line, retried):
    assert (retry_reason(f"#1 something\n{line}\n") is not None) == retried


def test_a_failing_run_is_the_builds_own_even_when_its_output_has_the_words():
    assert retry_reason(RUN_FAILED) is None
    assert retry_reason("no error line at all\n") is None


def test_a_terminal_displays_escape_sequences_are_read_through():
    tty = "\x1b[1A\x1b[2K => ERROR [internal] load metadata\r\n\x1b[0m" + PLAIN_RESOLVE.replace("\n", "\r\n")
    assert "could not resolve docker.io/ceo/tools:1" in retry_reason(tty)


class Engine:
    """engineapi.inspect_all's answers, and every probe build run."""

    def __init__(self, monkeypatch, images, probe_out="", probe_rc=0):
        self.probes = []
        monkeypatch.setattr(engineapi, "inspect_all", lambda sock, names: [images.get(n) for n in names])

        def docker(real, argv, timeout=None, stdin=None, **_k):
            self.probes.append(stdin)
            return proc.Result(tuple(argv), probe_rc, "", probe_out)
        monkeypatch.setattr(proc, "run_docker", docker)


def shared_run(tmp_path):
    return builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1", socket="/x.sock")


def test_an_image_the_engine_lacks_asks_the_builder_nothing(tmp_path, monkeypatch):
    eng = Engine(monkeypatch, {})
    assert resolvable.why_here("/bin/docker", parse_invocation(["build", "."]), shared_run(tmp_path), ["a:1"]) is None
    assert eng.probes == []


def test_an_image_the_builder_resolves_to_the_engines_goes_there_and_is_asked_once(tmp_path, monkeypatch):
    digest = "sha256:" + "a" * 64
    eng = Engine(monkeypatch, {"a:1": {"Id": digest, "RepoDigests": [f"a@{digest}"]}},
                 probe_out=f"#4 [1/1] FROM docker.io/library/a:1@{digest}\n")
    run, inv = shared_run(tmp_path), parse_invocation(["build", "."])
    assert resolvable.why_here("/bin/docker", inv, run, ["a:1"]) is None
    assert resolvable.why_here("/bin/docker", inv, run, ["a:1"]) is None
    assert eng.probes == ["FROM a:1\n"]  # the verdict is remembered per image id


def test_a_classic_stores_repo_digest_is_the_registrys(tmp_path, monkeypatch):
    digest = "sha256:" + "b" * 64
    Engine(monkeypatch, {"a:1": {"Id": "sha256:" + "c" * 64, "RepoDigests": [f"a@{digest}"]}},
           probe_out=f"#4 [1/1] FROM docker.io/library/a:1@{digest}\n")
    assert resolvable.why_here("/bin/docker", parse_invocation(["build", "."]), shared_run(tmp_path), ["a:1"]) is None


def test_an_image_no_registry_serves_or_serves_as_another_keeps_the_build_here(tmp_path, monkeypatch):
    held = {"a:1": {"Id": "sha256:" + "a" * 64}}
    Engine(monkeypatch, held, probe_out=PLAIN_RESOLVE, probe_rc=1)
    inv = parse_invocation(["build", "."])
    assert "no registry the shared builder reaches serves" in resolvable.why_here("/bin/docker", inv,
                                                                                   shared_run(tmp_path), ["a:1"])
    Engine(monkeypatch, held, probe_out="#4 [1/1] FROM docker.io/library/a:1@sha256:" + "d" * 64 + "\n")
    assert "another image" in resolvable.why_here("/bin/docker", inv, shared_run(tmp_path / "2"), ["a:1"])


def test_a_probe_that_gets_no_answer_keeps_the_build_here_and_is_not_remembered(tmp_path, monkeypatch):
    eng = Engine(monkeypatch, {"a:1": {"Id": "sha256:" + "a" * 64}}, probe_out="ERROR: connection reset", probe_rc=1)
    run, inv = shared_run(tmp_path), parse_invocation(["build", "."])
    assert "did not say" in resolvable.why_here("/bin/docker", inv, run, ["a:1"])
    resolvable.why_here("/bin/docker", inv, run, ["a:1"])
    assert len(eng.probes) == 2


def test_an_image_dockcache_loaded_from_the_builder_stays_without_asking(tmp_path, monkeypatch):
    eng = Engine(monkeypatch, {})
    run = shared_run(tmp_path)
    run.state.put("sharedloads", run.daemon, "mine:1", {"config": "c", "id": "i"})
    assert "dockcache loaded" in resolvable.why_here("/bin/docker", parse_invocation(["build", "."]), run, ["mine:1"])
    assert eng.probes == []


def test_a_retried_build_keeps_its_key_and_the_name_here(tmp_path, monkeypatch):
    Engine(monkeypatch, {})
    run, inv = shared_run(tmp_path), parse_invocation(["build", "."])
    resolvable.remember_failed(run, "docker.io/library/gone:1", "app", "could not resolve")
    assert "an earlier build of app failed" in resolvable.failed_before(run, "app")
    assert resolvable.failed_before(run, "other") is None
    assert "could not resolve it in an earlier build" in resolvable.why_here("/bin/docker", inv, run, ["gone:1"])


def _shared_prep(argv, tail):
    inv = parse_invocation(argv)
    caps = BuildCaps("full", "test", "remote")
    run = builder.SharedRun(TARGET, None, "d")
    run.tail = tail
    plan = shared.plan_shared(inv.argv, inv, parse_build(inv), TARGET, "x", caps)
    return inv, buildcmd.Prepared(plan, None, None, None, None, caps, shared=run)


def test_a_resolve_failure_builds_once_more_on_the_engine_with_one_line(tmp_path, monkeypatch, capsys):
    inv, prep = _shared_prep(["build", "-t", "x", "."], PLAIN_RESOLVE)
    local = buildcmd.Prepared(buildcmd.BuildPlan(("build", "-t", "x", "."), "x"), None, None, None, None, prep.caps)
    asked = []
    monkeypatch.setattr(buildcmd, "prepare", lambda *a, **k: asked.append(k) or local)
    monkeypatch.setattr(buildcmd, "_build", lambda real, inv, p: 0 if p is local else 99)
    monkeypatch.setattr(buildcmd, "_remember_failed", lambda *a: None)
    got, rc = buildcmd._fallback("/bin/docker", inv.argv, inv, {}, prep, 1)
    assert (got, rc) == (local, 0) and "could not resolve" in got.retried
    assert asked[0]["here"].endswith("retried on this engine")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockcache: the shared builder could not resolve")


@pytest.mark.parametrize("argv,tail,rc", [
    (["build", "-t", "x", "."], RUN_FAILED, 1),  # the build's own failure
    (["build", "-t", "x", "-"], PLAIN_RESOLVE, 1),  # stdin was read by the first build
    (["build", "-t", "x", "."], PLAIN_RESOLVE, 0),  # it worked
])
def test_what_is_not_built_again(argv, tail, rc, monkeypatch):
    inv, prep = _shared_prep(argv, tail)
    monkeypatch.setattr(buildcmd, "prepare", lambda *a, **k: pytest.fail("built again"))
    assert buildcmd._fallback("/bin/docker", inv.argv, inv, {}, prep, rc) == (prep, rc)
