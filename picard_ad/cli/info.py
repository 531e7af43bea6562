"""``picard-ad info``: what picard-ad sees in each file, read from headers only."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from picard_ad.errors import PicardError
from picard_ad.io import ImageHeader, find_images, read_header
from picard_ad.io.base import ReadWarning
from picard_ad.io.writers import dumps_json


def _describe(header: ImageHeader) -> list[str]:
    syntax = f", {header.transfer_syntax}" if header.transfer_syntax else ""
    compressed = " (compressed)" if header.compressed else ""
    bits = f", {header.bits_stored} bits stored" if header.bits_stored else ""
    spacing = f"{header.spacing[0]:g} x {header.spacing[1]:g} mm" if header.spacing else "-"
    return [
        header.path,
        f"  format:         {header.format}{syntax}{compressed}",
        f"  size:           {header.rows} rows x {header.cols} cols, {header.n_slices} slice(s)/frame(s)",
        f"  stored:         shape {tuple(header.stored_shape)}, dtype {header.stored_dtype}{bits}",
        f"  modality:       {header.modality or '-'}",
        f"  photometric:    {header.photometric or '-'}",
        f"  spacing:        {spacing}",
        f"  normalization:  {header.normalization}",
        *(f"  note:           {note}" for note in header.notes),
    ]


@click.command("info")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file instead of text.")
def command(paths: tuple[Path, ...], as_json: bool) -> None:
    """Print shape, dtype, modality, photometric interpretation, frames and normalisation of each file.

    Folders are searched for supported images. Only headers are read, so this is fast on large volumes; they are
    checked as ``heatmap`` checks them before decoding (pixel data as long as the header implies, image size
    within the memory limit; compressed data is checked only when decoded). Notes are the reader's decisions
    (fallbacks for unusable values) and the libraries' warnings. Exit code 2 if any file cannot be read (the others
    are still reported).
    """
    files: list[Path] = []
    for path in paths:
        files.extend(find_images(path) if path.is_dir() else [path])
    failures = 0
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ReadWarning)  # its notes are printed with the header
                header = read_header(path)
        except PicardError as exc:
            failures += 1
            click.echo(f"picard-ad: error: {exc}", err=True)
            continue
        if as_json:
            click.echo(dumps_json(header.to_dict()))
        else:
            click.echo("\n".join(_describe(header)))
    if failures:
        click.echo(f"picard-ad: {failures} of {len(files)} file(s) could not be read", err=True)
        sys.exit(2)
    if not files:
        click.echo("picard-ad: error: no supported image files found", err=True)
        sys.exit(2)
