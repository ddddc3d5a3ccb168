"""The size-limit arithmetic: which run caches an LRU prune removes (shim/cli/limits.py)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from shim.cli.inventory import CacheRow
from shim.cli.limits import Item, items_of, over, plan_trim, usage_of
from shim.core.config import load

MANAGERS = ("npm", "pip", "go")
items_st = st.lists(
    st.builds(Item, name=st.text("abcdef", min_size=1, max_size=4), manager=st.sampled_from(MANAGERS),
              size=st.integers(0, 1000), last_used=st.one_of(st.none(), st.floats(0, 1e6)), busy=st.booleans()),
    max_size=12, unique_by=lambda i: i.name)
limits_st = st.dictionaries(st.sampled_from(MANAGERS), st.integers(0, 3000), max_size=3)


def _key(i: Item):
    return (i.last_used or 0.0, i.name)


@settings(max_examples=400, deadline=None)
@given(items_st, st.integers(0, 6000), limits_st)
def test_trim_properties(items, total, per):
    removed = plan_trim(items, total, per)
    names = {r.name for r in removed}
    by = {i.name: i for i in items}
    kept = [i for i in items if i.name not in names]
    assert len(names) == len(removed)  # each at most once
    assert not any(by[n].busy for n in names)  # never a cache in use
    for m, limit in per.items():  # each manager under its limit, unless only busy ones are left
        mine = [i for i in kept if i.manager == m]
        if limit and sum(i.size for i in mine) > limit:
            assert all(i.busy for i in mine)
    if total and sum(i.size for i in kept) > total:
        assert all(i.busy for i in kept)
    for r in removed:  # least recently used first: nothing kept and removable is older
        pool = kept if r.reason == "run.max_size" else [i for i in kept if i.manager == r.manager]
        assert all(i.busy or _key(i) > _key(by[r.name]) or i.size == 0 for i in pool)
    assert sum(r.size for r in removed) == sum(by[n].size for n in names)


@given(items_st)
def test_no_limits_remove_nothing(items):
    assert plan_trim(items, 0, {}) == []


def test_lru_order_and_per_manager_first():
    items = [Item("new-npm", "npm", 500, 300.0), Item("old-npm", "npm", 500, 100.0),
             Item("pip", "pip", 400, 200.0), Item("never", "go", 100, None)]
    removed = plan_trim(items, 900, {"npm": 600})
    assert [(r.name, r.reason) for r in removed] == [("old-npm", "managers.npm.max_size"), ("never", "run.max_size")]


def test_busy_cache_is_skipped_and_the_next_one_goes():
    items = [Item("a", "npm", 500, 1.0, busy=True), Item("b", "npm", 500, 2.0), Item("c", "npm", 500, 3.0)]
    assert [r.name for r in plan_trim(items, 1000, {})] == ["b"]


def test_items_of_keeps_run_caches_and_protects_recent_ones():
    rows = [CacheRow("v", "volume", "npm", 10, None, 995.0), CacheRow("b", "bind", "pip", 20, None, 100.0),
            CacheRow("k", "build-key", "buildkit", 30, None, 1.0), CacheRow("m", "volume", "go", None, None, None,
                                                                             exists=False),
            CacheRow("u", "volume", "go", 5, None, 1.0, in_use_by=["ctr"])]
    items = {i.name: i for i in items_of(rows, now=1000.0, grace=60.0)}
    assert set(items) == {"v", "b", "u"}
    assert items["v"].busy and items["u"].busy and not items["b"].busy
    assert usage_of(items.values()) == {"total": 35, "managers": {"npm": 10, "pip": 20, "go": 5}}


def test_over_and_config_keys():
    cfg = load({"HOME": "/nonexistent", "DOCKCACHE_MAX_SIZE": "1KiB"})
    assert cfg["run.max_size"] == 1024 and cfg["managers.npm.max_size"] == 0
    assert over({"total": 2000, "managers": {}}, 1024, {})
    assert over({"total": 10, "managers": {"npm": 11}}, 0, {"npm": 10})
    assert not over({"total": 10, "managers": {"npm": 10}}, 10, {"npm": 10})
