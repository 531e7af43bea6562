"""Versioned JSON records picard-ad writes beside its outputs: method descriptions, checkpoint infos, calibrations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from picard_ad.errors import CorruptFileError, InputError


def read_json_object(path: str | Path, missing: str = "file not found") -> dict[str, Any]:
    """The JSON object in ``path``; InputError(path, missing) when absent, CorruptFileError when not a JSON object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, missing) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptFileError(path, "expected a JSON object")
    return data


def read_record(path: str | Path, format_name: str, version: int, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, checked to hold ``"format": format_name`` and ``"format_version": version``.

    what: what the file is, for the error messages (e.g. "MOOD calibration").
    Raises InputError when the file is missing, CorruptFileError when it is no JSON object or another format or
    version.
    """
    record = read_json_object(path, f"{what} not found")
    if record.get("format") != format_name:
        raise CorruptFileError(
            path, f"not a picard-ad {what} (format {record.get('format')!r}, expected {format_name!r})"
        )
    if record.get("format_version") != version:
        raise CorruptFileError(
            path, f"{what} format version {record.get('format_version')!r}; this picard-ad reads {version}"
        )
    return record
