"""shim.core.records behaves as dataclasses for what dockcache uses (each case side by side)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shim.core import records


def pair(frozen: bool):
    """The same classes made by dataclasses and by records: a base, and a child with a factory."""
    made = []
    for dc, fld in ((dataclasses.dataclass, dataclasses.field), (records.dataclass, records.field)):
        @dc(frozen=frozen)
        class Base:
            a: int
            b: str = "x"

        @dc(frozen=frozen)
        class Child(Base):
            c: list = fld(default_factory=list)
            d: tuple = fld(default=(), repr=False)
            e: int | None = None
        made.append((Base, Child))
    return made


values = st.one_of(st.integers(), st.text(max_size=5), st.none())


@settings(max_examples=100, deadline=None)
@given(a=values, b=st.text(max_size=5), c=st.lists(st.integers(), max_size=3), e=values, frozen=st.booleans())
def test_same_fields_defaults_repr_eq_and_replace(a, b, c, e, frozen):
    (_db, dchild), (_rb, rchild) = pair(frozen)
    d, r = dchild(a, b, c=c, e=e), rchild(a, b, c=c, e=e)
    assert repr(d) == repr(r) and r == rchild(a, b, c=list(c), e=e) and r != rchild(a, b + "!", c=c, e=e)
    assert dataclasses.asdict(d) == records.asdict(r)
    assert records.replace(r, e=1) == rchild(a, b, c=c, e=1) and dataclasses.replace(d, e=1).e == 1
    assert rchild(a).c == [] and rchild(a).c is not rchild(a).c  # a fresh default each time
    assert rchild.__match_args__ == dchild.__match_args__
    if frozen:
        for obj in (d, r):  # a list field: unhashable in both
            with pytest.raises(TypeError):
                hash(obj)
        with pytest.raises(AttributeError):
            r.a = 2
    else:
        assert rchild.__hash__ is None and dchild.__hash__ is None
        r.a = 2
        assert r.a == 2


def test_frozen_records_hash_like_tuples_and_compare_only_within_their_class():
    (_db, _dc), (rbase, rchild) = pair(True)
    assert hash(rbase(1, "y")) == hash(rbase(1, "y")) and len({rbase(1), rbase(1), rbase(2)}) == 2
    assert rbase(1) != rchild(1) and rbase(1) != (1, "x")


def test_wrong_arguments_fail_as_dataclasses_do():
    (_db, dchild), (_rb, rchild) = pair(False)
    for cls in (dchild, rchild):
        with pytest.raises(TypeError):
            cls()
        with pytest.raises(TypeError):
            cls(1, a=2)
        with pytest.raises(TypeError):
            cls(1, zzz=2)
        with pytest.raises(TypeError):
            cls(1, "b", [], (), None, "one too many")
    with pytest.raises(TypeError):
        @records.dataclass
        class Bad:
            a: int = 1
            b: int


def test_class_attributes_and_class_vars_as_dataclasses_leave_them():
    from typing import ClassVar

    @records.dataclass
    class R:
        kinds: ClassVar[tuple] = ("a",)
        x: int = 3
        y: list = records.field(default_factory=list)

    assert R.kinds == ("a",) and R.x == 3 and not hasattr(R, "y")
    assert [f.name for f in R.__record_fields__] == ["x", "y"]
