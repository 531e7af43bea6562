"""Heatmaps as DICOM, made with highdicom: a Parametric Map of the float heatmap and a binary Segmentation of
heatmap > threshold, both derived from the source image so that viewers (OHIF, 3D Slicer) open them over it.

Both share the source's study and Frame of Reference and reference its SOP Instance. A single-frame source gives
one frame in the source's geometry; a multi-frame source (breast tomosynthesis, enhanced CT or MR) gives one frame
per heatmap slice, at its source frame's plane position and referencing that frame (highdicom orders the frames
along the slice normal). A source without patient geometry (no Frame of Reference or no ImagePositionPatient:
secondary capture, CR, most projection mammograms) gets the Segmentation of its one frame, which then lies over
the source's pixels, but no Parametric Map (``parametric_map_refusal``); multi-frame sources need the enhanced
functional groups. What a source lacks is refused with one line (``InputError``) before highdicom is called, and
whatever highdicom still refuses is reported the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picard_ad.errors import InputError, MissingDependencyError

PARAMETRIC_MAP_SERIES_NUMBER = 9801  # high, so the derived series sort after the acquired ones
SEGMENTATION_SERIES_NUMBER = 9802
# A local code (DICOM PS3.16 8.2: coding scheme designators starting with "99" are private to their maker).
ANOMALY_SCORE = ("ANOMALY_SCORE", "99PICARDAD", "anomaly score")


@dataclass(frozen=True)
class ResultProvenance:
    """What made the heatmaps: written as the equipment and the algorithm identification of the DICOM results.

    method, score: the registered method and the score of its heatmap, e.g. "picard", "mcd-image".
    version: picard-ad's version. model_sha256: SHA-256 of the fitted state (the method's identity).
    """

    method: str
    score: str
    version: str
    model_sha256: str


def _highdicom():
    try:
        import highdicom
    except ImportError:
        raise MissingDependencyError("highdicom", "writing heatmaps as DICOM (dicom_output)") from None
    return highdicom


# Type 2 patient and study attributes that highdicom copies from the source (present, possibly empty, in a valid
# image; files made by research tools often leave them out).
_COPIED_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                  "StudyDate", "StudyTime", "ReferringPhysicianName")  # fmt: skip


def read_source(path: str | Path):
    """The source DICOM's header (pixel data left out: highdicom needs only its metadata), with the patient and
    study attributes highdicom copies made empty where the file lacks them. The UIDs the results reference must
    be there."""
    import pydicom

    source = pydicom.dcmread(path, stop_before_pixels=True)
    missing = [keyword for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
               if not source.get(keyword)]  # fmt: skip
    if missing:
        raise InputError(path, f"the source lacks {', '.join(missing)}, which DICOM results must reference")
    for keyword in _COPIED_TYPE_2:
        if keyword not in source:
            setattr(source, keyword, "")
    return source


def _n_frames(source) -> int:
    return int(source.get("NumberOfFrames") or 1)


def check_source(source, path: str | Path, frames: Sequence[int], shape: tuple[int, ...]) -> None:
    """Refuse, with one line, a source that highdicom cannot derive these results from.

    frames: 0-based source frames the heatmaps belong to. shape: (frames, rows, cols) of the heatmaps, which must
    be in the source's geometry.
    """
    _highdicom()
    from highdicom._standard_utils import is_multiframe_image
    from highdicom.spatial import CoordinateSystemNames, get_image_coordinate_system

    rows, cols, n_frames = int(source.Rows), int(source.Columns), _n_frames(source)
    if tuple(shape) != (len(frames), rows, cols):
        raise InputError(path, f"heatmaps of shape {tuple(shape)} do not match the {len(frames)} source frame(s) "
                         f"of {rows} x {cols}; DICOM results need the heatmap in the source's geometry")  # fmt: skip
    if not frames or min(frames) < 0 or max(frames) >= n_frames or len(set(frames)) != len(frames):
        raise InputError(path, f"frames {list(frames)} are not distinct frames of the {n_frames} of the source")
    system = get_image_coordinate_system(source)
    if system == CoordinateSystemNames.SLIDE:
        raise InputError(path, "DICOM results of slide microscopy images are not supported")
    if system is None:
        if n_frames > 1:
            raise InputError(path, f"a multi-frame source ({n_frames} frames) without per-frame geometry (Frame of "
                             "Reference UID and plane positions in the functional groups) cannot get DICOM results: "
                             "their frames could not be placed")  # fmt: skip
        return
    if is_multiframe_image(source):
        shared = (source.get("SharedFunctionalGroupsSequence") or [None])[0]
        per_frame = source.get("PerFrameFunctionalGroupsSequence") or []
        missing = [f"{keyword} in the shared functional groups"
                   for keyword in ("PlaneOrientationSequence", "PixelMeasuresSequence")
                   if shared is None or keyword not in shared]  # fmt: skip
        if len(per_frame) != n_frames or any("PlanePositionSequence" not in item for item in per_frame):
            missing.append("a PlanePositionSequence per frame")
    else:
        missing = [keyword for keyword in ("ImageOrientationPatient", "PixelSpacing", "SliceThickness")
                   if keyword not in source]  # fmt: skip
    if missing:
        raise InputError(path, f"the source has ImagePositionPatient but lacks {', '.join(missing)}, which DICOM "
                         "results need to be placed over it")  # fmt: skip


def parametric_map_refusal(source) -> str | None:
    """Why no Parametric Map can be made from ``source``, or None when one can.

    highdicom (0.28) builds an inconsistent dimension index for a Parametric Map whose source has no patient
    geometry and then refuses it, so such sources (secondary capture, CR, most projection mammograms) get the
    Segmentation only, which highdicom makes for them.
    """
    _highdicom()
    from highdicom.spatial import get_image_coordinate_system

    if get_image_coordinate_system(source) is None:
        return ("the source has no patient geometry (Frame of Reference UID and ImagePositionPatient or plane "
                "positions), and highdicom makes Parametric Maps only of sources that have it")  # fmt: skip
    return None


def _geometry(source, frames: Sequence[int]) -> dict:
    """highdicom's plane_positions and pixel_measures for a subset of a multi-frame source's frames; {} when the
    results cover the source's frames one to one (highdicom then copies the source's geometry)."""
    hd = _highdicom()
    from highdicom.spatial import get_image_coordinate_system
    from highdicom.utils import get_plane_positions_of_image

    if list(frames) == list(range(_n_frames(source))) or get_image_coordinate_system(source) is None:
        return {}
    positions = get_plane_positions_of_image(source)
    shared = source.SharedFunctionalGroupsSequence[0]
    return {
        "plane_positions": [positions[index] for index in frames],
        "pixel_measures": hd.PixelMeasuresSequence.from_sequence(shared.PixelMeasuresSequence),
    }


def _equipment(provenance: ResultProvenance) -> dict:
    return {
        "manufacturer": "picard-ad",
        "manufacturer_model_name": f"picard-ad {provenance.method}"[:64],
        "software_versions": provenance.version,
        "device_serial_number": provenance.model_sha256[:16],  # the fitted model, as a device would be identified
    }


def _built(path: str | Path, kind: str, build):
    """Call a highdicom constructor; its refusals become one-line input errors."""
    try:
        return build()
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        from picard_ad.io.base import one_line

        reason = one_line(exc) or type(exc).__name__
        raise InputError(path, f"highdicom cannot derive a {kind} from this source: {reason}") from exc


def parametric_map(source, heatmaps: np.ndarray, frames: Sequence[int], provenance: ResultProvenance, path=None):
    """A Parametric Map of ``heatmaps``: (F, rows, cols) float32, stored as float pixel data with an identity real
    world value mapping (unit: UCUM "1", no units; quantity: anomaly score), one frame per source frame in
    ``frames``. NaN (unscored) pixels are kept; the value range and display window are those of the finite ones."""
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    heatmaps = np.ascontiguousarray(heatmaps, dtype=np.float32)
    check_source(source, path, frames, heatmaps.shape)
    refusal = parametric_map_refusal(source)
    if refusal is not None:
        raise InputError(path, refusal)
    finite = heatmaps[np.isfinite(heatmaps)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="SCORE",
        lut_explanation=f"{provenance.method} {provenance.score}"[:64],
        unit=codes.UCUM.NoUnits,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=hd.sr.CodedConcept(*ANOMALY_SCORE),
    )
    window = hd.VOILUTTransformation(window_center=(low + high) / 2, window_width=max(high - low, 1e-6))
    return _built(path, "Parametric Map", lambda: hd.pm.ParametricMap(
        source_images=[source],
        pixel_array=heatmaps,
        series_instance_uid=hd.UID(),
        series_number=PARAMETRIC_MAP_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[window],
        content_label="ANOMALY_MAP",
        content_description=f"picard-ad {provenance.method} heatmap ({provenance.score})"[:64],
        **_equipment(provenance),
        **_geometry(source, frames),
    ))  # fmt: skip


def segmentation(source, masks: np.ndarray, frames: Sequence[int], provenance: ResultProvenance, threshold: float,
                 path=None):  # fmt: skip
    """A binary Segmentation of ``masks`` ((F, rows, cols) bool, heatmap > ``threshold``) with one segment,
    "anomaly", one frame per source frame in ``frames`` (empty frames kept, so frames match the map's)."""
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    masks = np.ascontiguousarray(masks, dtype=bool)
    check_source(source, path, frames, masks.shape)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"picard-ad {provenance.method}"[:64],
        family=codes.DCM.ArtificialIntelligence,
        version=provenance.version,
        source="picard-ad",
        parameters={"score": provenance.score, "threshold": repr(float(threshold)),
                    "model_sha256": provenance.model_sha256},  # fmt: skip
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="anomaly",
        # CID 7150/7151: the closest standard codes for "a region the method finds abnormal".
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    return _built(path, "Segmentation", lambda: hd.seg.Segmentation(
        source_images=[source],
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=SEGMENTATION_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        omit_empty_frames=False,
        content_label="ANOMALY_SEG",
        content_description=f"picard-ad {provenance.method} {provenance.score} > {threshold:g}"[:64],
        **_equipment(provenance),
        **_geometry(source, frames),
    ))  # fmt: skip


def save_dataset(dataset, path: str | Path) -> None:
    """Write a DICOM dataset (with its file meta) atomically: a temporary beside ``path``, renamed into place."""
    from picard_ad.io.writers import atomic_path

    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
