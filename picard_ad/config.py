"""Typed configuration: dataclasses loadable from YAML, unknown keys rejected, CLI flags override fields."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from picard_ad.errors import ConfigError

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to ``annotation``; only the shapes our configs use are supported."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where=where)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys with a did-you-mean hint."""
    types_by_name = _field_types(cls)
    unknown = [k for k in data if k not in types_by_name]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), types_by_name, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(types_by_name)}"
        raise ConfigError(f"{where}: unknown key '{key}'{hint}")
    kwargs = {k: _coerce(v, types_by_name[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_flat_configs(path: str | Path | None, overrides: dict[str, Any], *classes: type) -> tuple:
    """Several config dataclasses filled from one flat YAML file, then ``overrides`` (None = not given).

    Each key goes to the class that has a field of that name; a key that none has is rejected.
    """
    data = dict(read_yaml_fields(path)) if path is not None else {}
    data.update({key: value for key, value in overrides.items() if value is not None})
    where = str(path) if path is not None else "options"
    keys = [{field.name for field in dataclasses.fields(cls)} for cls in classes]
    unknown = sorted(set(data).difference(*keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(set().union(*keys)))}")
    return tuple(
        from_dict(cls, {key: value for key, value in data.items() if key in names}, where=where)
        for cls, names in zip(classes, keys)
    )


def to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-serialisable mapping of a config dataclass (paths as strings, tuples as lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def read_yaml_fields(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (values not yet checked)."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return loaded


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Config from an optional YAML file, then ``overrides`` (CLI flags; ``None`` values mean "not given")."""
    data: dict[str, Any] = dict(read_yaml_fields(path)) if path is not None else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, data, where=str(path) if path is not None else "config")


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config next to an output, atomically."""
    from picard_ad.io.writers import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))
