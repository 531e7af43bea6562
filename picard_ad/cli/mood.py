"""``picard-ad mood``: MOOD challenge predictions (pixel or sample task) for a folder of NIfTI volumes.

The scoring, the mapping to [0, 1] and its calibration live in ``picard_ad.jobs.mood``; this module reads options,
loads the method (a fitted run, or a method that needs no training), calibrates when asked, and runs the cases one
after another, reporting failures without stopping.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from picard_ad.cli.inputs import exit_if_failed, for_each_input, report_ray_result
from picard_ad.cli.options import MethodCommand, given, peek_option, settings_options
from picard_ad.errors import ConfigError, PicardError


def _method_class(model_dir: str | Path | None, method: str | None):
    from picard_ad.methods import method_class
    from picard_ad.methods.base import read_method_record

    if model_dir is not None:
        return method_class(read_method_record(Path(model_dir))[0])
    return None if method is None else method_class(method)


def _shown_settings(args: list[str]):
    """The settings options of the method: saved in the --model run, or the defaults of --method."""
    from picard_ad.methods.base import saved_settings

    model_dir, method = peek_option(args, "--model"), peek_option(args, "--method")
    if model_dir is not None:
        return saved_settings(Path(model_dir))
    cls = _method_class(None, method)
    return None if cls is None else cls.settings_class


def _callback(input_dir, output_dir, model_dir, method, config_path, **flags) -> None:
    from picard_ad.config import from_dict, split_flat_config
    from picard_ad.jobs.mood import (
        CALIBRATION_FILE,
        MoodSettings,
        mood_identity,
        mood_method,
        nifti_inputs,
        prepare_calibration,
        run_case,
        slice_sample_score,
    )
    from picard_ad.jobs.ray_cluster import MoodTask, RaySettings, run_on_ray

    if (model_dir is None) == (method is None):
        raise ConfigError("give exactly one of --model RUN_DIR and --method NAME")
    cls = _method_class(model_dir, method)
    mood_keys, ray_keys, method_settings = split_flat_config(
        config_path, {**given(flags, MoodSettings), **given(flags, RaySettings), **given(flags, cls.settings_class)},
        MoodSettings, RaySettings, cls.settings_class,
    )  # fmt: skip
    where = str(config_path or "options")
    settings, cluster = from_dict(MoodSettings, mood_keys, where=where), from_dict(RaySettings, ray_keys, where=where)
    files = nifti_inputs(input_dir)
    if not files:
        raise PicardError(f"{input_dir}: no .nii.gz or .nii files")
    scorer = mood_method(model_dir, method, method_settings)
    slice_score = slice_sample_score(scorer, settings.task)
    if slice_score is not None:
        click.echo(f"sample score: the maximum over slices of {scorer.name}'s own {scorer.sample_score_name()} "
                   "(raw units: calibrate, or give --center and --scale)")  # fmt: skip
    calibration = prepare_calibration(settings, output_dir, scorer.score_map, mood_identity(scorer, settings.task),
                                      slice_score=slice_score)  # fmt: skip
    if calibration is not None:
        settings = settings.calibrated(calibration)
        click.echo(f"calibration on {len(calibration.normal_volumes)} normal volume(s): center "
                   f"{calibration.center:.6g}, scale {calibration.scale:.6g} ({output_dir / CALIBRATION_FILE})")
    center, scale = settings.squashing
    click.echo(f"squashing raw scores with center {center:.6g}, scale {scale:.6g}")
    if cluster.ray is not None:  # the calibration above ran here; the cases go to the workers
        task = functools.partial(MoodTask, model_dir, method, method_settings, settings, output_dir)
        result = run_on_ray(cluster, task, files, progress=True)
        report_ray_result(result, f"wrote {result.written} {settings.task} output(s), skipped {result.skipped} "
                                  f"finished, to {output_dir} (Ray)", len(files))  # fmt: skip
        return
    written = []  # one bool per case that did not fail: False when its output existed already
    failures = for_each_input(files, lambda path: written.append(run_case(path, output_dir, scorer.score_map,
                                                                          settings, slice_score)))  # fmt: skip
    skipped = len(written) - sum(written)
    click.echo(f"wrote {sum(written)} {settings.task} output(s), skipped {skipped} finished, to {output_dir}")
    exit_if_failed(failures, len(files))


def _mood_options() -> list[click.Option]:
    from picard_ad.jobs.mood import MoodSettings
    from picard_ad.jobs.ray_cluster import RaySettings

    return [*settings_options(MoodSettings), *settings_options(RaySettings)]


command = MethodCommand(
    "mood",
    params=[
        click.Argument(["input_dir"], type=click.Path(path_type=Path)),
        click.Argument(["output_dir"], type=click.Path(path_type=Path)),
        click.Option(["--model", "model_dir"], type=click.Path(path_type=Path),
                     help="Run folder of a fitted method (picard-ad fit)."),
        click.Option(["--method"], help="A registered method that needs no training (e.g. brightness)."),
        *_mood_options(),
        click.Option(["--config", "config_path"], type=click.Path(path_type=Path),
                     help="YAML file with these keys and the method's settings."),
    ],
    callback=_callback,
    settings_of=_shown_settings,
    help="""MOOD predictions for every *.nii.gz / *.nii in INPUT_DIR, written to OUTPUT_DIR.

    Pixel task: OUTPUT_DIR/<input name>, float32 voxel scores in [0, 1] with the input's shape and affine.
    Sample task: OUTPUT_DIR/<input name>.txt holding one score in [0, 1]: the maximum over slices of the
    method's own sample score where it has one (vae, cevae, pchvae: KL + rec; dae: rec; cradl: the negative
    log-likelihood), else of each slice map's 0.99 quantile over tissue. Existing outputs are skipped. Inputs
    that fail are reported and the others processed; the exit code is then 2. With --calibrate, the normal
    volumes are scored first (any failure stops the run before an output is written) and a rerun reuses
    OUTPUT_DIR/calibration.json. The method's settings appear as options with --model RUN (or --method NAME)
    --help.
    """,
)  # fmt: skip
