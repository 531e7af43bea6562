"""``picard-ad train``: train the PICARD completion network on normal images (resumable)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.option(
    "--data", required=True, type=click.Path(path_type=Path),
    help="Normal training images: a folder (searched recursively), a .txt list of paths, or one file.",
)  # fmt: skip
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder for checkpoints and logs.")
@click.option("--preset", type=click.Choice(["paper", "small"]), help="Base settings [paper; on --resume: the run's].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML file of TrainConfig fields.")
@click.option("--steps", type=int, help="Total critic iterations (the generator steps every n_critic-th).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly from its last checkpoint.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train [auto].")
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast (GPU, or CPUs with AMX/AVX512-BF16).")
@click.option("--batch-size", type=int, help="Patches per iteration and process.")
@click.option("--seed", type=int, help="Seed of weights, patches and holes.")
@click.option(
    "--distributed", is_flag=True,
    help="Data-parallel over the processes started by torchrun (reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(data, out, preset, config_path, steps, resume, device, bf16, batch_size, seed, distributed, quiet):
    """Train the completion network G and its critics (WGAN-GP) on patches of normal images.

    Flags override the YAML file, which overrides the preset. OUT/last is replaced atomically every
    checkpoint_every iterations; OUT/best holds the weights with the lowest held-out completion L1.

    \b
    Multi-GPU:
      torchrun --nproc-per-node=4 "$(command -v picard-ad)" train --distributed ...
    """
    from picard_ad.device import resolve_device
    from picard_ad.training import distributed as dist_tools
    from picard_ad.training.config import preset_config, resolve_config
    from picard_ad.training.trainer import Trainer, stored_run_config

    if resume and preset is None:
        base = stored_run_config(out)
    else:
        base = preset_config(preset or "paper")
    overrides = {"steps": steps, "device": device, "bf16": bf16, "batch_size": batch_size, "seed": seed}
    config = resolve_config(base, config_path, overrides)
    context = dist_tools.DistributedContext()
    if distributed:
        context = dist_tools.init_from_torchrun(resolve_device(config.device))
    try:
        result = Trainer(config, data, out, resume=resume, context=context, progress=not quiet).train()
    finally:
        dist_tools.shutdown(context)
    if context.is_main:
        best = (
            f"; best held-out L1 {result.best_val_l1:.4f} at iteration {result.best_step}"
            if result.best_val_l1 is not None
            else ""
        )
        click.echo(f"trained to iteration {result.steps} in {result.wall_time_s:.0f} s{best}; run folder {out}")
        for path in result.excluded_images:
            click.echo(f"left out (no tissue patch found): {path}", err=True)
