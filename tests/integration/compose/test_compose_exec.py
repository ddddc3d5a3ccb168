"""`docker compose exec -u` of another user than the service's, through bin/docker on the
real engine: the service runs as root with dockcache's caches, npm runs as `dev`."""

import json
import time
import uuid

import pytest

from tests.integration.helpers import DEVTOOLS, ok, shim

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("mode", ["volume", "bind"])
def test_compose_exec_as_another_user_gets_a_cache_it_can_write(shim_env, engines, tmp_path, mode):
    env = {**shim_env, "DOCKCACHE_MODE": mode, "DOCKCACHE_BIND_ROOT": str(tmp_path / "bindroot")}
    root = tmp_path / f"cx{uuid.uuid4().hex[:8]}"
    root.mkdir()
    root.chmod(0o777)
    (root / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0",
                                                   "dependencies": {"is-number": "7.0.0", "left-pad": "1.3.0"}}))
    (root / "compose.yaml").write_text(
        f"services:\n  app:\n    image: {DEVTOOLS}\n    network_mode: host\n    working_dir: /app\n"
        f"    volumes: ['./:/app']\n    labels: ['{engines['a'].label}']\n"
        "    command: ['sh', '-c', 'useradd -m -u 1000 dev && touch /ready && sleep 900']\n")
    compose = ["compose", "--project-directory", str(root)]
    try:
        ok(shim(env, *compose, "up", "-d", cwd=root))
        for _ in range(100):
            if shim(env, *compose, "exec", "-T", "app", "test", "-e", "/ready", cwd=root).returncode == 0:
                break
            time.sleep(0.1)

        def as_dev(script, **extra):
            return shim(env, *compose, "exec", "-T", "-u", "dev", "app", "sh", "-c", script, cwd=root, extra=extra)
        ok(as_dev("npm install --no-audit --no-fund"))
        offline = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
        assert "added 2 packages" in ok(as_dev(offline)).stdout
        assert "/dockcache/npm/.users/dev" in ok(as_dev("echo $npm_config_cache")).stdout
        assert as_dev(offline, DOCKCACHE_DISABLE="1").returncode != 0  # as typed: root's cache
    finally:
        engines["a"].docker("compose", "--project-directory", str(root), "-f", str(root / "compose.yaml"),
                            "down", "-t", "0", check=False, cwd=root)
