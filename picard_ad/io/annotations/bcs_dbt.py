"""BCS-DBT lesion boxes: the boxes CSV joined with the file-paths CSV on (PatientID, StudyUID, View), and the
slices each box applies to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from picard_ad.errors import AnnotationError
from picard_ad.io.annotations.shapes import Box
from picard_ad.io.annotations.tables import (
    box_from_row,
    number_field,
    read_table,
    text_field,
)

_DBT_KEY = ("PatientID", "StudyUID", "View")


@dataclass(frozen=True)
class DbtBox:
    """One BCS-DBT lesion box, in the frame of the (laterality-flipped) volume, with its DICOM file."""

    patient_id: str
    study_uid: str
    view: str
    slice: int  # 0-based index of the lesion's central slice
    box: Box
    path: Path
    volume_slices: int | None = None
    label: str | None = None  # the Class column (benign / cancer) when present

    @property
    def name(self) -> str:
        """Image name used by AnnotationSet: ``{PatientID}_{StudyUID}_{View}``."""
        return f"{self.patient_id}_{self.study_uid}_{self.view}"

    def slices(self, n_slices: int) -> range:
        """Slice indices the box applies to (``lesion_slices``) in a volume of ``n_slices`` slices."""
        return lesion_slices(self.slice, n_slices)


def lesion_slices(central: int, n_slices: int) -> range:
    """Slices a BCS-DBT box applies to: those within ``n_slices / 4`` of its central slice, inside the volume.

    BCS-DBT gives each lesion's central slice only. This is the rule of the BCS-DBT / DBTex evaluation: ``evaluate``
    in ``duke_dbt_data.py`` (github.com/MaciejMazurowski/duke-dbt-data) sets ``view_slice_offset = VolumeSlices / 4``
    and counts a prediction as a true positive only if ``abs(pred_slice - box.Slice) <= view_slice_offset``
    (Buda et al., "A Data Set and Deep Learning Algorithm for the Detection of Masses and Architectural
    Distortions in Digital Breast Tomosynthesis Images", JAMA Network Open 2021).

    Args:
        central: 0-based index of the box's central slice (the ``Slice`` column).
        n_slices: slices in the volume (the ``VolumeSlices`` column, or the DICOM header's frame count).
    """
    # Slice indices are whole, so |index - central| <= n_slices / 4 holds exactly when it holds for n_slices // 4.
    offset = n_slices // 4
    return range(max(central - offset, 0), min(central + offset, n_slices - 1) + 1)


def read_bcs_dbt_boxes(
    boxes_csv: str | Path,
    filepaths_csv: str | Path,
    path_column: str = "descriptive_path",
    root: str | Path | None = None,
) -> list[DbtBox]:
    """BCS-DBT boxes joined with their DICOM paths on (PatientID, StudyUID, View).

    Args:
        boxes_csv: boxes file (PatientID, StudyUID, View, X, Y, Width, Height, Slice; optional VolumeSlices, Class).
        filepaths_csv: file-paths file (PatientID, StudyUID, View and ``path_column``).
        path_column: ``descriptive_path`` or ``classic_path``.
        root: folder the paths are relative to; paths are used as written when None.
    """
    boxes_csv, filepaths_csv = Path(boxes_csv), Path(filepaths_csv)
    paths: dict[tuple[str, str, str], str] = {}
    for line, row in read_table(filepaths_csv, (*_DBT_KEY, path_column)):
        key = _dbt_key(row, filepaths_csv, line)
        value = text_field(row, path_column, filepaths_csv, line)
        if paths.setdefault(key, value) != value:
            raise AnnotationError(filepaths_csv, f"line {line}: {_describe(key)} is listed with two different paths")
    records = []
    for line, row in read_table(boxes_csv, (*_DBT_KEY, "X", "Y", "Width", "Height", "Slice")):
        key = _dbt_key(row, boxes_csv, line)
        if key not in paths:
            raise AnnotationError(boxes_csv, f"line {line}: no row for {_describe(key)} in {filepaths_csv}")
        label = row.get("Class") or None
        box = box_from_row(row, ("X", "Y", "Width", "Height"), label, boxes_csv, line)
        central = number_field(row, "Slice", boxes_csv, line, whole=True)
        slices = number_field(row, "VolumeSlices", boxes_csv, line, whole=True) if row.get("VolumeSlices") else None
        if central < 0 or (slices is not None and central >= slices):
            raise AnnotationError(boxes_csv, f"line {line}: slice {central} is outside the volume ({slices} slices)")
        path = Path(paths[key]) if root is None else Path(root) / paths[key]
        records.append(DbtBox(row["PatientID"], row["StudyUID"], row["View"], central, box, path, slices, label))
    return records


def _dbt_key(row: dict[str, str], path: Path, line: int) -> tuple[str, str, str]:
    patient, study, view = (text_field(row, column, path, line) for column in _DBT_KEY)
    return patient, study, view.lower()


def _describe(key: tuple[str, str, str]) -> str:
    return ", ".join(f"{column}={value}" for column, value in zip(_DBT_KEY, key, strict=True))
