"""Contextual attention (Yu et al. 2018) as used by PICARD's fine stage.

Differences from the reference implementation (same results up to float rounding otherwise):
- each sample uses its own mask; the reference uses sample 0's mask for the whole batch, which is only right
  when every mask in the batch is the same;
- patch matching is a matrix product of pixels followed by shifted sums (not of unfolded 3 x 3 patches), and
  pasting gathers raw patches channels-last and adds them back in place of an unfold and a fold;
- no optical-flow visualisation is computed;
- the matching and softmax always run in float32, also under autocast (see ``attention_weights``);
- subnormal attention weights are set to 0 (they cost CPU time and nothing else).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RATE = 2
"""Background patches are matched at 1/RATE resolution and pasted back as (2 RATE)^2 patches with stride RATE."""


def _diagonal_sum(scores: torch.Tensor, size: int) -> torch.Tensor:
    """Convolution of each (L, P) score matrix with a size x size identity kernel, zero padded.

    scores: (N, L, P) -> (N, L, P), out[n, i, j] = sum over |d| <= size // 2 of scores[n, i + d, j + d].
    """
    fused = scores.clone()
    for offset in range(1, size // 2 + 1):
        fused[:, offset:, offset:] += scores[:, :-offset, :-offset]
        fused[:, :-offset, :-offset] += scores[:, offset:, offset:]
    return fused


def _diagonal_sum_grid(
    scores: torch.Tensor, size: int, key_axis: int, carry_axis: int, query_axis: int
) -> torch.Tensor:
    """``_diagonal_sum`` of scores whose background patches form a grid (two axes) and whose foreground positions
    form a grid too, for one flattening of the patch grid: ``key_axis`` varies fastest and, like the flattened
    index, carries into ``carry_axis`` at its ends; foreground positions shift along ``query_axis`` only, so the
    result is right except within size // 2 of that axis's ends.

    Row-major keys (key_axis = columns) give the reference's first pass, column-major ones (key_axis = rows) its
    pass on the transposed layout, without copying the scores into that layout. The additions run in the order of
    ``_diagonal_sum``, so the valid part equals it bit for bit.
    """
    fused = scores.clone()
    keys, carries, queries = scores.shape[key_axis], scores.shape[carry_axis], scores.shape[query_axis]

    def part(x: torch.Tensor, key: tuple[int, int], carry: tuple[int, int], query: tuple[int, int]) -> torch.Tensor:
        return x.narrow(key_axis, *key).narrow(carry_axis, *carry).narrow(query_axis, *query)

    for offset in range(1, size // 2 + 1):
        inner, edge, rest = keys - offset, (0, carries), (0, carries - 1)
        # fused[k, q] += scores[k - offset, q - offset], k flattened: before the key axis's start, the previous
        # carry's end (the second add_); then the same forwards.
        part(fused, (offset, inner), edge, (offset, queries - offset)).add_(
            part(scores, (0, inner), edge, (0, queries - offset))
        )
        part(fused, (0, offset), (1, carries - 1), (offset, queries - offset)).add_(
            part(scores, (inner, offset), rest, (0, queries - offset))
        )
        # fused[k, q] += scores[k + offset, q + offset]
        part(fused, (0, inner), edge, (0, queries - offset)).add_(
            part(scores, (offset, inner), edge, (offset, queries - offset))
        )
        part(fused, (inner, offset), rest, (0, queries - offset)).add_(
            part(scores, (0, offset), (1, carries - 1), (offset, queries - offset))
        )
    return fused


def _shifted_sum(
    pixels: torch.Tensor, size: int, lengths: tuple[int, int], query_axis: int, key_axis: int
) -> torch.Tensor:
    """sum over d < size of pixels shifted by d along both ``query_axis`` and ``key_axis``, keeping ``lengths``
    (query, key) of those axes: out[.., q, .., k, ..] = sum_d pixels[.., q + d, .., k + d, ..]."""
    total = None
    for offset in range(size):
        part = pixels.narrow(query_axis, offset, lengths[0]).narrow(key_axis, offset, lengths[1])
        total = part.clone(memory_format=torch.contiguous_format) if total is None else total.add_(part)
    return total


def _pasting_positions(start: int, stop: int, size: int) -> tuple[int, int]:
    """Positions [first, last) of a matching-grid axis of ``size`` whose pasted patches reach pixels
    [start, stop): position q pastes onto pixels RATE q - RATE / 2 .. RATE q + 3 RATE / 2 - 1."""
    padding, kernel = RATE // 2, 2 * RATE
    first = max(0, -(-(start + padding - kernel + 1) // RATE))
    last = min(size, (stop - 1 + padding) // RATE + 1)
    return first, last


def _paste(background: torch.Tensor, attention: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Background patches pasted by the attention weights: (N, C, RATE rows, RATE cols), the pixels that the
    ``rows`` x ``cols`` foreground positions weighed in ``attention`` (N, rows cols, L) paste onto, starting at
    the first position's first pixel.

    Position p pastes the weighted sum of the (2 RATE)^2 raw patches (stride RATE, zero padded by RATE / 2)
    onto pixels RATE p - RATE / 2 ..; overlapping patches cover each pixel 4 times, hence the division. Raw
    patches are gathered as rows of pixels with their channels last (a plain copy for channels_last maps), so
    the product's output needs only strided additions, not an unfold and a fold.
    """
    batch, channels = background.shape[:2]
    size, padding = 2 * RATE, RATE // 2
    # (N, H + 2 pad, W + 2 pad, C) -> (N, L, size * size * C), patch rows and columns before channels.
    padded = F.pad(background, (padding,) * 4).permute(0, 2, 3, 1)
    patches = padded.unfold(1, size, RATE).unfold(2, size, RATE)  # (N, h, w, C, size, size)
    patches = patches.permute(0, 1, 2, 4, 5, 3).reshape(batch, -1, size * size * channels)
    pasted = torch.bmm(attention.to(patches.dtype), patches)
    pasted = pasted.view(batch, rows, cols, size, size, channels)
    # Output pixel RATE p + offset - padding gets patch pixel offset of position p; the padding is cropped below.
    output = pasted.new_zeros(
        batch, RATE * rows + size - RATE, RATE * cols + size - RATE, channels, dtype=torch.float32
    )
    for row in range(size):
        for col in range(size):
            output[:, row : row + RATE * rows : RATE, col : col + RATE * cols : RATE].add_(pasted[:, :, :, row, col])
    output = output[:, padding : padding + RATE * rows, padding : padding + RATE * cols] / 4.0
    return output.permute(0, 3, 1, 2).to(pasted.dtype)


class ContextualAttention(nn.Module):
    """Fill each location of the foreground with background patches weighted by similarity (no parameters).

    ksize: side of the matching patches at half resolution (3 in PICARD).
    fuse_k: side of the identity kernel that propagates scores between neighbouring matches (3 in PICARD).
    softmax_scale: multiplier of the matching scores before the softmax over background patches (10).
    fuse: whether to apply the score propagation (on in PICARD).
    """

    def __init__(self, ksize: int = 3, fuse_k: int = 3, softmax_scale: float = 10.0, fuse: bool = True):
        super().__init__()
        if ksize % 2 != 1 or fuse_k % 2 != 1:
            raise ValueError(f"ksize and fuse_k must be odd, got {ksize} and {fuse_k}")
        self.ksize = ksize
        self.fuse_k = fuse_k
        self.softmax_scale = softmax_scale
        self.fuse = fuse

    def forward(
        self,
        foreground: torch.Tensor,
        background: torch.Tensor,
        mask: torch.Tensor | None = None,
        region: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """Reconstruct ``foreground`` from patches of ``background``.

        foreground, background: (N, C, H, W) float, H and W even (PICARD: the same 128 x 64 x 64 map).
        mask: (N, 1, s H / 2, s W / 2) float, non-zero in the hole, for an integer s (PICARD: the 256 x 256
            image mask, s = 8); background patches touching the hole get zero weight. None: all are valid.
        region: (top, left, bottom, right) in feature pixels, bottom and right exclusive: reconstruct only
            that part (only the foreground positions pasting into it are weighed). None: all of it.
        Returns (N, C, H, W), or (N, C, bottom - top, right - left) for a region, in the dtype of ``foreground``.
        """
        height, width = foreground.shape[-2:]
        top, left, bottom, right = (0, 0, height, width) if region is None else region
        rows = _pasting_positions(top, bottom, height // RATE)
        cols = _pasting_positions(left, right, width // RATE)
        attention = self.attention_weights(foreground, background, mask, (rows, cols))
        # Pasting back tolerates reduced precision (bfloat16 weights are off by at most 0.4 %), so unlike the
        # matching it follows the ambient autocast.
        pasted = _paste(background, attention, rows[1] - rows[0], cols[1] - cols[0])
        row_offset, col_offset = top - RATE * rows[0], left - RATE * cols[0]
        output = pasted[..., row_offset : row_offset + bottom - top, col_offset : col_offset + right - left]
        return output.to(foreground.dtype)

    def attention_weights(
        self,
        foreground: torch.Tensor,
        background: torch.Tensor,
        mask: torch.Tensor | None = None,
        positions: tuple[tuple[int, int], tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Softmax weights of background patches, (N, P, L) float32, P = L = (H / 2) (W / 2), row-major.

        Entry [n, p, l] weighs background patch l for foreground position p; it is 0 wherever patch l touches
        sample n's hole. Arguments as for ``forward``; positions: ((start, stop), (start, stop)) rows and
        columns of the (H / 2, W / 2) foreground grid to keep (P is then their count), or None for all.
        Runs in float32 even under autocast: the softmax of 10 x the matching score needs more than bfloat16's
        8 significant bits (a score of 10 would be rounded by up to 0.03, changing weights by up to 37 %).
        """
        if foreground.shape != background.shape or foreground.ndim != 4:
            raise ValueError(
                f"foreground and background must have the same (N, C, H, W) shape, "
                f"got {tuple(foreground.shape)} and {tuple(background.shape)}"
            )
        batch, _, height, width = foreground.shape
        if height % RATE or width % RATE:
            raise ValueError(f"feature map size must be a multiple of {RATE}, got {height} x {width}")
        small_height, small_width = height // RATE, width // RATE
        valid = self._valid_patches(mask, batch, small_height, small_width, foreground.device)
        with torch.autocast(device_type=foreground.device.type, enabled=False):
            # Nearest-neighbour downsampling by RATE is taking every RATE-th pixel.
            small = background[:, :, ::RATE, ::RATE].float()
            query_small = small if foreground is background else foreground[:, :, ::RATE, ::RATE].float()
            # Each key patch's sum of squares is a ksize x ksize box sum (zero padded) of the per-pixel sums over
            # channels. 1e-4 is added per element before the sum, as in the reference, so flat patches do not
            # divide by 0.
            padding = self.ksize // 2
            energy = F.avg_pool2d(small.square().sum(dim=1, keepdim=True), self.ksize, 1, padding) * self.ksize**2
            inverse_norms = torch.rsqrt(energy[:, 0] + 1e-4 * self.ksize**2 * small.shape[1])  # (N, h, w)
            length = small_height * small_width
            (row_start, row_stop), (col_start, col_stop) = positions or ((0, small_height), (0, small_width))
            scores = small.new_empty(batch, row_stop - row_start, col_stop - col_start, small_height, small_width)
            scale = valid[:, None] * self.softmax_scale
            # One sample at a time: its scores (a few MB) stay in cache through the many shifted sums of matching
            # and fusion, which streaming the whole batch's through memory makes twice as slow.
            for index in range(batch):
                sample = slice(index, index + 1)
                fused = self._fused_scores(query_small[sample], small[sample], inverse_norms[sample], positions)
                scores[sample].copy_(fused).mul_(scale[sample])
            # The softmax runs over background patches, so a kept position's weights do not depend on the others.
            attention = F.softmax(scores.view(batch, -1, length), dim=-1)
            # Weights of far-off matches underflow to subnormal floats, which can make the next product tens of
            # times slower on x86 CPUs; they are far below the float32 resolution of the result, so drop them.
            return F.threshold(attention, torch.finfo(attention.dtype).tiny, 0.0).mul_(valid.view(batch, 1, length))

    def _fused_scores(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        inverse_norms: torch.Tensor,
        positions: tuple[tuple[int, int], tuple[int, int]] | None,
    ) -> torch.Tensor:
        """Fused matching scores (N, rows, cols, h, w) of the query positions in ``positions`` (None: all)."""
        height, width = keys.shape[-2:]
        reach = self.fuse_k // 2 if self.fuse else 0
        everything = ((0, height), (0, width))
        (row_start, row_stop), (col_start, col_stop) = positions = positions or everything
        if (
            positions != everything
            and reach <= min(row_start, col_start)
            and (row_stop <= height - reach and col_stop <= width - reach)
        ):
            # Away from the grid's ends the fusion never wraps: matching the positions within its reach of the
            # kept ones suffices.
            near = ((row_start - reach, row_stop + reach), (col_start - reach, col_stop + reach))
            scores = self._normalised_scores(queries, keys, inverse_norms, near)
            if not reach:
                return scores
            # Rows of the flattened patch grid, then its columns (the reference's transposed pass).
            scores = _diagonal_sum_grid(scores, self.fuse_k, key_axis=4, carry_axis=3, query_axis=2)
            scores = _diagonal_sum_grid(scores, self.fuse_k, key_axis=3, carry_axis=4, query_axis=1)
            return scores[:, reach : scores.shape[1] - reach, reach : scores.shape[2] - reach]
        # Next to the grid's ends the fusion wraps around rows, so all positions are matched first.
        scores = self._normalised_scores(queries, keys, inverse_norms, everything)
        if self.fuse:
            length = height * width
            scores = self._fuse(scores.view(-1, length, length), height, width)
        return scores.view(-1, height, width, height, width)[:, row_start:row_stop, col_start:col_stop]

    def _normalised_scores(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        inverse_norms: torch.Tensor,
        positions: tuple[tuple[int, int], tuple[int, int]],
    ) -> torch.Tensor:
        """Matching scores of the query patches at ``positions`` against every key patch: (N, rows, cols, h, w),
        the dot products of the ksize x ksize patches (zero padded) divided by the key patch's norm.

        queries, keys: (N, C, h, w) float32 maps; inverse_norms: (N, h, w). A patch product is the sum over the
        patch's offsets of pixel products, so one matrix product of pixels (C-long vectors, not ksize^2 C-long
        patches) and 2 ksize shifted sums of it give all of them, at about 1 / ksize^2 of the FLOPs.
        """
        (row_start, row_stop), (col_start, col_stop) = positions
        pad = self.ksize // 2
        batch, channels, height, width = keys.shape
        # Pixels as rows of C values (free for channels_last maps), padded with the zeros the patches reach.
        keys = F.pad(keys, (pad,) * 4).permute(0, 2, 3, 1).reshape(batch, -1, channels)
        queries = F.pad(queries, (pad,) * 4)[:, :, row_start : row_stop + 2 * pad, col_start : col_stop + 2 * pad]
        queries = queries.permute(0, 2, 3, 1).reshape(batch, -1, channels)
        rows, cols = row_stop - row_start, col_stop - col_start
        pixels = torch.bmm(queries, keys.transpose(1, 2))
        pixels = pixels.view(batch, rows + 2 * pad, cols + 2 * pad, height + 2 * pad, width + 2 * pad)
        # The ksize x ksize sums are separable: along columns, then along rows (2 ksize terms, not ksize^2).
        by_cols = _shifted_sum(pixels, self.ksize, (cols, width), query_axis=2, key_axis=4)
        scores = _shifted_sum(by_cols, self.ksize, (rows, height), query_axis=1, key_axis=3)
        return scores.mul_(inverse_norms[:, None, None])

    def _fuse(self, scores: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Propagate scores along rows, then along columns, of the (foreground, background) position grid.

        The reference flattens positions row-major and convolves with an identity kernel, so propagation wraps
        across row ends; repeating it on the transposed layout gives the column direction. Both passes treat
        the two grids alike, so the result is the same for (foreground, background) or (background,
        foreground) scores.
        """
        batch, length, positions = scores.shape
        scores = _diagonal_sum(scores, self.fuse_k)
        transposed = scores.view(batch, height, width, height, width).permute(0, 2, 1, 4, 3)
        fused = _diagonal_sum(transposed.reshape(batch, length, positions), self.fuse_k)
        fused = fused.view(batch, width, height, width, height).permute(0, 2, 1, 4, 3)
        return fused.reshape(batch, length, positions)

    def _valid_patches(
        self, mask: torch.Tensor | None, batch: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """(N, 1, h, w) float32: 1 for background patches whose ksize x ksize footprint lies outside the hole."""
        if mask is None:
            return torch.ones(batch, 1, height, width, device=device)
        if mask.ndim != 4 or mask.shape[0] != batch or mask.shape[1] != 1:
            raise ValueError(f"mask must be ({batch}, 1, h, w), got {tuple(mask.shape)}")
        step = mask.shape[2] // height
        if step < 1 or mask.shape[2] != step * height or mask.shape[3] != step * width:
            raise ValueError(
                f"mask size {tuple(mask.shape[2:])} is not an integer multiple of the matching grid {height} x {width}"
            )
        small = (mask[:, :, ::step, ::step] != 0).float()
        in_hole = F.max_pool2d(small, kernel_size=self.ksize, stride=1, padding=self.ksize // 2)
        return (in_hole == 0).float()
