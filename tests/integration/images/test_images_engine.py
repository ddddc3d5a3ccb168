"""Images across sessions (issue 33): a pull through the host's cache in session A serves
session B after the upstream is gone; the image is named as a direct pull names it; a
private repository is never served to a session without its login; a cache that is down
leaves pulls as they were."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.integration.helpers import BUSYBOX, dockcache, ok, shim
from tests.integration.images.registries import Upstream, free_port

pytestmark = pytest.mark.engine


@pytest.fixture
def upstream(tmp_path):
    (tmp_path / "up").mkdir()
    reg = Upstream(tmp_path / "up").start()
    yield reg
    reg.stop()


@pytest.fixture
def images_env(shim_env, tmp_path):
    return {**shim_env, "DOCKCACHE_IMAGES_ROOT": str(tmp_path / "images"), "DOCKCACHE_IMAGES_PORT": str(free_port())}


@pytest.fixture
def cache(images_env, upstream):
    ok(dockcache(images_env, "images", "up", "--upstream", upstream.address))
    yield images_env
    dockcache(images_env, "images", "down")


def distribution3() -> str:
    """The Distribution 3 binary tests/engine/provision.sh builds; the test is skipped without it."""
    binary = os.environ.get("DOCKCACHE_TEST_DISTRIBUTION3")
    if not binary:
        pytest.skip("no Distribution 3 registry (tests/engine/provision.sh up builds it)")
    return binary


@pytest.fixture
def logged_upstream(tmp_path):
    """An upstream whose access log the test reads (which blobs crossed the "internet", in what order)."""
    (tmp_path / "up").mkdir()
    reg = Upstream(tmp_path / "up", access_log=True).start()
    yield reg
    reg.stop()


def pushed(engines, registry: str, tmp_path, *, config: str | None = None, repo: str = "app") -> tuple[str, str, str]:
    """A new image only this test has, pushed to `registry` from the old daemon (A and B never
    saw its manifest or top layer: they fetch them as a new session would): (name, the id a
    containerd image store gives it, the token file's content)."""
    a = engines["old"]
    token = uuid.uuid4().hex
    ctx = tmp_path / f"img-{token[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {token} > /token && head -c 200000 /dev/urandom > /blob\n")
    name = f"{registry}/{a.prefix}/{repo}:1"
    a.docker("build", "-q", "--network", "none", "-t", name, str(ctx))
    pushed_out = a.docker(*(["--config", config] if config else []), "push", name).stdout
    image_id = next(w for w in pushed_out.split() if w.startswith("sha256:"))  # the manifest's digest
    a.docker("image", "rm", name)
    for e in engines.values():
        e.images.append(name)
    return name, image_id, token


def session(env: dict, engine, tmp_path, name: str) -> dict:
    """Another session: its own state dir, on `engine`."""
    return {**env, "DOCKER_HOST": engine.host, "DOCKCACHE_STATE_DIR": str(tmp_path / f"state-{name}")}


def facts(engine, name: str) -> dict:
    got = json.loads(engine.docker("image", "inspect", name).stdout)[0]
    return {"id": got["Id"], "tags": sorted(got["RepoTags"]), "digests": sorted(got["RepoDigests"])}


def no_cache_names(engine, env: dict) -> None:
    names = engine.docker("images", "--format", "{{.Repository}}").stdout.split()
    index = json.loads(open(f"{env['DOCKCACHE_IMAGES_ROOT']}/caches.json").read())["caches"]
    addresses = {c["address"] for c in index.values()}
    assert not [n for n in names if n.split("/")[0] in addresses]


def test_b_runs_what_a_pulled_after_the_upstream_is_gone(cache, engines, upstream, tmp_path):
    a, b = engines["a"], engines["b"]
    name, image_id, token = pushed(engines, upstream.address, tmp_path)
    ok(shim(session(cache, a, tmp_path, "a"), "pull", name))
    upstream.stop()
    assert b.docker("pull", name, check=False).returncode != 0  # control: plain docker cannot
    said = json.loads(ok(dockcache(session(cache, b, tmp_path, "b"), "explain", "--json", "--", "docker", "run",
                                   "--rm", name)).stdout)
    assert f"through the cache for {upstream.address}" in said["image"]
    cp = ok(shim(session(cache, b, tmp_path, "b"), "run", "--rm", "--network", "none", name, "cat", "/token"))
    assert cp.stdout.strip() == token
    assert f"Unable to find image '{name}' locally" in cp.stderr and "dockcache:" not in cp.stderr
    assert facts(b, name)["id"] == image_id
    no_cache_names(b, cache)
    b_env = session(cache, b, tmp_path, "b")
    shown = json.loads(ok(dockcache(b_env, "metrics", "show", "--json")).stdout)["images"]
    assert shown["pulled"] == 1 and shown["bytes"] > 200000 and shown["fell_back"] == 0
    assert json.loads(ok(dockcache(b_env, "cache", "stats", "--json")).stdout)["images"] == shown
    doctor = json.loads(dockcache(b_env, "doctor", "--json").stdout)["checks"]
    line = next(c for c in doctor if c["check"] == "image caches")
    assert line["ok"] and f"pulls of {upstream.address} go through" in line["value"]


def test_compose_up_on_b_through_the_cache(cache, engines, upstream, tmp_path):
    a, b = engines["a"], engines["b"]
    name, _id, token = pushed(engines, upstream.address, tmp_path)
    other_name, _id2, _t = pushed(engines, upstream.address, tmp_path, repo="app2")  # pulled side by side
    ok(shim(session(cache, a, tmp_path, "a"), "pull", name))
    ok(shim(session(cache, a, tmp_path, "a"), "pull", other_name))
    upstream.stop()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "compose.yaml").write_text(
        f"services:\n  web:\n    image: {name}\n    network_mode: none\n    command: sleep 60\n"
        f"    labels: [{b.label}]\n"
        f"  db:\n    image: {other_name}\n    network_mode: none\n    command: sleep 60\n    labels: [{b.label}]\n")
    env = session(cache, b, tmp_path, "b")
    try:
        cp = ok(shim(env, "compose", "-p", b.prefix, "up", "-d", cwd=project))
        assert "dockcache:" not in cp.stderr
        out = ok(shim(env, "compose", "-p", b.prefix, "exec", "-T", "web", "cat", "/token", cwd=project))
        assert out.stdout.strip() == token
    finally:
        shim(env, "compose", "-p", b.prefix, "down", "-t", "0", cwd=project)
    no_cache_names(b, cache)


def test_a_compose_build_takes_its_base_through_the_cache_and_leaves_it_out_of_the_store(
        cache, engines, upstream, tmp_path):
    """A built service's FROM image the engine lacks comes through the host cache before compose
    builds: the store then holds none of the base (BuildKit pulled it during the build before),
    and a new session B builds the service with the upstream gone, its RUN CACHED."""
    from tests.integration.build.test_build_keys import base_layers, stored_blobs

    a, b = engines["a"], engines["b"]
    name, _id, token = pushed(engines, upstream.address, tmp_path)
    project = tmp_path / "proj"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Dockerfile").write_text(f"FROM {name}\nRUN cp /token /copied && echo built-{token}\n")
    tag = f"{a.prefix}/svc:1"
    for e in (a, b):
        e.images.append(tag)
    (project / "compose.yaml").write_text(
        f"services:\n  app:\n    build: {{context: ./app, network: none}}\n    image: {tag}\n"
        f"    network_mode: none\n")
    ok(shim(session(cache, a, tmp_path, "a"), "compose", "-p", a.prefix, "build", cwd=project))
    blobs, base = stored_blobs(Path(cache["DOCKCACHE_BUILD_STORE"])), base_layers(a, name)
    assert {h: blobs[h] for h in base if h in blobs} == {h: 0 for h in base}  # placeholders, never the base
    upstream.stop()
    cp = ok(shim(session(cache, b, tmp_path, "b"), "compose", "-p", b.prefix, "--progress", "plain", "build",
                 cwd=project))
    assert "built-" + token not in cp.stderr.replace(f"echo built-{token}", ""), cp.stderr  # the RUN did not run
    assert b.docker("run", "--rm", "--network", "none", tag, "cat", "/copied").stdout.strip() == token


def test_compose_pull_on_b_is_complete_through_the_cache(cache, engines, upstream, tmp_path):
    a, b = engines["a"], engines["b"]
    name, image_id, _t = pushed(engines, upstream.address, tmp_path)
    ok(shim(session(cache, a, tmp_path, "a"), "pull", name))
    upstream.stop()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "compose.yaml").write_text(f"services:\n  web:\n    image: {name}\n    network_mode: none\n")
    assert b.docker("compose", "-p", b.prefix, "pull", cwd=project, check=False).returncode != 0  # control
    cp = ok(shim(session(cache, b, tmp_path, "b"), "compose", "-p", b.prefix, "pull", cwd=project))
    assert "web Pulled" in cp.stderr and facts(b, name)["id"] == image_id


def test_build_on_b_from_an_image_a_pulled(cache, engines, upstream, tmp_path):
    a, b = engines["a"], engines["b"]
    name, _id, token = pushed(engines, upstream.address, tmp_path)
    ok(shim(session(cache, a, tmp_path, "a"), "pull", name))
    upstream.stop()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN cp /token /copied\n")
    assert b.docker("build", "--network", "none", str(ctx), check=False).returncode != 0  # control
    tag = f"{b.prefix}/built:1"
    b.images.append(tag)
    ok(shim(session(cache, b, tmp_path, "b"), "build", "--network", "none", "-t", tag, str(ctx)))
    assert b.docker("run", "--rm", "--network", "none", tag, "cat", "/copied").stdout.strip() == token


def test_b_imports_a_s_stored_build_from_a_base_only_the_cache_has(cache, engines, upstream, tmp_path):
    """The build store's records on a base B lacks: the base comes through the cache, then they import."""
    a, b = engines["a"], engines["b"]
    name, _id, token = pushed(engines, upstream.address, tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN cp /token /copied && echo built-{token}\n")
    tag = f"{a.prefix}/stored:1"
    for e in (a, b):
        e.images.append(tag)
    ok(shim(session(cache, a, tmp_path, "a"), "build", "--progress", "plain", "--network", "none", "-t", tag, str(ctx)))
    from tests.integration.build.test_build_keys import base_layers, stored_blobs
    blobs, base = stored_blobs(Path(cache["DOCKCACHE_BUILD_STORE"])), base_layers(a, name)
    assert {h: blobs[h] for h in base if h in blobs} == {h: 0 for h in base}  # pulled before the build: left out
    upstream.stop()
    cp = ok(shim(session(cache, b, tmp_path, "b"), "build", "--progress", "plain", "--network", "none", "-t", tag,
                 str(ctx)))
    step = next(ln for ln in cp.stderr.splitlines() if "RUN cp /token" in ln).split()[0]  # "#6"
    lines = [ln for ln in cp.stderr.splitlines() if ln.startswith(step + " ")]
    assert f"{step} CACHED" in lines and not [ln for ln in lines if ln.endswith(f" built-{token}") and " RUN " not in ln], cp.stderr


def test_same_id_digest_and_name_as_a_direct_pull(cache, engines, upstream, tmp_path):
    b = engines["b"]
    name, image_id, _t = pushed(engines, upstream.address, tmp_path)
    direct_out = b.docker("pull", name).stdout
    direct = facts(b, name)
    b.docker("image", "rm", name)
    cp = ok(shim(session(cache, b, tmp_path, "b"), "pull", name))
    assert facts(b, name) == direct and direct["id"] == image_id
    assert cp.stdout.splitlines()[-1] == direct_out.splitlines()[-1] == name
    assert f"Status: Downloaded newer image for {name}" in cp.stdout
    no_cache_names(b, cache)
    status = json.loads(ok(dockcache(cache, "images", "status", "--json")).stdout)
    row = status["caches"][0]
    assert row["state"] == "up" and row["upstream"] == upstream.address and row["size"] > 200000


def test_a_private_repository_is_not_served_without_its_login(images_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    (tmp_path / "priv").mkdir()
    private = Upstream(tmp_path / "priv", users={"alice": "s3cret"}).start()
    try:
        login = tmp_path / "alice-docker"
        login.mkdir()
        a.docker("--config", str(login), "login", "-u", "alice", "--password-stdin", private.address, input="s3cret")
        name, image_id, _t = pushed(engines, private.address, tmp_path, config=str(login))
        ok(dockcache(images_env, "images", "up", "--upstream", private.address))
        cp = ok(shim(session(images_env, a, tmp_path, "a"), "--config", str(login), "pull", name))  # A's own login
        assert cp.stdout.strip().splitlines()[-1] == name and facts(a, name)["id"] == image_id
        denied = shim(session(images_env, b, tmp_path, "b"), "pull", name)
        assert denied.returncode != 0
        assert b.docker("image", "inspect", name, check=False).returncode != 0
        data = tmp_path / "images"
        assert not list(data.rglob(f"repositories/{a.prefix}"))  # the cache never held it
    finally:
        dockcache(images_env, "images", "down")
        private.stop()


def test_a_cache_that_is_down_leaves_pulls_as_they_were(cache, engines, upstream, tmp_path):
    b = engines["b"]
    name, image_id, token = pushed(engines, upstream.address, tmp_path)
    index = json.loads(open(f"{cache['DOCKCACHE_IMAGES_ROOT']}/caches.json").read())
    ok(dockcache(cache, "images", "down"))
    (open(f"{cache['DOCKCACHE_IMAGES_ROOT']}/caches.json", "w")).write(json.dumps(index))  # as if it died
    env = session(cache, b, tmp_path, "b")
    cp = ok(shim(env, "run", "--rm", "--network", "none", name, "cat", "/token"))
    assert cp.stdout.strip() == token and cp.stderr.count("dockcache:") == 0
    b.docker("image", "rm", name)
    cp = ok(shim(env, "pull", name))
    assert cp.stdout.strip().splitlines()[-1] == name and cp.stderr.count("dockcache:") <= 1
    assert facts(b, name)["id"] == image_id


def test_distribution_3_fetches_each_blob_once_and_b_pulls_it_with_the_upstream_gone(images_env, engines, tmp_path, logged_upstream):
    """Distribution 3 stores a missed blob from the fetch it streams to the engine: no fill
    first (registryconf.fill_mode); each blob crosses the "internet" once, and the cache has it
    for the next session."""
    binary = distribution3()
    a, b = engines["a"], engines["b"]
    upstream = logged_upstream
    try:
        ok(dockcache(images_env, "images", "up", "--upstream", upstream.address, "--registry", binary))
        index = json.loads(Path(images_env["DOCKCACHE_IMAGES_ROOT"], "caches.json").read_text())["caches"]
        assert [c.get("fill") for c in index.values()] == ["stream"]
        name, image_id, token = pushed(engines, upstream.address, tmp_path)
        before = upstream.blob_gets()
        ok(shim(session(images_env, a, tmp_path, "a"), "pull", name))
        fetched = {d: n - before.get(d, 0) for d, n in upstream.blob_gets().items() if n > before.get(d, 0)}
        assert fetched and set(fetched.values()) == {1}, fetched  # 2.8 fetched each twice; a fill once more
        upstream.stop()
        cp = ok(shim(session(images_env, b, tmp_path, "b"), "run", "--rm", "--network", "none", name, "cat", "/token"))
        assert cp.stdout.strip() == token and facts(b, name)["id"] == image_id
    finally:
        dockcache(images_env, "images", "down")



def test_distribution_3_serves_a_basic_auth_upstream_with_the_configured_login(images_env, engines, tmp_path):
    """images.credentials: the login of the user who runs `images up` goes into the cache's
    config; Distribution 3's proxy answers a basic-auth (htpasswd) upstream with it, where
    2.8 answers only token-auth ones (docs/images.md). A session without any login pulls it."""
    binary = distribution3()
    a, b = engines["a"], engines["b"]
    (tmp_path / "priv").mkdir()
    private = Upstream(tmp_path / "priv", users={"robot": "r3ad"}).start()
    try:
        login = tmp_path / "robot-docker"
        login.mkdir()
        a.docker("--config", str(login), "login", "-u", "robot", "--password-stdin", private.address, input="r3ad")
        name, image_id, token = pushed(engines, private.address, tmp_path, config=str(login))
        (tmp_path / "config.toml").write_text(f'[images]\ncredentials = ["{private.address}"]\n')
        env = {**images_env, "DOCKCACHE_CONFIG": str(tmp_path / "config.toml")}
        ok(dockcache({**env, "DOCKER_CONFIG": str(login)}, "images", "up", "--upstream", private.address,
                     "--registry", binary))
        assert b.docker("pull", name, check=False).returncode != 0  # control: no login on B
        cp = ok(shim(session(env, b, tmp_path, "b"), "run", "--rm", "--network", "none", name, "cat", "/token"))
        assert cp.stdout.strip() == token and facts(b, name)["id"] == image_id
        no_cache_names(b, env)
    finally:
        dockcache(images_env, "images", "down")
        private.stop()


@pytest.mark.parametrize("registry", ["2.8", "3"])
def test_b_gets_a_layer_a_fetched_under_another_repository_from_the_cache(images_env, engines, tmp_path, registry,
                                                                        logged_upstream):
    """Two images FROM one base, in two repositories: A pulls the first through the cache, B
    the second. Distribution's proxy serves a blob only under the repository it fetched it
    for: the shared layers must be this repository's too (prefetch.link_stored), or B's pull
    fetches them from the internet again (only the second image's own blobs may cross)."""
    import shutil

    binary = distribution3() if registry == "3" else shutil.which("docker-registry")
    if not binary:
        pytest.skip("no docker-registry (Distribution 2.8) on PATH")
    a, b, old = engines["a"], engines["b"], engines["old"]
    upstream = logged_upstream
    try:
        base = f"{upstream.address}/{a.prefix}/base:1"
        ctx = tmp_path / "base"
        ctx.mkdir()
        (ctx / "layer").write_bytes(os.urandom(1_000_000))
        (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX}\nCOPY layer /layer\n")
        old.docker("build", "-q", "-t", base, str(ctx))
        names = []
        for repo in ("first", "second"):
            (tmp_path / repo).mkdir()
            (tmp_path / repo / "Dockerfile").write_text(f"FROM {base}\nRUN echo {repo} > /which\n")
            name = f"{upstream.address}/{a.prefix}/{repo}:1"
            old.docker("build", "-q", "--network", "none", "-t", name, str(tmp_path / repo))
            old.docker("push", name)
            names.append(name)
            for e in engines.values():
                e.images.append(name)
        old.images.append(base)
        ok(dockcache(images_env, "images", "up", "--upstream", upstream.address, "--registry", binary))
        before = upstream.blob_gets()
        ok(shim(session(images_env, a, tmp_path, "a"), "pull", names[0]))
        by_a = {d for d, n in upstream.blob_gets().items() if n > before.get(d, 0)}
        before = upstream.blob_gets()
        cp = shim(session(images_env, b, tmp_path, "b"), "run", "--rm", "--network", "none", names[1], "cat", "/which")
        assert cp.returncode == 0 and cp.stdout.strip() == "second", cp.stderr[-1500:]
        by_b = {d for d, n in upstream.blob_gets().items() if n > before.get(d, 0)}
        assert len(by_a) >= 3 and by_b and not by_a & by_b, (by_a, by_b)
    finally:
        dockcache(images_env, "images", "down")


def test_images_sharing_a_base_are_pulled_one_after_the_other(images_env, engines, tmp_path, logged_upstream):
    """A fresh engine pulling images that share a base side by side fetches and unpacks the
    shared layers in each pull at once (2x slower for the images bench's stack): the largest
    is pulled first, the one sharing its base after it (shim/images/order.py). Seen in the
    upstream's log (a cold Distribution 3 cache streams each engine fetch through): every
    blob of the small image's own is fetched after every blob of the large one."""
    binary = distribution3()
    b, old = engines["b"], engines["old"]
    upstream = logged_upstream
    try:
        tag = uuid.uuid4().hex[:8]
        base = f"{upstream.address}/{b.prefix}/base-{tag}:1"
        (tmp_path / "base").mkdir()
        (tmp_path / "base/layer").write_bytes(os.urandom(2_000_000))
        (tmp_path / "base/Dockerfile").write_text(f"FROM {BUSYBOX}\nCOPY layer /layer\n")
        old.docker("build", "-q", "-t", base, str(tmp_path / "base"))
        old.images.append(base)
        names = {}
        for repo, own in (("small", 1_000), ("large", 20_000_000)):
            ctx = tmp_path / repo
            ctx.mkdir()
            (ctx / "own").write_bytes(os.urandom(own))
            (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY own /own\n")
            names[repo] = f"{upstream.address}/{b.prefix}/{repo}-{tag}:1"
            old.docker("build", "-q", "-t", names[repo], str(ctx))
            old.docker("push", names[repo])
            for e in engines.values():
                e.images.append(names[repo])
        ok(dockcache(images_env, "images", "up", "--upstream", upstream.address, "--registry", binary))
        project = tmp_path / "proj"
        project.mkdir()
        (project / "compose.yaml").write_text("services:\n" + "".join(
            f"  {repo}:\n    image: {name}\n    network_mode: none\n" for repo, name in names.items()))
        ok(shim(session(images_env, b, tmp_path, "b"), "compose", "-p", b.prefix, "pull", cwd=project))
        large = upstream.blobs_of(f"{b.prefix}/large-{tag}")
        own = upstream.blobs_of(f"{b.prefix}/small-{tag}") - large
        order = upstream.blob_order()
        fetched_large = [i for i, d in enumerate(order) if d in large]
        fetched_own = [i for i, d in enumerate(order) if d in own]
        assert len(own) == 2 and fetched_large and len(fetched_own) == 2, (order, large, own)
        assert min(fetched_own) > max(fetched_large), order
        assert facts(b, names["small"])["tags"] == [names["small"]]
    finally:
        dockcache(images_env, "images", "down")
