"""BuildKit plain progress: which work steps ran and which came from a cache."""

from shim.build.progress import counts, step_named

RAN = """#5 [2/3] RUN make
#5 0.105 compiling sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
#5 DONE 1.2s
"""
CACHED = "#6 [3/3] COPY . /src\n#6 CACHED\n"
FETCHED = """#7 [2/2] RUN echo hi
#7 sha256:fc46443d58cbd761ef2f70e442837b4dd7df621e4e0c736dd9e776aae57a0824 178B / 178B done
#7 DONE 0.0s
"""


def test_ran_cached_and_fetched_from_imported_cache():
    assert not step_named(RAN, "make").cached  # output mentioning a digest has a timestamp first
    assert step_named(CACHED, "COPY").cached
    assert step_named(FETCHED, "echo hi").cached  # a registry import hit shows only the blob transfer
    assert counts(RAN + CACHED + FETCHED) == (2, 1)
