"""`dataclass`, `field`, `replace` and `asdict` for the hot path: the subset dockcache uses.

Every intercepted docker command imports a few dozen record classes. The standard
library's dataclasses costs ~20 ms there (it imports inspect, and compiles each method
from generated source); here the methods are closures, and nothing heavy is imported.
Same behaviour for what dockcache uses: fields from annotations (bases first), defaults
and `field(default=…, default_factory=…, repr=…)`, `frozen=True` (then hashable),
`__eq__` on the same class, `__repr__`, `replace`, `asdict`. Annotations stay strings
(`from __future__ import annotations`); `ClassVar` ones are not fields.
"""

from __future__ import annotations

_MISSING = object()


class FrozenInstanceError(AttributeError):
    pass


class Field:
    __slots__ = ("name", "default", "default_factory", "repr")

    def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True):  # noqa: A002 - dataclasses' name
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name, self.default, self.default_factory, self.repr = "", default, default_factory, repr


def field(*, default=_MISSING, default_factory=_MISSING, repr=True) -> Field:  # noqa: A002
    return Field(default, default_factory, repr)


def dataclass(cls=None, /, *, frozen: bool = False):
    def wrap(c):
        return _process(c, frozen)
    return wrap if cls is None else wrap(cls)


def _fields_of(cls) -> list[Field]:
    fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__record_fields__", ()):
            fields[f.name] = f
    for name, kind in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(kind, str) and kind.replace("typing.", "").startswith("ClassVar"):
            continue
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        fields[name] = f
        if isinstance(value, Field):  # the class attribute is the default, as in dataclasses
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    return list(fields.values())


def _process(cls, frozen: bool):
    """The methods are closures over the field list, not generated source: compiling
    source per class (as dataclasses does) is most of what a record class costs to make."""
    fields = tuple(_fields_of(cls))
    seen_default = False
    for f in fields:
        has = f.default is not _MISSING or f.default_factory is not _MISSING
        if seen_default and not has:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has
    names = tuple(f.name for f in fields)
    post_init = hasattr(cls, "__post_init__")

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments but {len(args)} were given")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {key!r}")
            values[key] = value
        for f in fields:
            if f.name in values:
                value = values[f.name]
            elif f.default_factory is not _MISSING:
                value = f.default_factory()
            elif f.default is not _MISSING:
                value = f.default
            else:
                raise TypeError(f"{cls.__name__}() missing required argument {f.name!r}")
            object.__setattr__(self, f.name, value)
        if post_init:
            self.__post_init__()

    def _values(self):
        return tuple(getattr(self, n) for n in names)

    def __repr__(self):
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields if f.repr)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    methods = {"__init__": __init__, "__repr__": __repr__, "__eq__": __eq__}
    if frozen:
        def __hash__(self):
            return hash(_values(self))

        def __setattr__(self, name, value):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name):
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        methods.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    for name, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)
    if not frozen:
        cls.__hash__ = None  # mutable and comparable: unhashable, as dataclasses makes it
    cls.__record_fields__ = fields
    cls.__match_args__ = names
    return cls


def replace(obj, /, **changes):
    """A copy of the record with these fields changed."""
    for f in obj.__record_fields__:
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def asdict(obj) -> dict:
    """The record as a dict, records and lists of records within it too."""
    if hasattr(obj, "__record_fields__"):
        return {f.name: asdict(getattr(obj, f.name)) for f in obj.__record_fields__}
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(x) for x in obj) if not hasattr(obj, "_fields") else type(obj)(*(asdict(x) for x in obj))
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj
