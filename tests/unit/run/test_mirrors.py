"""[mirrors]: the variables and generated files that point each detected tool at a mirror."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shim.core.config import ConfigError, load
from shim.run.detect import Detection
from shim.core.grammar import parse_invocation, parse_run
from shim.run.mirrors import CARGO_TARGET, MIRROR_ROOT
from shim.run.plan import Facts, plan_run

ENV = {"HOME": "/nonexistent", "DOCKCACHE_MIRROR_NPM": "http://127.0.0.1:4873/",
       "DOCKCACHE_MIRROR_PYPI": "http://10.0.0.5:3141/root/pypi/+simple/",
       "DOCKCACHE_MIRROR_GO": "https://proxy.test,direct",
       "DOCKCACHE_MIRROR_CARGO": "sparse+https://crates.test/index/",
       "DOCKCACHE_MIRROR_MAVEN": "https://maven.test/repo/?a=1&b=2"}
CFG = load(ENV)


def det(*names):
    return tuple(Detection(n, "test") for n in names)


def plan(argv, facts):
    return plan_run(argv, parse_run(parse_invocation(argv)), CFG, facts)


def env_added(p):
    return dict(a.split("=", 1) for a in p.added[1::2] if "=" in a and not a.startswith(("dockcache", "/")))


def test_npm_family_gets_registry_variable_with_cache():
    p = plan(["run", "img", "npm", "ci"], Facts(detections=det("npm"), state_root="/s"))
    env = env_added(p)
    assert env["npm_config_registry"] == "http://127.0.0.1:4873/" and env["npm_config_cache"] == "/dockcache/npm"
    for tool, var in (("yarn", "YARN_REGISTRY"), ("yarn-berry", "YARN_NPM_REGISTRY_SERVER"),
                      ("pnpm", "npm_config_registry"), ("bun", "BUN_CONFIG_REGISTRY")):
        assert env_added(plan(["run", "img"], Facts(detections=det(tool))))[var] == "http://127.0.0.1:4873/"


def test_http_pip_index_is_trusted_https_is_not():
    env = env_added(plan(["run", "img"], Facts(detections=det("pip", "uv"))))
    assert env["PIP_INDEX_URL"].startswith("http://10.0.0.5") and env["PIP_TRUSTED_HOST"] == "10.0.0.5:3141"
    assert env["UV_DEFAULT_INDEX"] == env["PIP_INDEX_URL"]
    cfg = load({**ENV, "DOCKCACHE_MIRROR_PYPI": "https://pypi.test/simple/"})
    run = ["run", "img"]
    p = plan_run(run, parse_run(parse_invocation(run)), cfg, Facts(detections=det("pip")))
    assert "PIP_TRUSTED_HOST" not in env_added(p)


def test_user_or_image_registry_wins():
    p = plan(["run", "-e", "NPM_CONFIG_REGISTRY=http://mine/", "img"], Facts(detections=det("npm")))
    assert "npm_config_registry" not in env_added(p) and "you set" in dict(p.skipped)["npm mirror"]
    p = plan(["run", "img"], Facts(detections=det("go"), image_env=(("GOPROXY", "off"),)))
    assert "GOPROXY" not in env_added(p) and "image" in dict(p.skipped)["go mirror"]


def test_cargo_and_maven_get_generated_files_read_only():
    p = plan(["run", "img"], Facts(detections=det("cargo", "maven"), state_root="/state"))
    files = dict(p.mirror.files)
    assert 'replace-with = "dockcache-mirror"' in files["cargo-config.toml"].decode()
    assert 'registry = "sparse+https://crates.test/index/"' in files["cargo-config.toml"].decode()
    assert "<url>https://maven.test/repo/?a=1&amp;b=2</url>" in files["maven-settings.xml"].decode()
    assert p.mirror.host_dir.startswith("/state/mirrors/")
    assert f"{p.mirror.host_dir}:{MIRROR_ROOT}:ro" in p.argv
    assert f"{p.mirror.host_dir}/cargo-config.toml:{CARGO_TARGET}:ro" in p.argv
    assert env_added(p)["MAVEN_ARGS"] == f"--global-settings {MIRROR_ROOT}/maven-settings.xml"


def test_files_need_a_local_engine():
    p = plan(["run", "img"], Facts(detections=det("cargo", "maven", "npm"), local_engine=False))
    assert p.mirror.binds == () and "MAVEN_ARGS" not in env_added(p)
    assert "not on this host" in dict(p.skipped)["mirror file cargo-config.toml"]
    assert env_added(p)["npm_config_registry"]  # variables need no file


def test_ca_bundle_goes_to_each_tools_variable():
    p = plan(["run", "img"], Facts(detections=det("npm", "pip"), state_root="/s", ca_pem=b"PEM"))
    env = env_added(p)
    assert env["NODE_EXTRA_CA_CERTS"] == env["PIP_CERT"] == f"{MIRROR_ROOT}/ca.pem"
    assert dict(p.mirror.files)["ca.pem"] == b"PEM"
    other = plan(["run", "img"], Facts(detections=det("npm", "pip"), state_root="/s", ca_pem=b"PEM2"))
    assert other.mirror.host_dir != p.mirror.host_dir  # content-addressed: a new CA is a new dir


def test_no_mirror_configured_adds_nothing_new():
    cfg = load({"HOME": "/nonexistent"})
    run = ["run", "img"]
    p = plan_run(run, parse_run(parse_invocation(run)), cfg, Facts(detections=det("npm", "cargo"), ca_pem=b"x"))
    assert p.mirror.tokens() == () and not any("registry" in a for a in p.argv)


@pytest.mark.parametrize("key,value,word", [
    ("DOCKCACHE_MIRROR_NPM", "https://user:tok@npm.test/", "credentials"),
    ("DOCKCACHE_MIRROR_PYPI", "ftp://x/simple", "http(s)"),
    ("DOCKCACHE_MIRROR_GO", "https://ok.test,file:///x", "http(s)"),
    ("DOCKCACHE_MIRROR_CARGO", 'https://x.test/"]', "characters"),
    ("DOCKCACHE_MIRROR_CA_BUNDLE", "relative.pem", "absolute"),
])
def test_bad_mirror_values_are_one_line_errors(key, value, word):
    with pytest.raises(ConfigError) as err:
        load({**ENV, key: value})
    assert word in str(err.value) and "\n" not in str(err.value)


targets = st.sampled_from(["/dockcache", MIRROR_ROOT, "/.cargo", CARGO_TARGET, "/src"])
names = st.sampled_from(["npm_config_registry", "NPM_CONFIG_REGISTRY", "PIP_INDEX_URL", "MAVEN_ARGS",
                         "NODE_EXTRA_CA_CERTS", "GOPROXY", "OTHER"])


@st.composite
def user_argv(draw):
    opts = []
    for t in draw(st.lists(targets, max_size=2)):
        opts += ["-v", f"/h:{t}"]
    for n in draw(st.lists(names, max_size=3)):
        opts += ["-e", f"{n}=1"]
    return ["run", *opts, "img"]


@settings(max_examples=200, deadline=None)
@given(user_argv(), st.booleans())
def test_never_overrides_user_and_nested_shim_adds_nothing(argv, local):
    facts = Facts(detections=det("npm", "pip", "cargo", "maven", "go"), state_root="/s", ca_pem=b"C",
                  local_engine=local)
    p = plan(argv, facts)
    user = parse_run(parse_invocation(argv))
    assert not {n.lower() for n in env_added(p)} & {n.lower() for n, _ in user.env}
    for _src, dst in p.mirror.binds:
        assert not any(t == dst or t.startswith(dst + "/") or dst.startswith(t + "/") for t in
                       (m.target for m in user.mounts))
    assert list(p.argv[:len(argv) - 1]) == argv[:-1] and p.argv[-1] == "img"  # user tokens untouched
    again = plan(list(p.argv), facts)
    assert again.argv == p.argv and again.added == ()


def test_shared_variables_once_and_helpers_never_override():
    p = plan(["run", "img"], Facts(detections=det("npm", "pnpm", "yarn")))
    names = [a.split("=", 1)[0] for a in p.added[1::2] if "=" in a]
    assert names.count("npm_config_registry") == 1 and "YARN_REGISTRY" in names
    p = plan(["run", "-e", "PIP_TRUSTED_HOST=other.test", "img"], Facts(detections=det("pip")))
    env = env_added(p)
    assert env["PIP_INDEX_URL"].startswith("http://10.0.0.5") and "PIP_TRUSTED_HOST" not in env
