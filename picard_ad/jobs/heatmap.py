"""The heatmap job behind ``picard-ad heatmap``: any fitted method over images, folders, DICOM volumes and NIfTI.

Per output unit (a slice of a 2D image or DICOM file; a whole NIfTI file) it writes the float32 heatmap in the
input's geometry (orientation undone): ``NAME_heatmap.npy``, or ``NAME_heatmap.nii.gz`` with the input's affine
for NIfTI (slices not asked for are NaN), written first; ``NAME_overlay.png`` per slice (scan, colour-mapped
heatmap, annotation outlines; drawn from a preview of bounded size), whose failure (say, memory) is a warning
that loses nothing else; and ``NAME.json``, the sidecar (strict JSON), written last: it lists each output with
its size and SHA-256, and the overlays that could not be written under ``missing_outputs``.

A unit whose sidecar exists, matches the method, its result-changing settings and the input, and whose outputs
still have the recorded size and SHA-256, is skipped, so an interrupted run over a large folder continues where
it stopped; a unit with a missing or changed output is computed again. Temporaries that killed runs left in an
output folder are removed when a run first writes there (``remove_stale_temporaries`` states the rule).

With ``dicom_output``, a DICOM input also gets its results as DICOM objects over the source (made with highdicom,
see ``picard_ad.io.dicom_results``): ``NAME_pmap.dcm``, a Parametric Map of its heatmaps, and ``NAME_seg.dcm``, a
binary Segmentation of heatmap > ``segmentation_threshold`` (none without a threshold: the job has no calibrated
one), one frame per slice, with their sidecar ``NAME_dicom.json``, resumed like a unit.

``heatmap_inputs`` lists the inputs, ``HeatmapRunner.run`` does one of them.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from picard_ad.config import check_settings, setting
from picard_ad.errors import ConfigError, InputError

if TYPE_CHECKING:
    from picard_ad.methods.base import AnomalyMethod

SIDECAR_FORMAT = "picard-ad/heatmap"
DICOM_SIDECAR_FORMAT = "picard-ad/heatmap-dicom"  # NAME_dicom.json: the DICOM results of one DICOM input
SIDECAR_VERSION = 3  # 3: "files" (size and SHA-256 of each output) and "missing_outputs"


class OverlayWarning(UserWarning):
    """An overlay could not be drawn; the heatmap and the sidecar were written all the same."""


class DicomOutputWarning(UserWarning):
    """A DICOM result (dicom_output) was not written; the heatmaps and sidecars were written all the same."""


def parse_slices(text: str) -> list[int] | None:
    """Slice indices of "all" (None) or "0,5,10-12" ([0, 5, 10, 11, 12])."""
    text = str(text).strip()
    if text == "all":
        return None
    indices: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            start, stop = int(first), int(last or first)
            if start < 0 or stop < start:
                raise ValueError(part)
            indices.extend(range(start, stop + 1))
    except ValueError:
        raise ConfigError(f"slices must be 'all' or indices and ranges like '0,5,10-12', got {text!r}") from None
    return sorted(set(indices))


@dataclass(frozen=True)
class HeatmapJob:
    """What ``picard-ad heatmap`` does besides the method's settings; YAML keys and flags share these names."""

    slices: str = setting("all", "slices of volumes: 'all' or indices and ranges such as '0,5,10-12' (2D images "
                          "have slice 0)")  # fmt: skip
    annotations: str | None = setting(None, "boxes CSV, circles CSV, mask folder or bcs-dbt:BOXES,FILE_PATHS[,ROOT];"
                                      " outlines drawn on the overlays")  # fmt: skip
    dicom_output: bool = setting(False, "DICOM inputs also get NAME_pmap.dcm (Parametric Map of the heatmap)"
                                 " and NAME_seg.dcm (Segmentation) over the source; other inputs: warning")  # fmt: skip
    segmentation_threshold: float | None = setting(None, "heatmap values above it are 'anomaly' in NAME_seg.dcm "
                                                   "(needs dicom_output); not given: no Segmentation, as the heatmap "
                                                   "job has no calibrated threshold")  # fmt: skip
    def __post_init__(self) -> None:
        check_settings(self)
        parse_slices(self.slices)
        if self.segmentation_threshold is not None and not self.dicom_output:
            raise ConfigError("segmentation_threshold is used only with dicom_output; give both or neither")


def heatmap_inputs(inputs: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(input file, output name relative to the output folder, without suffix) of every input file or folder;
    folders keep their layout. Two inputs that would write the same outputs are refused."""
    from picard_ad.io import find_images
    from picard_ad.io.annotations import image_key

    if any(not str(value).strip() for value in inputs):
        # An empty path (an unset shell variable, say) would otherwise mean the current folder, all of it.
        raise InputError(None, "an input path is empty")
    found: list[tuple[Path, Path]] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found.extend((file, file.relative_to(path).parent / image_key(file.name)) for file in find_images(path))
        else:
            found.append((path, Path(image_key(path.name))))
    names: dict[Path, Path] = {}
    for file, name in found:
        if name in names:
            raise ConfigError(f"{names[name]} and {file} would write the same outputs ({name}); give them separately")
        names[name] = file
    if not found:
        raise InputError(None, "no supported image files among the inputs")
    return found


def _input_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _finished(sidecar: Path, key: dict) -> bool:
    """Whether the sidecar's unit is finished with ``key``: same key, and every output it lists still has the
    recorded size and SHA-256."""
    from picard_ad.io.writers import dumps_json, file_digest

    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("format_version") != SIDECAR_VERSION:
        return False
    if data.get("key") != json.loads(dumps_json(key)):
        return False
    outputs, files = data.get("outputs"), data.get("files")
    if not isinstance(outputs, dict) or not isinstance(files, dict) or set(outputs.values()) != set(files):
        return False
    for name, recorded in files.items():
        path = sidecar.parent / name
        try:
            # The size first: a truncated file is caught without reading it.
            if path.stat().st_size != recorded.get("bytes") or file_digest(path) != recorded:
                return False
        except (OSError, AttributeError):
            return False
    return True


def _write_overlay(path: Path, pixels: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None, title: str) -> None:
    from picard_ad.report.montage import save_montage

    save_montage(path, [pixels], titles=[title], overlays=[heatmap], masks=[mask], panel_inches=8.0)


def _save_nifti(destination: Path, source: Path, heatmaps: dict[int, np.ndarray]) -> None:
    """A float32 NIfTI of the input's shape and affine holding the heatmap slices along axis 2 (others NaN).

    Slices follow the NIfTI reader's convention: stored axes as they are, slice i is ``data[:, :, i]``.
    """
    import nibabel

    original = nibabel.load(source)
    shape = tuple(int(n) for n in original.shape)
    effective = shape
    while len(effective) > 3 and effective[-1] == 1:
        effective = effective[:-1]
    data = np.full(effective, np.nan, dtype=np.float32)
    for index, heatmap in heatmaps.items():
        if len(effective) == 2:
            data[...] = heatmap
        else:
            data[:, :, index] = heatmap
    header = original.header.copy()
    header.set_data_dtype(np.float32)
    image = nibabel.Nifti1Image(data.reshape(shape), original.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    nibabel.save(image, destination)


class HeatmapRunner:
    """Computes and writes the outputs of one input after another with one fitted method.

    Args:
        method: the fitted method; its ``settings.score`` is the heatmap written.
        job: slices and annotations.
        out: the output folder.
        progress: progress bars per image.
        inputs: every input file of the run, so that annotation names are matched against all of them at once
            (an ambiguous name is refused before anything is computed).
    """

    def __init__(self, method: AnomalyMethod, job: HeatmapJob, out: Path, progress: bool, inputs: Sequence[Path]):
        from picard_ad import __version__
        from picard_ad.io.annotations import read_annotations

        self.method = method
        self.job = job
        self.out = out
        self.progress = progress
        self.version = __version__
        self.identity = method.identity()
        self.annotations = None
        self.annotation_names: dict[Path, str | None] = {}
        if job.annotations is not None:
            self.annotations = read_annotations(job.annotations).annotations
            self.annotation_names = dict(zip(inputs, self.annotations.match(list(inputs))))
        self.written = 0
        self.skipped = 0
        self.started = time.time()  # temporaries older than this, in folders this run writes to, are stale
        self.cleaned: set[Path] = set()
        self.warned_no_threshold = False

    def run(self, path: Path, name: Path) -> None:
        """Write the outputs of input ``path`` under ``out/name``, skipping finished units."""
        from picard_ad.io import read_header

        header = read_header(path)
        wanted = parse_slices(self.job.slices)
        slices = list(range(header.n_slices)) if wanted is None else wanted
        bad = [index for index in slices if index >= header.n_slices]
        if bad:
            raise InputError(path, f"slice {bad[0]} out of range: valid 0..{header.n_slices - 1}")
        identity = _input_identity(path)
        if header.format == "nifti":
            self._unit(path, name, slices, identity, volume=True)
        else:
            units = [name if header.n_slices == 1 else name.with_name(f"{name.name}_s{index:04d}") for index in slices]
            for index, unit_name in zip(slices, units):
                self._unit(path, unit_name, [index], identity, volume=False)
        if not self.job.dicom_output:
            return
        if header.format != "dicom":
            message = f"{path}: not a DICOM input, so no DICOM results (dicom_output); its heatmap is written"
            warnings.warn(DicomOutputWarning(message), stacklevel=2)
            return
        self._dicom_results(path, name, slices, units, identity)

    def _key(self, identity: dict[str, Any], slices: list[int]) -> dict[str, Any]:
        """What a finished output must have been computed with to be reused."""
        return {"method": self.identity, "score": self.method.settings.score, "input": identity, "slices": slices}

    def _clean(self, folder: Path) -> None:
        """Remove stale temporaries of killed runs from ``folder``, the first time this run writes there."""
        from picard_ad.io.writers import remove_stale_temporaries

        if folder not in self.cleaned:
            self.cleaned.add(folder)
            remove_stale_temporaries(folder, self.started)

    def _unit(self, path: Path, name: Path, slices: list[int], identity: dict, volume: bool) -> None:
        """Compute every slice of one output unit first, then write: a failing slice leaves no output.

        The heatmap is written first, then the overlays (a failing overlay is a warning and is listed in the
        sidecar's ``missing_outputs``), then the sidecar with the size and SHA-256 of each output.
        """
        from picard_ad.config import to_dict
        from picard_ad.io import SliceOrigin, iter_slices
        from picard_ad.io.base import one_line
        from picard_ad.io.writers import atomic_path, atomic_write_text, dumps_json, file_digest

        key = self._key(identity, slices)
        folder = self.out / name.parent
        sidecar = folder / f"{name.name}.json"
        self._clean(folder)
        if _finished(sidecar, key):
            self.skipped += 1
            return
        started = time.perf_counter()
        results = []
        for image in iter_slices(path, slices):
            origin = SliceOrigin(path, image.meta.slice_index)
            heatmap = self.method.heatmap(image, progress=self.progress, origin=origin)
            pixels = np.ascontiguousarray(image.meta.orientation.undo(image.pixels))
            stored = np.ascontiguousarray(image.meta.orientation.undo(heatmap.array), dtype=np.float32)
            mask = None
            if self.annotations is not None:
                annotation = self.annotation_names.get(path) or path
                mask = self.annotations.mask_for(annotation, pixels.shape, index=image.meta.slice_index)
            results.append((image.meta, heatmap, pixels, stored, mask))

        outputs: dict[str, str] = {}
        missing: dict[str, str] = {}
        outputs["heatmap"] = f"{name.name}_heatmap.nii.gz" if volume else f"{name.name}_heatmap.npy"
        with atomic_path(folder / outputs["heatmap"]) as tmp:
            if volume:
                _save_nifti(tmp, path, {meta.slice_index: stored for meta, _, _, stored, _ in results})
            else:
                np.save(tmp, results[0][3])
        for meta, heatmap, pixels, stored, mask in results:
            overlay = f"{name.name}_s{meta.slice_index:04d}_overlay.png" if volume else f"{name.name}_overlay.png"
            title = f"{path.name} [{meta.slice_index}]  {self.method.name} {heatmap.score_name}"
            try:
                _write_overlay(folder / overlay, pixels, stored, mask, title)
            except Exception as exc:  # noqa: BLE001 - memory, matplotlib, the disk: keep the finished heatmap
                reason = f"{type(exc).__name__}: {one_line(exc)}".rstrip(": ")
                missing[f"overlay_{meta.slice_index}"] = f"{overlay} not written ({reason})"
                message = (f"{path}: overlay {folder / overlay} not written ({reason}); the heatmap and "
                           f"{sidecar.name} are written (delete {sidecar.name} to compute the unit again)")  # fmt: skip
                warnings.warn(OverlayWarning(message), stacklevel=2)
                continue
            outputs[f"overlay_{meta.slice_index}"] = overlay
        record = {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "package_version": self.version,
            "input": str(path),
            "method": self.method.name,
            "score": self.method.settings.score,
            "settings": to_dict(self.method.settings),
            "model": self.method.model_record(),
            "outputs": outputs,
            "files": {file: file_digest(folder / file) for file in outputs.values()},
            "missing_outputs": missing,
            "slices": [
                {"slice_index": meta.slice_index, "meta": meta.to_dict(), "heatmap": heatmap.to_sidecar()}
                for meta, heatmap, _, _, _ in results
            ],
            "annotations": self.job.annotations,
            "wall_time_s": round(time.perf_counter() - started, 3),
            "key": key,
        }
        atomic_write_text(sidecar, dumps_json(record, indent=1) + "\n")
        self.written += 1

    def _dicom_results(self, path: Path, name: Path, slices: list[int], units: list[Path], identity: dict) -> None:
        """Write the DICOM results of a DICOM input from its slices' heatmaps, already written in the source's
        geometry: ``NAME_pmap.dcm`` (Parametric Map) and ``NAME_seg.dcm`` (Segmentation of heatmap >
        segmentation_threshold; none without a threshold), then their sidecar ``NAME_dicom.json``, which lists
        them with size and SHA-256 and is keyed, like a unit's, also on the heatmaps' SHA-256 and the threshold.

        A source the results cannot be placed over is refused (``InputError``; its heatmaps stay); a Parametric
        Map that highdicom cannot make for the source is a warning, listed under ``missing_outputs``.
        """
        from picard_ad.io import dicom_results
        from picard_ad.io.writers import atomic_write_text, dumps_json, file_digest

        folder = self.out / name.parent
        sidecar = folder / f"{name.name}_dicom.json"
        threshold = self.job.segmentation_threshold
        heatmap_files = [f"{unit.name}_heatmap.npy" for unit in units]
        heatmap_digests = {file: file_digest(folder / file) for file in heatmap_files}
        key = {**self._key(identity, slices), "heatmaps": heatmap_digests, "segmentation_threshold": threshold}
        if _finished(sidecar, key):
            return
        source = dicom_results.read_source(path)
        heatmaps = np.stack([np.load(folder / file) for file in heatmap_files])
        dicom_results.check_source(source, path, slices, heatmaps.shape)
        provenance = dicom_results.ResultProvenance(
            method=self.method.name,
            score=self.method.settings.score,
            version=self.version,
            model_sha256=self.identity["state_sha256"],
        )
        outputs: dict[str, str] = {}
        missing: dict[str, str] = {}
        refusal = dicom_results.parametric_map_refusal(source)
        if refusal is None:
            outputs["parametric_map"] = f"{name.name}_pmap.dcm"
            made = dicom_results.parametric_map(source, heatmaps, slices, provenance, path)
            dicom_results.save_dataset(made, folder / outputs["parametric_map"])
        else:
            missing["parametric_map"] = f"{name.name}_pmap.dcm not written ({refusal})"
            warnings.warn(DicomOutputWarning(f"{path}: no Parametric Map: {refusal}"), stacklevel=2)
        if threshold is None:
            missing["segmentation"] = f"{name.name}_seg.dcm not written (no segmentation_threshold given)"
            if not self.warned_no_threshold:
                self.warned_no_threshold = True
                warnings.warn(DicomOutputWarning("no segmentation_threshold given and the heatmap job has no "
                                                 "calibrated one: DICOM Segmentations are not written"),
                              stacklevel=2)  # fmt: skip
        else:
            outputs["segmentation"] = f"{name.name}_seg.dcm"
            made = dicom_results.segmentation(source, heatmaps > threshold, slices, provenance, threshold, path)
            dicom_results.save_dataset(made, folder / outputs["segmentation"])
        record = {
            "format": DICOM_SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "package_version": self.version,
            "input": str(path),
            "method": self.method.name,
            "score": self.method.settings.score,
            "source": {
                "sop_class_uid": str(source.SOPClassUID),
                "sop_instance_uid": str(source.SOPInstanceUID),
                "frame_of_reference_uid": source.get("FrameOfReferenceUID"),
            },
            "slices": slices,
            "heatmaps": heatmap_files,
            "segmentation_threshold": threshold,
            "outputs": outputs,
            "files": {file: file_digest(folder / file) for file in outputs.values()},
            "missing_outputs": missing,
            "key": key,
        }
        atomic_write_text(sidecar, dumps_json(record, indent=1) + "\n")
