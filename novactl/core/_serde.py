"""Plain-JSON (de)serialization for the core's dataclasses.

Each dataclass gets a converter compiled once from its type hints, so saving
and loading the state stays cheap even when a simulation does it tens of
thousands of times.  Supported field types: JSON scalars, Enums, nested
dataclasses, ``list[...]``, ``dict[str, ...]``, ``X | None`` and ``Any``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["from_jsonable", "to_jsonable"]

_Conv = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _is_plain(tp: Any) -> bool:
    return tp in (str, int, float, bool, type(None)) or tp is Any


def _unoptional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        if all(_is_plain(a) for a in args):
            return Any
        raise TypeError(f"unsupported union {tp!r}")
    return tp


@functools.cache
def _dumper(tp: Any) -> _Conv:
    tp = _unoptional(tp)
    if _is_plain(tp):
        return _identity  # JSON-shaped already; the encoder only reads it
    origin = typing.get_origin(tp)
    if origin is list:
        item = _dumper(typing.get_args(tp)[0])
        if item is _identity:
            return lambda v: None if v is None else list(v)
        return lambda v: None if v is None else [item(x) for x in v]
    if origin is dict:
        val = _dumper(typing.get_args(tp)[1])
        if val is _identity:
            return lambda v: None if v is None else dict(v)
        return lambda v: None if v is None else {k: val(x) for k, x in v.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        return lambda v: None if v is None else v.value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(f.name, _dumper(hints[f.name])) for f in dataclasses.fields(tp)]

        def dump(obj: Any) -> Any:
            if obj is None:
                return None
            return {name: conv(getattr(obj, name)) for name, conv in fields}

        return dump
    raise TypeError(f"cannot serialise {tp!r}")


@functools.cache
def _loader(tp: Any) -> _Conv:
    tp = _unoptional(tp)
    if tp is float:
        return lambda v: None if v is None else float(v)
    if tp is int:
        return lambda v: None if v is None else int(v)
    if _is_plain(tp):
        return _identity  # fresh objects from the JSON decoder
    origin = typing.get_origin(tp)
    if origin is list:
        item = _loader(typing.get_args(tp)[0])
        return lambda v: None if v is None else [item(x) for x in v]
    if origin is dict:
        val = _loader(typing.get_args(tp)[1])
        return lambda v: None if v is None else {k: val(x) for k, x in v.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        enum_type = tp
        return lambda v: None if v is None else enum_type(v)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        cls = tp
        hints = typing.get_type_hints(tp)
        fields = [(f.name, _loader(hints[f.name])) for f in dataclasses.fields(tp)]

        def load(data: Any) -> Any:
            if data is None:
                return None
            return cls(**{name: conv(data[name]) for name, conv in fields if name in data})

        return load
    raise TypeError(f"cannot deserialise {tp!r}")


def to_jsonable(value: Any) -> Any:
    """A dataclass instance as JSON-ready dicts and lists."""
    return _dumper(type(value))(value)  # type: ignore[arg-type]


def from_jsonable(cls: type[T], data: Any) -> T:
    return typing.cast(T, _loader(cls)(data))  # type: ignore[arg-type]
