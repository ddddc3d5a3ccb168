"""Properties of bake's grammar and rewrite over generated argv (hypothesis): the user's
tokens are never dropped, reordered or altered, a shim behind a shim adds nothing twice,
and nothing raises on any argv."""

from hypothesis import given, settings
from hypothesis import strategies as st

from shim.build.bake.plan import BakeTarget, plan_bake
from shim.core.engine import BuildCaps
from shim.core.grammar import BAKE_BOOL_FLAGS, BAKE_LOOKS, BAKE_VALUE_FLAGS, GLOBAL_VALUE_FLAGS, parse_bake, parse_invocation

SETTINGS = settings(max_examples=300, deadline=None)
word = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=10)
name = st.text(alphabet="abcdefghijklmnop-_0123456789", min_size=1, max_size=8).filter(lambda s: not s.startswith("-"))
value = st.one_of(word.filter(lambda s: s != "--"), st.sampled_from(["--load", "api", "*.cache-to=x", "-"]))
BOOLS = sorted(BAKE_BOOL_FLAGS - BAKE_LOOKS - {"--help", "-h"})
VALUES = sorted(BAKE_VALUE_FLAGS - {"--list", "--call"})  # --list and --call=check only look: left alone


@st.composite
def option(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return [draw(st.sampled_from(BOOLS))]
    flag = draw(st.sampled_from(VALUES))
    v = draw(value)
    if flag in ("-f", "--file") and v == "-":
        v = "x.hcl"
    if kind == 1 and flag.startswith("--"):
        return [f"{flag}={v}"]
    if kind == 2 and not flag.startswith("--") and v:
        return [flag + v]
    return [flag, v]


@st.composite
def bake_argv(draw):
    """(argv, targets): docker globals, `buildx [--builder X] bake|f`, options and targets interleaved."""
    globals_ = []
    for _ in range(draw(st.integers(0, 2))):
        globals_ += [draw(st.sampled_from(sorted(GLOBAL_VALUE_FLAGS))), "x"]
    head = [*globals_, "buildx", *(["--builder", "bx"] if draw(st.booleans()) else []), draw(st.sampled_from(["bake", "f"]))]
    rest, targets = [], []
    for _ in range(draw(st.integers(0, 7))):
        if draw(st.booleans()):
            t = draw(name)
            rest.append(t)
            targets.append(t)
        else:
            rest += draw(option())
    return head + rest, targets


def _plan(argv, targets, **kw):
    inv = parse_invocation(argv)
    ts = [BakeTarget(t, f"k-{t}", ("k-main",)) for t in dict.fromkeys(targets or ["default"])]
    return inv, plan_bake(argv, inv, parse_bake(inv), BuildCaps("full", "t", "docker"), ts,
                          import_src="/s/snapshots/dockcache-snap-1",
                          import_tags={"k-main": ("k-main",), **{f"k-{t}": (f"k-{t}",) for t in targets}},
                          export_dests={t.name: f"/s/tmp/dockcache-export-{t.name}" for t in ts}, **kw)


@SETTINGS
@given(bake_argv())
def test_targets_found_and_user_tokens_kept_in_order(case):
    argv, targets = case
    inv, p = _plan(argv, targets)
    b = parse_bake(inv)
    assert list(b.targets) == targets
    start, added = inv.args_start, len(p.argv) - len(argv)
    assert list(p.argv[:start]) + list(p.argv[start + added:]) == argv  # nothing dropped, moved or altered
    ours = p.argv[start:start + added]
    assert all(ours[i] == "--set" for i in range(0, len(ours), 2))  # only --set pairs were added
    after = parse_bake(parse_invocation(p.argv))
    assert after.targets == b.targets and after.files == b.files  # the same bake, read the same way
    assert after.sets[len(ours) // 2:] == b.sets


@SETTINGS
@given(bake_argv())
def test_a_shim_behind_a_shim_adds_nothing_twice(case):
    argv, targets = case
    _inv, once = _plan(argv, targets)
    _inv2, twice = _plan(list(once.argv), targets)
    assert twice.argv == once.argv


@SETTINGS
@given(st.lists(word, max_size=12), st.lists(name, max_size=3))
def test_never_raises_on_any_argv(argv, targets):
    for head in ([], ["buildx", "bake"], ["buildx", "f"]):
        inv = parse_invocation(head + argv)
        parse_bake(inv)
        _inv, p = _plan(head + argv, targets)
        assert len(p.argv) >= len(head + argv)
