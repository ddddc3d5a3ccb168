"""Properties of parsing and rewriting over generated argv (hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from shim.core.grammar import (config_dir, GLOBAL_VALUE_FLAGS, RUN_BOOL_FLAGS, RUN_VALUE_FLAGS, insert_before,
                          parse_build, parse_invocation, parse_run)

SETTINGS = settings(max_examples=300, deadline=None)
value = st.text(min_size=0, max_size=12)
word = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=10)


@st.composite
def run_option(draw):
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return [draw(st.sampled_from(sorted(RUN_BOOL_FLAGS)))]
    flag = draw(st.sampled_from(sorted(RUN_VALUE_FLAGS)))
    v = draw(value.filter(lambda s: s != "--"))
    if kind == 1 and flag.startswith("--"):
        return [f"{flag}={v}"]
    if kind == 2 and not flag.startswith("--"):
        return ["-it" + flag[1], v] if draw(st.booleans()) else [flag + "x" + v]
    return [flag, v]


@st.composite
def run_argv(draw):
    globals_ = []
    for _ in range(draw(st.integers(0, 2))):
        globals_ += [draw(st.sampled_from(sorted(GLOBAL_VALUE_FLAGS))), "x"]
    opts = sum(draw(st.lists(run_option(), max_size=6)), [])
    image = draw(st.text(alphabet="abcdefghij/:.", min_size=1, max_size=10))
    cmd = draw(st.lists(word, max_size=4))
    return globals_ + ["run"] + opts + [image] + cmd, image, cmd


@SETTINGS
@given(st.lists(word, max_size=12))
def test_never_raises_on_any_argv(argv):
    inv = parse_invocation(argv)
    parse_run(inv)
    parse_build(inv)
    found = config_dir(inv.globals)
    assert found is None or found in argv or any(a.startswith("--config=") for a in argv)


@SETTINGS
@given(run_argv())
def test_image_found_and_command_untouched(case):
    argv, image, cmd = case
    r = parse_run(parse_invocation(argv))
    assert r.image == image and argv[r.image_index] == image
    assert list(r.command) == cmd


@SETTINGS
@given(run_argv(), st.lists(word, max_size=4))
def test_insert_keeps_user_tokens(case, extra):
    argv, _image, _cmd = case
    r = parse_run(parse_invocation(argv))
    out = insert_before(argv, r.image_index, extra)
    assert list(out[:r.image_index]) + list(out[r.image_index + len(extra):]) == argv


@SETTINGS
@given(run_argv())
def test_inserting_before_image_is_a_safe_rewrite_point(case):
    argv, image, cmd = case
    r = parse_run(parse_invocation(argv))
    out = insert_before(argv, r.image_index, ["-v", "x:/y", "-e", "A=1"])
    r2 = parse_run(parse_invocation(out))
    assert r2.image == image and list(r2.command) == cmd
    assert ("A", "1") in r2.env and any(m.target == "/y" for m in r2.mounts)


@st.composite
def build_argv_with_loads(draw):
    """A build's argv with `--load` switches among its options, and `--load` as some option's value."""
    from shim.core.grammar import BUILD_VALUE_FLAGS

    opts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            opts.append(draw(st.sampled_from(["--load", "--load=true", "--load=false"])))
        else:
            flag = draw(st.sampled_from(sorted(BUILD_VALUE_FLAGS)))
            v = draw(st.sampled_from(["--load", "x", "a=b"]) | value.filter(lambda s: s != "--"))
            opts += [flag, v] if kind == 1 or not flag.startswith("--") else [f"{flag}={v}"]
    return ["buildx", "build", *opts, "ctx"]


@SETTINGS
@given(build_argv_with_loads())
def test_without_switch_removes_only_that_switch(argv):
    from shim.core.grammar import BUILD_VALUE_FLAGS, without_switch

    inv = parse_invocation(argv)
    out = without_switch(argv, inv.args_start, BUILD_VALUE_FLAGS, "--load")
    before, after = parse_build(inv), parse_build(parse_invocation(out))
    assert [o for o in before.options if o[0] != "--load"] == list(after.options)
    assert after.context == before.context == "ctx" and not after.load
    assert without_switch(out, inv.args_start, BUILD_VALUE_FLAGS, "--load") == out  # idempotent


@SETTINGS
@given(st.lists(word, max_size=12))
def test_without_switch_never_raises(argv):
    from shim.core.grammar import BUILD_VALUE_FLAGS, without_switch

    out = without_switch(argv, 0, BUILD_VALUE_FLAGS, "--load")
    assert len(out) <= len(argv) and all(a in argv for a in out)
