"""``AnnotationSet``: a dataset's lesion annotations from any source (boxes, circles, MIAS, BCS-DBT, mask folders),
giving each image's bool mask at image resolution, with images matched to annotation names as in ``matching``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from picard_ad.errors import AnnotationError, InputError
from picard_ad.io.annotations.bcs_dbt import DbtBox, read_bcs_dbt_boxes
from picard_ad.io.annotations.boxes_csv import read_boxes_csv
from picard_ad.io.annotations.circles import read_circles_csv, read_mias_info
from picard_ad.io.annotations.matching import (
    NameIndex,
    annotation_key,
    image_identity,
    image_key,
    name_parts,
)
from picard_ad.io.annotations.shapes import Box, Shape, masks_from_shapes


class SupportsApply(Protocol):
    """What ``AnnotationSet.mask_for`` needs from the image reader's Orientation: the same array transform."""

    def apply(self, array: np.ndarray) -> np.ndarray: ...


def _keyed(items: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """``items`` keyed by ``annotation_key`` of their names, refusing two names of one image."""
    keyed: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for name, value in items.items():
        if not name_parts(name):
            raise AnnotationError(source, f"'{name}' does not name an image")
        key = annotation_key(name)
        if key in keyed:
            raise AnnotationError(source, f"'{originals[key]}' and '{name}' name the same image '{key}'")
        keyed[key], originals[key] = value, name
    return keyed


class AnnotationSet:
    """Lesion annotations of a dataset, giving each image's bool mask at image resolution whatever the source.

    Annotation names are image paths relative to the annotated root without image suffix (``p1/img``); an image
    takes the longest name that ends its path (``picard_ad.io.annotations.matching``), and a BCS-DBT volume is also
    named by its DICOM path. An image with no annotation is normal: its mask is all False. ``match`` names the
    annotation of each image of a list and refuses a name that several of them would take.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        shapes: Mapping[str, Sequence[Shape]] | None = None,
        mask_files: Mapping[str, Path] | None = None,
        mask_axis: int = 2,
        unlocalised: Iterable[str] = (),
        volume_boxes: Mapping[str, Sequence[DbtBox]] | None = None,
        aliases: Mapping[str | Path, str] | None = None,
    ):
        """Hold annotations from one source; the ``from_*`` constructors build them from files.

        Args:
            source: the annotation file or folder, named in errors.
            shapes: Box / Circle annotations keyed by image name (path relative to the annotated root; an image
                suffix is ignored), applying to every slice.
            mask_files: mask image files keyed by image name.
            mask_axis: slicing axis of 3-D mask files.
            unlocalised: names of abnormal images whose lesions have no coordinates.
            volume_boxes: BCS-DBT boxes keyed by volume name, each applying to the slices near its central one
                (``lesion_slices``).
            aliases: other names of images (such as DICOM paths) mapped to their image names.
        """
        self.source = Path(source)
        self._shapes = _keyed(shapes or {}, self.source)
        self._mask_files = _keyed(mask_files or {}, self.source)
        self._mask_axis = mask_axis
        self._unlocalised = set(_keyed(dict.fromkeys(unlocalised), self.source))
        self._volume_boxes = _keyed(volume_boxes or {}, self.source)
        self._aliases = {image_identity(path): annotation_key(name) for path, name in (aliases or {}).items()}
        self._names = set(self._shapes) | set(self._mask_files) | self._unlocalised | set(self._volume_boxes)
        self._index = NameIndex(self._names)
        self._header_slices: dict[Path, int] = {}

    @classmethod
    def from_boxes_csv(cls, path: str | Path) -> AnnotationSet:
        return cls(path, shapes=read_boxes_csv(path))

    @classmethod
    def from_circles_csv(cls, path: str | Path) -> AnnotationSet:
        return cls(path, shapes=read_circles_csv(path))

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
        """Boxes of BCS-DBT volumes, named ``{PatientID}_{StudyUID}_{View}`` or by DICOM path; a box applies to the
        slices within VolumeSlices / 4 of its central slice (``lesion_slices``). Without a VolumeSlices column
        the slice count is read from the DICOM header, when a slice is first asked for."""
        volumes: dict[str, list[DbtBox]] = {}
        aliases: dict[str | Path, str] = {}
        for record in read_bcs_dbt_boxes(boxes_csv, filepaths_csv, path_column, root):
            volumes.setdefault(record.name, []).append(record)
            aliases[record.path] = record.name
        return cls(boxes_csv, volume_boxes=volumes, aliases=aliases)

    @classmethod
    def from_mask_folder(cls, folder: str | Path, axis: int = 2) -> AnnotationSet:
        """Mask images named like their images, searched recursively: ``masks/p1/case_01.png`` is the mask of
        ``p1/case_01`` (``images/p1/case_01.dcm``).

        A pixel is lesion where the stored label is above 0 (PNG, NIfTI, TIFF, DICOM); JPEG masks are lossy and are
        binarised at mid-grey (stored value > 127 of 255) instead. Files without an image suffix (notes, CSVs) and
        hidden files and folders (temporaries) are skipped.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise AnnotationError(folder, "mask folder not found")
        files = {}
        for entry in sorted(folder.rglob("*")):
            relative = entry.relative_to(folder)
            hidden = any(part.startswith(".") for part in relative.parts)
            if not hidden and entry.is_file() and image_key(entry.name) != entry.name:
                files[relative.as_posix()] = entry
        if not files:
            raise AnnotationError(folder, "mask folder holds no image files")
        return cls(folder, mask_files=files, mask_axis=axis)

    def names(self) -> list[str]:
        """Names of the annotated images (abnormal ones), sorted: relative paths without image suffix."""
        return sorted(self._names)

    def _key(self, image_name: str | Path) -> str | None:
        """The annotation name an image takes: the name itself, its DICOM path's volume, or the longest name ending
        its path; None when no name does."""
        name = str(image_name)
        if name in self._names:
            return name
        return self._aliases.get(image_identity(name)) or self._index.find(name)

    def match(self, images: Sequence[str | Path]) -> list[str | None]:
        """The annotation name each image takes (None: not annotated, a normal image), refusing ambiguous names.

        Args:
            images: paths (or annotation names) of all the images being listed or evaluated; several items naming
                one file (slices of a volume) are one image.

        Raises:
            AnnotationError: one annotation name would be taken by two or more of the images (``img`` by
                ``p1/img.png`` and ``p2/img.png``), so the annotation must name them by relative path.
        """
        keys = [self._key(image) for image in images]
        takers: dict[str, dict[str, str]] = {}
        for image, key in zip(images, keys, strict=True):
            if key is not None:
                takers.setdefault(key, {}).setdefault(image_identity(image), str(image))
        for key, files in takers.items():
            if len(files) > 1:
                shown = sorted(files.values())
                depth = len(name_parts(key)) + 1
                example = PurePosixPath(*Path(shown[0]).parts[-depth:]).as_posix()
                raise AnnotationError(
                    self.source,
                    f"'{key}' would name {len(shown)} images ({', '.join(shown[:5])}{' ...' * (len(shown) > 5)}): "
                    f"name each image by its path relative to the annotated root, such as '{example}'",
                )
        return keys

    def boxes_for(self, image_name: str | Path, *, index: int | None = None) -> list[Box]:
        """Boxes of an image (a circle gives its bounding box); [] for an image without annotation.

        Args:
            image_name: the image's path (matched as in ``mask_for``), annotation name, or DBT DICOM path.
            index: slice of a BCS-DBT volume: only the boxes that apply to it (``lesion_slices``); None gives every
                box of the volume. 2-D boxes and circles apply to every slice.
        """
        key = self._key(image_name)
        if key is None:
            return []
        if key in self._mask_files:
            raise AnnotationError(self.source, f"image '{image_name}' is annotated by a mask image, not by boxes")
        self._refuse_unlocalised(key, image_name)
        if key in self._volume_boxes and index is None:
            return [record.box for record in self._volume_boxes[key]]
        return [item if isinstance(item, Box) else item.box for item in self._shapes_of(key, index, image_name)]

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
            image_name: the image's path (it takes the longest annotation name ending its path, suffix aside), an
                annotation name as ``names`` or ``match`` give it, or a BCS-DBT volume's DICOM path.
            shape: (H, W) of the image as stored, before orientation.
            index: slice of a 3-D mask file (None: its central slice) or of a BCS-DBT volume (required: boxes
                apply to the slices near their central slice); 2-D boxes and circles apply to every slice.
            orientation: the reader's orientation of this image; ``orientation.apply`` is applied to the mask so
                it follows an image that was flipped, e.g. left-aligned.
        """
        key = self._key(image_name)
        if key is not None:
            self._refuse_unlocalised(key, image_name)
        if key in self._mask_files:
            mask_file = self._mask_files[key]
            mask = self._read_mask_file(mask_file, index)
            if mask.shape != tuple(shape):
                raise AnnotationError(
                    mask_file,
                    f"mask is {mask.shape[0]} x {mask.shape[1]} but image '{image_name}' is {shape[0]} x {shape[1]}",
                )
        else:
            shapes = [] if key is None else self._shapes_of(key, index, image_name)
            mask = masks_from_shapes(shapes, shape, source=self.source, image_name=str(image_name))
        if orientation is not None:
            mask = np.ascontiguousarray(orientation.apply(mask), dtype=bool)
        return mask

    def _refuse_unlocalised(self, key: str, image_name: str | Path) -> None:
        if key in self._unlocalised:
            raise AnnotationError(self.source, f"image '{image_name}' is abnormal but has lesions without coordinates")

    def _shapes_of(self, key: str, index: int | None, image_name: str | Path) -> list[Shape]:
        """Shapes of an annotated image on slice ``index``."""
        if key not in self._volume_boxes:
            return list(self._shapes.get(key, []))
        if index is None:
            raise AnnotationError(
                self.source, f"'{image_name}' is a tomosynthesis volume whose boxes apply to the slices near their "
                "central slice: the slice index is needed"
            )
        return [record.box for record in self._volume_boxes[key] if index in record.slices(self._n_slices(record))]

    def _n_slices(self, record: DbtBox) -> int:
        """Slices of a BCS-DBT box's volume: its VolumeSlices, else the DICOM header's (read once per volume)."""
        if record.volume_slices is not None:
            return record.volume_slices
        if record.path not in self._header_slices:
            from picard_ad.io import read_header

            try:
                self._header_slices[record.path] = read_header(record.path).n_slices
            except InputError as error:
                raise AnnotationError(
                    self.source, f"no VolumeSlices column, and the slice count of {record.name} cannot be read "
                    f"from its DICOM header: {error}"
                ) from None
        n_slices = self._header_slices[record.path]
        if record.slice >= n_slices:
            raise AnnotationError(
                self.source, f"{record.name}: slice {record.slice} is outside the volume ({n_slices} slices in "
                f"{record.path})"
            )
        return n_slices

    def _read_mask_file(self, mask_file: Path, index: int | None) -> np.ndarray:
        from picard_ad.io import read_image, read_mask

        if mask_file.suffix.lower() in (".jpg", ".jpeg"):
            # JPEG is lossy: faint compression noise around the outline is not lesion, so binarise at mid-grey.
            return read_image(mask_file, index, axis=self._mask_axis).pixels > 0.5
        return np.asarray(read_mask(mask_file, index=index, axis=self._mask_axis), dtype=bool)
