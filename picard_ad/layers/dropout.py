"""Reproducible test-time dropout: masks that are a pure function of each sample's seed (no random-number generator)."""

from __future__ import annotations

import typing
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from picard_ad.errors import ConfigError

_UINT32 = 0xFFFFFFFF
_CPU_HASH_CHUNK = 2**16  # int64 values hashed at once by element dropout on a CPU: 512 KiB, in L2 cache


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``x * constant mod 2**32`` for int64 tensors holding uint32 values, without int64 overflow.

    The constant is split into 16-bit halves so every intermediate product stays below 2**48: the result is
    exact on any device, with no reliance on how signed overflow wraps.
    """
    high = (x * (constant >> 16)) & 0xFFFF
    return ((high << 16) + x * (constant & 0xFFFF)) & _UINT32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash ("lowbias32", C. Wellons) of int64 tensors holding uint32 values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def layer_key(layer_name: str) -> int:
    """A stable 32-bit key of a layer name (CRC-32; Python's ``hash`` changes between processes)."""
    return zlib.crc32(layer_name.encode("utf-8"))


DropoutKind = Literal["spatial", "element"]
DROPOUT_KINDS: tuple[str, ...] = typing.get_args(DropoutKind)
"""What a dropout mask drops: whole channels (the paper's spatial dropout) or single activations."""


@dataclass(frozen=True, eq=False)
class ChannelDropout:
    """Test-time dropout whose masks are a pure function of the sample's seed and of what is dropped.

    kind "spatial" (PICARD's spatial dropout, ``nn.Dropout2d``): sample n keeps channel c of layer L unless
    ``hash(seeds[n], L, c) < p * 2**32``. kind "element" (the regular dropout of the paper's appendix B.2,
    ``nn.Dropout``): sample n keeps the activation at (c, y, x) unless ``hash(seeds[n], L, c, y, x) < p * 2**32``,
    with (y, x) its row and column in the activation map the layer is given. Survivors are scaled by 1 / (1 - p).
    No random-number generator is involved, so a sample's completion depends only on its own seed: not on the
    batch it sits in, the thread count or the device.

    Element masks are keyed by position, so a layer must be given its full feature map: a layer that
    ``InpaintingGenerator.complete_region`` runs on a crop (the decoders) would get the crop's masks, not those
    of the full map. ``picard_ad.methods.picard.PicardSettings`` refuses element dropout on those layers.

    p: probability of dropping a channel (spatial) or an activation (element), 0 <= p < 1.
    layers: fully qualified layer names (e.g. ``"coarse_generator.conv3"``) whose activations are dropped.
    seeds: (N,) int64, one seed per sample of the batch that is passed through the network.
    kind: "spatial" or "element".
    """

    p: float
    layers: frozenset[str]
    seeds: torch.Tensor
    kind: DropoutKind = "spatial"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) < 1.0:
            raise ConfigError(f"dropout probability must be in [0, 1), got {self.p}")
        if isinstance(self.layers, str) or not isinstance(self.layers, Iterable):
            raise ConfigError(f"dropout layers must be a collection of layer names, got {self.layers!r}")
        if not isinstance(self.seeds, torch.Tensor) or self.seeds.dtype != torch.int64 or self.seeds.ndim != 1:
            raise ValueError("dropout seeds must be a 1-D torch.int64 tensor with one seed per sample")
        if self.kind not in DROPOUT_KINDS:
            raise ConfigError(f"unknown dropout kind {self.kind!r}; valid kinds: {', '.join(DROPOUT_KINDS)}")
        object.__setattr__(self, "p", float(self.p))
        object.__setattr__(self, "layers", frozenset(self.layers))

    def _channel_hashes(self, layer_name: str, num_channels: int, device: torch.device | str) -> torch.Tensor:
        """hash(seed, layer, channel) of every sample and channel: (N, num_channels) int64 holding uint32."""
        seeds = self.seeds.to(device)
        state = torch.full_like(seeds, layer_key(layer_name))
        state = mix32(state ^ (seeds & _UINT32))
        state = mix32(state ^ ((seeds >> 32) & _UINT32))
        channels = mix32(torch.arange(num_channels, dtype=torch.int64, device=device))
        return mix32(state[:, None] ^ channels[None, :])

    def _threshold(self) -> int:
        return round(self.p * 2**32)

    def keep_mask(self, layer_name: str, num_channels: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Which channels survive spatial dropout in layer ``layer_name``: (N, num_channels) bool on ``device``."""
        return self._channel_hashes(layer_name, num_channels, device) >= self._threshold()

    def element_keep_mask(
        self, layer_name: str, shape: tuple[int, int, int], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Which activations survive element dropout in layer ``layer_name`` of (C, H, W) ``shape``: (N, C, H, W)
        bool on ``device``. The hash chain goes on from the channel's: (seed, layer, channel), then row, column.
        """
        num_channels, height, width = shape
        device = torch.device(device)
        rows = mix32(torch.arange(height, dtype=torch.int64, device=device))
        cols = mix32(torch.arange(width, dtype=torch.int64, device=device))
        states = mix32(self._channel_hashes(layer_name, num_channels, device)[:, :, None] ^ rows).view(-1, 1)
        keep = torch.empty(states.shape[0], width, dtype=torch.bool, device=device)
        # On a CPU, hashing a whole activation map at once streams a dozen int64 temporaries of its size through
        # memory (20x slower than cache-sized pieces); a GPU wants few large kernels instead.
        step = max(1, _CPU_HASH_CHUNK // width) if device.type == "cpu" else states.shape[0]
        for start in range(0, states.shape[0], step):
            keep[start : start + step] = mix32(states[start : start + step] ^ cols) >= self._threshold()
        return keep.view(-1, num_channels, height, width)

    def channel_scale(
        self, layer_name: str, batch: int, num_channels: int, device: torch.device | str = "cpu"
    ) -> torch.Tensor | None:
        """Spatial dropout of layer ``layer_name`` as factors (N, num_channels, 1, 1) float32: 0 for a dropped
        channel, 1 / (1 - p) for a kept one. None where the layer drops nothing or the kind is "element"."""
        if layer_name not in self.layers or self.kind != "spatial":
            return None
        self._check_batch(batch)
        keep = self.keep_mask(layer_name, num_channels, device)
        return (keep.float() * (1.0 / (1.0 - self.p)))[:, :, None, None]

    def _check_batch(self, batch: int) -> None:
        if batch != self.seeds.shape[0]:
            raise ValueError(f"dropout has {self.seeds.shape[0]} seeds but the batch has {batch} samples")

    def __call__(self, activations: torch.Tensor, layer_name: str) -> torch.Tensor:
        """Drop channels or activations of ``activations`` (N, C, H, W) if ``layer_name`` is a chosen layer."""
        if layer_name not in self.layers:
            return activations
        if self.kind == "spatial":
            scale = self.channel_scale(layer_name, *activations.shape[:2], activations.device)
            return activations * scale.to(activations.dtype)
        self._check_batch(activations.shape[0])
        keep = self.element_keep_mask(layer_name, tuple(activations.shape[1:]), activations.device)
        # Masking with the bool tensor, then scaling in place, spares two temporaries of the activations' size.
        return torch.mul(activations, keep).mul_(1.0 / (1.0 - self.p))
