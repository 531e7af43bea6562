"""Reading annotation tables: text files, CSV rows and typed cells, with errors that name the file and line."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from picard_ad.errors import AnnotationError
from picard_ad.io.annotations.shapes import Box


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a byte-order mark dropped); unreadable files raise AnnotationError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except UnicodeDecodeError:
        raise AnnotationError(path, "not a UTF-8 text file") from None
    except OSError as error:
        raise AnnotationError(path, f"cannot be read ({error.strerror or error})") from None


def read_table(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as (line number, {column: stripped value}); checks the header holds ``required``."""
    reader = csv.reader(io.StringIO(read_text(path)))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            if header is None:
                header = cells
                missing = [column for column in required if column not in header]
                if missing:
                    raise AnnotationError(
                        path, f"missing columns {', '.join(missing)} (header has: {', '.join(header)})"
                    )
                continue
            rows.append((reader.line_num, dict(zip(header, cells, strict=False))))
    except csv.Error as error:
        raise AnnotationError(path, f"line {reader.line_num}: malformed CSV ({error})") from None
    if header is None:
        raise AnnotationError(path, f"empty file: expected a header with columns {', '.join(required)}")
    return rows


def text_field(row: dict[str, str], column: str, path: Path, line: int) -> str:
    """The non-empty value of ``column`` in ``row`` (line ``line`` of ``path``, named in errors)."""
    value = row.get(column, "")
    if not value:
        raise AnnotationError(path, f"line {line}: no value in column '{column}'")
    return value


def number_field(row: dict[str, str], column: str, path: Path, line: int, *, whole: bool = False) -> Any:
    """A finite number from ``column``; ``whole`` accepts only integral values (``12`` or ``12.0``)."""
    text = text_field(row, column, path, line)
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(path, f"line {line}: column '{column}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(path, f"line {line}: column '{column}' is not finite: {text!r}")
    if whole:
        if not value.is_integer():
            raise AnnotationError(path, f"line {line}: column '{column}' must be a whole number of pixels: {text!r}")
        return int(value)
    return value


def box_from_row(row: dict[str, str], columns: Sequence[str], label: str | None, path: Path, line: int) -> Box:
    """A Box from the whole-pixel values of ``columns``, named (x, y, width, height) in that order."""
    x, y, width, height = (number_field(row, column, path, line, whole=True) for column in columns)
    if width <= 0 or height <= 0:
        raise AnnotationError(path, f"line {line}: box width and height must be positive, got {width} x {height}")
    return Box(x=x, y=y, width=width, height=height, label=label)
