"""The generic boxes CSV (``image,x,y,width,height[,label]``): reading and writing boxes per image."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from picard_ad.io.annotations.shapes import Box
from picard_ad.io.annotations.tables import box_from_row, read_table, text_field
from picard_ad.io.writers import atomic_write_text


def read_boxes_csv(path: str | Path) -> dict[str, list[Box]]:
    """Boxes per image from a CSV with columns ``image,x,y,width,height`` and an optional ``label``.

    Several rows may name the same image; other columns are ignored. Coordinates are whole pixels (x = column).
    """
    path = Path(path)
    boxes: dict[str, list[Box]] = {}
    for line, row in read_table(path, ("image", "x", "y", "width", "height")):
        image = text_field(row, "image", path, line)
        box = box_from_row(row, ("x", "y", "width", "height"), row.get("label") or None, path, line)
        boxes.setdefault(image, []).append(box)
    return boxes


def write_boxes_csv(path: str | Path, boxes: Mapping[str, Iterable[Box]]) -> None:
    """Write boxes per image as ``image,x,y,width,height,label`` (atomically; an empty label means none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "x", "y", "width", "height", "label"])
    for image, image_boxes in boxes.items():
        for box in image_boxes:
            writer.writerow([image, box.x, box.y, box.width, box.height, box.label or ""])
    atomic_write_text(path, buffer.getvalue())
