"""``picard-ad mood``: MOOD challenge predictions (pixel or sample task) for a folder of NIfTI volumes.

The scoring and the mapping to [0, 1] live in ``picard_ad.mood``; this module reads options, builds the 2D
scorer (PICARD from a training run, or a registered method that needs no training, or a saved method folder)
and runs the cases one after another, reporting failures without stopping.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from picard_ad.errors import ConfigError, PicardError


def load_settings(config_path: Path | None, flags: dict[str, Any]):
    """(MoodSettings, PicardSettings) from an optional flat YAML file, then flags (None = not given)."""
    from picard_ad.config import load_flat_configs
    from picard_ad.methods.picard import PicardSettings
    from picard_ad.mood import MoodSettings

    return load_flat_configs(config_path, flags, MoodSettings, PicardSettings)


def build_scorer(model_dir: Path | None, method: str | None, picard_settings):
    """The 2D score-map function: PICARD from ``model_dir``, or ``method`` (a registered name or saved folder)."""
    from picard_ad.methods import AnomalyMethod, create_method, method_class

    if (model_dir is None) == (method is None):
        raise ConfigError("give exactly one of --model RUN_DIR and --method NAME")
    if model_dir is not None:
        from picard_ad.methods.picard import Picard

        picard = Picard.load(model_dir, picard_settings)
        return lambda image: picard.heatmap(image).array
    if Path(method).is_dir():
        return AnomalyMethod.load(method).score_map
    if method_class(method).needs_training:
        raise ConfigError(f"method '{method}' needs training: give its saved folder to --method, or --model RUN_DIR "
                          "for PICARD")
    return create_method(method).score_map


@click.command("mood")
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--task", type=click.Choice(["pixel", "sample"]), help="MOOD task [pixel].")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="PICARD training run folder.")
@click.option("--method", help="Registered method that needs no training (e.g. brightness), or a saved method folder.")
@click.option("--axis", type=click.IntRange(0, 2), help="Stored volume axis to slice along [2].")
@click.option("--center", type=float, help="Raw score mapped to 0.5 [1.0].")
@click.option("--scale", type=float, help="Raw-score units per e-fold of the squashing [0.1].")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML file with these keys and PICARD's heatmap settings.")
def command(input_dir, output_dir, model_dir, method, config_path, **flags) -> None:
    """MOOD predictions for every *.nii.gz / *.nii in INPUT_DIR, written to OUTPUT_DIR.

    Pixel task: OUTPUT_DIR/<input name>, float32 voxel scores in [0, 1] with the input's shape and affine.
    Sample task: OUTPUT_DIR/<input name>.txt holding one score in [0, 1]. Existing outputs are skipped. Inputs
    that fail are reported and the others processed; the exit code is then 2.
    """
    from picard_ad.mood import nifti_inputs, run_case

    settings, picard_settings = load_settings(config_path, flags)
    files = nifti_inputs(input_dir)
    if not files:
        raise PicardError(f"{input_dir}: no .nii.gz or .nii files")
    score_map = build_scorer(model_dir, method, picard_settings)
    written = skipped = failures = 0
    for path in files:
        try:
            if run_case(path, output_dir, score_map, settings):
                written += 1
            else:
                skipped += 1
        except PicardError as exc:
            failures += 1
            click.echo(f"picard-ad: error: {exc}", err=True)
    click.echo(f"wrote {written} {settings.task} output(s), skipped {skipped} finished, to {output_dir}")
    if failures:
        click.echo(f"picard-ad: {failures} of {len(files)} input(s) failed", err=True)
        sys.exit(2)
