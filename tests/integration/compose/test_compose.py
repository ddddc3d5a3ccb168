"""`docker compose` / `docker-compose` through dockcache on the real engine pair."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from shim.compose import command as compose
from shim.build.store.cachestore import CacheStore
from pathlib import Path

from shim.build.progress import build_steps, step_named
from tests.integration.helpers import REPO, shim

pytestmark = pytest.mark.engine
REAL = "/usr/local/bin/docker"


def stack(tmp_path, services=("api", "web", "worker"), extra=""):
    root = tmp_path / f"stack{uuid.uuid4().hex[:6]}"
    root.mkdir()
    lines = ["services:"]
    for s in services:
        (root / s).mkdir()
        (root / s / "Dockerfile").write_text(
            f"FROM dockcache-test/busybox\nRUN echo {s}-{uuid.uuid4().hex} > /t && "
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\n")
        lines += [f"  {s}:", f"    build: {{context: ./{s}, network: none}}", "    network_mode: none",
                  '    command: ["sleep", "2"]']
    (root / "compose.yaml").write_text("\n".join(lines) + "\n" + extra)
    return root


def key_of(root, svc):
    """The key a stack service exports to (compose/keys.py): its Dockerfile's content key, named
    by the service (the stack is in no git clone, and its project is named after its dir)."""
    from shim.compose.keys import service_keys

    spec = {"build": {"context": str(root / svc), "dockerfile": "Dockerfile"}}
    keys = service_keys({svc: spec}, root.name, str(root), "", [])[svc]
    assert keys.own.startswith("df-") and keys.own.endswith(f"-{svc}") and keys.imports == (f"{root.name}-{svc}",)
    return keys.own


def npm_app(root, name):
    """root/name: an npm project with one small dependency."""
    app = root / name
    app.mkdir(parents=True)
    (app / "package.json").write_text(json.dumps({"name": name, "version": "1.0.0", "private": True,
                                                  "dependencies": {"is-number": "7.0.0"}}))
    return app


def up(env, engine, root, *args, launcher="docker"):
    cmd = [str(REPO / "bin" / launcher)] + (["compose"] if launcher == "docker" else [])
    cp = subprocess.run([*cmd, "--progress", "plain", *args], env={**env, "DOCKER_HOST": engine.host},
                        cwd=root, capture_output=True, text=True, timeout=600)
    subprocess.run([REAL, "-H", engine.host, "compose", "down", "--rmi", "local"], cwd=root, capture_output=True)
    return cp


def test_stack_in_session_b_is_all_cached(shim_env, engines, tmp_path):
    root = stack(tmp_path)
    cold = up(shim_env, engines["a"], root, "up", "-d", "--build")
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert [s.cached for s in build_steps(cold.stdout + cold.stderr)] == [False] * 3
    store = CacheStore(shim_env["DOCKCACHE_BUILD_STORE"])
    assert {key_of(root, s) for s in ("api", "web", "worker")} <= set(store.keys())
    warm = up(shim_env, engines["b"], root, "up", "-d", "--build")
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert [s.cached for s in build_steps(warm.stdout + warm.stderr)] == [True] * 3
    assert not os.listdir(os.path.join(shim_env["DOCKCACHE_BUILD_STORE"], "tmp"))


def test_docker_compose_launcher_behaves_the_same(shim_env, engines, tmp_path):
    root = stack(tmp_path, services=("one",))
    assert up(shim_env, engines["a"], root, "build", launcher="docker-compose").returncode == 0
    warm = up(shim_env, engines["b"], root, "build", launcher="docker-compose")
    assert warm.returncode == 0 and [s.cached for s in build_steps(warm.stdout + warm.stderr)] == [True]


def _config(env, root, argv, extra_env):
    cp = subprocess.run([REAL, *argv[:argv.index("build")], "config", "--format", "json"],
                        env={**env, **extra_env}, cwd=root, capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    data = json.loads(cp.stdout)
    for svc in data["services"].values():
        svc.get("build", {}).pop("cache_from", None)
        svc.get("build", {}).pop("cache_to", None)
    return data


@pytest.mark.parametrize("layout", ["plain", "override-file", "dotenv-compose-file", "explicit-f"])
def test_config_unchanged_but_cache_fields(shim_env, engines, tmp_path, monkeypatch, layout):
    root = stack(tmp_path, services=("api", "web"))
    args = ["compose", "build"]
    if layout == "override-file":
        (root / "compose.override.yaml").write_text("services:\n  api:\n    environment: [A=1]\n")
    if layout == "dotenv-compose-file":
        (root / "extra.yaml").write_text("services:\n  web:\n    environment: [B=2]\n")
        (root / ".env").write_text("COMPOSE_FILE=compose.yaml:extra.yaml\n")
    if layout == "explicit-f":
        (root / "other.yaml").write_text("services:\n  api:\n    environment: [C=3]\n")
        args = ["compose", "-f", "compose.yaml", "-f", "other.yaml", "build"]
    env = {**shim_env, "DOCKER_HOST": engines["a"].host}
    monkeypatch.chdir(root)
    plan = compose.plan(REAL, "docker", args, env)
    try:
        with_cache = _config(env, root, plan.argv, plan.env)
        assert _config(env, root, args, {}) == with_cache
        raw = subprocess.run([REAL, *plan.argv[:plan.argv.index("build")], "config", "--format", "json"],
                             env={**env, **plan.env}, cwd=root, capture_output=True, text=True).stdout
        assert all("cache_to" in s["build"] for s in json.loads(raw)["services"].values())
    finally:
        compose.cleanup(plan)


def test_user_cache_to_is_kept(shim_env, engines, tmp_path, monkeypatch):
    root = stack(tmp_path, services=("api",))
    text = (root / "compose.yaml").read_text().replace(
        "build: {context: ./api, network: none}",
        f"build: {{context: ./api, network: none, cache_to: ['type=local,dest={tmp_path}/mine']}}")
    (root / "compose.yaml").write_text(text)
    monkeypatch.chdir(root)
    plan = compose.plan(REAL, "docker", ["compose", "build"], {**shim_env, "DOCKER_HOST": engines["a"].host})
    try:
        assert "cache_to" not in plan.override["services"].get("api", {}).get("build", {})
    finally:
        compose.cleanup(plan)


def test_compose_syntax_error_is_composes_own(shim_env, engines, tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "compose.yaml").write_text("services:\n  api: [unclosed\n")
    via = shim(shim_env, "compose", "up", "--build", cwd=root)
    real = subprocess.run([REAL, "compose", "up", "--build"], env=shim_env, cwd=root, capture_output=True, text=True)
    assert via.returncode == real.returncode != 0
    assert "Traceback" not in via.stderr and "dockcache" not in via.stderr


def test_legacy_builder_passes_through_with_one_line(shim_env, engines, tmp_path):
    root = stack(tmp_path, services=("api",))
    cp = up({**shim_env, "DOCKER_BUILDKIT": "0"}, engines["a"], root, "build")
    assert cp.returncode == 0
    assert cp.stderr.count("dockcache:") == 1 and "DOCKER_BUILDKIT=0" in cp.stderr


def test_service_containers_get_package_caches(shim_env, engines, tmp_path):
    root = tmp_path / "svc"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "package.json").write_text(
        '{"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}')
    (root / "compose.yaml").write_text(
        "services:\n"
        "  fetch:\n    image: dockcache-test/devtools\n    network_mode: host\n"
        "    volumes: [./proj:/app]\n    working_dir: /app\n"
        "  offline:\n    image: dockcache-test/devtools\n    network_mode: none\n"
        "    volumes: [./proj:/app]\n    working_dir: /app\n")
    env = {**shim_env, "DOCKER_HOST": engines["a"].host}

    def run(svc, cmd, extra=None):
        return subprocess.run([str(REPO / "bin" / "docker"), "compose", "run", "--rm", svc, "sh", "-c", cmd],
                              env={**env, **(extra or {})}, cwd=root, capture_output=True, text=True, timeout=300)

    cold = run("fetch", "npm install --no-audit --no-fund && echo cache=$npm_config_cache")
    assert cold.returncode == 0, cold.stderr
    assert "cache=/dockcache/npm" in cold.stdout
    assert f"{engines['a'].prefix}-npm" in engines["a"].volumes()
    offline = "rm -rf node_modules && npm ci --offline --no-audit --no-fund"
    assert run("offline", offline).returncode == 0
    assert run("offline", offline, {"DOCKCACHE_DISABLE": "1"}).returncode != 0
    subprocess.run([REAL, "-H", engines["a"].host, "compose", "down"], cwd=root, capture_output=True)


def test_stack_through_the_registry_backend(shim_env, engines, tmp_path):
    from shim.build.store.registry import Registry

    root = stack(tmp_path, services=("api", "web"))
    repo = f"{os.environ.get('DOCKCACHE_TEST_REGISTRY', 'localhost:5000')}/dct-{uuid.uuid4().hex[:8]}"
    env = {**shim_env, "DOCKCACHE_BUILD_BACKEND": "registry", "DOCKCACHE_BUILD_REGISTRY": repo}
    cold = up(env, engines["a"], root, "build")
    assert cold.returncode == 0, cold.stderr[-2000:]
    keys = {key_of(root, s) for s in ("api", "web")}
    tags = Registry(repo).tags()
    assert keys <= set(tags) and len(tags) == 4  # two keys, each moved to its build's own tag
    assert not os.path.exists(shim_env["DOCKCACHE_BUILD_STORE"])  # registry only
    fresh = {**env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    warm = up(fresh, engines["b"], root, "build")
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert [s.cached for s in build_steps(warm.stdout + warm.stderr)] == [True] * 2


def test_old_engine_stack_builds_import_only(shim_env, engines, tmp_path):
    root = stack(tmp_path, services=("one",))
    plain = subprocess.run([REAL, "-H", engines["old"].host, "compose", "--progress", "plain", "build"],
                           cwd=root, capture_output=True, text=True, timeout=600)
    ours = up(shim_env, engines["old"], root, "build")
    assert plain.returncode == 0 and ours.returncode == 0, ours.stderr[-2000:]  # no cache_to the engine rejects
    assert "Cache export is not supported" not in ours.stdout + ours.stderr


def test_explain_shows_the_override_and_creates_nothing(shim_env, engines, tmp_path):
    root = stack(tmp_path, services=("one",))
    before = up(shim_env, engines["a"], root, "build")  # publishes one's key (df-…-one)
    assert before.returncode == 0, before.stderr[-2000:]
    def explain(engine):
        cp = subprocess.run([sys.executable, "-m", "shim", "explain", "--json", "--", "docker", "compose", "up",
                             "--build"], env={**shim_env, "DOCKER_HOST": engine.host}, cwd=root,
                            capture_output=True, text=True)
        return json.loads(cp.stdout)

    same = explain(engines["a"])  # the daemon that built it: its own cache serves the key
    assert "cache_from" not in same["override"]["services"].get("one", {}).get("build", {})
    assert any("this daemon made every stored build" in r for r in same["reasons"])
    assert any("nothing its build reads changed" in r for r in same["reasons"])  # and no export either
    data = explain(engines["b"])  # another session imports it
    build = data["override"]["services"]["one"]["build"]
    assert data["kind"] == "compose" and f"tag={key_of(root, 'one')}" in build["cache_from"][0]
    assert "<override>" in data["argv"] and data["argv"][-2:] == ["up", "--build"]
    assert not os.listdir(os.path.join(shim_env["DOCKCACHE_BUILD_STORE"], "tmp"))  # no export dir made


def test_a_cache_volume_removed_outside_dockcache_never_breaks_compose(shim_env, engines, tmp_path):
    """`docker volume rm` (or a prune) between runs: compose would refuse the external
    volume; dockcache creates it again, labelled, and the state is right again."""
    a = engines["a"]
    root = tmp_path / "gone"
    root.mkdir()
    (root / "compose.yaml").write_text(
        "services:\n  app:\n    image: dockcache-test/devtools\n    network_mode: none\n"
        "    command: [\"sh\", \"-c\", \"npm --version\"]\n")
    env = {**shim_env, "DOCKER_HOST": a.host}

    def up():
        return subprocess.run([str(REPO / "bin" / "docker"), "compose", "run", "--rm", "app"], env=env, cwd=root,
                              capture_output=True, text=True, timeout=300)

    assert up().returncode == 0
    vol = f"{a.prefix}-npm"
    a.docker("volume", "rm", "-f", vol)
    again = up()
    assert again.returncode == 0, again.stderr
    assert "vanished outside dockcache" in again.stderr
    labels = a.docker("volume", "inspect", "--format", "{{json .Labels}}", vol).stdout
    assert '"dockcache.managed":"true"' in labels
    steady = up()  # the state is right again: nothing to say
    assert steady.returncode == 0 and "vanished" not in steady.stderr
    subprocess.run([REAL, "-H", a.host, "compose", "down"], cwd=root, capture_output=True)


def test_compose_file_in_dotenv_keeps_the_dotenv_values_for_the_build(shim_env, engines, tmp_path):
    """./.env names a compose file in another dir and sets a build arg: compose built
    with the arg from ./.env; through dockcache (COMPOSE_FILE moved to the environment,
    where compose reads only the .env beside the file) it was blank."""
    root = tmp_path / f"dotenv{uuid.uuid4().hex[:6]}"
    (root / "deploy").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "src" / "Dockerfile").write_text("FROM dockcache-test/busybox\nARG X\nRUN echo \"x=$X\" > /x\n")
    (root / "deploy" / "base.yml").write_text(
        "services:\n  app:\n    build:\n      context: ../src\n      network: none\n      args:\n"
        "        X: ${XARG:-blank}\n    image: " + f"{engines['a'].prefix}/dotenv:1\n    network_mode: none\n")
    (root / ".env").write_text("COMPOSE_FILE=deploy/base.yml\nXARG=fromdotenv\n")
    engines["a"].images.append(f"{engines['a'].prefix}/dotenv:1")
    cp = subprocess.run([str(REPO / "bin" / "docker"), "compose", "--progress", "plain", "build"],
                        env={**shim_env, "DOCKER_HOST": engines["a"].host}, cwd=root, capture_output=True,
                        text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "XARG" not in cp.stderr  # compose's "variable is not set" warning
    out = engines["a"].docker("run", "--rm", "--network", "none", f"{engines['a'].prefix}/dotenv:1", "cat", "/x")
    assert out.stdout.strip() == "x=fromdotenv"


def test_a_service_of_a_profile_named_on_the_command_line_gets_its_cache(shim_env, engines, tmp_path):
    """`compose up --build web` enables web's profile: compose builds web. dockcache planned
    the services of the enabled profiles instead (web got no cache; the others did)."""
    root = stack(tmp_path, services=("api", "web"))
    text = (root / "compose.yaml").read_text().replace("  web:\n", "  web:\n    profiles: [web]\n")
    (root / "compose.yaml").write_text(text)
    cold = up(shim_env, engines["a"], root, "up", "--build", "web")
    assert cold.returncode == 0, cold.stderr[-2000:]
    store = CacheStore(shim_env["DOCKCACHE_BUILD_STORE"])
    assert set(store.keys()) >= {key_of(root, "web")} and key_of(root, "api") not in store.keys()
    warm = up(shim_env, engines["b"], root, "up", "--build", "web")
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert [s.cached for s in build_steps(warm.stdout + warm.stderr)] == [True]
    for engine in (engines["a"], engines["b"]):  # `down` leaves a service of a profile it was not given
        subprocess.run([REAL, "-H", engine.host, "compose", "--profile", "web", "down", "--rmi", "local"], cwd=root,
                       capture_output=True)


def test_compose_run_with_a_bind_and_workdir_on_its_command_line_gets_the_apps_cache(shim_env, engines, tmp_path):
    """`compose run --rm -v REPO:/repo -w /repo/web SERVICE sh ./script`: the app where -w
    points is the project (its package.json), as for docker run; the -v and -w given to
    compose run were not looked at, and a command that does not name npm got no cache."""
    root = tmp_path / f"crun{uuid.uuid4().hex[:6]}"
    web = npm_app(root, "web")
    (web / "setup.sh").write_text("npm install --no-audit --no-fund\n")
    (web / "offline.sh").write_text("rm -rf node_modules && npm ci --offline --no-audit --no-fund\n")
    (root / "compose.yaml").write_text(
        "services:\n  dev:\n    image: dockcache-test/devtools:latest\n    network_mode: host\n"
        "  off:\n    image: dockcache-test/devtools:latest\n    network_mode: none\n")
    env = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(tmp_path / "caches")}

    def run(engine, svc, script, extra=None):
        return subprocess.run([str(REPO / "bin" / "docker"), "compose", "run", "--rm", "-v", f"{root}:/repo",
                               "-w", "/repo/web", svc, "sh", script], env={**env, "DOCKER_HOST": engine.host,
                                                                         **(extra or {})},
                              cwd=root, capture_output=True, text=True, timeout=600)

    cold = run(engines["a"], "dev", "./setup.sh")
    assert cold.returncode == 0, cold.stderr[-2000:]
    warm = run(engines["b"], "off", "./offline.sh")
    assert warm.returncode == 0, warm.stdout[-1000:] + warm.stderr[-2000:]
    control = run(engines["b"], "off", "./offline.sh", extra={"DOCKCACHE_DISABLE": "1"})
    assert control.returncode != 0, control.stdout + control.stderr


def test_an_unchanged_service_is_not_exported_again_and_an_edited_one_is(shim_env, engines, tmp_path):
    """While nothing a service's build reads changed since this daemon exported its key,
    compose builds it without the store's cache_to (BuildKit would prepare the whole chain
    for nothing); an edited service exports again, and session B finds both in the store."""
    root = stack(tmp_path, services=("api", "web"))
    a, b = engines["a"], engines["b"]
    store = CacheStore(shim_env["DOCKCACHE_BUILD_STORE"])
    assert up(shim_env, a, root, "build").returncode == 0
    first = {s: store.lineage(key_of(root, s)) for s in ("api", "web")}
    api = key_of(root, "api")

    def explained():
        cp = subprocess.run([sys.executable, "-m", "shim", "explain", "--json", "--", "docker", "compose", "build"],
                            env={**shim_env, "DOCKER_HOST": a.host}, cwd=root, capture_output=True, text=True)
        data = json.loads(cp.stdout)
        return {s: "cache_to" in data["override"]["services"].get(s, {}).get("build", {}) for s in ("api", "web")}

    assert explained() == {"api": False, "web": False}
    again = up(shim_env, a, root, "build")
    assert again.returncode == 0 and [s.cached for s in build_steps(again.stdout + again.stderr)] == [True] * 2
    (root / "api" / "Dockerfile").write_text((root / "api" / "Dockerfile").read_text() + "RUN echo edited\n")
    assert explained() == {"api": True, "web": False}
    assert up(shim_env, a, root, "build").returncode == 0
    edited = key_of(root, "api")  # an edit is a new content key (docs/compose.md): the old one is left as it was
    assert edited != api and store.lineage(edited) and store.lineage(edited)[0] != first["api"][0]
    assert store.lineage(api) == first["api"] and store.lineage(key_of(root, "web")) == first["web"]
    warm = up({**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}, b, root, "build")
    assert warm.returncode == 0 and all(s.cached for s in build_steps(warm.stdout + warm.stderr))


def test_a_service_compose_is_about_to_build_gets_its_cache_on_the_first_up(shim_env, engines, tmp_path):
    """A new session has none of the stack's images: `up --build` used to give such a
    service no cache ("image not built yet"), so every session's first up downloaded
    everything. Its image's USER and ENV are now read from the Dockerfile and its base."""
    root = tmp_path / f"unbuilt{uuid.uuid4().hex[:6]}"
    app = npm_app(root, "app")
    (app / "Dockerfile").write_text("FROM dockcache-test/devtools\nENV APP_HOME=/app\n")
    (app / "Dockerfile.worker").write_text("FROM dockcache-test/devtools\nARG WORKER_UID=4321\nUSER ${WORKER_UID}\n")
    tag = uuid.uuid4().hex[:8]
    for engine in (engines["a"], engines["b"]):
        engine.images += [f"{engines['a'].prefix}/web-{tag}", f"{engines['a'].prefix}/worker-{tag}"]
    env_a = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(tmp_path / "caches")}

    def write(install: str, network: str) -> None:
        (root / "compose.yaml").write_text(
            "services:\n"
            f"  web:\n    build: {{context: ./app, network: none}}\n    image: {engines['a'].prefix}/web-{tag}\n"
            f"    network_mode: {network}\n    volumes: [./app:/app]\n    working_dir: /app\n"
            f"    command: [\"sh\", \"-c\", \"{install} && echo cache=$$npm_config_cache\"]\n"
            f"  worker:\n    build: {{context: ./app, dockerfile: Dockerfile.worker, network: none}}\n"
            f"    image: {engines['a'].prefix}/worker-{tag}\n    network_mode: none\n"
            "    command: [\"sh\", \"-c\", \"npm --version >/dev/null && id -u && touch $$npm_config_cache/w && echo wrote\"]\n")

    write("npm install --no-audit --no-fund", "host")
    first = up(env_a, engines["a"], root, "up", "--build")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "cache=/dockcache/npm" in first.stdout, first.stdout[-2000:] + first.stderr[-2000:]
    assert "4321" in first.stdout and "wrote" in first.stdout, first.stdout[-2000:]  # its own cache, owned by its USER
    assert "image not built yet" not in first.stderr
    write("rm -rf node_modules && npm ci --offline --no-audit --no-fund", "none")
    env_b = {**env_a, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    offline = up(env_b, engines["b"], root, "up", "--build", "web")  # a new session: the image is not there either
    assert offline.returncode == 0 and "cache=/dockcache/npm" in offline.stdout, offline.stdout[-2000:]
    control = up({**env_b, "DOCKCACHE_DISABLE": "1"}, engines["b"], root, "up", "--build", "--exit-code-from", "web", "web")
    assert control.returncode != 0, control.stdout[-2000:]


def test_a_build_store_that_cannot_be_written_costs_one_line(shim_env, engines, tmp_path):
    """compose build with DOCKCACHE_BUILD_STORE a file: the services build, one line says why
    (it said two, the second 'internal error ... running docker unchanged')."""
    root = stack(tmp_path, services=("api",))
    (tmp_path / "afile").write_text("x")
    env = {**shim_env, "DOCKCACHE_BUILD_STORE": str(tmp_path / "afile")}
    cp = up(env, engines["a"], root, "build")
    assert cp.returncode == 0, cp.stderr[-1500:]
    lines = [ln for ln in cp.stderr.splitlines() if ln.startswith("dockcache:")]
    assert len(lines) == 1 and str(tmp_path / "afile") in lines[0] and "internal error" not in lines[0], lines


def test_a_non_root_service_not_built_yet_gets_a_volume_cache_its_user_writes(shim_env, engines, tmp_path):
    """Volume caches: the chown for the service's USER (4321, from its Dockerfile) runs in
    the base the engine has; it ran in the image compose had not built yet, which docker
    run then tried to pull (and the service got no cache)."""
    root = tmp_path / f"unbuiltvol{uuid.uuid4().hex[:6]}"
    app = root / "app"
    app.mkdir(parents=True)
    (app / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "private": True}))
    (app / "Dockerfile").write_text("FROM dockcache-test/devtools\nARG WORKER_UID=4321\nUSER ${WORKER_UID}\n")
    tag = uuid.uuid4().hex[:8]
    a = engines["a"]
    a.images.append(f"{a.prefix}/worker-{tag}")
    (root / "compose.yaml").write_text(
        f"services:\n  worker:\n    build: {{context: ./app, network: none}}\n    image: {a.prefix}/worker-{tag}\n"
        "    network_mode: none\n    volumes: [./app:/app]\n    working_dir: /app\n"
        "    command: [\"sh\", \"-c\", \"npm --version >/dev/null && id -u && touch $$npm_config_cache/w && echo wrote\"]\n")
    env = {**shim_env, "DOCKCACHE_MODE": "volume"}
    first = up(env, a, root, "up", "--build")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "4321" in first.stdout and "wrote" in first.stdout, first.stdout[-2000:] + first.stderr[-2000:]
    assert "could not prepare cache" not in first.stderr, first.stderr[-2000:]


def test_a_checkout_in_a_directory_of_another_name_imports_what_another_session_built(shim_env, engines, tmp_path):
    """Compose names the project after its directory: keyed `<project>-<service>`, a new
    session's checkout under another name imported nothing."""
    import shutil

    (tmp_path / "session-a").mkdir()
    first = stack(tmp_path / "session-a", services=("api",))
    project = first.parent / "proj-a"
    first.rename(project)
    cold = up(shim_env, engines["a"], project, "build")
    assert cold.returncode == 0 and [s.cached for s in build_steps(cold.stdout + cold.stderr)] == [False]
    other = tmp_path / "session-b" / "checkout"
    shutil.copytree(project, other)
    fresh = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    warm = up(fresh, engines["b"], other, "build")
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert [s.cached for s in build_steps(warm.stdout + warm.stderr)] == [True]
    assert set(CacheStore(shim_env["DOCKCACHE_BUILD_STORE"]).keys()) == {key_of(project, "api")}


def test_a_file_added_at_the_context_top_still_imports_every_step_before_the_copy(shim_env, engines, tmp_path):
    """Outside a git clone a service's key follows the names at its context's top: a new file
    there made a new key, and a new session imported nothing for it (key.py `kin`)."""
    import shutil

    token = uuid.uuid4().hex
    root = tmp_path / "session-a" / "shop"
    (root / "api").mkdir(parents=True)
    (root / "api" / "Dockerfile").write_text(
        f"FROM dockcache-test/busybox\nRUN echo {token} > /t && i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\n"
        "COPY . /app\n")
    (root / "api" / "main.sh").write_text("echo main\n")
    (root / "compose.yaml").write_text("services:\n  api:\n    build: {context: ./api, network: none}\n"
                                       "    network_mode: none\n")
    cold = up(shim_env, engines["a"], root, "build")
    assert cold.returncode == 0 and not step_named(cold.stdout + cold.stderr, token).cached, cold.stderr[-2000:]
    other = tmp_path / "session-b" / "shop"
    shutil.copytree(root, other)
    (other / "api" / "util.sh").write_text("echo util\n")  # a new file at the context's top
    fresh = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    warm = up(fresh, engines["b"], other, "build")
    assert warm.returncode == 0, warm.stderr[-2000:]
    out = warm.stdout + warm.stderr
    assert step_named(out, token).cached and not step_named(out, "COPY . /app").cached, out[-2000:]
    assert set(CacheStore(shim_env["DOCKCACHE_BUILD_STORE"]).keys()) == {key_of(root, "api"), key_of(other, "api")}


def test_a_store_keyed_by_project_and_service_still_imports(shim_env, engines, tmp_path):
    """A store written before these keys holds `<project>-<service>`: still a candidate."""
    root = stack(tmp_path, services=("api",))
    cold = up(shim_env, engines["a"], root, "build")
    assert cold.returncode == 0, cold.stderr[-2000:]
    store = CacheStore(shim_env["DOCKCACHE_BUILD_STORE"])
    _rename_key(store, key_of(root, "api"), f"{root.name}-api")
    assert set(store.keys()) == {f"{root.name}-api"}
    warm = up({**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}, engines["b"], root, "build")
    assert warm.returncode == 0 and [s.cached for s in build_steps(warm.stdout + warm.stderr)] == [True]


def _rename_key(store, old, new):
    """As an older dockcache would have named it: the index entry's ref name changed."""
    index = store.root / "oci" / "index.json"
    data = json.loads(index.read_text())
    for m in data["manifests"]:
        ann = m.get("annotations") or {}
        if ann.get("org.opencontainers.image.ref.name") == old:
            ann["org.opencontainers.image.ref.name"] = new
    index.write_text(json.dumps(data))


def test_a_service_never_exports_its_base_and_a_new_session_that_has_it_imports_every_step(
        shim_env, engines, tmp_path):
    import shutil

    from tests.integration.build.test_build_keys import base_layers, stored_blobs
    from tests.integration.helpers import DEVTOOLS

    a, b = engines["a"], engines["b"]
    root = tmp_path / "proj-a"
    (root / "app").mkdir(parents=True)
    token = uuid.uuid4().hex
    (root / "app" / "Dockerfile").write_text(
        f"FROM {DEVTOOLS}\nRUN echo {token} > /t && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n"
        "COPY tools.txt /tools.txt\n")
    (root / "app" / "tools.txt").write_text("make\n")
    (root / "compose.yaml").write_text("services:\n  app:\n    build: {context: ./app, network: none}\n")
    cold = up(shim_env, a, root, "build")
    assert cold.returncode == 0, cold.stderr[-2000:]
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    blobs, base = stored_blobs(store), base_layers(a, DEVTOOLS)
    assert {h: blobs[h] for h in base if h in blobs} == {h: 0 for h in base}  # placeholders, never the base
    assert sum(blobs.values()) < 5_000_000
    other = tmp_path / "session-b" / "checkout"
    shutil.copytree(root, other)
    warm = up({**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}, b, other, "build")
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert step_named(warm.stdout + warm.stderr, token).cached
    assert step_named(warm.stdout + warm.stderr, "COPY tools.txt").cached


def test_a_new_session_without_the_base_pulls_it_first_and_imports_every_step(shim_env, engines, tmp_path):
    """The store has no base layers: a daemon that lacks the base would import nothing (given
    those records, BuildKit fails the build). As for docker build, the base is pulled first."""
    registry = os.environ.get("DOCKCACHE_TEST_REGISTRY")
    if not registry:
        pytest.skip("no test registry (tests/engine/provision.sh)")
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    base = f"{registry}/{a.prefix}/cbase:1"  # a base only A has; B pulls it from the registry
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(f"FROM dockcache-test/busybox\nRUN echo {token} > /base\n")
    a.docker("build", "--network", "none", "-q", "-t", base, str(tmp_path / "base"))
    a.images.append(base)
    a.docker("push", "-q", base)
    b.images.append(base)
    root = tmp_path / "proj-a"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text(
        f"ARG BASE\nFROM ${{BASE}}\nRUN echo {token} > /t && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n")
    (root / "compose.yaml").write_text(
        f"services:\n  app:\n    build: {{context: ./app, network: none, args: {{BASE: '{base}'}}}}\n")
    assert up(shim_env, a, root, "build").returncode == 0
    warm = up({**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}, b, root, "build")
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert step_named(warm.stdout + warm.stderr, token).cached  # pulled, then imported


def test_a_first_build_on_an_engine_without_the_base_leaves_the_base_out_of_the_store(shim_env, engines, tmp_path):
    from tests.integration.build.test_build_keys import assert_no_base, fresh_base

    a, b = engines["a"], engines["b"]
    base = fresh_base(a, b, tmp_path, "cfresh")
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text(f"FROM {base}\nRUN echo {uuid.uuid4().hex} > /t\n")
    (root / "compose.yaml").write_text("services:\n  app:\n    build: {context: ./app, network: none}\n")
    cp = up(shim_env, a, root, "build")
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert_no_base(Path(shim_env["DOCKCACHE_BUILD_STORE"]), b, base)


def test_a_project_named_in_its_file_keeps_exporting_under_its_name(shim_env, engines, tmp_path):
    """`name:` survives a new checkout: `<name>-<service>` stays the key exported to (an edited
    Dockerfile keeps its key), the content key is a candidate; explain lists both."""
    root = stack(tmp_path, services=("api",))
    name = f"shop{uuid.uuid4().hex[:6]}"
    (root / "compose.yaml").write_text(f"name: {name}\n" + (root / "compose.yaml").read_text())
    cold = up(shim_env, engines["a"], root, "build")
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert set(CacheStore(shim_env["DOCKCACHE_BUILD_STORE"]).keys()) == {f"{name}-api"}
    cp = subprocess.run([sys.executable, "-m", "shim", "explain", "--", "docker", "compose", "build"],
                        env={**shim_env, "DOCKER_HOST": engines["b"].host}, cwd=root, capture_output=True, text=True)
    line = next(x for x in cp.stdout.splitlines() if "key candidates" in x)
    assert f"project {name}-api (export, imported)" in line and f"content {key_of(root, 'api')} (not stored)" in line
