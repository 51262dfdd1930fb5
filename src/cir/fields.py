"""Option values checked against their annotated types: for `--set key=value`, YAML files and
the config dataclasses built in Python (RunConfig, CompareSettings, a method's config), so that
a wrong type is one message naming the option, never a comparison error deep inside."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing

from cir.errors import OptionTypeError


def describe(kind) -> str:
    """What a value of the annotated type `kind` is, in words."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", type(None): "null",
             dict: "a mapping"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def typed_value(value, kind):
    """`value` as the annotated type `kind` (a float also from an int or a numeric string such as
    1e-3, which YAML reads as a string); a ValueError when it is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            with contextlib.suppress(ValueError):
                return typed_value(value, arg)
    elif origin is typing.Literal:
        if value in args:
            return value
    elif origin in (list, tuple):  # tuple[X, ...]; never from a string
        if isinstance(value, (list, tuple)):
            with contextlib.suppress(ValueError):
                return origin(typed_value(v, args[0]) for v in value)
    elif kind is float:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            with contextlib.suppress(ValueError, OverflowError):
                if math.isfinite(number := float(value)):
                    return number
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is type(None):
        if value is None:
            return value
    elif not isinstance(kind, type) or isinstance(value, kind):
        return value
    raise ValueError(f"must be {describe(kind)}")


def check_fields(instance) -> None:
    """Check every field of the dataclass `instance` against its annotation, in place (an int
    becomes a float where a float is wanted); a wrong type is an OptionTypeError (a TypeError and an
    InputError) naming the field."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        try:
            setattr(instance, field.name, typed_value(value, hints[field.name]))
        except ValueError as error:
            raise OptionTypeError(f"{field.name} {error}, got {value!r}") from None
