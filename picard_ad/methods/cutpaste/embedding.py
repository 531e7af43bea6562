"""Embeddings f(x) of many windows at once: the encoder's inference form run in memory-sized batches.

What makes a window's embedding fast on a CPU: batch norms folded into the convolutions; bf16 with channels_last
tensors; on the CPU the whole encoder traced and frozen into oneDNN kernels that fuse each convolution with its
residual add and ReLU (TorchScript's oneDNN Graph fuser, as PICARD's ``picard_ad.layers.fused``; torch.compile
measured no faster); and ``picard_ad.localize.BatchedExecutor``, which sizes the batches from free memory and runs
one single-threaded forward per core. Measured with ``picard_ad.methods.cutpaste.speed`` on ResNet-18 and 256 px
windows, 2 cores of an AMD EPYC with AVX512-BF16: float32 NCHW unfused 30 ms per window, float32 channels_last
fused 21 ms, bf16 channels_last unfused 11.0 ms, bf16 channels_last fused 10.3 ms; the 3 x 3 convolutions then run
at about 100 G multiply-adds per second and core, near what the CPU's bf16 dot products allow. A traced kernel
serves one batch shape, so a short last batch is padded up to the next power of two: a few kernels per window
size, and at most twice the work on that one batch.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

from picard_ad.layers import fusion_available
from picard_ad.localize.executor import BatchedExecutor
from picard_ad.methods.cutpaste.encoder import ResNet18Encoder, fold_batch_norms


class WindowEmbedder:
    """``embedder(windows (K, P, P) float32 in [0, 1]) -> embeddings (K, D) float32`` with one encoder.

    Args:
        encoder: the trained encoder (not modified: the embedder runs a folded copy).
        device: where the encoder runs.
        bf16: compute in bfloat16 (weights cast once on the fused CPU path, autocast otherwise).
        channels_last: NHWC tensors for the convolutions.
        fused: on the CPU, run the encoder as traced oneDNN kernels (ignored elsewhere or without the fuser).
        batch_size: windows per forward; None chooses it from free memory.
    """

    def __init__(self, encoder: ResNet18Encoder, *, device: torch.device | str, bf16: bool, channels_last: bool,
                 fused: bool, batch_size: int | None = None):  # fmt: skip
        self.device = torch.device(device)
        self.fused = fused and self.device.type == "cpu" and fusion_available()
        self.dtype = torch.bfloat16 if bf16 and self.fused else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network = fold_batch_norms(encoder).to(self.device, self.dtype, memory_format=self.memory_format)
        self.executor = BatchedExecutor(self.device, bf16=bf16 and not self.fused, batch_size=batch_size)
        self.embedding_dim = encoder.embedding_dim
        self._kernels: dict[tuple[int, int], torch.jit.ScriptModule] = {}
        self._lock = threading.Lock()

    def _input(self, windows: torch.Tensor) -> torch.Tensor:
        """(K, P, P) float32 -> (K, 1, P, P) on the device in the encoder's dtype and layout."""
        return windows[:, None].to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    def batch_size(self, patch_size: int) -> int:
        """Windows per forward for ``patch_size`` windows (fixed, or measured once from free memory)."""

        def probe(batch: int):
            windows = self._input(torch.zeros(batch, patch_size, patch_size))
            return lambda: self.network(windows)

        return self.executor.batch_size(patch_size, probe)

    @property
    def workers(self) -> int:
        """Forwards run at once (one per core on the CPU)."""
        return self.executor.workers

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        count, size = len(windows), windows.shape[-1]
        embeddings = np.empty((count, self.embedding_dim), dtype=np.float32)
        if count == 0:
            return embeddings
        batch = self.batch_size(size)

        def run(start: int) -> None:
            chunk = torch.from_numpy(windows[start : start + batch])
            n = len(chunk)
            if self.fused:
                padded = min(batch, 1 << (n - 1).bit_length())
                chunk = torch.cat([chunk, chunk.new_zeros(padded - n, size, size)]) if padded > n else chunk
                with torch.autocast("cpu", enabled=False):  # under autocast TorchScript would replan, unfused
                    output = self._kernel(padded, size)(self._input(chunk))
            else:
                output = self.network(self._input(chunk))
            embeddings[start : start + n] = output[:n].float().cpu().numpy()

        self.executor.run(list(range(0, count, batch)), run)
        return embeddings

    def _kernel(self, batch: int, size: int) -> torch.jit.ScriptModule:
        key = (batch, size)
        kernel = self._kernels.get(key)
        if kernel is None:
            with self._lock:
                kernel = self._kernels.get(key)
                if kernel is None:
                    kernel = self._kernels[key] = self._build(batch, size)
        return kernel

    def _build(self, batch: int, size: int) -> torch.jit.ScriptModule:
        """The encoder traced and frozen for one input shape, run twice so the fuser has compiled its kernels (the
        profiling executor runs a graph's first call unfused)."""
        # A fresh tensor outside inference mode: tracing cannot record an inference tensor.
        with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
            example = self._input(torch.zeros(batch, size, size))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated for torch.compile
                kernel = torch.jit.freeze(torch.jit.trace(self.network, example, check_trace=False))
            enabled = torch.jit.onednn_fusion_enabled()
            torch.jit.enable_onednn_fusion(True)
            try:
                for _ in range(2):
                    kernel(example)
            finally:
                torch.jit.enable_onednn_fusion(enabled)
        return kernel
