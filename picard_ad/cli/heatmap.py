"""``picard-ad heatmap``: PICARD anomaly heatmaps of images, folders, DICOM volumes and NIfTI files.

Per output unit (a slice of a 2D image or DICOM file; a whole NIfTI file) it writes the float32 heatmap in the
input's geometry (orientation undone): ``NAME_heatmap.npy``, or ``NAME_heatmap.nii.gz`` with the input's affine
for NIfTI (slices not asked for are NaN); ``NAME_overlay.png`` per slice (scan, colour-mapped heatmap,
annotation outlines); and ``NAME.json``, the sidecar, written last. A unit whose sidecar exists and matches the
settings, model and input is skipped, so an interrupted run over a large folder continues where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from picard_ad.cli.inputs import exit_if_failed, for_each_input
from picard_ad.config import load_flat_configs
from picard_ad.errors import ConfigError, InputError

SIDECAR_FORMAT = "picard-ad/heatmap"
# Settings that change speed, not the heatmap (beyond float rounding), so a rerun with others may reuse outputs.
_EXECUTION_ONLY = frozenset({"device", "batch_size", "threads"})


@dataclass(frozen=True)
class HeatmapJob:
    """What ``picard-ad heatmap`` does besides the PICARD settings; YAML keys and flags share these names.

    slices: "all", or indices and ranges such as "0,5,10-12" (slices of volumes; 2D images have slice 0).
    annotations: a boxes CSV (image,x,y,width,height) or a folder of mask images, drawn as outlines.
    """

    slices: str = "all"
    annotations: str | None = None

    def __post_init__(self) -> None:
        parse_slices(self.slices)


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


def load_job(config_path: Path | None, flags: dict[str, Any]) -> tuple[HeatmapJob, Any]:
    """(HeatmapJob, PicardSettings) from an optional flat YAML file, then flags (None = not given)."""
    from picard_ad.methods.picard import PicardSettings

    job, settings = load_flat_configs(config_path, flags, HeatmapJob, PicardSettings)
    return job, settings


def _annotations(spec: str | None):
    from picard_ad.io.annotations import AnnotationSet

    if spec is None:
        return None
    path = Path(spec)
    if path.is_dir():
        return AnnotationSet.from_mask_folder(path)
    if path.suffix.lower() == ".csv":
        return AnnotationSet.from_boxes_csv(path)
    raise InputError(path, "--annotations must be a boxes CSV file or a folder of mask images")


def _inputs(paths: tuple[Path, ...]) -> list[tuple[Path, Path]]:
    """(input file, output name relative to --out without suffix) of every input; folders keep their layout."""
    from picard_ad.io import find_images
    from picard_ad.io.annotations import image_key

    found: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            found.extend((file, file.relative_to(path).parent / image_key(file.name)) for file in find_images(path))
        else:
            found.append((path, Path(image_key(path.name))))
    names: dict[Path, Path] = {}
    for file, name in found:
        if name in names:
            raise ConfigError(f"{names[name]} and {file} would write the same outputs ({name}); give them separately")
        names[name] = file
    return found


def _input_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _matching_key(settings: Any, model: dict[str, Any], identity: dict[str, Any], slices: list[int]) -> dict:
    """What a finished output must have been computed with to be reused."""
    return {
        "settings": {k: v for k, v in settings.to_dict().items() if k not in _EXECUTION_ONLY},
        "model": {k: model.get(k) for k in ("checkpoint", "step", "data_fingerprint")},
        "input": identity,
        "slices": slices,
    }


def _finished(sidecar: Path, key: dict) -> bool:
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key)):
        return False
    return all((sidecar.parent / name).is_file() for name in data.get("outputs", {}).values())


def _write_overlay(path: Path, pixels: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None, title: str) -> None:
    from picard_ad.report.montage import save_montage

    save_montage(path, [pixels], titles=[title], overlays=[heatmap], masks=[mask], panel_inches=8.0)


def _write_sidecar(path: Path, data: dict[str, Any]) -> None:
    from picard_ad.io.writers import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


class _Runner:
    """Computes and writes the outputs of one input after another."""

    def __init__(self, picard, job: HeatmapJob, out: Path, progress: bool):
        from picard_ad import __version__

        self.picard = picard
        self.job = job
        self.out = out
        self.progress = progress
        self.annotations = _annotations(job.annotations)
        self.version = __version__
        self.written = 0
        self.skipped = 0

    def run(self, path: Path, name: Path) -> None:
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
            return
        for index in slices:
            unit_name = name if header.n_slices == 1 else name.with_name(f"{name.name}_s{index:04d}")
            self._unit(path, unit_name, [index], identity, volume=False)

    def _unit(self, path: Path, name: Path, slices: list[int], identity: dict, volume: bool) -> None:
        """Compute every slice of one output unit first, then write: a failing slice leaves no output."""
        from picard_ad.io import iter_slices
        from picard_ad.io.writers import atomic_path

        settings = self.picard.settings
        key = _matching_key(settings, self.picard.model, identity, slices)
        folder = self.out / name.parent
        sidecar = folder / f"{name.name}.json"
        if _finished(sidecar, key):
            self.skipped += 1
            return
        started = time.perf_counter()
        results = []
        for image in iter_slices(path, slices):
            heatmap = self.picard.heatmap(image, progress=self.progress)
            pixels = np.ascontiguousarray(image.meta.orientation.undo(image.pixels))
            stored = np.ascontiguousarray(image.meta.orientation.undo(heatmap.array), dtype=np.float32)
            mask = None
            if self.annotations is not None:
                mask = self.annotations.mask_for(path, pixels.shape, index=image.meta.slice_index)
            results.append((image.meta, heatmap, pixels, stored, mask))

        outputs: dict[str, str] = {}
        for meta, heatmap, pixels, stored, mask in results:
            overlay = f"{name.name}_s{meta.slice_index:04d}_overlay.png" if volume else f"{name.name}_overlay.png"
            title = f"{path.name} [{meta.slice_index}]  {heatmap.score_name}"
            _write_overlay(folder / overlay, pixels, stored, mask, title)
            outputs[f"overlay_{meta.slice_index}"] = overlay
        outputs["heatmap"] = f"{name.name}_heatmap.nii.gz" if volume else f"{name.name}_heatmap.npy"
        with atomic_path(folder / outputs["heatmap"]) as tmp:
            if volume:
                _save_nifti(tmp, path, {meta.slice_index: stored for meta, _, _, stored, _ in results})
            else:
                np.save(tmp, results[0][3])
        _write_sidecar(sidecar, {
            "format": SIDECAR_FORMAT,
            "package_version": self.version,
            "input": str(path),
            "score": settings.score,
            "seed": settings.seed,
            "settings": {**settings.to_dict(), "device": str(self.picard.device)},
            "model": self.picard.model,
            "outputs": outputs,
            "slices": [
                {"slice_index": meta.slice_index, "meta": meta.to_dict(), "heatmap": heatmap.to_sidecar()}
                for meta, heatmap, _, _, _ in results
            ],
            "annotations": self.job.annotations,
            "wall_time_s": round(time.perf_counter() - started, 3),
            "key": key,
        })
        self.written += 1


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


@click.command("heatmap")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Training run folder (or checkpoint folder) of the completion network.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--slices", help="Slices of volumes: 'all' or e.g. '0,5,10-12' [all].")
@click.option("--score", help="mcd-image, mcd-feature, mean-image, mean-feature, median-image, median-feature, "
                              "mse, critic or dmse [mcd-image].")
@click.option("--M", "--n-completions", "n_completions", type=int, help="Completions per window [10].")
@click.option("--stride", type=int, help="Step between windows in pixels [32].")
@click.option("--patch-size", type=int, help="Window side in pixels [the model's].")
@click.option("--mask-size", type=int, help="Hole side in pixels [the model's].")
@click.option("--dropout-p", type=float, help="Channel drop probability [0.5].")
@click.option("--dropout-layers", help="'reference', 'paper' or comma-separated layer names [reference].")
@click.option("--dropout-kind", type=click.Choice(["spatial", "element"]),
              help="Drop whole channels (PICARD) or single activations [spatial].")
@click.option("--assembly", type=click.Choice(["interpolated", "averaged"]), help="Heatmap assembly [interpolated].")
@click.option("--skip-background/--no-skip-background", default=None, help="Skip windows without tissue [skip].")
@click.option("--tissue-threshold", type=float, help="Tissue intensity threshold in [0, 1] [0.02].")
@click.option("--min-tissue-fraction", type=float,
              help="Score a window when more than this fraction of its hole is tissue [0].")
@click.option("--device", help="auto, cpu, cuda or cuda:N [auto].")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast [on].")
@click.option("--fused/--no-fused", default=None,
              help="CPU: convolution, activation and dropout as one oneDNN kernel [on].")
@click.option("--batch-size", help="Completions per forward: 'auto' or a number [auto].")
@click.option("--threads", type=int, help="CPU threads [torch's default].")
@click.option("--seed", type=int, help="Seed of the dropout masks [1337].")
@click.option("--checkpoint", type=click.Choice(["last", "best"]), help="Which checkpoint of the run [last].")
@click.option("--annotations", help="Boxes CSV or mask folder; outlines drawn on the overlays.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML file with these keys.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(inputs, model_dir, out, config_path, quiet, dropout_layers, batch_size, **flags) -> None:
    """PICARD anomaly heatmaps of INPUT files and folders (PNG, JPEG, TIFF, DICOM, NIfTI).

    Writes OUT/NAME_heatmap.npy (.nii.gz for NIfTI), OUT/NAME_overlay.png and OUT/NAME.json per image or slice.
    Finished outputs are skipped on a rerun with the same settings. Inputs that fail are reported and the others
    processed; the exit code is then 2.
    """
    from picard_ad.localize.engine import reuse_freed_memory
    from picard_ad.methods.picard import Picard

    reuse_freed_memory()
    if dropout_layers is not None and dropout_layers not in ("reference", "paper"):
        dropout_layers = [name.strip() for name in dropout_layers.split(",") if name.strip()]
    if batch_size is not None and batch_size != "auto":
        try:
            batch_size = int(batch_size)
        except ValueError:
            raise click.BadParameter(f"must be 'auto' or a number, got {batch_size!r}", param_hint="--batch-size")
    job, settings = load_job(config_path, {**flags, "dropout_layers": dropout_layers, "batch_size": batch_size})
    if any(not str(value).strip() for value in inputs):
        # An empty path (an unset shell variable, say) would otherwise mean the current folder, all of it.
        raise click.BadParameter("an input path is empty", param_hint="INPUT")
    files = _inputs(tuple(Path(value) for value in inputs))
    if not files:
        raise InputError(None, "no supported image files among the inputs")
    picard = Picard.load(model_dir, settings)
    runner = _Runner(picard, job, out, progress=not quiet)
    failures = for_each_input(_progress(files, quiet), lambda item: runner.run(*item))
    click.echo(f"wrote {runner.written} heatmap output(s), skipped {runner.skipped} finished, to {out}")
    exit_if_failed(failures, len(files))


def _progress(files: list[tuple[Path, Path]], quiet: bool):
    from tqdm import tqdm

    return tqdm(files, unit="image", disable=quiet or len(files) < 2, dynamic_ncols=True, desc="inputs")
