"""``picard-ad methods``: the registered methods, one line each with their score names."""

from __future__ import annotations

import click


@click.command("methods")
@click.argument("pattern", default="*")
def command(pattern: str) -> None:
    """List the registered methods matching PATTERN (shell-style, e.g. 'local-*'): name, what it does, scores.

    The default score of each is marked with *. Fit one with picard-ad fit --method NAME; its settings appear with
    picard-ad fit --method NAME --help.
    """
    from picard_ad.methods import describe_methods, list_methods

    names = list_methods(pattern)
    if not names:
        click.echo(f"no registered method matches {pattern!r}; registered: {', '.join(list_methods())}", err=True)
        raise SystemExit(2)
    click.echo("\n".join(describe_methods(names)))
