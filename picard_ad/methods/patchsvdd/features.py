"""The features of sliding windows: the encoder run over many windows in memory-sized batches.

Both the feature bank (normal windows, at fit time) and the heatmaps (at scoring time) come from here, so a window
is encoded the same way in both. Batches are sized from free memory and a measured footprint and run one
single-threaded forward per core (``picard_ad.localize.BatchedExecutor``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from picard_ad.localize.executor import BatchedExecutor
from picard_ad.methods.patchsvdd.networks import HierarchicalEncoder


class WindowFeatures:
    """(window, centred half) features of windows, each (N, D) float32, from a trained encoder.

    Args:
        encoder: the trained hierarchical encoder (its ``patch_size`` is the window side).
        device: where it runs.
        bf16: forwards under bf16 autocast (features then differ from float32 ones by bf16 rounding).
        batch_size: windows per forward, or None to size batches from free memory.
    """

    def __init__(self, encoder: HierarchicalEncoder, *, device: torch.device, bf16: bool, batch_size: int | None):
        self.executor = BatchedExecutor(device, bf16=bf16, batch_size=batch_size)
        self.device = self.executor.device
        # oneDNN's bf16 convolutions want NHWC, its float32 ones NCHW (measured on the 80 sub-patches of a 256 px
        # window and its half, AVX512-BF16, 2 cores: bf16 32 ms NHWC vs 45 NCHW; float32 41 ms NCHW vs 58 NHWC)
        self.memory_format = torch.channels_last if bf16 else torch.contiguous_format
        self.encoder = encoder.eval().requires_grad_(False).to(self.device, memory_format=self.memory_format)
        self.patch_size = encoder.patch_size
        self.seconds = 0.0  # spent encoding, for timings (the owner resets it)

    def batch_size(self) -> int:
        """Windows per forward (the fixed number, or measured once from the free memory)."""
        return self.executor.batch_size(self.patch_size, self._probe)

    def preferred_chunk(self) -> int:
        """Windows per call that fill a few forwards on every worker, and give the search a wide product."""
        return max(256, 2 * self.executor.workers * self.batch_size())

    def _probe(self, batch: int):
        windows = self._layout(torch.zeros(batch, 1, self.patch_size, self.patch_size, device=self.device))
        return lambda: self.encoder.window_features(windows)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format)

    def __call__(self, windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of windows (N, K, K) float32 in [0, 1]: (window (N, D), centred half (N, D)) float32 on the
        CPU."""
        started = time.perf_counter()
        n_windows = len(windows)
        dim = self.encoder.feature_dim
        outputs = torch.empty(2, n_windows, dim)
        if n_windows:
            # [0, 1] -> [-1, 1] as in training
            inputs = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))[:, None] * 2 - 1
            step = self.batch_size()

            def run(rows: slice) -> None:
                window, centre = self.encoder.window_features(self._layout(inputs[rows].to(self.device)))
                outputs[0, rows] = window.float().cpu()
                outputs[1, rows] = centre.float().cpu()

            self.executor.run([slice(start, start + step) for start in range(0, n_windows, step)], run)
        self.seconds += time.perf_counter() - started
        return outputs[0], outputs[1]
