"""Which annotation names which image.

An annotation names an image by its path relative to the annotated root, image suffix stripped: the ``image``
column of a CSV as written (``p1/img.png`` -> ``p1/img``), a mask file's path relative to its mask folder
(``masks/p1/img.png`` -> ``p1/img``). An image takes the longest name whose path components equal the last
components of its own path (suffix stripped), so a bare name ``img`` still names ``anything/img.png``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

# Suffixes stripped from names; other dots belong to the name (``P_00173.1-130``).
_IMAGE_SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".dcm",
    ".dicom",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".pgm",
    ".bmp",
    ".npy",
    ".mha",
    ".nrrd",
)


def _strip_suffix(base: str) -> str:
    for suffix in _IMAGE_SUFFIXES:
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def image_key(name: str | Path) -> str:
    """Name an image by its file name without folder and image suffix (``images/case_01.png`` -> ``case_01``)."""
    return _strip_suffix(Path(str(name)).name)


def name_parts(name: str | Path) -> tuple[str, ...]:
    """Path components of an annotation or image name, image suffix stripped from the last; () for no path.

    Backslashes separate folders too, as in a CSV written on Windows; ``.`` components are dropped.
    """
    parts = PurePosixPath(str(name).replace("\\", "/")).parts
    return (*parts[:-1], _strip_suffix(parts[-1])) if parts else ()


def annotation_key(name: str | Path) -> str:
    """An annotation's name for an image: its path with POSIX separators, without image suffix
    (``p1/img.png`` -> ``p1/img``, ``./case_01.dcm`` -> ``case_01``)."""
    return PurePosixPath(*name_parts(name)).as_posix()


def image_identity(image: str | Path) -> str:
    """The image's absolute path, normalised, so two spellings of one file are one image."""
    return os.path.abspath(str(image))


def _loose(part: str) -> str:
    """A name component without letter case, zero padding of numbers or separators (``Case_01`` -> ``case1``)."""
    return "".join(str(int(run)) if run.isdigit() else run for run in re.findall(r"\d+|[^\W\d_]+", part.casefold()))


class NameIndex:
    """Annotation names indexed by path components, giving each image the longest name that ends its path."""

    def __init__(self, names: Iterable[str], fold: Callable[[str], str] | None = None):
        """Index ``names`` (annotation keys); ``fold`` maps each component before comparing (None: exact)."""
        self._fold = fold
        self._names: dict[tuple[str, ...], str] = {}
        for name in names:
            self._names.setdefault(self._folded(name_parts(name)), name)
        self._depths = sorted({len(parts) for parts in self._names}, reverse=True)

    def _folded(self, parts: tuple[str, ...]) -> tuple[str, ...]:
        return parts if self._fold is None else tuple(self._fold(part) for part in parts)

    def find(self, image: str | Path) -> str | None:
        """The longest indexed name whose components equal the last components of the image's absolute path."""
        parts = self._folded(name_parts(image_identity(image)))
        for depth in self._depths:
            name = self._names.get(parts[-depth:]) if depth <= len(parts) else None
            if name is not None:
                return name
        return None


def near_misses(images: Iterable[str | Path], names: Iterable[str]) -> list[tuple[str, str]]:
    """(image, name) pairs where an image that no annotation names would take ``name`` but for letter case, zero
    padding of numbers or separators (``case_1.png`` and ``Case-01``): most likely the same image misspelt.

    Close matches by edit distance are not counted: ``normal_0003`` and ``abnormal_0003``, or ``case_01`` and
    ``case_02``, are as close as a typo but name different images of any subset evaluated on its own.
    """
    index = NameIndex(names, fold=_loose)
    found = []
    for image in images:
        name = index.find(image)
        if name is not None:
            found.append((str(image), name))
    return found
