"""``picard-ad mood``: MOOD challenge predictions (pixel or sample task) for a folder of NIfTI volumes.

The scoring, the mapping to [0, 1] and its calibration live in ``picard_ad.mood``; this module reads options,
builds the 2D scorer (PICARD from a training run, or a registered method that needs no training, or a saved
method folder) with an identity that calibrations are checked against, calibrates when asked, and runs the cases
one after another, reporting failures without stopping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import numpy as np

from picard_ad.cli.inputs import exit_if_failed, for_each_input
from picard_ad.errors import ConfigError, PicardError

# PICARD settings that change speed or memory, not the scores (bf16 only within rounding), so a calibration
# made on a GPU holds on a CPU.
EXECUTION_SETTINGS = ("device", "bf16", "channels_last", "fused", "batch_size", "threads")


def load_settings(config_path: Path | None, flags: dict[str, Any]):
    """(MoodSettings, PicardSettings) from an optional flat YAML file, then flags (None = not given)."""
    from picard_ad.config import load_flat_configs
    from picard_ad.methods.picard import PicardSettings
    from picard_ad.mood import MoodSettings

    return load_flat_configs(config_path, flags, MoodSettings, PicardSettings)


def build_scorer(
    model_dir: Path | None, method: str | None, picard_settings
) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """The 2D score-map function and its identity: PICARD from ``model_dir``, or ``method`` (name or saved folder).

    The identity (name, config or scoring settings, and a digest of the weights or saved state) is what a
    calibration must have been made for; it leaves out paths, so a moved run folder keeps its calibration.
    """
    from picard_ad.config import to_dict
    from picard_ad.methods import AnomalyMethod, create_method, method_class

    if (model_dir is None) == (method is None):
        raise ConfigError("give exactly one of --model RUN_DIR and --method NAME")
    if model_dir is not None:
        from picard_ad.methods.picard import Picard
        from picard_ad.training.checkpoint import NETWORK_FILES

        picard = Picard.load(model_dir, picard_settings)
        checkpoint = Path(picard.model["checkpoint"])
        identity = {
            "name": "picard",
            "weights_sha256": _files_sha256(checkpoint / NETWORK_FILES[name] for name in ("generator", "local_critic")),
            "step": picard.model["step"],
            "settings": {k: v for k, v in picard.settings.to_dict().items() if k not in EXECUTION_SETTINGS},
        }
        return (lambda image: picard.heatmap(image).array), identity
    if Path(method).is_dir():
        loaded = AnomalyMethod.load(method)
        state = sorted(path for path in Path(method).iterdir() if path.is_file() and not path.name.startswith("."))
        identity = {"name": loaded.name, "config": to_dict(loaded.config), "state_sha256": _files_sha256(state)}
        return loaded.score_map, identity
    if method_class(method).needs_training:
        raise ConfigError(f"method '{method}' needs training: give its saved folder to --method, or --model RUN_DIR "
                          "for PICARD")
    created = create_method(method)
    return created.score_map, {"name": created.name, "config": to_dict(created.config)}


def _files_sha256(paths: Iterable[Path]) -> str:
    """SHA-256 over the names and contents of ``paths``, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as stream:
            digest.update(path.name.encode() + b"\0" + hashlib.file_digest(stream, "sha256").digest())
    return digest.hexdigest()


@click.command("mood")
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--task", type=click.Choice(["pixel", "sample"]), help="MOOD task [pixel].")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="PICARD training run folder.")
@click.option("--method", help="Registered method that needs no training (e.g. brightness), or a saved method folder.")
@click.option("--axis", type=click.IntRange(0, 2), help="Stored volume axis to slice along [2].")
@click.option("--center", type=float, help="Raw score mapped to 0.5; overrides the calibration [calibrated, else 1.0].")
@click.option("--scale", type=float,
              help="Raw-score units per e-fold of the squashing; overrides the calibration [calibrated, else 0.1].")
@click.option("--calibrate", type=click.Path(path_type=Path), metavar="NORMAL_DIR",
              help="Set center and scale from the scores of the normal *.nii.gz / *.nii volumes in NORMAL_DIR; "
                   "written to OUTPUT_DIR/calibration.json.")
@click.option("--calibration", type=click.Path(path_type=Path), metavar="FILE",
              help="Reuse a calibration.json made for the same method or model, task and axis.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML file with these keys and PICARD's heatmap settings.")
def command(input_dir, output_dir, model_dir, method, config_path, **flags) -> None:
    """MOOD predictions for every *.nii.gz / *.nii in INPUT_DIR, written to OUTPUT_DIR.

    Pixel task: OUTPUT_DIR/<input name>, float32 voxel scores in [0, 1] with the input's shape and affine.
    Sample task: OUTPUT_DIR/<input name>.txt holding one score in [0, 1]. Existing outputs are skipped. Inputs
    that fail are reported and the others processed; the exit code is then 2. With --calibrate, the normal
    volumes are scored first (any failure stops the run before an output is written) and a rerun reuses
    OUTPUT_DIR/calibration.json.
    """
    from picard_ad.mood import (
        CALIBRATION_FILE,
        nifti_inputs,
        prepare_calibration,
        run_case,
    )

    settings, picard_settings = load_settings(config_path, flags)
    files = nifti_inputs(input_dir)
    if not files:
        raise PicardError(f"{input_dir}: no .nii.gz or .nii files")
    score_map, identity = build_scorer(model_dir, method, picard_settings)
    calibration = prepare_calibration(settings, output_dir, score_map, identity)
    if calibration is not None:
        settings = settings.calibrated(calibration)
        click.echo(f"calibration on {len(calibration.normal_volumes)} normal volume(s): center "
                   f"{calibration.center:.6g}, scale {calibration.scale:.6g} ({output_dir / CALIBRATION_FILE})")
    center, scale = settings.squashing
    click.echo(f"squashing raw scores with center {center:.6g}, scale {scale:.6g}")
    written = []  # one bool per case that did not fail: False when its output existed already
    failures = for_each_input(files, lambda path: written.append(run_case(path, output_dir, score_map, settings)))
    click.echo(
        f"wrote {sum(written)} {settings.task} output(s), skipped {len(written) - sum(written)} finished, to {output_dir}"
    )
    exit_if_failed(failures, len(files))
