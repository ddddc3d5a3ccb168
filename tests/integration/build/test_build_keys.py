"""Through bin/docker: a new session finds what another built, whatever the client names it,
and the store never holds the layers of the images builds start FROM."""

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pytest

from shim.build.progress import step_named
from shim.build.store.cachestore import CacheStore
from tests.integration.helpers import DEVTOOLS, dockcache, shim

pytestmark = pytest.mark.engine


def workspace(where: Path, token: str, base: str = DEVTOOLS) -> Path:
    """A dev container project: `.devcontainer/` with its config and a file the build copies."""
    ws = where / "proj"
    (ws / ".devcontainer").mkdir(parents=True)
    (ws / ".devcontainer" / "devcontainer.json").write_text('{"build": {"dockerfile": "Dockerfile"}}')
    (ws / ".devcontainer" / "tools.txt").write_text("make\n")
    (ws / ".devcontainer" / "Dockerfile").write_text(dockerfile(token, base))
    return ws


def dockerfile(token: str, base: str) -> str:
    return (f"FROM {base}\nRUN echo {token} > /t && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n"
            "COPY tools.txt /tools.txt\n")


def client_build(env, engine, ws: Path, tmp: Path, *extra: str):
    """As the dev containers CLI builds: its Dockerfile copied to a new temp path, the image
    named `vsc-<folder>-<sha256 of the workspace path>`, the context the project's .devcontainer."""
    written = tmp / f"devcontainercli-{uuid.uuid4().hex[:8]}" / "Dockerfile-with-features"
    written.parent.mkdir(parents=True)
    shutil.copy(ws / ".devcontainer" / "Dockerfile", written)
    tag = f"vsc-{ws.name}-{hashlib.sha256(str(ws).encode()).hexdigest()}"
    engine.images.append(tag)
    return shim(env, "buildx", "build", "--load", "--network", "none", "--progress", "plain", "-f", str(written),
                "-t", tag, *extra, str(ws / ".devcontainer"), extra={"DOCKER_HOST": engine.host}, cwd=str(ws))


def slow_step(cp, token):
    assert cp.returncode == 0, cp.stderr[-2000:]
    step = step_named(cp.stderr, token)
    assert step is not None, cp.stderr[-2000:]
    return step


def test_a_new_session_of_a_client_that_names_by_path_imports_what_another_built(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    first = workspace(tmp_path / "session-a", token)
    assert not slow_step(client_build(shim_env, a, first, tmp_path), token).cached
    second = tmp_path / "session-b" / "elsewhere"
    shutil.copytree(first, second / "proj")
    again = client_build(shim_env, b, second / "proj", tmp_path)
    assert slow_step(again, token).cached  # another daemon, another path, tag and Dockerfile path
    keys = CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"])).keys()
    assert len([k for k in keys if k.startswith("df-")]) == 1 and not any(k.startswith("vsc-") for k in keys)


def test_a_file_added_at_the_context_top_still_imports_every_step_before_the_copy(shim_env, engines, tmp_path):
    """An untagged build outside a git clone keys on its Dockerfile and its context's top
    names: a new file there made a new key, and a new session imported nothing."""
    token = uuid.uuid4().hex
    first = tmp_path / "session-a" / "app"
    first.mkdir(parents=True)
    (first / "Dockerfile").write_text(dockerfile(token, DEVTOOLS) + "COPY . /app\n")
    (first / "tools.txt").write_text("make\n")
    build = ("build", "--network", "none", "--progress", "plain", ".")
    assert not slow_step(shim(shim_env, *build, extra={"DOCKER_HOST": engines["a"].host}, cwd=str(first)), token).cached
    second = tmp_path / "session-b" / "app"
    shutil.copytree(first, second)
    (second / "notes.md").write_text("new\n")  # a new file at the context's top
    fresh = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-b")}
    again = shim(fresh, *build, extra={"DOCKER_HOST": engines["b"].host}, cwd=str(second))
    assert slow_step(again, token).cached and not step_named(again.stderr, "COPY . /app").cached, again.stderr[-2000:]
    keys = [k for k in CacheStore(Path(shim_env["DOCKCACHE_BUILD_STORE"])).keys() if k.startswith("df-")]
    assert len(keys) == 2 and keys[0][:11] == keys[1][:11]  # one recipe, two contexts


def test_explain_says_which_candidates_the_store_holds(shim_env, engines, tmp_path):
    a = engines["a"]
    token = uuid.uuid4().hex
    ws = workspace(tmp_path, token)
    slow_step(client_build(shim_env, a, ws, tmp_path), token)
    tag = f"vsc-proj-{'0' * 64}"
    cp = dockcache(shim_env, "explain", "--", "docker", "build", "-t", tag, "-f",
                   str(ws / ".devcontainer" / "Dockerfile"), str(ws / ".devcontainer"))
    assert cp.returncode == 0, cp.stderr
    line = next(x for x in cp.stdout.splitlines() if "key candidates" in x)
    assert "content df-" in line and "(export, stored)" in line and f"tag {tag} (not stored)" in line
    assert "1 layer(s) of the FROM images stay out of the export" in cp.stdout  # devtools has one


def stored_blobs(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (store / "oci" / "blobs" / "sha256").iterdir()}


def base_layers(engine, image: str) -> set[str]:
    """The compressed layer digests of an image, as the engine's containerd store holds them."""
    from shim.build.store.baselayers import content_dir, layers
    from shim.core.state import State
    import os
    import tempfile

    sock = engine.host[len("unix://"):]
    st = os.stat(sock)
    content = content_dir(sock, State(Path(tempfile.mkdtemp())), f"{sock}|{st.st_ino}|{st.st_ctime_ns}")
    assert content is not None, "the engine's content store is not readable here"
    found = layers(content, [engine.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()])
    assert found
    return set(found)


def test_the_store_never_holds_the_base_and_a_daemon_that_has_it_imports_every_step(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    store = Path(shim_env["DOCKCACHE_BUILD_STORE"])
    ws = workspace(tmp_path / "a", token)
    assert not slow_step(client_build(shim_env, a, ws, tmp_path), token).cached
    blobs = stored_blobs(store)
    base = base_layers(a, DEVTOOLS)
    assert {h: blobs[h] for h in base if h in blobs} == {h: 0 for h in base}  # placeholders, never the 197 MB layer
    assert sum(blobs.values()) < 5_000_000
    copy = tmp_path / "b" / "proj"
    shutil.copytree(ws, copy)
    again = client_build(shim_env, b, copy, tmp_path)
    assert slow_step(again, token).cached and step_named(again.stderr, "COPY tools.txt").cached
    assert b.docker("run", "--rm", "--network", "none", f"vsc-proj-{hashlib.sha256(str(copy).encode()).hexdigest()}",
                    "cat", "/t").stdout.strip() == token  # the image is whole: base layers from B's own engine


def test_a_daemon_without_the_base_pulls_it_first_and_imports_every_step(shim_env, engines, tmp_path):
    """A new session's daemon has not pulled the base yet: given records whose base layers
    the store leaves out, BuildKit fails the build ('content sha256:... not found'). The
    base is pulled first (the cold build would pull it anyway), then the records import."""
    import os

    registry = os.environ.get("DOCKCACHE_TEST_REGISTRY")
    if not registry:
        pytest.skip("no test registry (tests/engine/provision.sh)")
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    base = f"{registry}/{a.prefix}/base:1"  # a base only A has; B pulls it from the registry
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(f"FROM dockcache-test/busybox\nRUN echo {token} > /base\n")
    a.docker("build", "--network", "none", "-q", "-t", base, str(tmp_path / "base"))
    a.images.append(base)
    a.docker("push", "-q", base)
    ws = workspace(tmp_path / "a", token, base=base)
    slow_step(client_build(shim_env, a, ws, tmp_path), token)
    b.images.append(base)
    assert base_layers(a, base) <= {h for h, size in stored_blobs(Path(shim_env["DOCKCACHE_BUILD_STORE"])).items()
                                    if size == 0}  # the base is not in the store
    cp = client_build(shim_env, b, ws, tmp_path)
    assert slow_step(cp, token).cached  # pulled, then imported


def fresh_base(a, b, tmp: Path, name: str) -> str:
    """A base with a 2 MB layer of its own, made and pushed by B: A has never seen it."""
    import os

    registry = os.environ.get("DOCKCACHE_TEST_REGISTRY")
    if not registry:
        pytest.skip("no test registry (tests/engine/provision.sh)")
    base = f"{registry}/{a.prefix}/{name}:1"
    (tmp / name).mkdir()
    (tmp / name / "blob").write_bytes(os.urandom(2_000_000))
    (tmp / name / "Dockerfile").write_text("FROM dockcache-test/busybox\nCOPY blob /blob\n")
    b.docker("build", "--network", "none", "-q", "-t", base, str(tmp / name))
    b.images.append(base)
    b.docker("push", "-q", base)
    a.images.append(base)
    assert a.docker("image", "inspect", base, check=False).returncode != 0
    return base


def assert_no_base(store: Path, b, base: str) -> None:
    """The store holds the base's layers only as placeholders (one digest on A and B)."""
    blobs, layers = stored_blobs(store), base_layers(b, base)
    assert {h: blobs[h] for h in layers if h in blobs} == {h: 0 for h in layers}
    assert sum(blobs.values()) < 1_500_000  # the 2 MB layer is not there


def test_a_first_build_on_an_engine_without_the_base_leaves_the_base_out_of_the_store(shim_env, engines, tmp_path):
    """A fresh engine pulls the base inside a plain build, and the export then wrote every
    base layer into the store (a 1 GB+ dev container base again, on every project's first
    build). The base is pulled first: its layers get placeholders, the build imports nothing
    it lacks, and the image is whole."""
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    base = fresh_base(a, b, tmp_path, "fresh")
    ws = workspace(tmp_path / "a", token, base=base)
    slow_step(client_build(shim_env, a, ws, tmp_path), token)
    assert_no_base(Path(shim_env["DOCKCACHE_BUILD_STORE"]), b, base)
    tag = f"vsc-proj-{hashlib.sha256(str(ws).encode()).hexdigest()}"
    assert a.docker("run", "--rm", "--network", "none", tag, "cat", "/t").stdout.strip() == token


def test_a_daemon_that_cannot_get_the_base_builds_as_plain_docker_would(shim_env, engines, tmp_path):
    """Records that need base layers this engine lacks, and a pull that fails: not imported,
    the build runs (and fails, or not) as it would have."""
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    base = f"{a.prefix}/onlya:1"  # no registry has it
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(f"FROM dockcache-test/busybox\nRUN echo {token} > /base\n")
    a.docker("build", "--network", "none", "-q", "-t", base, str(tmp_path / "base"))
    a.images.append(base)
    ws = workspace(tmp_path / "a", token, base=base)
    slow_step(client_build(shim_env, a, ws, tmp_path), token)
    b.docker("build", "--network", "none", "-q", "-t", base, str(tmp_path / "base"))  # B makes its own: other digests
    b.images.append(base)
    cp = client_build(shim_env, b, ws, tmp_path)
    assert cp.returncode == 0, cp.stderr[-2000:]


def test_a_rebuild_from_a_new_temp_dockerfile_path_runs_as_typed(shim_env, engines, tmp_path):
    """Nothing it reads changed (the Dockerfile's text, not its path, counts): no --cache-to."""
    a = engines["a"]
    token = uuid.uuid4().hex
    ws = workspace(tmp_path, token)
    slow_step(client_build(shim_env, a, ws, tmp_path), token)
    assert slow_step(client_build(shim_env, a, ws, tmp_path), token).cached
    lines = (Path(shim_env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last.get("as_typed") and not last["export"]
