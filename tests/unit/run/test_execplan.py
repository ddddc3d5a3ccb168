"""`docker exec -u`: another user than the container's gets its own tree in dockcache's caches."""

from shim.core.config import load
from shim.core.grammar import parse_exec, parse_invocation, parse_run
from shim.run.detect import Detection
from shim.run.execplan import LABEL, Container, label_value, plan_exec, read_label, same_user, user_dir_name
from shim.run.plan import Facts, plan_run

ROOT_CACHES = label_value(None, ["/dockcache/npm", "/dockcache/go", "/dockcache/maven"])
ENV = ("PATH=/usr/bin", "npm_config_cache=/dockcache/npm", "GOMODCACHE=/dockcache/go/mod",
       "GOCACHE=/dockcache/go/build", "MAVEN_OPTS=-Xmx1g -Dmaven.repo.local=/dockcache/maven/repository",
       "OTHER=/dockcache/npmx")


def plan(argv, label=ROOT_CACHES, env=ENV, files=frozenset()):
    inv = parse_invocation(argv)
    return plan_exec(argv, parse_exec(inv.argv, inv.args_start), Container("c1", label, env), files)


def test_grammar_finds_the_user_and_the_container():
    for argv, user in ((["exec", "-i", "-u", "dev", "-e", "A=1", "-w", "/x", "C", "ls"], "dev"),
                       (["exec", "-iu", "dev", "C", "ls"], "dev"), (["exec", "--user=1000:1000", "C"], "1000:1000"),
                       (["container", "exec", "-u=dev", "-it", "C", "-u", "x"], "dev"), (["exec", "-e", "-u", "C", "ls"], None)):
        inv = parse_invocation(argv)
        ex = parse_exec(inv.argv, inv.args_start)
        assert inv.kind == "exec" and ex.user == user and ex.container == "C" and argv[ex.insert_at] == "C"


def test_another_user_gets_its_own_tree_for_every_cache_variable():
    p = plan(["exec", "-i", "-u", "dev", "C", "npm", "ci"])
    added = dict(a.split("=", 1) for a in p.argv[4:-3] if a != "-e")
    assert added == {"npm_config_cache": "/dockcache/npm/.users/dev", "GOMODCACHE": "/dockcache/go/.users/dev/mod",
                     "GOCACHE": "/dockcache/go/.users/dev/build",
                     "MAVEN_OPTS": "-Xmx1g -Dmaven.repo.local=/dockcache/maven/.users/dev/repository"}
    assert p.argv[:4] == ("exec", "-i", "-u", "dev") and p.argv[-3:] == ("C", "npm", "ci")
    assert p.user == "dev" and set(p.dirs) == {f"/dockcache/{m}/.users/dev" for m in ("npm", "go", "maven")}


def test_the_owner_and_root_spellings_run_unchanged():
    for argv, label in ((["exec", "-u", "0", "C", "ls"], ROOT_CACHES), (["exec", "-u", "root:root", "C", "ls"], ROOT_CACHES),
                        (["exec", "-u", "1000", "C", "ls"], label_value("1000:1000", ["/dockcache/npm"])),
                        (["exec", "C", "ls"], ROOT_CACHES), (["exec", "-u", "dev", "C", "ls"], None),
                        (["exec", "-u", "dev", "C", "ls"], "not json")):
        p = plan(argv, label=label)
        assert p.argv == tuple(argv) and not p.dirs


def test_root_into_a_non_root_users_caches_gets_its_own_tree_too():
    p = plan(["exec", "-u", "0", "C", "ls"], label=label_value("1000", ["/dockcache/npm"]))
    assert "npm_config_cache=/dockcache/npm/.users/root" in p.argv and p.dirs == ("/dockcache/npm/.users/root",)


def test_the_users_own_setting_wins_but_an_echo_of_the_containers_does_not_count():
    mine = plan(["exec", "-u", "dev", "-e", "npm_config_cache=/tmp/mine", "C", "ls"])
    assert "npm_config_cache=/tmp/mine" in mine.argv and not any(".users/dev" in a and "npm" in a for a in mine.argv)
    echo = plan(["exec", "-u", "dev", "-e", "npm_config_cache=/dockcache/npm", "C", "ls"])
    assert echo.argv.index("npm_config_cache=/dockcache/npm/.users/dev") > echo.argv.index("npm_config_cache=/dockcache/npm")
    from_file = plan(["exec", "-u", "dev", "C", "ls"], files=frozenset({"npm_config_cache"}))
    assert "npm_config_cache=/dockcache/npm/.users/dev" not in from_file.argv


def test_unknown_option_or_uninspectable_container_runs_unchanged():
    argv = ["exec", "-u", "dev", "--new-flag", "C", "ls"]
    inv = parse_invocation(argv)
    assert plan_exec(argv, parse_exec(inv.argv, inv.args_start), Container("c", ROOT_CACHES, ENV)).argv == tuple(argv)
    assert plan_exec(argv, parse_exec(inv.argv, inv.args_start), None).argv == tuple(argv)


def test_user_spellings():
    assert [user_dir_name(u) for u in ("dev:dev", "0:0", "..", "../../x", "ü")] == ["dev", "root", "user", "x", "user"]
    assert same_user("root", "0:0") and same_user("dev:staff", "dev") and not same_user("dev", "1000")
    assert read_label(label_value("dev", ["/c", "relative"])) == ("dev", ("/c",))


def test_run_labels_its_writable_caches_with_their_owner():
    cfg = load({"DOCKCACHE_MODE": "volume"}, "/nonexistent")
    facts = Facts(detections=(Detection("npm", "x"),))

    def label(*argv):
        p = plan_run(argv, parse_run(parse_invocation(argv)), cfg, facts)
        return next((a.split("=", 1)[1] for a in p.argv if a.startswith(LABEL + "=")), None)

    assert read_label(label("run", "img", "npm", "ci")) == ("root", ("/dockcache/npm",))
    assert read_label(label("run", "-u", "1000:1000", "img", "npm", "ci")) == ("1000:1000", ("/dockcache/npm",))
    assert label("run", "-e", "npm_config_cache=/x", "img", "npm", "ci") is None  # no cache of ours


def test_executor_makes_the_dirs_once_and_fails_open(monkeypatch, tmp_path, capsys):
    """The I/O half with a fake docker: dirs made as root once per container; a failure
    to make them leaves the exec exactly as typed, with one line."""
    from shim.core import proc
    from shim.run import execcmd

    calls, rc = [], {"v": 0}
    monkeypatch.setattr(execcmd, "inspect", lambda *a: Container("cid1", ROOT_CACHES, ENV))
    monkeypatch.setattr(proc, "run_docker", lambda real, argv, **kw: calls.append(argv) or proc.Result(tuple(argv), rc["v"], "", "no sh"))
    environ = {"DOCKCACHE_STATE_DIR": str(tmp_path), "DOCKER_HOST": "tcp://127.0.0.1:1"}
    argv = ["exec", "-u", "dev", "C", "npm", "ci"]
    inv = parse_invocation(argv)
    rc["v"] = 1
    assert execcmd.planned_argv("docker", argv, inv, environ) == argv
    assert "could not give dev its own caches in C (no sh); exec runs unchanged" in capsys.readouterr().err
    rc["v"] = 0
    first = execcmd.planned_argv("docker", argv, inv, environ)
    assert "npm_config_cache=/dockcache/npm/.users/dev" in first and calls[-1][:5] == ["exec", "-u", "0", "C", "sh"]
    made = len(calls)
    assert execcmd.planned_argv("docker", argv, inv, environ) == first and len(calls) == made  # remembered


def test_compose_exec_finds_the_replica_compose_would_use(monkeypatch):
    from shim.compose import execuser
    from shim.compose.files import split
    from shim.core import proc

    out = "aaa\tproj-app-2\nbbb\tproj-app-1\n"
    monkeypatch.setattr(proc, "run_docker", lambda real, argv, **kw: proc.Result(tuple(argv), 0, out, ""))
    call = split("docker", ["compose", "-p", "proj", "exec", "-u", "dev", "app", "ls"])
    assert execuser._container("docker", call, "app", "1") == "bbb"
    assert execuser._container("docker", call, "app", "2") == "aaa"
    assert execuser._index(["-T", "--index", "2"]) == "2" and execuser._index(["--index=3"]) == "3"
    assert execuser._index(["-T"]) == "1"
