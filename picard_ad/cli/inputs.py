"""Commands over many inputs: one failing input is reported and the others go on; the exit code tells."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

import click

from picard_ad.errors import PicardError

Item = TypeVar("Item")


def for_each_input(items: Iterable[Item], run: Callable[[Item], None]) -> int:
    """``run(item)`` for every item; a picard-ad error is printed on stderr and the next item goes on.

    Returns the number of items that failed.
    """
    failures = 0
    for item in items:
        try:
            run(item)
        except PicardError as exc:
            failures += 1
            click.echo(f"picard-ad: error: {exc}", err=True)
    return failures


def exit_if_failed(failures: int, total: int) -> None:
    """Exit with code 2 (after saying how many) when any of ``total`` inputs failed."""
    if failures:
        click.echo(f"picard-ad: {failures} of {total} input(s) failed", err=True)
        sys.exit(2)


def report_ray_result(result, summary: str, total: int) -> None:
    """Print each failed input of a job run on Ray (``picard_ad.jobs.ray_cluster``), then ``summary``; exit with
    code 2 when any of ``total`` inputs failed."""
    for message in result.failures:
        click.echo(f"picard-ad: error: {message}", err=True)
    click.echo(summary)
    exit_if_failed(len(result.failures), total)
