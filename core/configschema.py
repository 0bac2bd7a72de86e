"""A small typed loader: nested frozen dataclasses from plain mappings (YAML).

Every rejected value raises `ConfigError` naming its dotted path (e.g. `slots.num_cpus`),
so a bad config fails at start with a message a person can act on.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from core.errors import ConfigError

T = TypeVar("T")


def bounded(default: Any, *, ge: float | None = None, le: float | None = None,
            gt: float | None = None) -> Any:
    """A dataclass field with numeric bounds checked by `load`."""
    return dataclasses.field(default=default, metadata={"ge": ge, "le": le, "gt": gt})


def load(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from mapping `data`, rejecting unknown keys and bad values."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown setting (allowed: {', '.join(fields)})")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        field_path = f"{path}.{name}" if path else name
        value = _convert(hints[name], data[name], field_path)
        _check_bounds(f, value, field_path)
        values[name] = value
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or '<root>'}: {exc}") from exc


def _check_bounds(f: dataclasses.Field[Any], value: Any, path: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    meta = f.metadata
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(f"{path}: must be >= {meta['ge']}, got {value}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ConfigError(f"{path}: must be > {meta['gt']}, got {value}")
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(f"{path}: must be <= {meta['le']}, got {value}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path)
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{path}: must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin is tuple:
        return _convert_tuple(tp, value, path)
    if origin in (dict, Mapping):
        return _convert_dict(tp, value, path)
    if dataclasses.is_dataclass(tp):
        return load(tp, value, path)  # type: ignore[arg-type]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = [m.value for m in tp]
            raise ConfigError(f"{path}: must be one of {allowed}, got {value!r}") from None
    return _convert_scalar(tp, value, path)


def _convert_union(tp: Any, value: Any, path: str) -> Any:
    args = get_args(tp)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{path}: must be set")
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, path)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")


def _convert_tuple(tp: Any, value: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
    item_tp = get_args(tp)[0]
    return tuple(_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))


def _convert_dict(tp: Any, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
    args = get_args(tp)
    val_tp = args[1] if len(args) == 2 else Any
    return {str(k): _convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}


def _convert_scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: expected a non-empty string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported setting type {tp!r}")
