"""Config validation and the security rules: one clear error, nothing dangerous mounted."""

import pytest

from shim.core.config import ConfigError, load
from shim.core.safety import check_container_path, check_name


def cfg_file(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return {"HOME": str(tmp_path), "DOCKCACHE_CONFIG": str(p)}


@pytest.mark.parametrize("path", ["/root/.ssh", "/home/u/.aws/x", "/root/.gnupg", "/root/.docker",
                                  "/var/run/docker.sock", "/root/.npmrc", "/root/.pypirc", "/root/.netrc",
                                  "/root/.kube", "/root/.config/gcloud", "/etc", "/"])
def test_credential_and_system_paths_refused(tmp_path, path):
    assert check_container_path(path)
    env = cfg_file(tmp_path, f'[caches.evil]\npath = "{path}"\n')
    with pytest.raises(ConfigError, match="caches.evil"):
        load(env)


@pytest.mark.parametrize("name", ["x; rm -rf /", "../../etc", "--privileged", "a" * 300, "a b"])
def test_bad_names_refused(tmp_path, name):
    assert check_name(name)
    with pytest.raises(ConfigError, match="managers.npm.volume"):
        load(cfg_file(tmp_path, f"[managers.npm]\nvolume = {name!r}\n".replace("'", '"')))


def test_bind_root_on_credentials_refused(tmp_path):
    with pytest.raises(ConfigError, match="run.bind_root"):
        load({"HOME": str(tmp_path), "DOCKCACHE_BIND_ROOT": "/root/.ssh/cache"})


def test_sources_are_tracked(tmp_path):
    env = cfg_file(tmp_path, '[run]\nscope = "project"\n')
    env["DOCKCACHE_MODE"] = "bind"
    cfg = load(env)
    assert cfg["run.scope"] == "project" and cfg.source("run.scope") == env["DOCKCACHE_CONFIG"]
    assert cfg["run.mode"] == "bind" and cfg.source("run.mode") == "env DOCKCACHE_MODE"
    assert cfg.source("run.volume_prefix") == "default"


@pytest.mark.parametrize("text,needle", [("x = [", "invalid TOML"), ("[run]\nmode = 'fast'\n", "run.mode"),
                                         ("[build]\nmax_size = 'huge'\n", "build.max_size"),
                                         ("[nope]\nx = 1\n", "nope.x")])
def test_errors_are_one_line_naming_file_and_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as exc:
        load(cfg_file(tmp_path, text))
    assert needle in str(exc.value) and "\n" not in str(exc.value) and "c.toml" in str(exc.value)


def test_custom_cache_with_env(tmp_path):
    cfg = load(cfg_file(tmp_path, '[caches.ccx]\npath = "/cache/ccx"\nenv = { CCX_DIR = "{cache}" }\n'))
    assert cfg.caches[0].env == (("CCX_DIR", "/cache/ccx"),)


@pytest.mark.parametrize("value", ["localhost:5000", "reg.example:5000/Team/Cache", "http://reg/x", "reg/x:tag", "reg/x y"])
def test_build_registry_must_be_host_and_repository(value):
    with pytest.raises(ConfigError) as err:
        load({"HOME": "/nonexistent", "DOCKCACHE_BUILD_REGISTRY": value})
    assert "HOST[:PORT]/REPOSITORY" in str(err.value)


def test_build_registry_accepts_host_port_and_nested_repository():
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_BUILD_REGISTRY": "reg.example:5000/team/build-cache"})
    assert cfg["build.registry"] == "reg.example:5000/team/build-cache"


def test_host_cache_dirs_follow_the_hosts_own_settings():
    from shim.core.managers import BY_NAME, HOST_DIRS, host_dirs

    assert set(HOST_DIRS) == set(BY_NAME)  # every manager says where the host keeps it
    assert host_dirs("npm", {"HOME": "/h"}) == (("", "/h/.npm"),)
    assert host_dirs("npm", {"HOME": "/h", "npm_config_cache": "/c/npm"}) == (("", "/c/npm"),)
    assert host_dirs("pip", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == (("", "/x/pip"),)
    assert host_dirs("go", {"HOME": "/h", "GOPATH": "/g"}) == (("mod", "/g/pkg/mod"), ("build", "/h/.cache/go-build"))
    assert host_dirs("cargo", {"HOME": "/h", "CARGO_HOME": "/opt/cargo"})[0] == ("registry", "/opt/cargo/registry")
    assert host_dirs("npm", {"HOME": "relative", "npm_config_cache": "also/relative"}) == ()
