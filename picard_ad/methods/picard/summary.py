"""Parameter counts per stage and branch, analytic FLOP counts of the PICARD networks, and the architecture
table ``picard-ad describe`` prints."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from picard_ad.methods.picard.config import PicardTrainConfig
from picard_ad.methods.picard.contextual_attention import RATE
from picard_ad.methods.picard.critics import DOWNSAMPLING, GlobalCritic, LocalCritic
from picard_ad.methods.picard.generator import (
    SIZE_MULTIPLE,
    ConvSpec,
    InpaintingGenerator,
    coarse_layer_specs,
    fine_layer_specs,
)


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def parameter_table(model: nn.Module) -> dict[str, int]:
    """Parameter counts of each top-level part, its branches (if it names them) and the total.

    For the generator: coarse_generator, fine_generator, fine_generator.conv_branch / .attention_branch /
    .merge, total. For a critic: dis_conv_module, linear, total.
    """
    table: dict[str, int] = {}
    for name, child in model.named_children():
        table[name] = _count(child)
        branches = getattr(child, "branches", None)
        if callable(branches):
            for branch, layers in branches().items():
                table[f"{name}.{branch}"] = sum(_count(getattr(child, layer)) for layer in layers)
    table["total"] = _count(model)
    return table


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (2 x multiply-adds) of one forward pass of one sample, by layer.

    per_layer: qualified layer name -> FLOPs, in network order; "fine_generator.contextual_attention.matching"
        and "...reconstruction" are the attention's two matrix products. Bias additions, activations,
        upsampling and the softmax are not counted (they are under 1 % of the total).
    groups: the same, summed per stage or branch (coarse_generator, fine_generator.conv_branch, ...).
    """

    per_layer: dict[str, int]
    groups: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.per_layer.values())


def conv_flops(spec: ConvSpec, height: int, width: int) -> int:
    """FLOPs of one ConvBlock of the generator on a height x width image (output at height / resolution)."""
    out_pixels = (height // spec.resolution) * (width // spec.resolution)
    return 2 * spec.in_channels * spec.out_channels * spec.kernel_size**2 * out_pixels


def generator_flops(cnum: int = 32, in_channels: int = 1, height: int = 256, width: int = 256) -> FlopCount:
    """Analytic FLOPs of one completion (coarse + fine stage) of a height x width image.

    cnum, in_channels: as for InpaintingGenerator. height, width: pixels, multiples of 8.
    """
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(f"height and width must be multiples of {SIZE_MULTIPLE}, got {height} x {width}")
    per_layer: dict[str, int] = {}
    groups: dict[str, int] = {}

    def add(group: str, name: str, flops: int) -> None:
        per_layer[name] = flops
        groups[group] = groups.get(group, 0) + flops

    for spec in coarse_layer_specs(in_channels, cnum):
        add("coarse_generator", f"coarse_generator.{spec.name}", conv_flops(spec, height, width))
    fine = fine_layer_specs(in_channels, cnum)
    for branch, group in (("conv_branch", "conv_branch"), ("attention_encoder", "attention_branch")):
        for spec in fine[branch]:
            add(f"fine_generator.{group}", f"fine_generator.{spec.name}", conv_flops(spec, height, width))
    # Attention at 1/8 of the image: L background patches matched against P foreground positions.
    positions = (height // (4 * RATE)) * (width // (4 * RATE))
    channels = fine["attention_encoder"][-1].out_channels
    matching_patch = channels * 3 * 3
    raw_patch = channels * (2 * RATE) ** 2
    add("fine_generator.attention_branch", "fine_generator.contextual_attention.matching",
        2 * matching_patch * positions * positions)
    add("fine_generator.attention_branch", "fine_generator.contextual_attention.reconstruction",
        2 * raw_patch * positions * positions)
    for spec in fine["attention_decoder"]:
        add("fine_generator.attention_branch", f"fine_generator.{spec.name}", conv_flops(spec, height, width))
    for spec in fine["merge"]:
        add("fine_generator.merge", f"fine_generator.{spec.name}", conv_flops(spec, height, width))
    return FlopCount(per_layer, groups)


def critic_flops(cnum: int = 32, in_channels: int = 1, input_size: int = 128) -> FlopCount:
    """Analytic FLOPs of one critic forward (conv stack and linear score) on an input_size^2 input."""
    if input_size % DOWNSAMPLING:
        raise ValueError(f"input size must be a multiple of {DOWNSAMPLING}, got {input_size}")
    widths = (in_channels, cnum, 2 * cnum, 4 * cnum, 4 * cnum)
    per_layer = {
        f"dis_conv_module.conv{i + 1}": 2 * widths[i] * widths[i + 1] * 25 * (input_size // 2 ** (i + 1)) ** 2
        for i in range(4)
    }
    per_layer["linear"] = 2 * 4 * cnum * (input_size // DOWNSAMPLING) ** 2
    groups = {"dis_conv_module": sum(per_layer.values()) - per_layer["linear"], "linear": per_layer["linear"]}
    return FlopCount(per_layer, groups)


def _gflop(flops: int) -> str:
    return f"{flops / 1e9:8.2f} GFLOP"


def architecture_lines(config: PicardTrainConfig) -> list[str]:
    """What ``picard-ad describe`` prints: layer table, parameters per stage and branch, FLOPs per completion.

    Widths (cnum, in_channels) and geometry (the patch, and the hole box the local critic, encoder phi, sees) come
    from the training config.
    """
    cnum, in_channels, patch_size = config.cnum, config.in_channels, config.patch_size
    local_critic_input = config.hole_size
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
