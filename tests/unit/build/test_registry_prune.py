"""Registry retention: which manifests `cache prune --backend registry` deletes (pure)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from shim.build.store.registry import BUILD_TAG_RE, MAX_TAG, TagInfo, build_tag, manifest_size, plan_prune

NOW = 2_000_000_000


def key(k, digest, size=100):
    return TagInfo(k, k, None, digest, size)


def built(k, ts, digest, size=100):
    tag = build_tag(k, ts, "abcdef")
    return TagInfo(tag, BUILD_TAG_RE.match(tag).group("key"), ts, digest, size)


def deleted(todo):
    return {d.digest for d in todo}


def test_build_tag_round_trips_and_fits():
    tag = build_tag("app-main", NOW, "0a1b2c")
    m = BUILD_TAG_RE.match(tag)
    assert m.group("key") == "app-main" and int(m.group("ts")) == NOW
    assert len(build_tag("k" * 128, NOW, "0a1b2c")) <= MAX_TAG
    assert BUILD_TAG_RE.match("app-main") is None


def test_superseded_build_tags_go_the_live_one_and_newer_stay():
    infos = [key("app", "d2"), built("app", NOW - 300, "d1"), built("app", NOW - 200, "d2"),
             built("app", NOW - 100, "d3")]  # d3: a build still publishing, or whose move failed
    todo = plan_prune(infos, now=NOW, max_age=86400, max_size=None)
    assert deleted(todo) == {"d1"} and "superseded" in todo[0].reason


def test_old_keys_go_with_all_their_tags():
    infos = [key("old", "d1"), built("old", NOW - 90000, "d1"), key("new", "d2"), built("new", NOW - 10, "d2")]
    todo = plan_prune(infos, now=NOW, max_age=86400, max_size=None)
    assert deleted(todo) == {"d1"} and set(todo[0].tags) == {"old", infos[1].tag}


def test_size_limit_removes_least_recently_built_first_and_counts_shared_once():
    infos = [key("a", "d1", 60), built("a", NOW - 30, "d1", 60), key("b", "d2", 60), built("b", NOW - 20, "d2", 60),
             key("c", "d2", 60)]
    assert deleted(plan_prune(infos, now=NOW, max_age=None, max_size=120)) == set()
    assert deleted(plan_prune(infos, now=NOW, max_age=None, max_size=100)) == {"d1"}


def test_a_digest_a_kept_key_points_at_is_never_deleted():
    infos = [key("a", "d1"), key("b", "d1"), built("b", NOW - 90000, "d1")]
    assert deleted(plan_prune(infos, now=NOW, max_age=86400, max_size=None)) == {"d1"}  # both old: both go
    infos = [key("a", "d1"), built("a", NOW - 5, "d1"), built("b", NOW - 90000, "d1")]
    assert deleted(plan_prune(infos, now=NOW, max_age=86400, max_size=None)) == set()


def test_manifest_size_sums_descriptors():
    body = b'{"config": {"size": 10}, "layers": [{"size": 5}], "manifests": [{"size": 7}]}'
    assert manifest_size(body) == 22 and manifest_size(b"not json") == 0


tags = st.builds(lambda k, ts, d, b: built(k, NOW - ts, d) if b else key(k, d),
                 st.sampled_from(["a", "b", "c"]), st.integers(0, 200000), st.sampled_from(["d1", "d2", "d3", "d4"]),
                 st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(tags, max_size=10), st.one_of(st.none(), st.integers(0, 200000)), st.one_of(st.none(), st.integers(0, 500)))
def test_never_deletes_what_a_surviving_key_points_at(infos, age, size):
    todo = plan_prune(infos, now=NOW, max_age=age, max_size=size)
    gone = deleted(todo)
    survivors = [t for t in infos if t.built_at is None and t.digest not in gone]
    assert not {t.digest for t in survivors} & gone
    if age is None and size is None:
        assert all("superseded" in d.reason for d in todo)


def test_registry_client_falls_back_to_http_only_when_https_fails(monkeypatch):
    import ssl
    import urllib.error
    import urllib.request

    from shim.build.store.registry import Registry, RegistryUnreachable

    asked = []

    class Answer:
        status, headers = 200, {}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return b""

    def fake(req, timeout):
        asked.append(req.full_url.split(":")[0])
        if req.full_url.startswith("https"):
            raise urllib.error.URLError(ssl.SSLError(1, "wrong version number"))
        return Answer()

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    reg = Registry("cache.internal:5000/build")
    assert reg.probe(["k1", "k2"]).existing == ("k1", "k2")
    assert asked == ["https", "http", "http"]  # the scheme that answered is remembered
    assert Registry("localhost:5000/x").bases == ["http://localhost:5000/v2/x"]

    def down(req, timeout):
        asked.append(req.full_url.split(":")[0])
        raise urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    monkeypatch.setattr(urllib.request, "urlopen", down)
    asked.clear()
    try:
        Registry("cache.internal:5000/build").probe(["k"])
        raise AssertionError("expected RegistryUnreachable")
    except RegistryUnreachable as exc:
        assert "unreachable" in str(exc) and asked == ["https"]  # no second wait on a dead host
