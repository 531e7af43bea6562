"""Lesion annotations (boxes, circles, mask images) and their conversion to pixel masks.

Box convention, used everywhere in picard-ad: ``x`` is the column and ``y`` the row of the top-left pixel,
``width``/``height`` are in pixels, and the box covers rows ``y .. y+height-1`` and columns ``x .. x+width-1``
(end-exclusive slicing ``mask[y:y+height, x:x+width]``), so a box holds exactly ``width * height`` pixels.

Circles use the same frame: pixel ``(row, column)`` has its centre at coordinates ``(y, x) = (row, column)``, and
a circle covers the pixels whose centre lies within its radius.

Modules: ``shapes`` (Box, Circle, masks), ``tables`` (CSV reading with file and line in errors), ``boxes_csv``,
``circles`` (circles CSV and the MIAS info file), ``bcs_dbt`` and ``annotation_set`` (one mask per image from any
source, mask folders included).
"""

from picard_ad.io.annotations.annotation_set import (
    AnnotationSet,
    SupportsApply,
    image_key,
)
from picard_ad.io.annotations.bcs_dbt import DbtBox, read_bcs_dbt_boxes
from picard_ad.io.annotations.boxes_csv import read_boxes_csv, write_boxes_csv
from picard_ad.io.annotations.circles import MiasFilm, read_circles_csv, read_mias_info
from picard_ad.io.annotations.shapes import Box, Circle, Shape, masks_from_shapes

__all__ = [
    "AnnotationSet",
    "Box",
    "Circle",
    "DbtBox",
    "MiasFilm",
    "Shape",
    "SupportsApply",
    "image_key",
    "masks_from_shapes",
    "read_bcs_dbt_boxes",
    "read_boxes_csv",
    "read_circles_csv",
    "read_mias_info",
    "write_boxes_csv",
]
