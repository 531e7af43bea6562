"""``AnnotationSet``: a dataset's lesion annotations from any source (boxes, circles, MIAS, BCS-DBT, mask folders),
giving each image's bool mask at image resolution, with images matched by file stem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from picard_ad.errors import AnnotationError
from picard_ad.io.annotations.bcs_dbt import read_bcs_dbt_boxes
from picard_ad.io.annotations.boxes_csv import read_boxes_csv
from picard_ad.io.annotations.circles import read_circles_csv, read_mias_info
from picard_ad.io.annotations.shapes import Box, Shape, masks_from_shapes


class SupportsApply(Protocol):
    """What ``AnnotationSet.mask_for`` needs from the image reader's Orientation: the same array transform."""

    def apply(self, array: np.ndarray) -> np.ndarray: ...


# Suffixes stripped when matching images to annotations; other dots belong to the name (``P_00173.1-130``).
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


def image_key(name: str | Path) -> str:
    """Name an image by its file name without folder and image suffix (``images/case_01.png`` -> ``case_01``)."""
    base = Path(str(name)).name
    for suffix in _IMAGE_SUFFIXES:
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _keyed_by_stem(items: Mapping[str, Any], source: Path) -> dict[str, Any]:
    keyed: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for name, value in items.items():
        key = image_key(name)
        if key in keyed:
            raise AnnotationError(source, f"'{originals[key]}' and '{name}' name the same image '{key}'")
        keyed[key], originals[key] = value, name
    return keyed


class AnnotationSet:
    """Lesion annotations of a dataset, giving each image's bool mask at image resolution whatever the source.

    Images are matched by file stem (for BCS-DBT by ``DbtBox.name`` or the resolved DICOM path). An image with
    no annotation is normal: its mask is all False.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        shapes: Mapping[str, Sequence[Shape]] | None = None,
        mask_files: Mapping[str, Path] | None = None,
        mask_axis: int = 2,
        unlocalised: Iterable[str] = (),
        aliases: Mapping[str, str] | None = None,
    ):
        """Hold annotations from one source; the ``from_*`` constructors build them from files.

        Args:
            source: the annotation file or folder, named in errors.
            shapes: Box / Circle annotations keyed by image name.
            mask_files: mask image files keyed by image name.
            mask_axis: slicing axis of 3-D mask files.
            unlocalised: names of abnormal images whose lesions have no coordinates.
            aliases: other names of images (such as DICOM paths) mapped to their image names.
        """
        self.source = Path(source)
        self._shapes = dict(shapes or {})
        self._mask_files = dict(mask_files or {})
        self._mask_axis = mask_axis
        self._unlocalised = set(unlocalised)
        self._aliases = dict(aliases or {})

    @classmethod
    def from_boxes_csv(cls, path: str | Path) -> AnnotationSet:
        return cls(path, shapes=_keyed_by_stem(read_boxes_csv(path), Path(path)))

    @classmethod
    def from_circles_csv(cls, path: str | Path) -> AnnotationSet:
        return cls(path, shapes=_keyed_by_stem(read_circles_csv(path), Path(path)))

    @classmethod
    def from_mias_info(cls, path: str | Path, image_height: int = 1024) -> AnnotationSet:
        films = read_mias_info(path, image_height)
        return cls(
            path,
            shapes={refnum: list(film.lesions) for refnum, film in films.items() if film.lesions},
            unlocalised=[refnum for refnum, film in films.items() if film.unlocalised],
        )

    @classmethod
    def from_bcs_dbt(
        cls,
        boxes_csv: str | Path,
        filepaths_csv: str | Path,
        path_column: str = "descriptive_path",
        root: str | Path | None = None,
    ) -> AnnotationSet:
        """Boxes of BCS-DBT volumes; every box is drawn whatever slice is asked for (slices: read_bcs_dbt_boxes)."""
        shapes: dict[str, list[Shape]] = {}
        aliases: dict[str, str] = {}
        for record in read_bcs_dbt_boxes(boxes_csv, filepaths_csv, path_column, root):
            shapes.setdefault(record.name, []).append(record.box)
            aliases[str(record.path)] = record.name
        return cls(boxes_csv, shapes=shapes, aliases=aliases)

    @classmethod
    def from_mask_folder(cls, folder: str | Path, axis: int = 2) -> AnnotationSet:
        """Mask images named like their images: ``masks/case_01.png`` for ``images/case_01.dcm``.

        A pixel is lesion where the stored label is above 0 (PNG, NIfTI, TIFF, DICOM); JPEG masks are lossy and are
        binarised at mid-grey (stored value > 127 of 255) instead. Files without an image suffix (notes, CSVs,
        hidden temporaries) are skipped.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise AnnotationError(folder, "mask folder not found")
        files = {
            entry.name: entry
            for entry in sorted(folder.iterdir())
            if entry.is_file() and entry.name[0] != "." and image_key(entry.name) != entry.name
        }
        if not files:
            raise AnnotationError(folder, "mask folder holds no image files")
        return cls(folder, mask_files=_keyed_by_stem(files, folder), mask_axis=axis)

    def names(self) -> list[str]:
        """Names of the annotated images (abnormal ones), sorted."""
        return sorted(set(self._shapes) | set(self._mask_files) | self._unlocalised)

    def _key(self, image_name: str | Path) -> str:
        name = str(image_name)
        if name in self._shapes or name in self._mask_files or name in self._unlocalised:
            return name
        return self._aliases.get(name, image_key(name))

    def boxes_for(self, image_name: str | Path) -> list[Box]:
        """Boxes of an image (a circle gives its bounding box); [] for an image without annotation."""
        key = self._key(image_name)
        if key in self._mask_files:
            raise AnnotationError(self.source, f"image '{image_name}' is annotated by a mask image, not by boxes")
        return [item if isinstance(item, Box) else item.box for item in self._shapes.get(key, [])]

    def mask_for(
        self,
        image_name: str | Path,
        shape: tuple[int, int],
        *,
        index: int | None = None,
        orientation: SupportsApply | None = None,
    ) -> np.ndarray:
        """Bool (H, W) lesion mask of an image at its resolution; all False when the image has no annotation.

        Args:
            image_name: the image's file name or path (matched by stem), or its DBT name or DICOM path.
            shape: (H, W) of the image as stored, before orientation.
            index: slice of a 3-D mask file (mask folders only; boxes apply to every slice).
            orientation: the reader's orientation of this image; ``orientation.apply`` is applied to the mask so
                it follows an image that was flipped, e.g. left-aligned.
        """
        key = self._key(image_name)
        if key in self._unlocalised:
            raise AnnotationError(self.source, f"image '{image_name}' is abnormal but has lesions without coordinates")
        if key in self._mask_files:
            mask_file = self._mask_files[key]
            mask = self._read_mask_file(mask_file, index)
            if mask.shape != tuple(shape):
                raise AnnotationError(
                    mask_file,
                    f"mask is {mask.shape[0]} x {mask.shape[1]} but image '{image_name}' is {shape[0]} x {shape[1]}",
                )
        else:
            mask = masks_from_shapes(self._shapes.get(key, []), shape, source=self.source, image_name=str(image_name))
        if orientation is not None:
            mask = np.ascontiguousarray(orientation.apply(mask), dtype=bool)
        return mask

    def _read_mask_file(self, mask_file: Path, index: int | None) -> np.ndarray:
        from picard_ad.io import read_image, read_mask

        if mask_file.suffix.lower() in (".jpg", ".jpeg"):
            # JPEG is lossy: faint compression noise around the outline is not lesion, so binarise at mid-grey.
            return read_image(mask_file, index, axis=self._mask_axis).pixels > 0.5
        return np.asarray(read_mask(mask_file, index=index, axis=self._mask_axis), dtype=bool)
