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
