"""YAML data to typed settings: a mapping checked against a dataclass's type hints, key by key.

Unknown keys (with the closest valid one suggested) and values of the wrong type raise
:class:`~unet3d_keras.config_types.ConfigError` naming the key, what is allowed and what was
received. Written by hand rather than with pydantic (2.13, tried on these dataclasses with
``TypeAdapter``): its lax mode accepts ``"2"`` for an integer and ``1`` for a boolean, its strict mode
refuses a mapping for a dataclass, and its messages do not quote the value received
(``Input should be a valid integer`` against ``expected integer, received 'two'`` here).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

from .config_types import ConfigError

__all__ = ["build_dataclass"]


def _describe(type_hint: Any) -> str:
    """How a type reads in a message: ``integer``, ``a list of 3 integer``, ``null or number`` ..."""
    origin = typing.get_origin(type_hint)
    args = typing.get_args(type_hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [_describe(a) for a in args if a is not type(None)]
        prefix = "null or " if type(None) in args else ""
        return prefix + " or ".join(inner)
    if origin is dict:
        return f"a mapping of names to {_describe(args[1])}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} {_describe(args[0])}"
    return {int: "integer", float: "number", bool: "true or false", str: "string"}.get(type_hint, str(type_hint))


def _coerce(value: Any, type_hint: Any, key: str) -> Any:
    """Check ``value`` against ``type_hint`` and return it in canonical form."""
    origin = typing.get_origin(type_hint)
    args = typing.get_args(type_hint)

    def fail() -> typing.NoReturn:
        raise ConfigError(f"{key}: expected {_describe(type_hint)}, received {value!r}")

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:
            return _coerce(value, alternatives[0], key)  # its own message names the element at fault
        for inner in alternatives:
            try:
                return _coerce(value, inner, key)
            except ConfigError:
                pass
        fail()
    if origin is Literal:
        if value is False and "off" in args:
            value = "off"  # YAML 1.1 reads a bare `off` as false
        if value not in args:
            fail()
        return value
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return {_coerce(k, args[0], key): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            fail()
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if type_hint is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if type_hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if type_hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        return float(value)
    if type_hint is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"unsupported config type {type_hint!r} for {key}")  # a bug in this module


def build_dataclass(cls: type, values: Any, prefix: str, default: Any = None) -> Any:
    """Make the dataclass ``cls`` from a mapping, rejecting unknown keys.

    Keys the mapping leaves out keep their value in ``default`` (an instance of ``cls``) when
    given, else the class default.
    """
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, received {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    names = list(fields)
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys here: {', '.join(names)}"
            raise ConfigError(f"unknown key '{full}'{hint}")
        type_hint = hints[key]
        if dataclasses.is_dataclass(type_hint):
            section_default = fields[key].default_factory()
            kwargs[key] = build_dataclass(type_hint, value if value is not None else {}, f"{full}.", section_default)
        else:
            kwargs[key] = _coerce(value, type_hint, full)
    try:
        return cls(**kwargs) if default is None else dataclasses.replace(default, **kwargs)
    except ValueError as error:  # a section's own validation (AugmentationParams) names the field
        raise ConfigError(f"{prefix}{error}") from None
