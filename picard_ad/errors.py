"""Exceptions that carry a user-facing message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class PicardError(Exception):
    """Base class of every error picard-ad raises on purpose; the CLI prints it as one line, exit code 2."""


class InputError(PicardError):
    """A file given by the user cannot be used: ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class UnsupportedFormatError(InputError):
    """The file's format, transfer syntax or layout is not one picard-ad can read."""


class CorruptFileError(InputError):
    """The file is truncated, damaged or holds values that cannot be an image (NaN, no pixel data)."""


class AnnotationError(InputError):
    """An annotation file is malformed or does not match its image."""


class ConfigError(PicardError):
    """A configuration file or option is invalid (unknown key, wrong type, impossible value)."""


class MissingDependencyError(PicardError):
    """An optional package needed for this input is not installed."""

    def __init__(self, package: str, purpose: str):
        super().__init__(f"{purpose} needs the package '{package}': pip install {package}")
