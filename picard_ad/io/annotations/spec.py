"""Annotation specs, as ``--annotations`` and the ``annotations:`` config keys take them: a mask folder, a boxes
CSV, a circles CSV or ``bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from picard_ad.errors import AnnotationError, ConfigError
from picard_ad.io.annotations.annotation_set import AnnotationSet
from picard_ad.io.annotations.tables import read_text


class LoadedAnnotations(NamedTuple):
    """The annotations of a spec, and whether their lesions are shapes (boxes, circles) or mask images."""

    annotations: AnnotationSet
    lesions_are_boxes: bool  # True: ``boxes_for`` gives the lesions; False: mask images, whose regions are lesions


def read_annotations(spec: str | Path) -> LoadedAnnotations:
    """Read the annotations an annotation spec names.

    Args:
        spec: a folder of mask images (searched recursively), a boxes CSV (``image,x,y,width,height``), a circles
            CSV (its header has ``radius``), or ``bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]`` (ROOT: the folder the
            file paths are relative to). Images are named by their path relative to the annotated root.
    """
    text = str(spec)
    kind, _, rest = text.partition(":")
    if kind == "bcs-dbt" and rest:
        parts = [part.strip() for part in rest.split(",")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigError(f"annotations: expected bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT], got {text!r}")
        root = parts[2] if len(parts) == 3 else None
        return LoadedAnnotations(AnnotationSet.from_bcs_dbt(parts[0], parts[1], root=root), True)
    path = Path(text)
    if path.is_dir():
        return LoadedAnnotations(AnnotationSet.from_mask_folder(path), False)
    if not path.exists():
        raise AnnotationError(path, "annotation file or folder not found")
    if path.suffix.lower() != ".csv":
        raise AnnotationError(
            path, "expected a mask folder, a boxes or circles CSV, or bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]"
        )
    header = next(csv.reader(read_text(path).splitlines()), [])
    if "radius" in {cell.strip() for cell in header}:
        return LoadedAnnotations(AnnotationSet.from_circles_csv(path), True)
    return LoadedAnnotations(AnnotationSet.from_boxes_csv(path), True)
