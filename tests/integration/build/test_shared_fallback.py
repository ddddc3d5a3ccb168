"""Issue 35, live: with the shared builder up, a build plain docker builds never fails
through dockcache. An image only the session's engine holds (`docker load`, a build with
`--builder default`, an earlier compose service) keeps the build on the engine; a build
that fails on the shared builder to resolve an image is built again on the engine, once;
a build's own failure (a RUN) is not.

Needs the shared builder (tests/engine/provision.sh builder-up), as test_shared_builder.py.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.conftest import BUSYBOX
from tests.integration.build.test_shared_builder import build, metrics, project, sessions  # noqa: F401 (a fixture)
from tests.integration.helpers import shim

pytestmark = pytest.mark.engine


def explain(env: dict, *argv: str, cwd=None) -> str:
    cp = subprocess.run([os.environ.get("DOCKCACHE_TEST_PYTHON", "python3"), "-m", "shim", "explain", *argv],
                        env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    return cp.stdout + cp.stderr


def content(engine, tag: str, path: str) -> str:
    return engine.docker("run", "--rm", "--network", "none", tag, "cat", path).stdout.strip()


def test_a_build_from_a_docker_loaded_base_stays_on_the_engine(sessions, engines, tmp_path):
    """The base is `docker load`ed into A (built on B, saved): no registry has it. The
    build FROM it stays on A's engine (explain says why), with plain docker's result; the
    verdict is remembered, so the next build asks the shared builder nothing."""
    a, b = engines["a"], engines["b"]
    base = f"{a.prefix}/loaded-base:1"
    ctx, token = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN > /base.txt\n", "base")
    b.images.append(base)
    assert b.docker("build", "-q", "--network", "none", "-t", base, str(ctx)).returncode == 0
    tar = tmp_path / "base.tar"
    assert b.docker("save", "-o", str(tar), base).returncode == 0
    a.images.append(base)
    assert a.docker("load", "-i", str(tar)).returncode == 0
    app, _ = project(tmp_path, f"FROM {base}\nCOPY app.txt /app.txt\n", "app")
    tag = f"{a.prefix}/on-loaded:1"
    said = explain(sessions["a"], "--", "docker", "build", "-t", tag, str(app))
    assert "loaded-base:1" in said and "built on this engine" in said, said
    cp = build(sessions["a"], a, app, tag)
    assert "failed to resolve source metadata" not in cp.stderr and "using remote driver" not in cp.stderr
    assert metrics(sessions["a"])[-1].get("builder") is None and "retried" not in metrics(sessions["a"])[-1]
    assert content(a, tag, "/base.txt") == token
    app.joinpath("app.txt").write_text("edited")
    again = build(sessions["a"], a, app, tag)
    assert "using remote driver" not in again.stderr and content(a, tag, "/app.txt") == "edited"


def test_a_base_built_with_the_default_builder_then_a_dependent_build(sessions, engines, tmp_path):
    """`--builder default` keeps the base on A's own builder; the build FROM it then stays
    there too, while a build FROM a base the shared builder serves as A holds it (the test
    busybox, in the loopback registry) still goes to the shared builder."""
    a = engines["a"]
    base = f"{a.prefix}/default-base:1"
    ctx, token = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN > /base.txt\n", "base")
    build(sessions["a"], a, ctx, base, "--builder", "default")
    assert metrics(sessions["a"])[-1].get("builder") is None
    app, _ = project(tmp_path, f"FROM {base}\nRUN cat /base.txt > /copy.txt\n", "app")
    tag = f"{a.prefix}/on-default:1"
    cp = build(sessions["a"], a, app, tag)
    assert "using remote driver" not in cp.stderr, cp.stderr[-2000:]
    assert content(a, tag, "/copy.txt") == token
    plain, _ = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN > /x\n", "plain")
    shared = build(sessions["a"], a, plain, f"{a.prefix}/on-busybox:1")
    assert "using remote driver" in shared.stderr and metrics(sessions["a"])[-1]["builder"] == "shared"


def test_compose_a_service_from_another_services_locally_built_image(sessions, engines, tmp_path):
    """`compose build base` with the shared builder off, then `compose up --build app`
    (app FROM the base service's image, not built by this command): app's build stays on
    the engine and the stack runs, as with plain compose."""
    a = engines["a"]
    name = f"{a.prefix}svc"
    root = tmp_path / f"stack-{uuid.uuid4().hex[:6]}"
    (root / "base").mkdir(parents=True)
    (root / "app").mkdir()
    token = uuid.uuid4().hex
    (root / "base" / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {token} > /base.txt\n")
    (root / "app" / "Dockerfile").write_text(f"FROM {name}-base\nRUN cat /base.txt > /app.txt\n")
    (root / "compose.yaml").write_text(
        "services:\n  base:\n    build: {context: base, network: none}\n    network_mode: none\n"
        "    command: ['true']\n  app:\n    build: {context: app, network: none}\n    network_mode: none\n"
        "    command: [cat, /app.txt]\n")
    env = {**sessions["a"], "COMPOSE_PROJECT_NAME": name}
    a.images += [f"{name}-base", f"{name}-app"]
    first = shim({**env, "DOCKCACHE_BUILD_BUILDER": "off"}, "compose", "build", "base", cwd=root)
    assert first.returncode == 0, first.stderr[-2000:]
    said = explain(env, "compose", "up", "--build", "app", cwd=root)
    assert "service app builds on this engine" in said and f"{name}-base" in said, said
    try:
        cp = shim(env, "compose", "up", "--build", "app", cwd=root)
    finally:
        shim(env, "compose", "down", cwd=root)
    assert cp.returncode == 0 and token in cp.stdout, cp.stderr[-3000:]
    assert "failed to resolve source metadata" not in cp.stderr
    built = [m for m in metrics(env) if m.get("key") and m.get("rc") == 0][-1]
    assert built.get("builder") is None, built


def test_a_failing_run_on_the_shared_builder_fails_once_with_buildkits_message(sessions, engines, tmp_path):
    """A RUN that exits 3 is the build's own failure: BuildKit's message and docker's exit
    code, as plain docker gives them, and no second build on the engine."""
    a = engines["a"]
    ctx, _ = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN && exit 3\n")
    tag = f"{a.prefix}/fails:1"
    cp = build(sessions["a"], a, ctx, tag, ok=False)
    plain = a.docker("build", "--network", "none", "--progress", "plain", "-t", tag, str(ctx), check=False)
    assert cp.returncode == plain.returncode != 0
    assert cp.stderr.count("using remote driver") == 1 and cp.stderr.count("ERROR: failed to solve") == 1
    assert "did not complete successfully: exit code: 3" in cp.stderr, cp.stderr[-3000:]
    assert "dockcache:" not in cp.stderr
    last = metrics(sessions["a"])[-1]
    assert last["builder"] == "shared" and last["rc"] == plain.returncode and "retried" not in last


@pytest.fixture()
def own_registry(tmp_path):
    """A loopback registry of the test's own, to take away while the engine holds its image."""
    import shutil
    import socket
    import time
    import urllib.request

    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry not installed (tests/engine/provision.sh up installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path / "own-registry"
    d.mkdir()
    (d / "r.yml").write_text(f"version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {d}/data}}\n"
                             f"http: {{addr: \"127.0.0.1:{port}\"}}\n")
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(d / "r.yml")], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(80):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"registry did not start: {(d / 'log').read_text()[-500:]}")
        yield f"127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_base_whose_registry_went_away_is_built_again_on_the_engine(sessions, engines, tmp_path, own_registry):
    """A's engine pulled the base from a registry the shared builder reaches too: the build
    goes there. The registry goes away (a VPN dropped, a registry taken down) while A still
    holds the image: the shared builder cannot resolve it, and the build runs again on A's
    engine after one line, with plain docker's result; the next build of that key goes to
    the engine at once."""
    a, b = engines["a"], engines["b"]
    address, registry = own_registry
    base = f"{address}/{a.prefix}-gone:1"
    ctx, token = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN > /base.txt\n", "base")
    b.images.append(base)
    assert b.docker("build", "-q", "--network", "none", "-t", base, str(ctx)).returncode == 0
    assert b.docker("push", "-q", base).returncode == 0
    a.images.append(base)
    assert a.docker("pull", "-q", base).returncode == 0
    app, _ = project(tmp_path, f"FROM {base}\nCOPY app.txt /app.txt\n", "app")
    tag = f"{a.prefix}/on-gone:1"
    first = build(sessions["a"], a, app, tag)
    assert metrics(sessions["a"])[-1]["builder"] == "shared", first.stderr[-2000:]
    registry.terminate()
    registry.wait(timeout=10)
    app.joinpath("app.txt").write_text("edited")
    cp = build(sessions["a"], a, app, tag)
    lines = [x for x in cp.stderr.splitlines() if x.startswith("dockcache:")]
    assert len(lines) == 1 and "could not resolve" in lines[0] and "building on this engine" in lines[0], lines
    assert "using remote driver" in cp.stderr and "failed to resolve source metadata" in cp.stderr
    assert content(a, tag, "/base.txt") == token and content(a, tag, "/app.txt") == "edited"
    last = metrics(sessions["a"])[-1]
    assert last.get("builder") is None and "could not resolve" in last["retried"], last
    app.joinpath("app.txt").write_text("again")
    again = build(sessions["a"], a, app, tag)
    assert "using remote driver" not in again.stderr and "dockcache:" not in again.stderr
    assert content(a, tag, "/app.txt") == "again"


def test_devcontainer_up_from_an_engine_only_image(sessions, engines, tmp_path):
    """The issue's own case: `devcontainer up` (the dev containers CLI, through bin/docker)
    of a Dockerfile FROM an image only A's engine holds (`docker load`ed): it builds and
    starts as with plain docker, on A's engine."""
    import json
    import shutil

    from tests.integration.helpers import REPO

    if not shutil.which("devcontainer"):
        pytest.skip("the dev containers CLI is not installed (tests/engine/provision.sh up)")
    a, b = engines["a"], engines["b"]
    tools = f"{a.prefix}/tools:1"
    ctx, token = project(tmp_path, f"FROM {BUSYBOX}\nRUN echo TOKEN > /tools.txt\n", "tools")
    b.images.append(tools)
    assert b.docker("build", "-q", "--network", "none", "-t", tools, str(ctx)).returncode == 0
    tar = tmp_path / "tools.tar"
    assert b.docker("save", "-o", str(tar), tools).returncode == 0
    a.images.append(tools)
    assert a.docker("load", "-i", str(tar)).returncode == 0
    folder = tmp_path / "dc" / "app"
    (folder / ".devcontainer").mkdir(parents=True)
    (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps({
        "name": "dc35", "build": {"dockerfile": "Dockerfile", "options": ["--network=host"]},
        "runArgs": ["--network=host"], "overrideCommand": True}))
    (folder / ".devcontainer" / "Dockerfile").write_text(f"FROM {tools}\nRUN cat /tools.txt > /app.txt\n")
    try:
        cp = subprocess.run(["devcontainer", "up", "--workspace-folder", str(folder),
                             "--docker-path", str(REPO / "bin" / "docker")],
                            env=sessions["a"], capture_output=True, text=True, timeout=900)
        result = json.loads(cp.stdout.strip().splitlines()[-1]) if cp.stdout.strip() else {}
        assert cp.returncode == 0 and result.get("outcome") == "success", cp.stdout[-3000:] + cp.stderr[-3000:]
        assert "failed to resolve source metadata" not in cp.stdout + cp.stderr
        assert a.docker("exec", result["containerId"], "cat", "/app.txt").stdout.strip() == token
    finally:
        ids = a.docker("ps", "-aq", "--filter", f"label=devcontainer.local_folder={folder}", check=False).stdout.split()
        images = {a.docker("inspect", "--format", "{{.Config.Image}}", i, check=False).stdout.strip() for i in ids}
        if ids:
            a.docker("rm", "-f", *ids, check=False)
        for image in images - {""}:
            a.docker("image", "rm", "-f", image, check=False)
