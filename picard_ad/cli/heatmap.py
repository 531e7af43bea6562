"""``picard-ad heatmap``: heatmaps of any fitted method for images, folders, DICOM volumes and NIfTI files."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from picard_ad.cli.inputs import exit_if_failed, for_each_input, report_ray_result
from picard_ad.cli.options import MethodCommand, given, peek_option, settings_options


@dataclass(frozen=True)
class _Paths:
    """``--model`` and ``--out`` as keys of the --config file (relative paths are read from the current folder,
    as the flags' are)."""

    model: Path | None = None
    out: Path | None = None


def _config_paths(config_path: str | Path | None) -> _Paths:
    from picard_ad.config import from_dict, read_yaml_fields

    if config_path is None:
        return _Paths()
    fields = read_yaml_fields(config_path)
    return from_dict(_Paths, {key: fields[key] for key in ("model", "out") if key in fields}, where=str(config_path))


def _run_folder(args: list[str]) -> Path | None:
    """The run folder that ``--model`` names, else the ``model`` key of the ``--config`` file, else None."""
    run = peek_option(args, "--model")
    return Path(run) if run is not None else _config_paths(peek_option(args, "--config")).model


def _saved_settings(args: list[str]):
    """The saved settings of the method in the run folder (None when neither --model nor the config names one)."""
    from picard_ad.methods.base import saved_settings

    run = _run_folder(args)
    return None if run is None else saved_settings(run)


def _callback(inputs, model_dir, out, config_path, quiet, **flags) -> None:
    from picard_ad.config import from_dict, split_flat_config
    from picard_ad.errors import ConfigError
    from picard_ad.jobs.heatmap import HeatmapJob, HeatmapRunner, heatmap_inputs
    from picard_ad.jobs.ray_cluster import HeatmapTask, RaySettings, run_on_ray
    from picard_ad.localize import reuse_freed_memory
    from picard_ad.methods import load_method, method_class
    from picard_ad.methods.base import read_method_record

    reuse_freed_memory()
    paths = _config_paths(config_path)
    model_dir, out = model_dir or paths.model, out or paths.out
    for value, flag in ((model_dir, "model"), (out, "out")):
        if value is None:
            raise ConfigError(f"give --{flag}, or the key '{flag}' in the file given with --config")
    cls = method_class(read_method_record(model_dir)[0])
    flags = {**given(flags, HeatmapJob), **given(flags, RaySettings), **given(flags, cls.settings_class)}
    _, job_keys, ray_keys, settings = split_flat_config(config_path, flags, _Paths, HeatmapJob, RaySettings,
                                                        cls.settings_class)  # fmt: skip
    where = str(config_path or "options")
    job, cluster = from_dict(HeatmapJob, job_keys, where=where), from_dict(RaySettings, ray_keys, where=where)
    files = heatmap_inputs(inputs)
    method = load_method(model_dir, **settings)  # also before Ray: bad settings fail here, not in every worker
    if cluster.ray is not None:
        del method
        inputs = [file for file, _ in files]
        task = functools.partial(HeatmapTask, model_dir, settings, job, out, inputs)
        result = run_on_ray(cluster, task, files, progress=not quiet)
        report_ray_result(result, f"wrote {result.written} heatmap output(s), skipped {result.skipped} finished, "
                                  f"to {out} (Ray)", len(files))  # fmt: skip
        return
    runner = HeatmapRunner(method, job, out, progress=not quiet, inputs=[file for file, _ in files])
    failures = for_each_input(_progress(files, quiet), lambda item: runner.run(*item))
    click.echo(f"wrote {runner.written} heatmap output(s), skipped {runner.skipped} finished, to {out}")
    exit_if_failed(failures, len(files))


def _progress(files: list[tuple[Path, Path]], quiet: bool):
    from tqdm import tqdm

    return tqdm(files, unit="image", disable=quiet or len(files) < 2, dynamic_ncols=True, desc="inputs")


def _job_options() -> list[click.Option]:
    from picard_ad.jobs.heatmap import HeatmapJob
    from picard_ad.jobs.ray_cluster import RaySettings

    return [*settings_options(HeatmapJob), *settings_options(RaySettings)]


command = MethodCommand(
    "heatmap",
    params=[
        click.Argument(["inputs"], nargs=-1, required=True, type=click.Path()),
        click.Option(["--model", "model_dir"], type=click.Path(path_type=Path),
                     help="Run folder of a fitted method (picard-ad fit), or a PICARD training run (required here "
                     "or as the key 'model' of --config)."),
        click.Option(["--out"], type=click.Path(path_type=Path),
                     help="Output folder (required here or as the key 'out' of --config)."),
        *_job_options(),
        click.Option(["--config", "config_path"], type=click.Path(path_type=Path),
                     help="YAML file with these keys and the method's settings."),
        click.Option(["--quiet"], is_flag=True, help="No progress bar."),
    ],
    callback=_callback,
    settings_of=_saved_settings,
    help="""Heatmaps of INPUT files and folders (PNG, JPEG, TIFF, DICOM, NIfTI) with the method fitted in --model.

    Writes OUT/NAME_heatmap.npy (.nii.gz for NIfTI), OUT/NAME_overlay.png and OUT/NAME.json per image or slice;
    with --dicom-output, DICOM inputs also get OUT/NAME_pmap.dcm (Parametric Map) and, given
    --segmentation-threshold, OUT/NAME_seg.dcm (Segmentation), which open over the source in DICOM viewers.
    The method's settings (e.g. --score, and for PICARD --M, --stride) start from those saved in the run and
    appear as options with --model RUN --help. Finished outputs are skipped on a rerun with the same method and
    settings. Inputs that fail are reported and the others processed; the exit code is then 2.
    """,
)  # fmt: skip
