"""Typed configuration: dataclasses loadable from YAML, unknown keys rejected, CLI flags override fields.

A setting is declared once, as a dataclass field made with ``setting``: its default, its valid range or choices
and its help line live there. ``check_settings`` (called from ``__post_init__``) enforces the range, YAML keys are
the field names, and ``picard_ad.cli.options`` derives the command-line flags from the same fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from picard_ad.errors import ConfigError

C = TypeVar("C")


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Any = dataclasses.MISSING,
    choices: Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    execution: bool = False,
    run_control: bool = False,
    aliases: Sequence[str] = (),
    metavar: str | None = None,
    flag_value: Any = None,
) -> Any:
    """A dataclass field that declares a setting: its default, valid values and help line.

    Args:
        default, default_factory: as for ``dataclasses.field``.
        help: one line for ``--help`` and the docs (the default and range are appended where shown).
        choices: the valid values (strings for Literal-like settings whose choices are computed).
        ge, gt, le, lt: inclusive / exclusive bounds of a number (of every element of a tuple of numbers).
        execution: changes speed or memory only, and results at most by float rounding (device, batch size,
            threads, bf16): a rerun with another value may reuse finished outputs.
        run_control: may change when a training run is resumed (steps, logging intervals, device).
        aliases: extra command-line spellings, e.g. ("--M",).
        metavar: how ``--help`` shows the value.
        flag_value: makes the value optional on the command line: the bare flag means this value.
    """
    metadata = {
        "help": help, "choices": None if choices is None else tuple(choices), "ge": ge, "gt": gt, "le": le,
        "lt": lt, "execution": execution, "run_control": run_control, "aliases": tuple(aliases), "metavar": metavar,
        "flag_value": flag_value,
    }  # fmt: skip
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def setting_fields(cls: type, flag: str | None = None) -> list[dataclasses.Field]:
    """The init fields of a settings dataclass, or only those whose metadata ``flag`` is true."""
    return [f for f in dataclasses.fields(cls) if f.init and (flag is None or f.metadata.get(flag))]


def _bounds_text(meta: typing.Mapping[str, Any]) -> str:
    low = f"[{meta['ge']}" if meta.get("ge") is not None else f"({meta['gt']}" if meta.get("gt") is not None else None
    high = f"{meta['le']}]" if meta.get("le") is not None else f"{meta['lt']})" if meta.get("lt") is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f">= {meta['ge']}" if meta.get("ge") is not None else f"> {meta['gt']}"
    if high:
        return f"<= {meta['le']}" if meta.get("le") is not None else f"< {meta['lt']}"
    return ""


def literal_choices(annotation: Any) -> tuple[Any, ...]:
    """The values of the ``Literal[...]`` parts of a type annotation (also inside a union), else ()."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(value for arg in typing.get_args(annotation) for value in literal_choices(arg))
    return ()


def field_choices(cls: type, field: dataclasses.Field) -> tuple[Any, ...]:
    """The declared choices of a setting, or the values of its Literal type; () when any value of its type goes."""
    return field.metadata.get("choices") or literal_choices(_field_types(cls)[field.name])


def range_text(cls: type, field: dataclasses.Field) -> str:
    """The valid values of a setting in words (e.g. "in [0, 1)", "one of a, b"), or "" when unconstrained."""
    choices, bounds = field_choices(cls, field), _bounds_text(field.metadata)
    if choices:
        listed = "one of " + ", ".join(str(choice) for choice in choices)
        return f"{listed}, or a number {bounds}" if bounds else listed
    return bounds


def _within(value: float, meta: typing.Mapping[str, Any]) -> bool:
    return not (
        (meta.get("ge") is not None and value < meta["ge"])
        or (meta.get("gt") is not None and value <= meta["gt"])
        or (meta.get("le") is not None and value > meta["le"])
        or (meta.get("lt") is not None and value >= meta["lt"])
    )


def check_settings(instance: Any) -> None:
    """Enforce the declared choices and bounds of every ``setting`` field of a dataclass instance.

    None passes (fields that allow it mean "not set"); numbers must be finite and within the bounds (each number of
    a tuple too); a string must be one of the declared choices or of the field's Literal values, where it has
    any. Raises ConfigError naming the field, the value and what is valid.
    """
    cls = type(instance)
    for field in dataclasses.fields(instance):
        meta = field.metadata
        if "help" not in meta:
            continue
        value = getattr(instance, field.name)
        if value is None:
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"{field.name} must be a finite number, got {value!r}")
        choices = field_choices(cls, field)
        if choices and isinstance(value, str) and value not in choices:
            raise ConfigError(f"{field.name} must be {range_text(cls, field)}, got {value!r}")
        if not all(_within(v, meta) for v in numbers):
            raise ConfigError(f"{field.name} must be {range_text(cls, field)}, got {value!r}")


@functools.cache
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
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
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
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def split_flat_config(path: str | Path | None, overrides: dict[str, Any], *classes: type) -> tuple[dict, ...]:
    """The values a flat YAML file, then ``overrides`` (None = not given), give the fields of several config
    dataclasses: one mapping per class, of the keys given (so saved or default values stay for the others).

    Each key goes to the first class that has a field of that name; a key that none has is rejected, naming the
    valid keys.
    """
    data = dict(read_yaml_fields(path)) if path is not None else {}
    where = str(path) if path is not None else "options"
    for key, value in data.items():  # refused here, so the error names the file the value came from
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {key}: expected a finite number, got {value}")
    data.update({key: value for key, value in overrides.items() if value is not None})
    keys = [{field.name for field in dataclasses.fields(cls)} for cls in classes]
    unknown = sorted(set(data).difference(*keys))
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(set().union(*keys)), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(sorted(set().union(*keys)))}"
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'{hint}")
    parts: list[dict[str, Any]] = [{} for _ in classes]
    for key, value in data.items():
        parts[next(i for i, names in enumerate(keys) if key in names)][key] = value
    return tuple(parts)


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently).

    Keys merged in with ``<<`` may be overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first given on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line, "at line L, column C: what" (or "what"), without its excerpt of the file."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join((where + problem + (f" ({context})" if context else "")).split())


def load_yaml(text: str) -> Any:
    """Parse YAML text safely, refusing duplicate keys; raises yaml.YAMLError."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


def read_yaml_fields(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (values not yet checked); a key given twice is an error."""
    path = Path(path)
    try:
        loaded = load_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML {_yaml_problem(exc)}") from None
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
