"""Finding the cache mounts a build uses: BuildKit's meaning over BuildKit's parser."""

import string

from hypothesis import given, strategies as st

from shim.build.mounts.parse import CacheMount, Unknown, directives, expand, find, mount_fields

AMD64 = "linux/amd64"


def found(text, target=None, **args):
    return find(text, target=target, build_args=args, platform=AMD64)


def test_id_defaults_to_target_and_options_are_kept():
    r = found("FROM golang:1.22\nRUN --mount=type=cache,target=/root/.cache/go-build \\\n"
              "    --mount=type=cache,id=mod,target=/go/pkg/mod,sharing=locked,uid=1000,gid=1001,mode=770 go build\n")
    assert r.mounts == (
        CacheMount("/root/.cache/go-build", "/root/.cache/go-build", base="golang:1.22", stage="0"),
        CacheMount("mod", "/go/pkg/mod", "locked", 1000, 1001, "0770", "golang:1.22", "0"))


def test_only_stages_reachable_from_the_target():
    text = ("FROM alpine AS deps\nRUN --mount=type=cache,target=/a true\n"
            "FROM alpine AS other\nRUN --mount=type=cache,target=/b true\n"
            "FROM debian AS tool\nRUN --mount=type=cache,target=/c true\n"
            "FROM deps AS build\nRUN --mount=type=bind,from=tool,target=/t true\n"
            "FROM scratch\nCOPY --from=build /x /x\n")
    assert [m.id for m in found(text).mounts] == ["/a", "/c"]
    assert [m.id for m in found(text, "other").mounts] == ["/b"]
    assert found(text, "nope").reason == "target stage nope is not in the Dockerfile"


def test_base_is_the_image_at_the_root_of_the_stage_chain():
    text = "FROM node:20 AS a\nFROM a AS b\nRUN --mount=type=cache,target=/root/.npm npm ci\n"
    assert found(text).mounts[0].base == "node:20"
    assert found("FROM scratch\nRUN --mount=type=cache,target=/x true\n").mounts[0].base is None


def test_args_expand_from_build_args_defaults_and_env():
    text = ("ARG V=1.22\nARG DIR=/cache\nFROM golang:${V}\nARG DIR\nARG ID=x\nENV GOCACHE=$DIR/go\n"
            "RUN --mount=type=cache,id=${ID}-go,target=${GOCACHE} go build\n")
    m = found(text, ID="y").mounts[0]
    assert (m.id, m.target, m.base) == ("y-go", "/cache/go", "golang:1.22")
    assert found(text).mounts[0].id == "x-go"


def test_a_variable_only_the_base_image_knows_skips_that_mount():
    r = found("FROM node\nRUN --mount=type=cache,target=$HOME/.npm --mount=type=cache,target=/b npm ci\n")
    assert [m.id for m in r.mounts] == ["/b"] and "$HOME" in r.skipped[0]


def test_from_and_odd_options_are_skipped_with_the_reason():
    r = found("FROM a AS s\nFROM b\nRUN --mount=type=cache,target=/x,from=s "
              "--mount=type=cache,target=/y,sharing=weird --mount=type=cache,target=/z,uid=me true\n")
    assert r.mounts == () and len(r.skipped) == 3 and "from=s" in r.skipped[0]


def test_heredocs_json_form_and_comments_do_not_confuse_it():
    text = ("# syntax=docker/dockerfile:1\nFROM alpine\n# RUN --mount=type=cache,target=/commented\n"
            "RUN --mount=type=cache,target=/h <<EOF\necho --mount=type=cache,target=/inside\nEOF\n"
            'RUN --mount=type=cache,target=/j ["true"]\n')
    assert [m.id for m in found(text).mounts] == ["/h", "/j"]


def test_escape_directive_and_unknown_frontends():
    text = "# escape=`\nFROM alpine\nRUN --mount=type=cache,target=/w `\n    true\n"
    assert [m.id for m in found(text).mounts] == ["/w"]
    r = found("# syntax=example.com/my/frontend:2\nFROM a\nRUN --mount=type=cache,target=/x true\n")
    assert r.mounts == () and "example.com/my/frontend:2" in r.reason
    assert found("# syntax=docker/dockerfile:1.7-labs\nFROM a\nRUN --mount=type=cache,target=/x true\n").mounts


def test_no_mount_no_parse():
    assert found("FROM a\nRUN true\n", ).mounts == ()
    assert find("FROM a\n", target=None, build_args={}, platform=AMD64, parse=lambda t: 1 / 0).mounts == ()


def test_platform_args():
    text = "FROM a\nARG TARGETARCH\nRUN --mount=type=cache,id=c-$TARGETARCH,target=/c true\n"
    assert found(text).mounts[0].id == "c-amd64"


def test_directives_stop_at_the_first_other_line():
    assert directives("# syntax=x\n# escape=`\nFROM a\n# syntax=y\n") == {"syntax": "x", "escape": "`"}


_names = st.text(string.ascii_uppercase + "_", min_size=1, max_size=8)
_plain = st.text(string.ascii_letters + string.digits + "/._-", max_size=20)


@given(_plain)
def test_expand_leaves_text_without_dollars_alone(text):
    assert expand(text, {}) == text


@given(_names, _plain, _plain, _plain)
def test_expand_substitutes_known_names(name, value, before, after):
    env = {name: value}
    assert expand(f"{before}${{{name}}}{after}", env) == f"{before}{value}{after}"
    assert expand(f"${{{name}:-d}}", env) == (value or "d")
    assert expand(f"${{{name}:+a}}", env) == ("a" if value else "")


@given(_names)
def test_expand_unknown_names_raise(name):
    try:
        expand(f"/x/${name}", {})
    except Unknown as exc:
        assert str(exc) == name
    else:
        raise AssertionError("no Unknown")


@given(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6),
                       st.text(string.ascii_letters + "/=.-_ ", min_size=1, max_size=12), max_size=5))
def test_mount_fields_read_csv_back(fields):
    value = ",".join(f'"{k}={v}"' for k, v in fields.items())
    assert mount_fields(value) == {k: v.strip() for k, v in fields.items()}


@st.composite
def _stage_graphs(draw):
    """Stages that build on earlier ones (FROM, COPY --from), each with one cache mount."""
    n = draw(st.integers(1, 6))
    stages = []
    for i in range(n):
        base = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        copy = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        stages.append((base, copy))
    return stages, draw(st.integers(0, n - 1))


@given(_stage_graphs())
def test_mounts_are_those_of_the_stages_the_target_reaches(graph):
    stages, target = graph
    lines = []
    for i, (base, copy) in enumerate(stages):
        lines.append(f"FROM {'s%d' % base if base is not None else 'img%d' % i} AS s{i}")
        if copy is not None:
            lines.append(f"COPY --from=s{copy} /x /x")
        lines.append(f"RUN --mount=type=cache,target=/c{i} true")
    want, todo = set(), [target]
    while todo:
        i = todo.pop()
        if i not in want:
            want.add(i)
            todo += [d for d in stages[i] if d is not None]
    got = find("\n".join(lines) + "\n", target=f"s{target}", build_args={}, platform=AMD64)
    assert [m.id for m in got.mounts] == [f"/c{i}" for i in sorted(want)]
    for m in got.mounts:
        i = int(m.id[2:])
        while stages[i][0] is not None:
            i = stages[i][0]
        assert m.base == f"img{i}"


def test_a_stage_from_another_stage_inherits_its_args():
    # BuildKit gives a stage built FROM another stage that stage's ARG values, also when it
    # declares the ARG again without a value (the cache id really is "ns-registry" here)
    text = ("FROM rust AS chef\nARG NS=ns\nENV CARGO_HOME=/usr/local/cargo\n"
            "FROM chef AS build\nRUN --mount=type=cache,id=${NS}-registry,target=$CARGO_HOME/registry cargo build\n"
            "FROM chef AS again\nARG NS\nRUN --mount=type=cache,id=${NS}-y,target=/y true\n")
    r = found(text, "build")
    assert [(m.id, m.target) for m in r.mounts] == [("ns-registry", "/usr/local/cargo/registry")] and not r.skipped
    assert [m.id for m in found(text, "again").mounts] == ["ns-y"]
    assert [m.id for m in found(text, "again", NS="cli").mounts] == ["cli-y"]
    # a stage FROM an image starts without them
    assert found("FROM a AS p\nARG NS=ns\nFROM b\nARG NS\nRUN --mount=type=cache,id=${NS}-z,target=/z true\n").mounts[0].id == "-z"
