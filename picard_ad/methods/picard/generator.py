"""PICARD's two-stage completion network (the DeepFill v1 generator of Yu et al. 2018, as in the reference code).

Layer and module names follow the reference, so its released state_dicts load by name. Differences: each
sample's own mask drives contextual attention (see contextual_attention.py), the debug image dump and the flow
image are gone, and test-time dropout is an explicit, seeded argument instead of modules switched to train mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from picard_ad.errors import ConfigError
from picard_ad.layers import ChannelDropout, ConvBlock
from picard_ad.methods.picard.contextual_attention import ContextualAttention

SIZE_MULTIPLE = 8
"""Image height and width must be multiples of this (two stride-2 convolutions, then attention at 1/2)."""


@dataclass(frozen=True)
class ConvSpec:
    """One row of the layer table: a ConvBlock and where it sits.

    resolution: output size as a divisor of the image size (1, 2 or 4).
    upsample_before: nearest x2 upsampling of the input before the convolution.
    """

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    activation: str | None = "elu"
    resolution: int = 1
    upsample_before: bool = False


def _atrous(channels: int) -> tuple[ConvSpec, ...]:
    """conv7_atrous .. conv10_atrous at 1/4 size: dilation (and padding) 2, 4, 8, 16."""
    return tuple(
        ConvSpec(f"conv{7 + i}_atrous", channels, channels, padding=rate, dilation=rate, resolution=4)
        for i, rate in enumerate((2, 4, 8, 16))
    )


DECODER_DEPTH = 7
"""Layers 11 .. 17 of each stage: the decoder whose output can be restricted to the hole at inference."""


def _decoder(prefix: str, in_channels: int, out_channels: int, c: int) -> tuple[ConvSpec, ...]:
    """Layers 11 .. 17 of a stage: two convs at 1/4 size, x2, two at 1/2, x2, three at full size."""
    return (
        ConvSpec(f"{prefix}11", in_channels, 4 * c, resolution=4),
        ConvSpec(f"{prefix}12", 4 * c, 4 * c, resolution=4),
        ConvSpec(f"{prefix}13", 4 * c, 2 * c, resolution=2, upsample_before=True),
        ConvSpec(f"{prefix}14", 2 * c, 2 * c, resolution=2),
        ConvSpec(f"{prefix}15", 2 * c, c, upsample_before=True),
        ConvSpec(f"{prefix}16", c, c // 2),
        ConvSpec(f"{prefix}17", c // 2, out_channels, activation=None),
    )


def coarse_layer_specs(in_channels: int = 1, cnum: int = 32) -> tuple[ConvSpec, ...]:
    """The coarse stage, conv1 .. conv17 (spec section 1). Input: image, ones and mask channels."""
    c = cnum
    return (
        ConvSpec("conv1", in_channels + 2, c, kernel_size=5, padding=2),
        ConvSpec("conv2_downsample", c, 2 * c, stride=2, resolution=2),
        ConvSpec("conv3", 2 * c, 2 * c, resolution=2),
        ConvSpec("conv4_downsample", 2 * c, 4 * c, stride=2, resolution=4),
        ConvSpec("conv5", 4 * c, 4 * c, resolution=4),
        ConvSpec("conv6", 4 * c, 4 * c, resolution=4),
        *_atrous(4 * c),
        *_decoder("conv", 4 * c, in_channels, c),
    )


def fine_layer_specs(in_channels: int = 1, cnum: int = 32) -> dict[str, tuple[ConvSpec, ...]]:
    """The fine stage by branch: conv branch, attention branch (before / after attention) and merge."""
    c = cnum
    return {
        "conv_branch": (
            ConvSpec("conv1", in_channels + 2, c, kernel_size=5, padding=2),
            ConvSpec("conv2_downsample", c, c, stride=2, resolution=2),
            ConvSpec("conv3", c, 2 * c, resolution=2),
            ConvSpec("conv4_downsample", 2 * c, 2 * c, stride=2, resolution=4),
            ConvSpec("conv5", 2 * c, 4 * c, resolution=4),
            ConvSpec("conv6", 4 * c, 4 * c, resolution=4),
            *_atrous(4 * c),
        ),
        "attention_encoder": (
            ConvSpec("pmconv1", in_channels + 2, c, kernel_size=5, padding=2),
            ConvSpec("pmconv2_downsample", c, c, stride=2, resolution=2),
            ConvSpec("pmconv3", c, 2 * c, resolution=2),
            ConvSpec("pmconv4_downsample", 2 * c, 4 * c, stride=2, resolution=4),
            ConvSpec("pmconv5", 4 * c, 4 * c, resolution=4),
            ConvSpec("pmconv6", 4 * c, 4 * c, activation="relu", resolution=4),
        ),
        "attention_decoder": (
            ConvSpec("pmconv9", 4 * c, 4 * c, resolution=4),
            ConvSpec("pmconv10", 4 * c, 4 * c, resolution=4),
        ),
        # The conv branch's and the attention branch's 4 cnum channels, concatenated in that order.
        "merge": _decoder("allconv", 8 * c, in_channels, c),
    }


def _build(module: nn.Module, prefix: str, specs: Iterable[ConvSpec]) -> None:
    for spec in specs:
        block = ConvBlock(
            spec.in_channels,
            spec.out_channels,
            spec.kernel_size,
            spec.stride,
            spec.padding,
            spec.dilation,
            spec.activation,
        )
        block.layer_name = f"{prefix}.{spec.name}"
        module.add_module(spec.name, block)


def _run(
    module: nn.Module, specs: Iterable[ConvSpec], x: torch.Tensor, dropout: ChannelDropout | None, repeats: int = 1
) -> torch.Tensor:
    """Run ``specs`` on x (N, C, H, W). With ``repeats`` > 1, each image stands for that many consecutive samples
    (pluralistic completions of one window): layers before the first dropout layer run once per image, and the
    output holds N * repeats samples."""
    for spec in specs:
        block = getattr(module, spec.name)
        if repeats > 1 and dropout is not None and block.layer_name in dropout.layers:
            x, repeats = _expand_dropped(block(x, upsample=spec.upsample_before), repeats, dropout, block.layer_name), 1
        else:
            x = block(x, dropout, upsample=spec.upsample_before)
    return _expand(x, repeats)


def _layout(x: torch.Tensor) -> torch.memory_format:
    """channels_last for NHWC 4-d tensors, else the default: new tensors built from x keep its fast layout."""
    channels_last = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _expand(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """Each sample of x (N, ...) ``repeats`` times in a row: (N * repeats, ...), in x's memory format."""
    if repeats == 1:
        return x
    out = torch.empty((x.shape[0] * repeats, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=_layout(x))
    out.view(x.shape[0], repeats, *x.shape[1:]).copy_(x.unsqueeze(1))
    return out


def _expand_dropped(x: torch.Tensor, repeats: int, dropout: ChannelDropout, layer_name: str) -> torch.Tensor:
    """``dropout(_expand(x, repeats), layer_name)``; for spatial dropout in one pass, each copy written scaled."""
    scale = dropout.channel_scale(layer_name, x.shape[0] * repeats, x.shape[1], x.device)
    if scale is None:
        return dropout(_expand(x, repeats), layer_name)
    out = torch.empty((x.shape[0] * repeats, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=_layout(x))
    scale = scale.to(x.dtype).view(x.shape[0], repeats, x.shape[1], 1, 1)
    torch.mul(x.unsqueeze(1), scale, out=out.view(x.shape[0], repeats, *x.shape[1:]))
    return out


Span = tuple[int, int]
"""A half-open pixel range [start, stop) along one image axis."""
Region = tuple[int, int, int, int]
"""(top, left, bottom, right) in pixels, bottom and right exclusive."""


def _receptive_span(specs: Sequence[ConvSpec], span: Span, size: int) -> Span:
    """The input span that ``specs`` (stride-1 "same" convolutions, some after x2 upsampling) read to produce
    output ``span`` of an output axis of ``size`` pixels, clipped to the input (zero padding lies beyond it).
    """
    start, stop = span
    for spec in reversed(specs):
        if spec.stride != 1 or spec.padding != spec.dilation * (spec.kernel_size // 2):
            raise ValueError(f"layer {spec.name} is not a stride-1 'same' convolution")
        reach = spec.padding
        start, stop = max(start - reach, 0), min(stop + reach, size)
        if spec.upsample_before:
            start, stop, size = start // 2, -(-stop // 2), size // 2
    return start, stop


def _run_region(
    module: nn.Module,
    specs: Sequence[ConvSpec],
    x: torch.Tensor,
    rows: Span,
    cols: Span,
    dropout: ChannelDropout | None,
) -> torch.Tensor:
    """``_run`` restricted to the output ``rows`` x ``cols``: (N, C', rows, cols), equal to that part of the
    full output.

    The input is cropped to the receptive field of the region; the crop's border (where zero padding replaces
    real neighbours) then only affects outputs outside the region.
    """
    scale = 2 ** sum(spec.upsample_before for spec in specs)
    in_rows = _receptive_span(specs, rows, x.shape[-2] * scale)
    in_cols = _receptive_span(specs, cols, x.shape[-1] * scale)
    x = _run(module, specs, x[..., in_rows[0] : in_rows[1], in_cols[0] : in_cols[1]], dropout)
    top, left = rows[0] - in_rows[0] * scale, cols[0] - in_cols[0] * scale
    return x[..., top : top + rows[1] - rows[0], left : left + cols[1] - cols[0]]


CHANGED_AREA_LIMIT = 0.8
"""``_run_changed`` runs a layer per sample on its changed part only while that part is below this fraction of the
layer's output (computing the rest once per image then no longer pays)."""


def _changed_span(spec: ConvSpec, span: Span, size: int) -> tuple[Span, Span, int]:
    """A convolution (no upsampling) over an input axis of ``size`` pixels whose values differ between samples only
    on ``span``: the output span that can differ, the input span computing it reads (unclipped: zero padding lies
    beyond the axis) and the output axis length."""
    reach = spec.dilation * (spec.kernel_size - 1)
    out_size = (size + 2 * spec.padding - reach - 1) // spec.stride + 1
    first = max(0, -(-(span[0] + spec.padding - reach) // spec.stride))
    stop = min(out_size, (span[1] - 1 + spec.padding) // spec.stride + 1)
    read = (first * spec.stride - spec.padding, (stop - 1) * spec.stride - spec.padding + reach + 1)
    return (first, stop), read, out_size


def _assemble(
    base: torch.Tensor, changed: torch.Tensor, rows: Span, cols: Span, read: Region, repeats: int
) -> torch.Tensor:
    """The part ``read`` (top, left, bottom, right; may reach beyond the map, zeros there) of per-sample maps that
    equal ``base`` (N, C, H, W, one per image) except on rows x cols, where they are ``changed``
    (N * repeats, C, rows, cols). Returns (N * repeats, C, bottom - top, right - left)."""
    top, left, bottom, right = read
    height, width = base.shape[-2:]
    inner = (max(top, 0), max(left, 0), min(bottom, height), min(right, width))
    shape = (base.shape[0] * repeats, base.shape[1], bottom - top, right - left)
    window = torch.empty(shape, dtype=base.dtype, device=base.device, memory_format=_layout(base))
    if inner != read:
        window.zero_()
    window.view(base.shape[0], repeats, *shape[1:])[
        ..., inner[0] - top : inner[2] - top, inner[1] - left : inner[3] - left
    ].copy_(base[:, None, :, inner[0] : inner[2], inner[1] : inner[3]])
    window[..., rows[0] - top : rows[1] - top, cols[0] - left : cols[1] - left] = changed
    return window


def _paste(base: torch.Tensor, changed: torch.Tensor, rows: Span, cols: Span, repeats: int) -> torch.Tensor:
    """Whole per-sample maps (N * repeats, C, H, W): ``base`` (N, ...) repeated, ``changed`` on rows x cols."""
    full = _expand(base, repeats) if repeats > 1 else base.clone()
    full[..., rows[0] : rows[1], cols[0] : cols[1]] = changed
    return full


def _run_changed(
    module: nn.Module,
    specs: Sequence[ConvSpec],
    base: torch.Tensor,
    changed: torch.Tensor,
    rows: Span,
    cols: Span,
    dropout: ChannelDropout | None,
    repeats: int,
) -> torch.Tensor:
    """``_run`` on N * repeats samples whose inputs equal ``base`` (N, C, H, W; one per image) except on
    rows x cols, where they are ``changed`` (N * repeats, C, rows, cols): the fine stage's inputs differ between
    the completions of one window only in the hole. Same values as ``_run`` on the whole inputs.

    Each layer runs once per image on the whole map and once per sample on the part its changed input reaches,
    until that part covers most of the map or a dropout layer (a per-sample scale of whole channels) is passed;
    the remaining layers run per sample on whole maps.
    """
    if repeats == 1:  # nothing to share
        return _run(module, specs, _paste(base, changed, rows, cols, 1), dropout)
    stop = len(specs)
    for index, spec in enumerate(specs):
        height, width = base.shape[-2:]
        out_rows, read_rows, out_height = _changed_span(spec, rows, height)
        out_cols, read_cols, out_width = _changed_span(spec, cols, width)
        area = (out_rows[1] - out_rows[0]) * (out_cols[1] - out_cols[0])
        if spec.upsample_before or area >= CHANGED_AREA_LIMIT * out_height * out_width:
            stop = index
            break
        block = getattr(module, spec.name)
        read = (read_rows[0], read_cols[0], read_rows[1], read_cols[1])
        changed = block(_assemble(base, changed, rows, cols, read, repeats), padding=0)
        base, rows, cols = block(base), out_rows, out_cols
        if dropout is not None and block.layer_name in dropout.layers:
            stop = index + 1
            return _run(
                module, specs[stop:], dropout(_paste(base, changed, rows, cols, repeats), block.layer_name), dropout
            )
    return _run(module, specs[stop:], _paste(base, changed, rows, cols, repeats), dropout)


def _split_last_dilated(
    module: nn.Module, specs: Sequence[ConvSpec], dropout: ChannelDropout | None
) -> tuple[Sequence[ConvSpec], Sequence[ConvSpec]]:
    """An encoder path ending in its last dilated layer, split into the layers that run on whole maps and those
    that may run near the hole only (the decoder reads the path's output only there): that last layer, unless
    element dropout drops it (its masks are keyed by position in the whole map)."""
    last = getattr(module, specs[-1].name).layer_name
    element_dropped = dropout is not None and dropout.kind == "element" and last in dropout.layers
    return (specs, ()) if element_dropped else (specs[:-1], specs[-1:])


def _run_span(
    module: nn.Module,
    specs: Sequence[ConvSpec],
    x: torch.Tensor,
    rows: Span,
    cols: Span,
    dropout: ChannelDropout | None,
) -> torch.Tensor:
    """The rows x cols part of ``_run(module, specs, x)`` for at most one stride-1 "same" layer, computed there
    only: a valid convolution of the input around that part (zero padded beyond the map)."""
    if not specs:
        return x[..., rows[0] : rows[1], cols[0] : cols[1]]
    (spec,) = specs
    block, reach = getattr(module, spec.name), spec.padding
    height, width = x.shape[-2:]
    # Negative padding crops: one call takes the input around the part and pads it where it passes the map.
    window = F.pad(x, (reach - cols[0], cols[1] + reach - width, reach - rows[0], rows[1] + reach - height))
    return block(window, dropout, padding=0)


def _decoder_input_spans(decoder: Sequence[ConvSpec], region: Region, size: tuple[int, int]) -> tuple[Span, Span]:
    """Rows and columns of a decoder's input that its output ``region`` reads; size: the output's (H, W)."""
    top, left, bottom, right = region
    return _receptive_span(decoder, (top, bottom), size[0]), _receptive_span(decoder, (left, right), size[1])


class CoarseGenerator(nn.Module):
    """First stage: a dilated encoder-decoder from the masked image to a rough completion."""

    def __init__(self, in_channels: int = 1, cnum: int = 32):
        super().__init__()
        self.specs = coarse_layer_specs(in_channels, cnum)
        _build(self, "coarse_generator", self.specs)

    def forward(
        self,
        masked: torch.Tensor,
        mask: torch.Tensor,
        dropout: ChannelDropout | None = None,
        region: Region | None = None,
        repeats: int = 1,
    ) -> torch.Tensor:
        """masked: (N, C, H, W), hole zeroed; mask: (N, 1, H, W). Returns (N, C, H, W) clamped to [-1, 1], or
        only its ``region`` (N, C, bottom - top, right - left) when one is given (the decoder then runs on
        the region's receptive field only). repeats: completions per image (see ``_run``); the output then has
        N * repeats samples.
        """
        x = torch.cat([masked, torch.ones_like(mask), mask], dim=1)
        if region is None:
            return torch.clamp(_run(self, self.specs, x, dropout, repeats), -1.0, 1.0)
        encoder, last_dilated = _split_last_dilated(self, self.specs[:-DECODER_DEPTH], dropout)
        decoder = self.specs[-DECODER_DEPTH:]
        x = _run(self, encoder, x, dropout, repeats)
        # The encoder's last dilated layer computes only the decoder's input span, a crop the decoder then runs on
        # (its borders are the map's or lie beyond what the region reads).
        rows, cols = _decoder_input_spans(decoder, region, masked.shape[-2:])
        x = _run_span(self, last_dilated, x, rows, cols, dropout)
        scale = 2 ** sum(spec.upsample_before for spec in decoder)
        top, left, bottom, right = region
        inside = ((top - rows[0] * scale, bottom - rows[0] * scale), (left - cols[0] * scale, right - cols[0] * scale))
        return torch.clamp(_run_region(self, decoder, x, *inside, dropout), -1.0, 1.0)


class FineGenerator(nn.Module):
    """Second stage: a dilated conv branch and a contextual-attention branch, merged and decoded."""

    def __init__(self, in_channels: int = 1, cnum: int = 32):
        super().__init__()
        self.specs = fine_layer_specs(in_channels, cnum)
        _build(self, "fine_generator", self.specs["conv_branch"])
        _build(self, "fine_generator", self.specs["attention_encoder"])
        self.contextual_attention = ContextualAttention(ksize=3, fuse_k=3, softmax_scale=10.0, fuse=True)
        _build(self, "fine_generator", self.specs["attention_decoder"])
        _build(self, "fine_generator", self.specs["merge"])

    def branches(self) -> dict[str, tuple[str, ...]]:
        """Layer names by branch: conv_branch, attention_branch (incl. contextual attention) and merge."""
        names = {key: tuple(spec.name for spec in specs) for key, specs in self.specs.items()}
        return {
            "conv_branch": names["conv_branch"],
            "attention_branch": names["attention_encoder"] + ("contextual_attention",) + names["attention_decoder"],
            "merge": names["merge"],
        }

    def forward(
        self,
        x_stage1: torch.Tensor,
        masked: torch.Tensor,
        mask: torch.Tensor,
        dropout: ChannelDropout | None = None,
        region: Region | None = None,
        repeats: int = 1,
    ) -> torch.Tensor:
        """x_stage1, masked: (N, C, H, W); mask: (N, 1, H, W). Returns (N, C, H, W) clamped to [-1, 1].

        region: compute only that part of the output, (N, C, bottom - top, right - left); x_stage1 is then
            that part of the coarse output too, and the mask must be 0 outside the region.
        repeats: with a region, x_stage1 may hold ``repeats`` completions of each of the N images in a row
            (N * repeats samples); the layers that see only the images run once per image.
        """
        branches = (self.specs["conv_branch"], self.specs["attention_encoder"])
        if region is None:
            inpainted = x_stage1 * mask + masked * (1.0 - mask)
            x = torch.cat([inpainted, torch.ones_like(mask), mask], dim=1)
            hallucinated, attended = (_run(self, specs, x, dropout) for specs in branches)
        else:
            top, left, bottom, right = region
            inside = (..., slice(top, bottom), slice(left, right))
            hole = _expand(mask[inside], repeats)
            filled = x_stage1 * hole + _expand(masked[inside], repeats) * (1.0 - hole)
            # Outside the hole every completion of an image sees the same input: the image with its hole empty.
            images = torch.cat([masked, torch.ones_like(mask), mask], dim=1)
            changed = torch.cat([filled, torch.ones_like(hole), hole], dim=1)
            spans = ((top, bottom), (left, right))
            # The conv branch's last dilated layer runs below, on the part the merge decoder reads only.
            conv_branch, last_dilated = _split_last_dilated(self, branches[0], dropout)
            hallucinated, attended = (
                _run_changed(self, specs, images, changed, *spans, dropout, repeats)
                for specs in (conv_branch, branches[1])
            )
            mask = _expand(mask, repeats)
        merge, attention_decoder = self.specs["merge"], self.specs["attention_decoder"]
        if region is None:
            attended = self.contextual_attention(attended, attended, mask)
            attended = _run(self, attention_decoder, attended, dropout)
            merged = torch.cat([hallucinated, attended], dim=1)
            return torch.clamp(_run(self, merge, merged, dropout), -1.0, 1.0)
        rows, cols = _decoder_input_spans(merge, region, mask.shape[-2:])
        # Attention and its decoder likewise: only the receptive field of the merge decoder's input region.
        attended_rows = _receptive_span(attention_decoder, rows, attended.shape[-2])
        attended_cols = _receptive_span(attention_decoder, cols, attended.shape[-1])
        attention_region = (attended_rows[0], attended_cols[0], attended_rows[1], attended_cols[1])
        attended = self.contextual_attention(attended, attended, mask, attention_region)
        attended = _run(self, attention_decoder, attended, dropout)
        row_offset, col_offset = rows[0] - attended_rows[0], cols[0] - attended_cols[0]
        span_height, span_width = rows[1] - rows[0], cols[1] - cols[0]
        attended = attended[..., row_offset : row_offset + span_height, col_offset : col_offset + span_width]
        merged = torch.cat([_run_span(self, last_dilated, hallucinated, rows, cols, dropout), attended], dim=1)
        # The merge decoder's input is now exactly the receptive field of the region.
        scale = 2 ** sum(spec.upsample_before for spec in merge)
        output = _run(self, merge, merged, dropout)
        row_offset, col_offset = top - rows[0] * scale, left - cols[0] * scale
        output = output[..., row_offset : row_offset + bottom - top, col_offset : col_offset + right - left]
        return torch.clamp(output, -1.0, 1.0)


class InpaintingGenerator(nn.Module):
    """PICARD's completion network G: coarse then fine stage.

    in_channels: image channels (1 for grey). cnum: base width (32 in PICARD; must be even).
    """

    def __init__(self, in_channels: int = 1, cnum: int = 32):
        super().__init__()
        if in_channels < 1 or cnum < 2 or cnum % 2:
            raise ConfigError(f"need in_channels >= 1 and an even cnum >= 2, got {in_channels} and {cnum}")
        self.in_channels = in_channels
        self.cnum = cnum
        self.coarse_generator = CoarseGenerator(in_channels, cnum)
        self.fine_generator = FineGenerator(in_channels, cnum)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, dropout: ChannelDropout | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Complete the hole of ``image``.

        image: (N, C, H, W) float in [-1, 1]; H and W multiples of 8. The hole is zeroed here, so whatever it
            holds cannot leak into the completion.
        mask: (N, 1, H, W) float, 1 in the hole, 0 elsewhere.
        dropout: seeded channel dropout for pluralistic completions; None for the deterministic network.
        Returns (x_stage1, x_stage2): coarse and fine completions, each (N, C, H, W) clamped to [-1, 1].
        """
        self._check_inputs(image, mask, dropout)
        masked = image * (1.0 - mask)
        x_stage1 = self.coarse_generator(masked, mask, dropout)
        x_stage2 = self.fine_generator(x_stage1, masked, mask, dropout)
        return x_stage1, x_stage2

    def complete_region(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        region: Region,
        dropout: ChannelDropout | None = None,
        repeats: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference shortcut: ``forward``'s outputs inside ``region`` only, equal to those parts of them.

        Both decoders, each stage's last dilated layer (unless element dropout drops it), contextual attention
        and the attention decoder run on the region's receptive field only (about a third of the FLOPs saved for
        a 128 px hole in a 256 px image); training needs the full outputs for its losses, so it uses ``forward``.
        image, mask, dropout: as for ``forward``; the mask must be 0 outside ``region``.
        region: (top, left, bottom, right) in pixels, bottom and right exclusive.
        repeats: completions per image, R: sample n * R + r is completion r of image n, with its own dropout
            seed (``dropout`` then has N * R seeds). What does not depend on dropout runs once per image: the
            coarse layers before the first dropout layer and, outside the hole's reach, the fine stage's early
            layers; much cheaper than passing R copies of each image.
        Returns (x_stage1, x_stage2) inside the region, each (N * R, C, bottom - top, right - left).
        """
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        self._check_inputs(image, mask, dropout, repeats)
        top, left, bottom, right = (int(value) for value in region)
        height, width = image.shape[-2:]
        if not (0 <= top < bottom <= height and 0 <= left < right <= width):
            raise ValueError(f"region {tuple(region)} is not inside the {height} x {width} image")
        outside = mask.clone()
        outside[..., top:bottom, left:right] = 0.0
        if bool(outside.any()):
            raise ValueError(f"the mask has hole pixels outside the region {tuple(region)}")
        region = (top, left, bottom, right)
        masked = image * (1.0 - mask)
        x_stage1 = self.coarse_generator(masked, mask, dropout, region, repeats)
        x_stage2 = self.fine_generator(x_stage1, masked, mask, dropout, region, repeats)
        return x_stage1, x_stage2

    def complete(self, image: torch.Tensor, mask: torch.Tensor, dropout: ChannelDropout | None = None) -> torch.Tensor:
        """The fine completion pasted into the hole: (N, C, H, W), ``image`` outside the hole."""
        _, x_stage2 = self(image, mask, dropout)
        return x_stage2 * mask + image * (1.0 - mask)

    def _check_inputs(
        self, image: torch.Tensor, mask: torch.Tensor, dropout: ChannelDropout | None, repeats: int = 1
    ) -> None:
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"image must be (N, {self.in_channels}, H, W), got {tuple(image.shape)}")
        batch, _, height, width = image.shape
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {SIZE_MULTIPLE}, got {height} x {width}")
        if tuple(mask.shape) != (batch, 1, height, width):
            raise ValueError(f"mask must be ({batch}, 1, {height}, {width}), got {tuple(mask.shape)}")
        if dropout is not None:
            resolve_dropout_layers(sorted(dropout.layers))
            if dropout.seeds.shape[0] != batch * repeats:
                per_image = f" x {repeats} completions" if repeats > 1 else ""
                raise ValueError(f"dropout has {dropout.seeds.shape[0]} seeds for a batch of {batch}{per_image}")


def _qualified(stage: str, specs: Iterable[ConvSpec]) -> tuple[str, ...]:
    return tuple(f"{stage}.{spec.name}" for spec in specs)


_FINE = fine_layer_specs()
DROPOUT_LAYER_NAMES: tuple[str, ...] = _qualified("coarse_generator", coarse_layer_specs()) + tuple(
    name for specs in _FINE.values() for name in _qualified("fine_generator", specs)
)
"""Every layer after whose activation channel dropout can be applied, in network order."""

_CODE_LAYERS = ("conv2_downsample", "conv3", "conv4_downsample", "conv5", "conv6") + tuple(
    f"conv{i}_atrous" for i in range(7, 11)
)

DROPOUT_PRESETS: dict[str, frozenset[str]] = {
    # What produced the paper's numbers: the reference's fine-stage layer list never matches a module name
    # (spec section 2), so only these 9 coarse layers drop out.
    "reference": frozenset(f"coarse_generator.{name}" for name in _CODE_LAYERS),
    # The paper's rule (appendix A.1): every layer but the first, the last and those after the last dilated
    # layer, in both stages. Coarse: conv2_downsample .. conv10_atrous (the same 9 as "reference"). Fine:
    # conv2_downsample .. conv10_atrous, pmconv1 .. pmconv6, pmconv9, pmconv10 (17); not conv1 (first),
    # not allconv11 .. allconv17 (they follow conv10_atrous). The attention branch runs beside the dilated
    # convs rather than after them, and pmconv1 carries dropout in the reference's construction, so both
    # are included. 26 layers in all.
    "paper": frozenset(
        tuple(f"{stage}.{name}" for stage in ("coarse_generator", "fine_generator") for name in _CODE_LAYERS)
        + _qualified("fine_generator", _FINE["attention_encoder"] + _FINE["attention_decoder"])
    ),
}


def resolve_dropout_layers(preset_or_layers: str | Iterable[str]) -> frozenset[str]:
    """The layer names of a preset ("reference", "paper") or a validated collection of qualified names.

    Raises ConfigError naming the unknown preset or layers and listing the valid ones.
    """
    if isinstance(preset_or_layers, str):
        if preset_or_layers not in DROPOUT_PRESETS:
            raise ConfigError(
                f"unknown dropout preset {preset_or_layers!r}; valid presets: {', '.join(DROPOUT_PRESETS)} "
                f"(or give a list of layer names)"
            )
        return DROPOUT_PRESETS[preset_or_layers]
    layers = frozenset(preset_or_layers)
    unknown = sorted(layers - set(DROPOUT_LAYER_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown dropout layer(s) {', '.join(unknown)}; valid layers: {', '.join(DROPOUT_LAYER_NAMES)}"
        )
    return layers
