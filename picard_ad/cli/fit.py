"""``picard-ad fit``: fit any registered method on normal images into a run folder; ``picard-ad train`` is
PICARD's alias."""

from __future__ import annotations

from pathlib import Path

import click

from picard_ad.cli.options import MethodCommand, given, peek_option


def _preset(name: str | None, preset: str | None):
    """The training config that a fit of method ``name`` starts from (its options show its values)."""
    from picard_ad.methods import method_class

    return None if name is None else method_class(name).preset(preset)


def _fit(method_name: str, data: Path, out: Path, preset: str | None, config_path: Path | None, resume: bool,
         distributed: bool, quiet: bool, flags: dict) -> None:  # fmt: skip
    from picard_ad.device import resolve_device
    from picard_ad.jobs.fit import fit_method, resolve_method
    from picard_ad.methods import method_class
    from picard_ad.training import distributed as dist_tools

    cls = method_class(method_name)
    method = resolve_method(method_name, out, preset=preset, config_path=config_path,
                            flags=given(flags, cls.train_config_class), resume=resume)  # fmt: skip
    context = dist_tools.DistributedContext()
    if distributed:
        context = dist_tools.init_from_torchrun(resolve_device(getattr(method.train_config, "device", "cpu")))
    try:
        fit_method(method, data, out, resume=resume, context=context, progress=not quiet)
    finally:
        dist_tools.shutdown(context)
    if context.is_main:
        for line in method.fit_report:
            click.echo(line, err=line.startswith("left out"))
        click.echo(f"fitted {method.name} on {data}; run folder {out} (picard-ad heatmap ... --model {out})")


_COMMON = [
    click.Option(["--data"], required=True, type=click.Path(path_type=Path),
                 help="Normal training images: a folder (searched recursively), a .txt list of paths, or one file."),
    click.Option(["--out"], required=True, type=click.Path(path_type=Path),
                 help="Run folder: checkpoints, logs and method.json."),
    click.Option(["--preset"], help="Training preset to start from [the method's default; on --resume: the run's]."),
    click.Option(["--config", "config_path"], type=click.Path(path_type=Path),
                 help="YAML file of training-config keys (and an optional 'settings:' mapping of scoring settings)."),
    click.Option(["--resume"], is_flag=True, help="Continue the run in --out exactly from its last checkpoint."),
    click.Option(["--distributed"], is_flag=True,
                 help="Data-parallel over the processes started by torchrun (reads RANK, WORLD_SIZE, LOCAL_RANK, "
                      "MASTER_*)."),
    click.Option(["--quiet"], is_flag=True, help="No progress bar."),
]  # fmt: skip


def _fit_command(method: str | None, out_name: str) -> click.Command:
    """``fit`` (method from --method) or an alias fixed to one method."""
    params = list(_COMMON)
    if method is None:
        params.insert(0, click.Option(["--method", "method_name"], required=True,
                                      help="Registered method (picard-ad methods lists them)."))  # fmt: skip

    def callback(**values) -> None:
        fixed = [values.pop(key) for key in ("data", "out", "preset", "config_path", "resume", "distributed", "quiet")]
        _fit(values.pop("method_name", method), *fixed, flags=values)

    return MethodCommand(
        out_name,
        params=params,
        callback=callback,
        settings_of=lambda args: _preset(method or peek_option(args, "--method"), peek_option(args, "--preset")),
        help=_HELP if method is None else _TRAIN_HELP,
    )


_HELP = """Fit a method on normal images into a run folder (RUN/method.json is written last).

The training config starts from the method's preset (--preset), then the YAML file (--config), then the flags;
the method's training settings appear as options with --method NAME --help. Network methods checkpoint into
RUN/last and keep RUN/best; --resume continues them bit for bit.

\b
Multi-GPU:
  torchrun --nproc-per-node=4 "$(command -v picard-ad)" fit --method picard --distributed ...
"""

_TRAIN_HELP = """Train PICARD's completion network G and its critics (WGAN-GP): picard-ad fit --method picard.

Flags override the YAML file, which overrides the preset [paper]. OUT/last is replaced atomically every
checkpoint_every iterations; OUT/best holds the weights with the lowest held-out completion L1.
"""

command = _fit_command(None, "fit")
train_command = _fit_command("picard", "train")
