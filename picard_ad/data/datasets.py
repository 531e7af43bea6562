"""Dataset adapters: phantoms, folders of annotated images, BCS-DBT volumes and BraTS-like NIfTI cases as Samples.

Every adapter returns a list of :class:`~picard_ad.data.samples.Sample` whose images are loaded on demand:
listing a dataset reads file headers and the annotations needed to label each image (box CSVs, mask images of
mask folders, NIfTI label volumes), never the images themselves. The loaders
(``picard_ad.data.samples``) are small picklable objects, so sample lists can be handed to worker processes.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel
import numpy as np

from picard_ad.data.phantoms import PhantomConfig, _image_seed
from picard_ad.data.samples import (
    AnnotatedMask,
    LabelSlice,
    PhantomArray,
    Sample,
    SliceImage,
    VolumeSlice,
)
from picard_ad.errors import (
    AnnotationError,
    CorruptFileError,
    InputError,
    UnsupportedFormatError,
)
from picard_ad.io import find_images, read_header
from picard_ad.io.annotations import (
    AnnotationSet,
    DbtBox,
    image_key,
    read_annotations,
    read_bcs_dbt_boxes,
)

__all__ = ["bcs_dbt_dataset", "folder_dataset", "nifti_label_dataset", "phantom_dataset"]


# --- phantoms -------------------------------------------------------------------------------------------------------


def phantom_dataset(
    n_normal: int, n_abnormal: int, config: PhantomConfig = PhantomConfig(), seed: int = 0
) -> list[Sample]:
    """Synthetic breast phantoms in memory, generated when first loaded; each phantom is its own patient.

    Names, seeds and lesion counts are those of ``write_phantom_dataset(out, n_normal, n_abnormal, config,
    seed)``, so the samples equal the images that function writes (before 16-bit quantisation).

    Args:
        n_normal, n_abnormal: phantoms without and with lesions (lesions per abnormal phantom drawn from
            ``config.lesions_per_image``).
        config: generator settings.
        seed: dataset seed (non-negative integer).
    """
    for name, count in (("n_normal", n_normal), ("n_abnormal", n_abnormal), ("seed", seed)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {count!r}")
    samples = []
    for label, count in (("normal", n_normal), ("abnormal", n_abnormal)):
        for index in range(count):
            name = f"{label}_{index:04d}"
            image_seed, count_seed = _image_seed(int(seed), label, index)
            low, high = config.lesions_per_image
            n_lesions = 0 if label == "normal" else int(np.random.default_rng(count_seed).integers(low, high + 1))
            samples.append(
                Sample(
                    name=name,
                    patient_id=name,
                    label=label,
                    image=PhantomArray(config, image_seed, n_lesions, "image"),
                    lesion_mask=None if label == "normal" else PhantomArray(config, image_seed, n_lesions, "lesion"),
                    tissue_mask=PhantomArray(config, image_seed, n_lesions, "tissue"),
                    info={"seed": image_seed, "n_lesions": n_lesions},
                )
            )
    return samples


# --- folders of images --------------------------------------------------------------------------------------------


def _patient_of(relative: str, pattern: re.Pattern | None, path: Path, name: str) -> str:
    if pattern is None:
        return name
    match = pattern.search(relative)
    if match is None:
        raise InputError(path, f"file name does not match patient_pattern {pattern.pattern!r}")
    return match.group(1) if pattern.groups else match.group(0)


def folder_dataset(
    images_dir: str | Path,
    annotations: str | Path | None = None,
    *,
    patient_pattern: str | None = None,
    normalization: str = "auto",
) -> list[Sample]:
    """The images of a folder (searched recursively), one sample per file (a volume's central slice).

    Args:
        images_dir: folder of images in any format ``picard_ad.io`` reads.
        annotations: a folder of mask images named like the images, a boxes CSV (image,x,y,width,height), a
            circles CSV (image,x,y,radius) or ``bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]``, as for
            ``picard-ad evaluate``; an annotation names an image by its path relative to the annotated root, and
            one that would name two of the images is refused (``AnnotationSet.match``). Images without annotation,
            or with an empty mask, are normal; None: all normal.
        patient_pattern: regular expression searched in each image's path relative to ``images_dir`` (POSIX
            separators); its first group (or the whole match) is the patient id. None: every image is its own
            patient, named by its relative path without suffix.
        normalization: intensity mapping of ``read_image``.

    Every header is read now, so an unreadable file fails at once with an error naming it; images are decoded
    only when loaded, mask images of a mask folder now (to tell empty masks from lesions).
    """
    images_dir = Path(images_dir)
    paths = find_images(images_dir)
    if not paths:
        raise InputError(images_dir, "no images found in this folder or its subfolders")
    annotation_set, drawn_as_shapes = (None, True) if annotations is None else read_annotations(annotations)
    keys = [None] * len(paths) if annotation_set is None else annotation_set.match(paths)
    pattern = None if patient_pattern is None else re.compile(patient_pattern)
    samples, seen = [], {}
    for path, key in zip(paths, keys, strict=True):
        relative = path.relative_to(images_dir)
        name = (relative.parent / image_key(path)).as_posix()
        if name in seen:
            raise InputError(images_dir, f"'{seen[name].name}' and '{path.name}' are both image '{name}'")
        seen[name] = path
        header = read_header(path)
        index, shape = header.n_slices // 2, (header.rows, header.cols)
        lesion = None
        if key is not None:
            mask = AnnotatedMask(annotation_set, key, shape, index)
            abnormal = bool(annotation_set.boxes_for(key, index=index)) if drawn_as_shapes else bool(mask().any())
            lesion = mask if abnormal else None
        samples.append(
            Sample(
                name=name,
                patient_id=_patient_of(relative.as_posix(), pattern, path, name),
                label="normal" if lesion is None else "abnormal",
                image=SliceImage(path, index, normalization),
                lesion_mask=lesion,
                path=path,
                slice_index=index,
                normalization=normalization,
            )
        )
    return samples


# --- BCS-DBT ------------------------------------------------------------------------------------------------------


def _csv_rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV whose header holds ``required``; values stripped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(path, f"missing columns {', '.join(missing)}")
            return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise AnnotationError(path, f"malformed CSV ({error})") from None


def _dbt_volume_key(row: dict[str, str]) -> tuple[str, str, str]:
    # as read_bcs_dbt_boxes joins them: the View column is matched case-insensitively
    return row["PatientID"], row["StudyUID"], row["View"].lower()


def _normal_dbt_samples(
    normal_list: Path, filepaths_csv: Path, path_column: str, root: Path | None, abnormal: set[str], normalization: str
) -> list[Sample]:
    listed = _csv_rows(filepaths_csv, ("PatientID", "StudyUID", "View", path_column))
    paths = {_dbt_volume_key(row): row[path_column] for _, row in listed}
    samples = []
    for line, row in _csv_rows(normal_list, ("PatientID", "StudyUID", "View")):
        if row.get("Normal", "1") not in ("1", "1.0", "true", "True"):
            continue
        key = _dbt_volume_key(row)
        name = f"{row['PatientID']}_{row['StudyUID']}_{row['View']}"
        if key not in paths:
            raise AnnotationError(normal_list, f"line {line}: volume {name} has no row in {filepaths_csv}")
        if name in abnormal:
            raise AnnotationError(normal_list, f"line {line}: volume {name} is listed as normal but has lesion boxes")
        path = Path(paths[key]) if root is None else root / paths[key]
        n_slices = read_header(path).n_slices
        text = row.get("Slice", "")
        if text and not text.isdigit():
            raise AnnotationError(normal_list, f"line {line}: Slice must be a whole number, got {text!r}")
        index = int(text) if text else n_slices // 2
        if index >= n_slices:
            raise AnnotationError(normal_list, f"line {line}: slice {index} is outside the volume ({n_slices} slices)")
        samples.append(
            Sample(
                name=f"{name}_slice{index:03d}",
                patient_id=row["PatientID"],
                label="normal",
                image=SliceImage(path, index, normalization),
                path=path,
                slice_index=index,
                normalization=normalization,
                info={"study_uid": row["StudyUID"], "view": row["View"]},
            )
        )
    return samples


def bcs_dbt_dataset(
    boxes_csv: str | Path,
    filepaths_csv: str | Path,
    root: str | Path | None = None,
    normal_list: str | Path | None = None,
    *,
    path_column: str = "descriptive_path",
    normalization: str = "auto",
) -> list[Sample]:
    """Slices of BCS-DBT tomosynthesis volumes (DICOM): each annotated slice of an abnormal volume, and normals.

    Abnormal volumes give one sample per distinct annotated central slice; its lesion mask holds the boxes that
    apply to that slice, those within VolumeSlices / 4 of their central slice as in the BCS-DBT evaluation
    (``lesion_slices``; without a VolumeSlices column, the DICOM header's slice count), and ``info["classes"]``
    their Class labels. Normal volumes give the slice chosen in ``normal_list`` (column ``Slice``) or their central
    slice. The patient id is the PatientID. The reader's frame is used as stored: volumes whose stored laterality
    disagrees with their View (which the Duke loader rotates) get misplaced boxes.

    Args:
        boxes_csv: BCS-DBT boxes (PatientID, StudyUID, View, X, Y, Width, Height, Slice; optional VolumeSlices,
            Class).
        filepaths_csv: BCS-DBT file paths (PatientID, StudyUID, View and ``path_column``).
        root: folder the paths are relative to; None: as written.
        normal_list: CSV with PatientID, StudyUID, View and optional Slice; when it has a ``Normal`` column (the
            BCS-DBT labels file), only rows with Normal = 1 are used. None: no normal samples.
        path_column: "descriptive_path" or "classic_path".
        normalization: intensity mapping of ``read_image``.
    """
    boxes_csv, filepaths_csv = Path(boxes_csv), Path(filepaths_csv)
    root = None if root is None else Path(root)
    volumes: dict[str, list[DbtBox]] = {}
    for record in read_bcs_dbt_boxes(boxes_csv, filepaths_csv, path_column, root):
        volumes.setdefault(record.name, []).append(record)
    headers = {name: read_header(records[0].path) for name, records in volumes.items()}
    for name, records in volumes.items():
        n_slices = headers[name].n_slices
        for record in records:
            if record.slice >= n_slices:
                raise AnnotationError(boxes_csv, f"{name}: slice {record.slice} is outside the volume ({n_slices} "
                                      f"slices in {record.path})")
        # Without a VolumeSlices column the header's slice count, read here anyway, sets where each box applies.
        volumes[name] = [r if r.volume_slices else dataclasses.replace(r, volume_slices=n_slices) for r in records]
    annotations = AnnotationSet(boxes_csv, volume_boxes=volumes)
    samples = []
    for name, records in volumes.items():
        first, header = records[0], headers[name]
        for index in sorted({record.slice for record in records}):
            here = [record for record in records if index in record.slices(record.volume_slices)]
            samples.append(
                Sample(
                    name=f"{name}_slice{index:03d}",
                    patient_id=first.patient_id,
                    label="abnormal",
                    image=SliceImage(first.path, index, normalization),
                    lesion_mask=AnnotatedMask(annotations, name, (header.rows, header.cols), index),
                    path=first.path,
                    slice_index=index,
                    normalization=normalization,
                    info={"study_uid": first.study_uid, "view": first.view,
                          "classes": sorted({r.label for r in here if r.label})},
                )
            )
    if normal_list is not None:
        samples += _normal_dbt_samples(Path(normal_list), filepaths_csv, path_column, root, set(volumes), normalization)
    return samples


# --- NIfTI cases with label volumes -------------------------------------------------------------------------------


def _files_by_case(root: Path, pattern: str, what: str) -> dict[str, Path]:
    """Files matching ``pattern`` under ``root``, keyed by their folder relative to root (the case)."""
    found: dict[str, Path] = {}
    for path in sorted(root.glob(pattern)):
        if not path.is_file():
            continue
        case = path.parent.relative_to(root).as_posix()
        if case in found:
            raise InputError(path.parent, f"two {what} files match {pattern!r}: {found[case].name}, {path.name}")
        found[case] = path
    return found


def _volume(path: Path) -> np.ndarray:
    """All stored values of a 3-D NIfTI volume (trailing length-1 axes dropped)."""
    try:
        data = np.asarray(nibabel.load(path).dataobj)
    except Exception as exc:  # nibabel raises many types on damaged headers or truncated data
        raise CorruptFileError(path, f"cannot read the NIfTI volume: {type(exc).__name__}: {exc}") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UnsupportedFormatError(path, f"expected a 3-D volume, got shape {data.shape}")
    return data


def _slices_with(volume: np.ndarray, axis: int) -> np.ndarray:
    """(n_slices,) bool: whether each slice along ``axis`` holds a value > 0."""
    others = tuple(a for a in range(3) if a != axis)
    return (volume > 0).any(axis=others)


def nifti_label_dataset(
    root: str | Path,
    image_glob: str = "*/Flair*.nii.gz",
    label_glob: str = "*/OT*.nii.gz",
    brain_mask_glob: str | None = None,
    axis: int = 2,
    *,
    normalization: str = "auto",
) -> list[Sample]:
    """Slices of NIfTI cases with label volumes (BraTS-like): a slice with any label > 0 is abnormal.

    Files are paired by case folder (the folder holding the image, relative to ``root``), which is also the
    patient id. Label volumes (and brain masks) are decoded now to label the slices; images when loaded, one
    volume at a time.

    Args:
        root: folder of case folders.
        image_glob, label_glob, brain_mask_glob: patterns relative to ``root``; one file per case each.
        brain_mask_glob: optional tissue masks (> 0 is tissue); slices without any tissue are left out.
        axis: slicing axis of the stored array (2: axial for BraTS).
        normalization: intensity mapping of ``read_image`` ("auto": volume-wide).

    Returns:
        One sample per slice, named ``{case}_slice{index:03d}``, in case and slice order.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "folder not found")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    images = _files_by_case(root, image_glob, "image")
    if not images:
        raise InputError(root, f"no files match {image_glob!r}")
    labels = _files_by_case(root, label_glob, "label")
    tissues = {} if brain_mask_glob is None else _files_by_case(root, brain_mask_glob, "brain mask")
    for what, pattern, found in (("label", label_glob, labels), ("brain mask", brain_mask_glob, tissues)):
        if pattern is None:
            continue
        unpaired = sorted(set(images) ^ set(found))
        if unpaired:
            raise AnnotationError(root, f"cases without both an image ({image_glob!r}) and a {what} ({pattern!r}): "
                                  f"{', '.join(unpaired[:5])}")
    samples = []
    for case, image_path in sorted(images.items()):
        label_volume = _volume(labels[case])
        shape = read_header(image_path).stored_shape
        if shape[:3] != label_volume.shape or any(n != 1 for n in shape[3:]):
            raise AnnotationError(
                labels[case], f"label volume is {label_volume.shape} but image {image_path.name} is {shape}"
            )
        abnormal = _slices_with(label_volume, axis)
        keep = np.ones_like(abnormal)
        if case in tissues:
            tissue_volume = _volume(tissues[case])
            if tissue_volume.shape != label_volume.shape:
                raise AnnotationError(tissues[case], f"brain mask is {tissue_volume.shape} but the label volume is "
                                      f"{label_volume.shape}")
            keep = _slices_with(tissue_volume, axis)
        for index in np.flatnonzero(keep):
            index = int(index)
            samples.append(
                Sample(
                    name=f"{case}_slice{index:03d}",
                    patient_id=case,
                    label="abnormal" if abnormal[index] else "normal",
                    image=VolumeSlice(image_path, index, axis, normalization),
                    lesion_mask=LabelSlice(labels[case], index, axis) if abnormal[index] else None,
                    tissue_mask=LabelSlice(tissues[case], index, axis) if case in tissues else None,
                    path=image_path,
                    slice_index=index,
                    axis=axis,
                    normalization=normalization,
                )
            )
    return samples
