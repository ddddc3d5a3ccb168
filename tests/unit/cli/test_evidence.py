"""What a cache's own files say about its runs: misses are entries that appeared during a
run, hits are older entries it read; nothing is counted twice or invented."""

import os

from hypothesis import given
from hypothesis import strategies as st

from shim.cli.evidence import Entry, attribute, of_cache

TIMES = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(st.lists(st.tuples(TIMES, TIMES, st.integers(0, 10**6)), max_size=30),
       st.lists(TIMES, min_size=1, max_size=6, unique=True))
def test_attribution_counts_each_entry_at_most_once_per_run(raw, starts):
    entries = [Entry(size, m, max(m, a)) for m, a, size in raw]  # a file is read after it is made
    runs = attribute(entries, starts, now=1001)
    first = min(starts)
    assert sum(r.misses for r in runs) == sum(1 for e in entries if e.mtime >= first)  # every download once
    assert sum(r.miss_bytes for r in runs) == sum(e.size for e in entries if e.mtime >= first)
    for r in runs:
        assert r.hits + r.misses <= len(entries)
    assert [r.ts for r in runs] == sorted(starts)


def test_a_warm_run_hits_what_the_cold_run_downloaded():
    made = [Entry(100, 10.5, 10.5), Entry(50, 11.0, 11.0)]  # downloaded by the run at 10
    read = [Entry(100, 10.5, 20.5), Entry(50, 11.0, 20.7)]  # then read by the run at 20
    cold, warm = attribute(read, [10.0, 20.0], now=30.0)
    assert (cold.misses, cold.miss_bytes, cold.hits) == (2, 150, 0)
    assert (warm.hits, warm.hit_bytes, warm.misses) == (2, 150, 0)
    assert attribute(made, [10.0, 20.0], now=30.0)[1].hits == 0  # never read again: no hit invented


def test_of_cache_counts_the_tools_way(tmp_path):
    index = tmp_path / "_cacache" / "index-v5" / "ab" / "cd"
    content = tmp_path / "_cacache" / "content-v2" / "sha512" / "ab" / "cd"
    index.mkdir(parents=True)
    content.mkdir(parents=True)
    (index / "e1").write_text("x")
    (content / "c1").write_bytes(b"12345")
    os.utime(content / "c1", (50.0, 5.0))  # made at 5, read at 50
    found = of_cache(str(tmp_path), "npm", [1.0, 40.0], now=60.0)
    assert found.entries == 1
    totals = found.totals()
    assert totals["misses"] == 1 and totals["downloaded_bytes"] == 5
    assert totals["hits"] == 1 and totals["savings"]["bytes"] == 5 and totals["savings"]["estimate"] is True
    assert of_cache(str(tmp_path), "no-such-manager", [], now=60.0) is None


def test_a_scan_sets_reads_back_so_the_next_read_is_seen_and_keeps_what_it_saw(tmp_path):
    from shim.cli.evidence import ledger, set_back

    wheel = tmp_path / "wheels" / "ab" / "docopt.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"x" * 10)
    os.utime(wheel, (12.0, 11.0))  # made and read back by the cold run at 10 (relatime: seen once)
    first = of_cache(str(tmp_path), "pip", [10.0], now=15.0)
    assert first.totals()["misses"] == 1 and first.totals()["hits"] == 0
    set_back(first.read)
    assert os.stat(wheel).st_atime == os.stat(wheel).st_mtime == 11.0
    os.utime(wheel, (21.0, 11.0))  # the warm run at 20 reads it: relatime records it again
    second = of_cache(str(tmp_path), "pip", [10.0, 20.0], now=25.0, before=ledger(first.runs, 15.0))
    cold, warm = second.runs
    assert (cold.misses, cold.hits) == (1, 0) and (warm.misses, warm.hits, warm.hit_bytes) == (0, 1, 10)
    again = of_cache(str(tmp_path), "pip", [10.0, 20.0], now=26.0, before=ledger(second.runs, 25.0))
    assert again.runs[1].hits == 1  # kept from the ledger, not counted twice
