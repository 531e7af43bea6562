"""The ``picard-ad`` command line: one verb per user intent; every flag maps to a config field."""

from __future__ import annotations

import sys
import warnings

import click

from picard_ad import __version__
from picard_ad.errors import PicardError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Every warning, ours (they name their file) or a library's, as one line on stderr without source lines."""
    text = " ".join(str(message).split())
    kind = "" if category.__module__.startswith("picard_ad") else f"{category.__name__}: "
    click.echo(f"picard-ad: warning: {kind}{text}", err=True)


class _Group(click.Group):
    """Turns picard-ad's own errors into one line on stderr and exit code 2 (a user error), and warnings into one
    line each."""

    def invoke(self, ctx: click.Context):
        from picard_ad.io.base import forget_reported_notes

        forget_reported_notes()  # each command warns once per file, also when one process runs several
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except PicardError as exc:
            click.echo(f"picard-ad: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("picard-ad: interrupted; finished outputs are kept, rerun to continue", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="picard-ad")
def main() -> None:
    """Unsupervised anomaly localization in medical images: PICARD and its comparators behind one command set."""


def _register_commands() -> None:
    from picard_ad.cli import (
        benchmark,
        demo,
        describe,
        evaluate,
        fit,
        heatmap,
        info,
        methods,
        mood,
        mood_package,
        phantoms,
        view,
    )

    for module in (info, phantoms, methods, fit, describe, heatmap, evaluate, benchmark, mood, mood_package, demo,
                   view):
        main.add_command(module.command)
    main.add_command(fit.train_command)


_register_commands()
