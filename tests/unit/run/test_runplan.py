"""The pure run rewrite: what it adds, what it respects, idempotence (nested shims)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from shim.core.config import load
from shim.run.detect import Detection
from shim.core.grammar import parse_invocation, parse_run
from shim.run.plan import Facts, plan_run

CFG = load({"HOME": "/nonexistent"})
NPM = Detection("npm", "test")
PIP = Detection("pip", "test")


def plan(argv, facts=None, config=CFG):
    return plan_run(argv, parse_run(parse_invocation(argv)), config, facts or Facts(detections=(NPM, PIP)))


def test_adds_mount_and_variable_together():
    p = plan(["run", "img", "npm", "ci"])
    labels = ",volume-label=dockcache.managed=true,volume-label=dockcache.manager={},volume-label=dockcache.owner=root" \
             ",volume-label=dockcache.prefix=dockcache,volume-label=dockcache.host_user=0"
    assert p.argv == ("run", "--mount", "type=volume,source=dockcache-npm,target=/dockcache/npm" + labels.format("npm"),
                      "--mount", "type=volume,source=dockcache-pip,target=/dockcache/pip" + labels.format("pip"),
                      "-e", "npm_config_cache=/dockcache/npm", "-e", "PIP_CACHE_DIR=/dockcache/pip",
                      "--label", 'dockcache.caches={"owner":"root","paths":["/dockcache/npm","/dockcache/pip"]}',
                      "img", "npm", "ci")


def test_bind_placement_mounts_host_dirs_under_the_bind_root():
    p = plan(["run", "img", "npm", "ci"], Facts(detections=(NPM,), mode="bind", mode_reason="probe"))
    assert p.argv[:3] == ("run", "-v", "/nonexistent/.cache/dockcache/run/dockcache-npm:/dockcache/npm")
    assert "caches: probe" in p.reasons


def test_user_env_wins_case_insensitive_for_npm():
    p = plan(["run", "-e", "NPM_CONFIG_CACHE=/x", "img"])
    assert "npm" in dict(p.skipped) and all(m.manager != "npm" for m in p.mounts)


def test_env_file_names_count_as_user_set():
    p = plan(["run", "--env-file", "e", "img"], Facts(detections=(PIP,), env_file_names=frozenset({"PIP_CACHE_DIR"})))
    assert p.mounts == ()


def test_user_mount_parent_or_child_blocks():
    assert plan(["run", "-v", "/h:/dockcache", "img"]).mounts == ()
    p = plan(["run", "--mount", "type=volume,dst=/dockcache/npm/x", "img"])
    assert [m.manager for m in p.mounts] == ["pip"]


def test_volumes_from_targets_respected_and_unknown_skips():
    f = Facts(detections=(NPM,), volumes_from_targets=("/dockcache/npm",))
    assert plan(["run", "--volumes-from", "c", "img"], f).mounts == ()
    f = Facts(detections=(NPM,), volumes_from_targets=None)
    assert plan(["run", "--volumes-from", "c", "img"], f).mounts == ()


def test_image_location_respected():
    cargo = Detection("cargo", "test")
    f = Facts(detections=(cargo,), image_env=(("CARGO_HOME", "/usr/local/cargo"),))
    p = plan(["run", "rust", "cargo", "build"], f)
    assert [m.target for m in p.mounts] == ["/usr/local/cargo/registry", "/usr/local/cargo/git"]
    assert not any(a.startswith("CARGO_HOME=") for a in p.argv)
    f = Facts(detections=(PIP,), image_env=(("PIP_CACHE_DIR", "/opt/pipcache"),))
    p = plan(["run", "img"], f)
    assert p.mounts[0].target == "/opt/pipcache" and "PIP_CACHE_DIR=/opt/pipcache" not in p.argv


def test_image_no_cache_switch_respected():
    f = Facts(detections=(PIP,), image_env=(("PIP_NO_CACHE_DIR", "1"),))
    assert plan(["run", "img"], f).mounts == ()


def test_non_root_gets_own_volume_and_owner():
    p = plan(["run", "--user", "1000:1000", "img"], Facts(detections=(NPM,)))
    assert p.mounts[0].source == "dockcache-npm-c1000" and p.mounts[0].owner == "1000:1000"
    p = plan(["run", "img"], Facts(detections=(NPM,), image_user="node"))
    assert p.mounts[0].owner == "node"


def test_project_scope_hashes_path():
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_SCOPE": "project"})
    a = plan(["run", "img"], Facts(detections=(NPM,), project_dir="/p/a"), cfg).mounts[0].source
    b = plan(["run", "img"], Facts(detections=(NPM,), project_dir="/p/b"), cfg).mounts[0].source
    assert a != b and "/p" not in a


def test_disabled_manager_in_config():
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_MANAGERS": "pip"})
    assert [m.manager for m in plan(["run", "img"], config=cfg).mounts] == ["pip"]


paths = st.sampled_from(["/dockcache", "/dockcache/npm", "/dockcache/npm/sub", "/dockcache/pip", "/src", "/"])
names = st.sampled_from(["npm_config_cache", "NPM_CONFIG_CACHE", "PIP_CACHE_DIR", "OTHER"])


@st.composite
def user_argv(draw):
    opts = []
    for p in draw(st.lists(paths, max_size=3)):
        opts += draw(st.sampled_from([["-v", f"/h:{p}"], ["--mount", f"type=bind,src=/h,dst={p}"], ["-v", p]]))
    for n in draw(st.lists(names, max_size=3)):
        opts += ["-e", f"{n}=1"]
    return ["run", *opts, "img", "npm", "ci"]


@settings(max_examples=200, deadline=None)
@given(user_argv())
def test_never_adds_what_user_set_and_is_idempotent(argv):
    p = plan(argv)
    user = parse_run(parse_invocation(argv))
    user_targets = [m.target for m in user.mounts]
    for m in p.mounts:
        assert not any(t == m.target or t.startswith(m.target + "/") or m.target.startswith(t.rstrip("/") + "/")
                       for t in user_targets)
    user_env = {n.lower() for n, _ in user.env}
    added_env = [a.split("=")[0].lower() for a in p.added[1::2] if "=" in a and not a.startswith("dockcache")]
    assert not set(added_env) & user_env
    again = plan(list(p.argv))
    assert again.argv == p.argv and again.added == ()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=10))
def test_plan_never_raises(argv):
    plan(["run", *argv])


def test_readonly_mode_only_for_tools_that_can_read_it():
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_READONLY": "1"})
    p = plan(["run", "img"], Facts(detections=(NPM, Detection("gradle", "t"))), cfg)
    assert [m.manager for m in p.mounts] == ["gradle"] and p.mounts[0].readonly
    assert any(a.startswith("type=volume,source=dockcache-gradle,target=/dockcache/gradle,readonly,") for a in p.argv)
    assert "GRADLE_RO_DEP_CACHE=/dockcache/gradle/caches" in p.argv
    assert "private" in dict(p.skipped)["npm"]


HOST = {"npm": (("", "/home/u/.npm"),), "cargo": (("registry", "/home/u/.cargo/registry"), ("git", "/home/u/.cargo/git"))}


def test_host_caches_mount_the_hosts_own_dirs_when_the_engine_sees_them():
    cargo = Detection("cargo", "test")
    facts = Facts(detections=(NPM, cargo), mode="bind", host_user="1000", host_dirs=HOST)
    p = plan(["run", "img", "sh"], facts)
    got = {(m.source, m.target, m.kind, m.host_cache) for m in p.mounts}
    assert got == {("/home/u/.npm", "/dockcache/npm", "bind", True),
                   ("/home/u/.cargo/registry", "/dockcache/cargo/registry", "bind", True),
                   ("/home/u/.cargo/git", "/dockcache/cargo/git", "bind", True)}
    assert "npm_config_cache=/dockcache/npm" in p.argv and "CARGO_HOME=/dockcache/cargo" in p.argv
    rust = Facts(detections=(cargo,), mode="bind", host_user="1000", host_dirs=HOST,
                 image_env=(("CARGO_HOME", "/usr/local/cargo"),))
    assert {m.target for m in plan(["run", "img"], rust).mounts} == {"/usr/local/cargo/registry", "/usr/local/cargo/git"}


def test_host_caches_only_for_root_or_the_host_user_and_only_on_host_dirs():
    facts = Facts(detections=(NPM,), mode="bind", host_user="1000", host_dirs=HOST)
    assert plan(["run", "-u", "1000:1000", "img"], facts).mounts[0].host_cache
    other = plan(["run", "-u", "2000", "img"], facts).mounts[0]
    assert not other.host_cache and other.source.endswith("/dockcache-npm-c2000")  # the user's cache stays theirs
    volume = plan(["run", "img"], Facts(detections=(NPM,), mode="volume", host_dirs=HOST)).mounts[0]
    assert volume.kind == "volume" and not volume.host_cache  # an engine that can't see ~/.npm
    failed = Facts(detections=(NPM,), mode="bind", host_dirs=HOST, unusable=frozenset({"/home/u/.npm"}))
    assert not plan(["run", "img"], failed).mounts[0].host_cache


def test_custom_caches_are_detected_like_managers(tmp_path):
    from shim.run.detect import always_on, combine, scan_command, scan_dir

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[caches.bazel]\npath = "/cache/bazel"\nenv = { BAZEL_DISK = "{cache}/disk" }\n'
                        'markers = ["WORKSPACE"]\ncommands = ["bazel"]\nhost_dir = "~/.cache/bazel"\n'
                        '[caches.tool]\npath = "/cache/tool"\n')
    cfg = load({"HOME": "/h", "DOCKCACHE_CONFIG": str(cfg_file)})
    table = cfg.table()
    (tmp_path / "WORKSPACE").write_text("")
    assert [d.manager for d in scan_dir(str(tmp_path), table)] == ["bazel"]
    assert [d.manager for d in scan_command(["sh", "-c", "bazel build //..."], table)] == ["bazel"]
    assert [d.manager for d in always_on(table)] == ["tool"]  # no markers: always, as before
    dets = tuple(combine(scan_dir(str(tmp_path), table) + always_on(table)))
    p = plan(["run", "img"], Facts(detections=dets), cfg)
    assert {(m.manager, m.target) for m in p.mounts} == {("bazel", "/cache/bazel"), ("tool", "/cache/tool")}
    assert "BAZEL_DISK=/cache/bazel/disk" in p.argv
    assert plan(["run", "-e", "BAZEL_DISK=/x", "img"], Facts(detections=dets), cfg).skipped[0][0] == "bazel"
    host = Facts(detections=dets, mode="bind", host_dirs={"bazel": (("", cfg.custom_host_dir("bazel")),)})
    assert [m.source for m in plan(["run", "img"], host, cfg).mounts if m.manager == "bazel"] == ["/h/.cache/bazel"]
    assert cfg.host_cache("bazel") and not cfg.host_cache("tool")
