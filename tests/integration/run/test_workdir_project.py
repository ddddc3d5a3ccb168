"""A monorepo mounted at its root, the container working in one app (`-v $PWD:/repo
-w /repo/services/web`), running a script that never names the tool: the app's own
markers (where -w points) give it its cache, proven by npm's offline install on another
daemon, which fails without dockcache."""

from __future__ import annotations

import pytest

from tests.integration.helpers import DEVTOOLS, ok, shim, write_json

pytestmark = pytest.mark.engine


def test_markers_at_the_workdir_give_a_monorepo_app_its_cache_on_another_daemon(shim_env, engines, tmp_path):
    repo = tmp_path / "repo"
    web = repo / "services" / "web"
    web.mkdir(parents=True)
    (repo / "README.md").write_text("no project markers at the root\n")
    write_json(web / "package.json", {"name": "web", "version": "1.0.0", "private": True,
                                      "dependencies": {"is-number": "7.0.0"}})
    (web / "setup.sh").write_text("npm install --no-audit --no-fund\n")
    (web / "offline.sh").write_text("rm -rf node_modules && npm ci --offline --no-audit --no-fund "
                                    "&& test -f node_modules/is-number/package.json\n")
    env = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(tmp_path / "caches")}

    def run(host, network, script, extra=None):
        return shim({**env, "DOCKER_HOST": host}, "run", "--rm", "--network", network, "-v", f"{repo}:/repo",
                    "-w", "/repo/services/web", DEVTOOLS, "sh", script, extra=extra, timeout=900)

    ok(run(engines["a"].host, "host", "./setup.sh"))
    assert (web / "package-lock.json").exists()
    assert any((tmp_path / "caches").glob("*npm*/_cacache")), "npm's cache stayed empty on A"
    ok(run(engines["b"].host, "none", "./offline.sh"))
    control = run(engines["b"].host, "none", "./offline.sh", extra={"DOCKCACHE_DISABLE": "1"})
    assert control.returncode != 0, control.stdout + control.stderr
