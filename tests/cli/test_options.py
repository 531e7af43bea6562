"""Command-line options derived from settings dataclasses: names, types, checks and shown defaults."""

from dataclasses import dataclass
from typing import Literal

import click
from click.testing import CliRunner

from picard_ad.cli.options import given, peek_option, settings_options
from picard_ad.config import setting


@dataclass(frozen=True)
class Knobs:
    n_items: int = setting(10, "how many", ge=1, aliases=("--N",))
    ratio: float = setting(0.5, "a ratio", ge=0.0, le=1.0)
    fast: bool = setting(True, "go fast")
    mode: Literal["a", "b"] = setting("a", "which mode")
    batch: int | Literal["auto"] = setting("auto", "samples per batch", ge=1)
    pair: tuple[float, float] = setting((0.5, 0.9), "two numbers")
    note: str | None = setting(None, "a note [none]")


def _command():
    @click.command(params=settings_options(Knobs(n_items=3)))
    def show(**values):
        click.echo(repr(sorted(given(values, Knobs).items())))

    return show


def test_options_are_typed_checked_and_none_when_not_given():
    run = CliRunner().invoke
    assert run(_command(), []).output.strip() == "[]"
    result = run(_command(), ["--N", "4", "--ratio", "0.25", "--no-fast", "--mode", "b", "--batch", "auto",
                              "--pair", "0.1", "0.2"])  # fmt: skip
    assert result.output.strip() == (
        "[('batch', 'auto'), ('fast', False), ('mode', 'b'), ('n_items', 4), ('pair', [0.1, 0.2]), ('ratio', 0.25)]"
    )
    assert "('batch', 7)" in run(_command(), ["--batch", "7"]).output
    for args, message in ((["--ratio", "nan"], "not a finite number"), (["--batch", "many"], "auto or a whole"),
                          (["--mode", "c"], "'c' is not one of 'a', 'b'")):  # fmt: skip
        result = run(_command(), args)
        assert result.exit_code == 2 and message in result.output


def test_help_shows_the_declared_line_range_and_the_given_instances_values():
    shown = CliRunner().invoke(_command(), ["--help"]).output
    assert "--n-items, --N INTEGER" in shown and "How many (>= 1) [3]" in shown  # the instance's value, not 10
    assert "--fast / --no-fast" in shown and "Go fast [on]" in shown
    assert "A ratio (in [0.0, 1.0]) [0.5]" in shown and "A note [none]" in shown


def test_peek_option_reads_both_spellings():
    assert peek_option(["x", "--model", "run", "--stride", "4"], "--model") == "run"
    assert peek_option(["--model=run2"], "--model") == "run2"
    assert peek_option(["--", "--model", "run"], "--model") is None and peek_option(["--model"], "--model") is None
