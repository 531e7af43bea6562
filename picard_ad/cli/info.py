"""``picard-ad info``: what picard-ad sees in each file, read from headers only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from picard_ad.errors import PicardError


def _describe(header) -> list[str]:
    info = header.to_dict()
    rows, cols = info["rows"], info["cols"]
    lines = [str(info["path"])]
    syntax = info.get("transfer_syntax")
    compressed = " (compressed)" if info.get("compressed") else ""
    lines.append(f"  format:         {info['format']}" + (f", {syntax}{compressed}" if syntax else ""))
    lines.append(f"  size:           {rows} rows x {cols} cols, {info['n_slices']} slice(s)/frame(s)")
    lines.append(f"  stored:         shape {tuple(info['shape'])}, dtype {info['dtype']}" + (
        f", {info['bits_stored']} bits stored" if info.get("bits_stored") else ""))
    lines.append(f"  modality:       {info.get('modality') or '-'}")
    lines.append(f"  photometric:    {info.get('photometric') or '-'}")
    spacing = info.get("spacing")
    lines.append("  spacing:        " + (f"{spacing[0]:g} x {spacing[1]:g} mm" if spacing else "-"))
    lines.append(f"  normalization:  {info['normalization']}")
    return lines


@click.command("info")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file instead of text.")
def command(paths: tuple[Path, ...], as_json: bool) -> None:
    """Print shape, dtype, modality, photometric interpretation, frames and normalisation of each file.

    Folders are searched for supported images. Only headers are read, so this is fast on large volumes.
    Exit code 2 if any file cannot be read (the others are still reported).
    """
    from picard_ad.io import find_images, read_header

    files: list[Path] = []
    for path in paths:
        files.extend(find_images(path) if path.is_dir() else [path])
    failures = 0
    for path in files:
        try:
            header = read_header(path)
        except PicardError as exc:
            failures += 1
            click.echo(f"picard-ad: error: {exc}", err=True)
            continue
        if as_json:
            click.echo(json.dumps(header.to_dict(), default=str))
        else:
            click.echo("\n".join(_describe(header)))
    if failures:
        click.echo(f"picard-ad: {failures} of {len(files)} file(s) could not be read", err=True)
        sys.exit(2)
    if not files:
        click.echo("picard-ad: error: no supported image files found", err=True)
        sys.exit(2)
