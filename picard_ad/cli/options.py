"""Command-line options derived from settings dataclasses, so a setting is declared once (``picard_ad.config``).

Every ``setting`` field becomes ``--field-name`` (plus its declared aliases): a ``--x/--no-x`` switch for booleans,
a choice for Literal types and declared choices, numbers checked to be finite; its help line is the declared one
with the default. An option not given is None, so YAML files and saved settings keep their values. Commands whose
method is known only from their arguments (``--method NAME``, ``--model RUN``) use ``MethodCommand``, which adds
that method's options before parsing.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import click

from picard_ad.config import field_choices, range_text, setting_fields


class FiniteFloat(click.ParamType):
    """A float that is not NaN or infinite."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class NumberOrChoice(click.ParamType):
    """An integer, or one of a few words (e.g. a batch size or "auto")."""

    def __init__(self, words: Sequence[str]):
        self.words = tuple(words)
        self.name = "|".join(("integer", *self.words))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if value in self.words or isinstance(value, int):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"must be {' or '.join(self.words)} or a whole number, got {value!r}", param, ctx)


def _parts(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation without None, or the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return (annotation,)


def _click_type(annotation: Any, choices: tuple[Any, ...]) -> tuple[Any, int]:
    """(click type, nargs) of a setting's annotation."""
    parts = _parts(annotation)
    plain = [part for part in parts if typing.get_origin(part) is not typing.Literal]
    if choices and all(isinstance(choice, str) for choice in choices):
        if plain == [int]:
            return NumberOrChoice(choices), 1
        if not plain or plain == [str]:
            return click.Choice(choices), 1
    first = plain[0] if plain else str
    if typing.get_origin(first) is tuple:
        args = typing.get_args(first)
        if args and args[-1] is not Ellipsis:
            return _click_type(args[0], ())[0], len(args)
        return click.STRING, 1
    if first is bool:
        return click.BOOL, 1
    if first is int:
        return click.INT, 1
    if first is float:
        return FiniteFloat(), 1
    if first is Path:
        return click.Path(path_type=Path), 1
    return click.STRING, 1


def _help(cls: type, field: dataclasses.Field, default: Any) -> str:
    declared = field.metadata.get("help", "")
    text = declared[:1].upper() + declared[1:]
    bounds = range_text(cls, field)
    if bounds and not field_choices(cls, field):
        text += f" ({bounds})"
    if "[" not in declared:
        if isinstance(default, bool):
            default = "on" if default else "off"
        elif isinstance(default, (tuple, list)):
            default = " ".join(map(str, default))
        if default is not None:
            text += f" [{default}]"
    return text


def settings_options(settings: Any, exclude: Collection[str] = ()) -> list[click.Option]:
    """One option per ``setting`` field of a settings dataclass (not those named in ``exclude``).

    settings: the dataclass, or an instance of it whose values ``--help`` shows as the defaults (e.g. the
        settings saved in a run).
    """
    cls = settings if isinstance(settings, type) else type(settings)
    hints = typing.get_type_hints(cls)
    options = []
    for field in setting_fields(cls):
        if field.name in exclude or "help" not in field.metadata:
            continue
        if isinstance(settings, type):
            default = field.default if field.default is not dataclasses.MISSING else None
        else:
            default = getattr(settings, field.name)
        flag = "--" + field.name.replace("_", "-")
        aliases = list(field.metadata.get("aliases", ()))
        click_type, nargs = _click_type(hints[field.name], field_choices(cls, field))
        if click_type is click.BOOL:
            declarations = [f"{flag}/--no-{field.name.replace('_', '-')}", field.name]
            options.append(click.Option(declarations, default=None, help=_help(cls, field, default)))
            continue
        metavar = field.metadata.get("metavar")
        optional_value = {} if field.metadata.get("flag_value") is None else {
            "is_flag": False, "flag_value": field.metadata["flag_value"]}  # fmt: skip
        options.append(click.Option([flag, *aliases, field.name], type=click_type, nargs=nargs, default=None,
                                    metavar=metavar, help=_help(cls, field, default), **optional_value))  # fmt: skip
    return options


def given(values: dict[str, Any], cls: type) -> dict[str, Any]:
    """The values of ``cls``'s setting options that were given on the command line (tuples as lists)."""
    names = {field.name for field in setting_fields(cls)}
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in values.items()
        if name in names and value is not None
    }


def peek_option(args: Sequence[str], *names: str) -> str | None:
    """The value of the first of the options ``names`` in a raw argument list (``--x V`` or ``--x=V``), or None."""
    for index, arg in enumerate(args):
        if arg == "--":
            break
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


class MethodCommand(click.Command):
    """A command whose options include settings of a method that its own arguments name.

    settings_of: raw arguments -> the settings dataclass whose fields become options, or an instance of it whose
        values ``--help`` shows as defaults (None: none, e.g. for ``--help`` without the option that names the
        method); errors it raises (an unknown method, a missing run folder) reach the user as the usual one-line
        message.
    """

    def __init__(self, *args: Any, settings_of: Callable[[list[str]], Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fixed_params = list(self.params)
        self.settings_of = settings_of

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        settings = self.settings_of(list(args))
        fixed = {param.name for param in self.fixed_params}
        self.params = self.fixed_params + ([] if settings is None else settings_options(settings, exclude=fixed))
        return super().parse_args(ctx, args)
