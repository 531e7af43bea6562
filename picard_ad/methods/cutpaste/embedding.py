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

``int8`` goes past that bound: the folded encoder quantized after training (torch's FX post-training quantization
on the x86 engine: per-channel int8 weights, int8 activations whose ranges are histograms measured on normal
windows, VNNI dot products). On the development CPU one thread embeds a 256 px window of an untrained encoder in
about 11 ms in int8 against 21 ms in fused bf16, its embeddings about 2 % (relative L2) from float32's where bf16's
are 0.4 % (``benchmarks/bench_comparators.py`` prints both on 2 cores). The ranges are part of the fitted state:
``calibrate_int8`` measures them (at fit time), ``use_int8`` restores them.
"""

from __future__ import annotations

import copy
import threading
import warnings

import numpy as np
import torch

from picard_ad.errors import ConfigError
from picard_ad.layers import fusion_available
from picard_ad.localize.executor import BatchedExecutor
from picard_ad.methods.cutpaste.encoder import ResNet18Encoder, fold_batch_norms

INT8_ENGINE = "x86"
"""torch's quantized engine for int8 embeddings (FBGEMM and oneDNN kernels, AVX512-VNNI where the CPU has it)."""
_OBSERVER = "activation_post_process"  # the state-dict names of the activation ranges in a prepared FX module


class WindowEmbedder:
    """``embedder(windows (K, P, P) float32 in [0, 1]) -> embeddings (K, D) float32`` with one encoder.

    Args:
        encoder: the trained encoder (not modified: the embedder runs a folded copy).
        device: where the encoder runs.
        bf16: compute in bfloat16 (weights cast once on the fused CPU path, autocast otherwise).
        channels_last: NHWC tensors for the convolutions.
        fused: on the CPU, run the encoder as traced oneDNN kernels (ignored elsewhere or without the fuser).
        batch_size: windows per forward; None chooses it from free memory.
        int8: on the CPU, run the int8 encoder (bf16 and fused then do not apply), once its activation ranges are
            set by ``calibrate_int8`` or ``use_int8``.
    """

    def __init__(self, encoder: ResNet18Encoder, *, device: torch.device | str, bf16: bool, channels_last: bool,
                 fused: bool, batch_size: int | None = None, int8: bool = False):  # fmt: skip
        self.device = torch.device(device)
        if int8 and self.device.type != "cpu":
            raise ConfigError(f"int8 embeddings run on the CPU only, not on {self.device}; leave int8 off there")
        if int8 and INT8_ENGINE not in torch.backends.quantized.supported_engines:
            raise ConfigError(f"this torch build has no '{INT8_ENGINE}' quantized engine; leave int8 off")
        self.int8 = int8
        self.quantized: torch.nn.Module | None = None  # the int8 encoder, once its activation ranges are known
        self.fused = fused and not int8 and self.device.type == "cpu" and fusion_available()
        self.dtype = torch.bfloat16 if bf16 and self.fused else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network = fold_batch_norms(encoder).to(self.device, self.dtype, memory_format=self.memory_format)
        self._float_network = fold_batch_norms(encoder) if int8 else None  # float32 NCHW: what int8 quantizes
        self.executor = BatchedExecutor(self.device, bf16=bf16 and not (self.fused or int8), batch_size=batch_size)
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
        if self.int8 and self.quantized is None:
            raise RuntimeError("the int8 encoder has no activation ranges yet: calibrate_int8 or use_int8 first")
        batch = self.batch_size(size)

        def run(start: int) -> None:
            chunk = torch.from_numpy(windows[start : start + batch])
            n = len(chunk)
            if self.quantized is not None:
                with torch.autocast("cpu", enabled=False):
                    output = self.quantized(chunk[:, None].contiguous(memory_format=self.memory_format))
            elif self.fused:
                padded = min(batch, 1 << (n - 1).bit_length())
                chunk = torch.cat([chunk, chunk.new_zeros(padded - n, size, size)]) if padded > n else chunk
                with torch.autocast("cpu", enabled=False):  # under autocast TorchScript would replan, unfused
                    output = self._kernel(padded, size)(self._input(chunk))
            else:
                output = self.network(self._input(chunk))
            embeddings[start : start + n] = output[:n].float().cpu().numpy()

        self.executor.run(list(range(0, count, batch)), run)
        return embeddings

    # -- int8 -------------------------------------------------------------------------------------------------------

    def calibrate_int8(self, windows: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
        """Measure the activation ranges of the int8 encoder on ``windows`` (K, P, P) float32 in [0, 1] (normal
        windows), quantize it, and return the ranges to keep with the fitted state (``use_int8`` restores them)."""
        prepared = self._prepared_int8()
        with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
            for start in range(0, len(windows), batch):
                prepared(torch.from_numpy(np.ascontiguousarray(windows[start : start + batch], np.float32))[:, None])
        ranges = {name: value.numpy().copy() for name, value in prepared.state_dict().items()
                  if _OBSERVER in name}  # fmt: skip
        self._convert(prepared)
        return ranges

    def use_int8(self, ranges: dict[str, np.ndarray]) -> None:
        """Quantize the encoder with activation ranges from ``calibrate_int8``."""
        prepared = self._prepared_int8()
        expected = {name for name in prepared.state_dict() if _OBSERVER in name}
        if set(ranges) != expected:
            raise ValueError(f"int8 activation ranges for another network: {len(ranges)} entries, the encoder has "
                             f"{len(expected)}")  # fmt: skip
        prepared.load_state_dict({name: torch.from_numpy(value) for name, value in ranges.items()}, strict=False)
        self._convert(prepared)

    def _prepared_int8(self) -> torch.nn.Module:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        if not self.int8:
            raise RuntimeError("this embedder was made without int8")
        torch.backends.quantized.engine = INT8_ENGINE  # process-wide: the engine the packed weights are made for
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates FX quantization for torchao, not installed here
            example = (torch.zeros(1, 1, 32, 32),)
            # the global average stays float: the embedding is not rounded to int8 (and the quantized mean refuses
            # some channels_last shapes)
            mapping = get_default_qconfig_mapping(INT8_ENGINE).set_object_type("mean", None)
            return prepare_fx(copy.deepcopy(self._float_network), mapping, example)

    def _convert(self, prepared: torch.nn.Module) -> None:
        from torch.ao.quantization.quantize_fx import convert_fx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.quantized = convert_fx(prepared)

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
