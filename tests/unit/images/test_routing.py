"""Pure parts of the image routing: references, route decisions, the pull grammar, configs."""

from __future__ import annotations

import io

import pytest

from shim.core.config import ConfigError, load
from shim.core.grammar import parse_invocation, parse_pull
from shim.images.progress import Printer
from shim.images.pull import user_ref
from shim.images.refs import parse, registry_name, remote_url
from shim.images.registryconf import config_yaml
from shim.images.route import decide, wanted

CACHES = {"docker.io": "127.0.0.1:5100", "127.0.0.1:5291": "127.0.0.1:5102"}


@pytest.mark.parametrize("name, registry, path, tag", [
    ("nginx", "docker.io", "library/nginx", "latest"),
    ("nginx:1.27", "docker.io", "library/nginx", "1.27"),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest"),
    ("index.docker.io/library/redis:7", "docker.io", "library/redis", "7"),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7"),
    ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1"),
    ("127.0.0.1:5291/team/app:2", "127.0.0.1:5291", "team/app", "2"),
    ("localhost/app", "localhost", "app", "latest"),
    ("localhost:5000/app:x", "localhost:5000", "app", "x"),
])
def test_references_read_as_docker_reads_them(name, registry, path, tag):
    ref = parse(name)
    assert (ref.registry, ref.path, ref.tag) == (registry, path, tag)


@pytest.mark.parametrize("name", ["", "Upper/Case", "-x", "a b", "nginx@sha256:short"])
def test_what_is_not_a_reference(name):
    assert parse(name) is None


def test_the_cache_name_keeps_path_and_tag():
    assert parse("nginx").mirror_name("127.0.0.1:5100") == "127.0.0.1:5100/library/nginx:latest"
    assert parse("127.0.0.1:5291/team/app:2").mirror_name("127.0.0.1:5102") == "127.0.0.1:5102/team/app:2"


def test_an_absent_image_with_a_cache_goes_through_it():
    r = decide("nginx:1.27", CACHES, present=False, asked=False, local=True)
    assert r.via == "127.0.0.1:5100" and r.mirror == "127.0.0.1:5100/library/nginx:1.27"


@pytest.mark.parametrize("image, present, asked, local, why", [
    ("nginx", True, False, True, "the engine has it"),
    ("ghcr.io/org/app", False, False, True, "no image cache for ghcr.io"),
    ("nginx", False, False, False, "not on this host's unix socket"),
    ("nginx@sha256:" + "a" * 64, False, False, True, "digest"),
    ("Not/A/Ref", False, False, True, "not an image reference"),
])
def test_the_engine_pulls_directly(image, present, asked, local, why):
    r = decide(image, CACHES, present=present, asked=asked, local=local)
    assert r.via is None and why in r.reason


def test_a_pull_asked_for_goes_through_the_cache_even_when_present():
    assert decide("nginx", CACHES, present=True, asked=True, local=True).via == "127.0.0.1:5100"


def test_each_image_is_pulled_once():
    routes = [decide(i, CACHES, present=False, asked=False, local=True) for i in ("nginx", "nginx", "ghcr.io/a/b")]
    assert [r.image for r in wanted(routes)] == ["nginx"]


def test_the_users_name_gets_docker_s_tag():
    assert user_ref(decide("nginx", CACHES, present=False, asked=False, local=True)) == "nginx:latest"
    assert user_ref(decide("127.0.0.1:5291/a:3", CACHES, present=False, asked=False, local=True)) == "127.0.0.1:5291/a:3"


@pytest.mark.parametrize("argv, image, quiet, platform, plain", [
    (["pull", "nginx"], "nginx", False, None, True),
    (["image", "pull", "-q", "nginx:1"], "nginx:1", True, None, True),
    (["-H", "unix:///x.sock", "pull", "--platform", "linux/arm64", "a/b"], "a/b", False, "linux/arm64", True),
    (["pull", "--platform=linux/amd64", "a/b"], "a/b", False, "linux/amd64", True),
    (["pull", "-a", "nginx"], "nginx", False, None, False),
    (["pull", "--future-flag", "x", "nginx"], None, False, None, False),
    (["pull"], None, False, None, False),
])
def test_the_pull_grammar(argv, image, quiet, platform, plain):
    inv = parse_invocation(argv)
    assert inv.kind == "pull"
    p = parse_pull(inv)
    assert (p.image, p.quiet, p.platform) == (image, quiet, platform)
    assert (not p.all_tags and not p.unknown and p.image is not None) == plain


def test_other_image_commands_stay_passthrough():
    assert parse_invocation(["image", "ls"]).kind == "passthrough"
    assert parse_invocation(["push", "x"]).kind == "passthrough"


def test_registry_names_and_where_a_cache_fetches():
    assert registry_name("https://index.docker.io/") == "docker.io"
    assert registry_name("not a host") is None
    assert remote_url("docker.io") == "https://registry-1.docker.io"
    assert remote_url("127.0.0.1:5291") == "http://127.0.0.1:5291"
    assert remote_url("ghcr.io") == "https://ghcr.io"


def test_the_registry_config_has_credentials_only_when_given():
    plain = config_yaml(data_dir="/d", address="127.0.0.1:1", debug_address="127.0.0.1:2",
                        remote_url="https://ghcr.io", secret="s")
    assert "remoteurl: \"https://ghcr.io\"" in plain and "username" not in plain and "blobdescriptor" not in plain
    withcreds = config_yaml(data_dir="/d", address="a:1", debug_address="a:2", remote_url="u", secret="s",
                            username="bot", password='p"w')
    assert 'username: "bot"' in withcreds and 'password: "p\\"w"' in withcreds


def test_images_config_keys(tmp_path):
    env = {"HOME": str(tmp_path), "DOCKCACHE_IMAGES_UPSTREAMS": "docker.io,127.0.0.1:5291",
           "DOCKCACHE_IMAGES_ROOT": "~/imgs"}
    cfg = load(env)
    assert cfg["images.upstreams"] == ["docker.io", "127.0.0.1:5291"] and cfg["images.root"] == f"{tmp_path}/imgs"
    with pytest.raises(ConfigError, match="images.upstreams"):
        load({**env, "DOCKCACHE_IMAGES_UPSTREAMS": "not a host"})


def test_progress_replaces_the_cache_name(monkeypatch):
    route = decide("nginx", CACHES, present=False, asked=True, local=True)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    p = Printer(route, "pull")
    for msg in ({"status": "Pulling from library/nginx", "id": "latest"},
                {"status": "Downloading", "id": "abc", "progressDetail": {"current": 1, "total": 2}},
                {"status": "Download complete", "id": "abc"},
                {"status": "Status: Downloaded newer image for 127.0.0.1:5100/library/nginx:latest"}):
        p.show(msg)
    assert out.getvalue().splitlines() == ["latest: Pulling from library/nginx", "abc: Download complete",
                                           "Status: Downloaded newer image for nginx:latest"]


@pytest.mark.parametrize("text, mode", [
    ("registry github.com/distribution/distribution/v3 v3.1.2\n", "stream"),
    ("registry github.com/distribution/distribution/v3 3.0.0\n", "stream"),
    ("docker-registry github.com/docker/distribution 2.8.2+ds1\n", "prefill"),
    ("registry github.com/distribution/distribution v2.8.3\n", "prefill"),
    ("", "prefill"), ("garbage", "prefill"), ("a b c", "prefill")])
def test_only_a_registry_that_stores_what_it_streams_is_pulled_through_without_a_fill(text, mode):
    from shim.images.registryconf import fill_mode

    assert fill_mode(text) == mode


def test_without_a_fill_only_the_manifest_is_read(monkeypatch, tmp_path):
    from shim.images import prefetch

    asked = []
    monkeypatch.setattr(prefetch, "_manifest", lambda a, p, ref: asked.append(ref) or {
        "config": {"digest": "sha256:c"}, "layers": [{"digest": "sha256:l", "size": 1}]})
    monkeypatch.setattr(prefetch, "_trigger", lambda *a: asked.append("blob"))
    assert prefetch.warm("127.0.0.1:1", "lib/x", "1", str(tmp_path), fill=False) == 0
    assert asked == ["1"]


def test_a_blob_stored_under_another_repository_is_linked_under_this_one(tmp_path):
    from shim.images import prefetch

    hexd = "ab" * 32
    data = tmp_path / prefetch.BLOBS / hexd[:2] / hexd
    data.mkdir(parents=True)
    (data / "data").write_bytes(b"x")
    digests = [f"sha256:{hexd}", "sha256:" + "cd" * 32]  # the second is not stored: the proxy fetches it
    assert prefetch.link_stored(str(tmp_path), "lib/app", digests) == 1
    link = tmp_path / prefetch.REPOS / "lib/app/_layers/sha256" / hexd / "link"
    assert link.read_text() == f"sha256:{hexd}"
    assert prefetch.link_stored(str(tmp_path), "lib/app", digests) == 0  # once
    assert prefetch.link_stored(str(tmp_path), "../../etc", digests) == 0
    assert not (tmp_path / prefetch.REPOS / "lib/app/_layers/sha256" / ("cd" * 32)).exists()


def test_images_filled_side_by_side_fetch_a_shared_blob_once(monkeypatch, tmp_path):
    import threading

    from shim.images import prefetch

    shared, own = "sha256:" + "11" * 32, ["sha256:" + c * 64 for c in "23"]
    triggered = []

    def store(digest):
        hexd = digest[7:]
        (tmp_path / prefetch.BLOBS / hexd[:2] / hexd).mkdir(parents=True, exist_ok=True)
        (tmp_path / prefetch.BLOBS / hexd[:2] / hexd / "data").write_bytes(b"x")

    def trigger(address, path, digest):
        triggered.append(digest)
        threading.Timer(0.2, store, (digest,)).start()
    monkeypatch.setattr(prefetch, "_trigger", trigger)
    monkeypatch.setattr(prefetch, "_manifest", lambda a, path, ref: {
        "config": {"digest": own[path == "b"]}, "layers": [{"digest": shared, "size": 1}]})
    threads = [threading.Thread(target=prefetch.warm, args=("x:1", p, "1", str(tmp_path))) for p in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(triggered) == sorted([shared, *own])  # the shared layer once
    for p in "ab":  # and each repository has it
        assert (tmp_path / prefetch.REPOS / p / "_layers/sha256" / ("11" * 32) / "link").exists()
