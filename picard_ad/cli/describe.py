"""``picard-ad describe``: the completion network and critics, with parameter counts and FLOPs per completion."""

from __future__ import annotations

import json
from pathlib import Path

import click

from picard_ad.errors import InputError

_DEFAULTS = {"cnum": 32, "in_channels": 1, "patch_size": 256}
_SIZE_MULTIPLE = 16  # the critics shrink their input 16-fold; the generator needs multiples of 8


def _run_settings(run_dir: Path) -> dict[str, int]:
    """cnum, in_channels, patch_size and local_critic_input from ``run_dir/config.json`` (those it has)."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise InputError(path, "not found: RUN_DIR must be a training run folder (picard-ad train writes config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not readable as JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise InputError(path, "expected a JSON object")
    settings = {}
    for key in (*_DEFAULTS, "local_critic_input"):
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(path, f"{key}: expected an integer, got {value!r}")
            settings[key] = value
    return settings


def _gflop(flops: int) -> str:
    return f"{flops / 1e9:8.2f} GFLOP"


def describe_lines(cnum: int, in_channels: int, patch_size: int, local_critic_input: int) -> list[str]:
    """The text ``describe`` prints: layer table, parameters per stage and branch, FLOPs per completion.

    cnum, in_channels: generator and critic widths. patch_size: completion window side in pixels.
    local_critic_input: side of the hole region the local critic (encoder phi) sees, in pixels.
    """
    import torch

    from picard_ad.models import GlobalCritic, InpaintingGenerator, LocalCritic
    from picard_ad.models.summary import (
        conv_flops,
        critic_flops,
        generator_flops,
        parameter_table,
    )

    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        generator = InpaintingGenerator(in_channels, cnum)
        critics = (
            ("Local critic (hole region; its features are phi)", LocalCritic(in_channels, cnum, local_critic_input)),
            ("Global critic (whole patch)", GlobalCritic(in_channels, cnum, patch_size)),
        )
    params = parameter_table(generator)
    flops = generator_flops(cnum, in_channels, patch_size, patch_size)
    lines = [
        f"PICARD completion network G: in_channels {in_channels}, cnum {cnum}, patch {patch_size} x {patch_size}",
        f"  {'layer':<34}{'channels':>11}  k  s  d  {'act':<5}{'size':>9}{'params':>11}{'FLOPs':>15}",
    ]
    coarse, fine = generator.coarse_generator, generator.fine_generator
    stages = [("coarse_generator", coarse, coarse.specs)]
    stages += [(f"fine_generator ({branch})", fine, specs) for branch, specs in fine.specs.items()]
    for title, stage, specs in stages:
        lines.append(f"  {title}")
        for spec in specs:
            side = patch_size // spec.resolution
            weights = sum(p.numel() for p in getattr(stage, spec.name).parameters())
            upsample = "x2 " if spec.upsample_before else ""
            lines.append(
                f"    {upsample + spec.name:<32}{spec.in_channels:>5} -> {spec.out_channels:<4}{spec.kernel_size:>2}"
                f"{spec.stride:>3}{spec.dilation:>3}  {spec.activation or '-':<5}{f'{side} x {side}':>9}{weights:>11,}"
                f"{_gflop(conv_flops(spec, patch_size, patch_size)):>15}"
            )
        if specs is fine.specs["attention_encoder"]:
            attention = sum(v for k, v in flops.per_layer.items() if "contextual_attention" in k)
            side = patch_size // 4
            lines.append(
                f"    {'contextual_attention':<32}{'':>22}{f'{side} x {side}':>9}{0:>11}{_gflop(attention):>15}"
            )
    lines.append("  Parameters and FLOPs by stage")
    for name, count in params.items():
        if name == "total":
            continue
        group_flops = flops.groups.get(name)
        if name == "fine_generator":
            group_flops = sum(v for k, v in flops.groups.items() if k.startswith("fine_generator."))
        indent = "      " if "." in name else "    "
        lines.append(f"{indent}{name:<{38 - len(indent)}}{count:>11,} params{_gflop(group_flops):>15}")
    lines.append(f"    {'total':<34}{params['total']:>11,} params{_gflop(flops.total):>15} per completion")
    for title, critic in critics:
        size = critic.input_size
        lines.append(
            f"{title}: input {size} x {size}, {parameter_table(critic)['total']:,} params, "
            f"{critic_flops(cnum, in_channels, size).total / 1e9:.3f} GFLOP, feature dim {critic.feature_dim:,}"
        )
    return lines


@click.command("describe")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(["picard"]), default="picard", show_default=True,
              help="Architecture to describe.")
@click.option("--cnum", type=click.IntRange(min=2), default=None,
              help=f"Base channel width (default {_DEFAULTS['cnum']}, or the run's config.json).")
@click.option("--in-channels", type=click.IntRange(min=1), default=None,
              help=f"Image channels (default {_DEFAULTS['in_channels']}, or the run's config.json).")
@click.option("--patch-size", type=click.IntRange(min=_SIZE_MULTIPLE), default=None,
              help=f"Patch side in pixels, a multiple of {_SIZE_MULTIPLE} (default {_DEFAULTS['patch_size']}, "
                   "or the run's).")
def command(run_dir: Path | None, arch: str, cnum: int | None, in_channels: int | None,
            patch_size: int | None) -> None:
    """Print the architecture with parameter counts per stage and FLOPs per completion.

    With RUN_DIR, cnum, in_channels and patch_size are read from RUN_DIR/config.json; flags given on the
    command line override them. The local critic sees the run's local_critic_input, else half the patch.
    """
    settings = dict(_DEFAULTS)
    source = "defaults"
    if run_dir is not None:
        settings.update(_run_settings(run_dir))
        source = str(run_dir / "config.json")
    flags = {"cnum": cnum, "in_channels": in_channels, "patch_size": patch_size}
    settings.update({key: value for key, value in flags.items() if value is not None})
    if settings["cnum"] % 2:
        raise click.BadParameter(f"must be even, got {settings['cnum']}", param_hint="cnum")
    if settings["patch_size"] % _SIZE_MULTIPLE:
        raise click.BadParameter(
            f"must be a multiple of {_SIZE_MULTIPLE}, got {settings['patch_size']}", param_hint="patch size"
        )
    local_input = settings.get("local_critic_input", settings["patch_size"] // 2)
    if local_input % _SIZE_MULTIPLE:
        raise click.BadParameter(
            f"the local critic's input ({local_input} pixels) must be a multiple of {_SIZE_MULTIPLE}",
            param_hint="patch size",
        )
    click.echo(f"Architecture {arch}; settings from {source}" + (" and flags" if any(flags.values()) else ""))
    lines = describe_lines(settings["cnum"], settings["in_channels"], settings["patch_size"], local_input)
    click.echo("\n".join(lines))
