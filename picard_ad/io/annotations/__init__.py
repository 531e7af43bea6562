"""Lesion annotations (boxes, circles, mask images) and their conversion to pixel masks.

Box convention, used everywhere in picard-ad: ``x`` is the column and ``y`` the row of the top-left pixel,
``width``/``height`` are in pixels, and the box covers rows ``y .. y+height-1`` and columns ``x .. x+width-1``
(end-exclusive slicing ``mask[y:y+height, x:x+width]``), so a box holds exactly ``width * height`` pixels.

Circles use the same frame: pixel ``(row, column)`` has its centre at coordinates ``(y, x) = (row, column)``, and
a circle covers the pixels whose centre lies within its radius.

An annotation names an image by its path relative to the annotated root without image suffix (``p1/img``); an
image takes the longest name that ends its path, so a bare ``img`` names ``anything/img.png`` unless that is
ambiguous among the images listed (``matching``).

Modules: ``shapes`` (Box, Circle, masks), ``tables`` (CSV reading with file and line in errors), ``boxes_csv``,
``circles`` (circles CSV and the MIAS info file), ``bcs_dbt`` (boxes and the slices they apply to), ``matching``
(which name is which image's), ``annotation_set`` (one mask per image from any source, mask folders included) and
``spec`` (the one parser of ``--annotations`` specs).
"""

from picard_ad.io.annotations.annotation_set import AnnotationSet, SupportsApply
from picard_ad.io.annotations.bcs_dbt import DbtBox, lesion_slices, read_bcs_dbt_boxes
from picard_ad.io.annotations.boxes_csv import read_boxes_csv, write_boxes_csv
from picard_ad.io.annotations.circles import MiasFilm, read_circles_csv, read_mias_info
from picard_ad.io.annotations.matching import annotation_key, image_key, near_misses
from picard_ad.io.annotations.shapes import Box, Circle, Shape, masks_from_shapes
from picard_ad.io.annotations.spec import LoadedAnnotations, read_annotations

__all__ = [
    "AnnotationSet",
    "Box",
    "Circle",
    "DbtBox",
    "LoadedAnnotations",
    "MiasFilm",
    "Shape",
    "SupportsApply",
    "annotation_key",
    "image_key",
    "lesion_slices",
    "masks_from_shapes",
    "near_misses",
    "read_annotations",
    "read_bcs_dbt_boxes",
    "read_boxes_csv",
    "read_circles_csv",
    "read_mias_info",
    "write_boxes_csv",
]
