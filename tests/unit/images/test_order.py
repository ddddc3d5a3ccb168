"""Pulls side by side: a layer two images share is pulled by one of them, the others after it."""

import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from shim.images.order import SMALL, layers_of, waits

MB = 1 << 20
BASE = [("sha256:b1", 80 * MB), ("sha256:b2", 30 * MB)]


def test_the_largest_image_leads_and_those_sharing_its_base_wait_for_it():
    layers = {"db": [*BASE, ("sha256:d", 20 * MB)], "go": [*BASE, ("sha256:g", 200 * MB)],
              "cache": [("sha256:c", 2 * MB)], "py": BASE[:1]}
    assert waits(layers) == {"go": frozenset(), "db": {"go"}, "py": {"go"}, "cache": frozenset()}


def test_a_shared_layer_that_is_tiny_makes_no_one_wait():
    tiny = ("sha256:t", SMALL - 1)
    assert waits({"a": [tiny, ("sha256:a", 9 * MB)], "b": [tiny, ("sha256:b", 5 * MB)]}) == {
        "a": frozenset(), "b": frozenset()}


def test_each_shared_layer_is_waited_for_where_it_is_first_held():
    layers = {"big": [("sha256:x", 50 * MB), ("sha256:big", 500 * MB)],
              "mid": [("sha256:y", 40 * MB), ("sha256:mid", 100 * MB)],
              "both": [("sha256:x", 50 * MB), ("sha256:y", 40 * MB)]}
    assert waits(layers)["both"] == {"big", "mid"}


def test_a_manifest_without_layers_or_with_odd_ones():
    assert layers_of({}) == [] and layers_of({"layers": None}) == []
    assert layers_of({"layers": [{"digest": "sha256:a", "size": "x"}, "junk", {"size": 3}]}) == [("sha256:a", 0)]


@given(st.dictionaries(st.text(min_size=1, max_size=3),
                       st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 3 * MB)),
                                max_size=4), max_size=6))
def test_the_waits_never_form_a_circle_and_name_only_images_given(layers):
    after = waits(layers)
    assert set(after) == set(layers)
    for image, deps in after.items():
        assert image not in deps and deps <= set(layers)
    done, left = set(), dict(after)
    while left:  # every image can start once those it waits for are done
        ready = [i for i, deps in left.items() if deps <= done]
        assert ready
        for i in ready:
            done.add(i)
            del left[i]


def test_pulls_that_share_a_base_run_after_its_first_pull_and_the_rest_side_by_side(monkeypatch):
    from shim.images import command, prefetch
    from shim.images import pull as pullmod
    from shim.images.route import decide

    manifests = {"go": [*BASE, ("sha256:g", 200 * MB)], "node": [*BASE, ("sha256:n", 90 * MB)],
                 "db": [*BASE, ("sha256:d", 20 * MB)], "cache": [("sha256:c", 2 * MB)]}
    monkeypatch.setattr(prefetch, "_manifest", lambda a, path, ref: {
        "config": {"digest": "sha256:cfg"}, "layers": [{"digest": d, "size": s} for d, s in manifests[path.split("/")[-1]]]})
    monkeypatch.setattr(prefetch, "link_stored", lambda *a: 0)
    spans, lock = {}, threading.Lock()

    def pull(socket, route, *, platform=None, show=None):
        start = time.monotonic()
        time.sleep(0.15)
        with lock:
            spans[route.ref.path.split("/")[-1]] = (start, time.monotonic())
        return pullmod.Pulled(True)
    monkeypatch.setattr(pullmod, "pull", pull)
    monkeypatch.setattr(command, "_after", lambda *a: None)
    caches = {"docker.io": {"address": "127.0.0.1:5100", "dir": "/nonexistent", "fill": "stream"}}
    routes = [decide(f"lib/{n}:1", {"docker.io": "127.0.0.1:5100"}, present=None, asked=True, local=True)
              for n in ("db", "cache", "node", "go")]
    engine = command.Engine.__new__(command.Engine)
    engine.socket, engine.key = "/nonexistent.sock", "k"
    got = command.pull_all(engine, routes, caches, {}, platform=None, style="quiet")
    assert all(got.values()) and len(got) == 4
    go_end = spans["go"][1]
    assert spans["node"][0] >= go_end and spans["db"][0] >= go_end  # they share go's base
    assert spans["cache"][0] < go_end  # shares nothing: side by side
    assert spans["node"][0] < spans["db"][1] and spans["db"][0] < spans["node"][1]  # each other: side by side


def test_an_image_the_cache_cannot_give_fails_alone_and_frees_those_waiting(monkeypatch):
    from shim.images import command, prefetch
    from shim.images import pull as pullmod
    from shim.images.route import decide

    def manifest(a, path, ref):
        if path.endswith("private"):
            raise prefetch.Unavailable("cache answered 401 for lib/private:1")
        return {"layers": [{"digest": "sha256:b1", "size": 80 * MB}]}
    monkeypatch.setattr(prefetch, "_manifest", manifest)
    monkeypatch.setattr(prefetch, "link_stored", lambda *a: 0)
    monkeypatch.setattr(pullmod, "pull", lambda *a, **k: pullmod.Pulled(True))
    monkeypatch.setattr(command, "_after", lambda *a: None)
    caches = {"docker.io": {"address": "127.0.0.1:5100", "dir": "/nonexistent", "fill": "stream"}}
    routes = [decide(f"lib/{n}:1", {"docker.io": "127.0.0.1:5100"}, present=None, asked=True, local=True)
              for n in ("private", "app")]
    engine = command.Engine.__new__(command.Engine)
    engine.socket, engine.key = "/nonexistent.sock", "k"
    assert command.pull_all(engine, routes, caches, {}, platform=None, style="quiet") == {
        "lib/private:1": False, "lib/app:1": True}
