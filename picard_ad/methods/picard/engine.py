"""Scoring sliding windows with the completion network: windows x completions batched on one device.

Each window needs M dropout completions (and/or one deterministic completion). A forward holds whole windows with
all their completions (or, when M exceeds the batch size, a share of one window's completions), so what the
completions of a window share runs once per window. A sample's dropout masks come from its own seed,
``completion_seeds(run seed, window index, completion index)``, so the result does not depend on how the pairs are
cut into batches, on the thread count or on the device (beyond float rounding, which differs between convolution
algorithms).

Speed: only the holes are scored, so the generator's decoders and contextual attention run on the holes'
receptive fields only, and the layers that do not depend on dropout run once per window where they can
(``InpaintingGenerator.complete_region``: 26 instead of 51 GFLOP per completion for a 128 px hole in a 256 px
window at M = 10, same values); inference mode, bf16 autocast (AMX on recent x86 CPUs, tensor cores on GPUs) with
the weights cast to bf16 once, channels_last tensors, on the CPU each convolution with its activation and dropout
as one fused oneDNN kernel (``picard_ad.layers.fused``), in-place activations elsewhere in the engine's private
copy of the networks, and the generic ``picard_ad.localize.BatchedExecutor``: a batch size chosen from free memory
and a measured per-sample footprint, and on the CPU one single-threaded forward per core at once.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from picard_ad.errors import ConfigError
from picard_ad.layers import ChannelDropout, DropoutKind, fuse_convolutions, fusion_available, unfused
from picard_ad.localize.executor import BatchedExecutor
from picard_ad.methods.picard import scores as scoring
from picard_ad.methods.picard.generator import DROPOUT_PRESETS

MAX_COMPLETIONS = 4096
"""Completions per window are numbered below this, so (window, completion) pairs map to distinct seeds."""
MAX_WINDOWS = 2**19
"""Window indices must be below this (a 2457 x 1996 image has 3,920 windows at stride 32, 60,663 at stride 8)."""


def completion_seeds(run_seed: int, window_indices: np.ndarray, n_completions: int) -> torch.Tensor:
    """Dropout seeds of every (window, completion) pair, window-major: (K * M,) int64.

    The run seed fills the high 32 bits and ``window * MAX_COMPLETIONS + completion`` the low ones, so distinct
    pairs (and runs) get distinct seeds, and a pair's seed does not depend on which windows are scored with it.
    """
    if not 0 <= run_seed < 2**31:
        raise ConfigError(f"seed must be in 0 .. 2**31 - 1, got {run_seed}")
    if not 1 <= n_completions <= MAX_COMPLETIONS:
        raise ConfigError(f"the number of completions M must be in 1 .. {MAX_COMPLETIONS}, got {n_completions}")
    windows = torch.as_tensor(np.asarray(window_indices, dtype=np.int64))
    if windows.numel() and (windows.min() < 0 or windows.max() >= MAX_WINDOWS):
        raise ValueError(f"window indices must be in 0 .. {MAX_WINDOWS - 1}")
    completions = torch.arange(n_completions, dtype=torch.int64)
    low = (windows[:, None] * MAX_COMPLETIONS + completions[None, :]).reshape(-1)
    return (run_seed << 32) | low


@dataclass
class EngineTimings:
    """Seconds spent (summed over the engine's parallel workers) and samples processed, accumulated over calls."""

    generator_s: float = 0.0
    critic_s: float = 0.0
    completions: int = 0
    forwards: int = 0
    per_sample_bytes: int | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "generator_s": round(self.generator_s, 4),
            "critic_s": round(self.critic_s, 4),
            "completions": self.completions,
            "forwards": self.forwards,
            "per_sample_bytes": self.per_sample_bytes,
        }


class CompletionEngine:
    """Scores windows by completing their centred holes; ``scorer(names)`` gives a window scorer for
    ``sliding_window_heatmap``.

    Args:
        generator: an ``InpaintingGenerator`` (any device; it is copied, not modified).
        critic: the ``LocalCritic`` (phi and critic scores), or None when no requested score needs it.
        mask_size: side of the centred hole in pixels.
        n_completions: M, dropout completions per window.
        dropout_p: channel drop probability; 0 gives M identical deterministic completions.
        dropout_layers: qualified layer names that drop channels (``resolve_dropout_layers``); default the
            "reference" preset.
        dropout_kind: "spatial" (whole channels, PICARD's) or "element" (single activations).
        seed: run seed of the dropout masks, 0 .. 2**31 - 1.
        device: where the networks run.
        bf16: bf16 autocast, with the networks' weights cast to bf16 once.
        channels_last: NHWC memory layout (faster convolutions with oneDNN and cuDNN).
        fused: on the CPU, each convolution with its activation and dropout as one oneDNN kernel
            (``picard_ad.layers.fused``), built on first use of each batch shape; ignored on other devices.
        batch_size: samples (completions) per generator forward, or None to choose it from free memory.
        workers: forwards run at once on the CPU, one torch thread each (``BatchedExecutor``); None: one per
            torch thread. CUDA always uses one.
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module | None,
        *,
        mask_size: int,
        n_completions: int = 10,
        dropout_p: float = 0.5,
        dropout_layers: frozenset[str] = DROPOUT_PRESETS["reference"],
        dropout_kind: DropoutKind = "spatial",
        seed: int = 1337,
        device: torch.device | str = "cpu",
        bf16: bool = True,
        channels_last: bool = True,
        fused: bool = True,
        batch_size: int | None = None,
        workers: int | None = None,
        quantile: float = 0.1,
        softmin_temperature: float = 0.1,
    ):
        if not 0.0 <= dropout_p < 1.0:
            raise ConfigError(f"dropout probability must be in [0, 1), got {dropout_p}")
        completion_seeds(seed, np.zeros(0, dtype=np.int64), n_completions)  # validates seed and M
        self.executor = BatchedExecutor(device, bf16=bf16, batch_size=batch_size, workers=workers)
        self.device = self.executor.device
        self.mask_size = int(mask_size)
        self.n_completions = int(n_completions)
        self.dropout_p = float(dropout_p)
        self.dropout_layers = frozenset(dropout_layers)
        self.dropout_kind = dropout_kind
        self.quantile, self.softmin_temperature = float(quantile), float(softmin_temperature)
        self.seed = int(seed)
        self.bf16 = bool(bf16)
        self.channels_last = bool(channels_last)
        self.fused = bool(fused) and self.device.type == "cpu" and fusion_available()
        self.in_channels = int(generator.in_channels)
        self.generator = self._prepare(generator)
        self.critic = self._prepare(critic) if critic is not None else None
        self._timings_lock = threading.Lock()
        self._masks: dict[int, torch.Tensor] = {}
        self.timings = EngineTimings()

    # -- set-up ---------------------------------------------------------------------------------------------

    def _prepare(self, network: nn.Module) -> nn.Module:
        network = copy.deepcopy(network).eval().requires_grad_(False).to(self.device)
        for module in network.modules():
            # Activations follow a convolution whose output nothing else reads, so overwriting it saves a
            # full-size allocation and memory pass per layer (on this private copy only).
            if isinstance(module, (nn.ELU, nn.ReLU, nn.LeakyReLU)):
                module.inplace = True
        if self.bf16:
            # Casting once avoids autocast re-casting every weight on every forward.
            network = network.to(torch.bfloat16)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        if self.fused:
            fuse_convolutions(network)
        return network

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.bf16 else torch.float32

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def _hole_mask(self, batch: int, patch_size: int) -> torch.Tensor:
        """(batch, 1, P, P) mask, 1 in the centred hole: a slice of a cached mask of the largest batch so far."""
        cached = self._masks.get(patch_size)
        if cached is None or cached.shape[0] < batch:
            mask = torch.zeros(1, 1, patch_size, patch_size)
            offset = (patch_size - self.mask_size) // 2
            mask[..., offset : offset + self.mask_size, offset : offset + self.mask_size] = 1.0
            cached = self._layout(mask.expand(batch, -1, -1, -1))
            self._masks[patch_size] = cached
        return cached[:batch]

    def _complete_holes(self, images: torch.Tensor, dropout: ChannelDropout | None, repeats: int = 1) -> torch.Tensor:
        """The fine stage's completions of the centred holes of ``images`` (N, C, P, P), ``repeats`` of each in a
        row: (N * repeats, C, m, m).

        Only the holes are used, so the decoders and contextual attention run on the holes' receptive fields only,
        and what the completions of one image share runs once (``InpaintingGenerator.complete_region``).
        """
        patch_size = images.shape[-1]
        mask = self._hole_mask(images.shape[0], patch_size)
        offset = (patch_size - self.mask_size) // 2
        region = (offset, offset, offset + self.mask_size, offset + self.mask_size)
        _, holes = self.generator.complete_region(images, mask, region, dropout, repeats)
        return holes

    def _hole(self, x: torch.Tensor) -> torch.Tensor:
        offset = (x.shape[-1] - self.mask_size) // 2
        return x[..., offset : offset + self.mask_size, offset : offset + self.mask_size]

    @property
    def workers(self) -> int:
        """Forwards run at once (``BatchedExecutor.workers``)."""
        return self.executor.workers

    def reset_timings(self) -> None:
        """Start counting time and completions afresh (the measured per-sample footprint is kept)."""
        self.timings = EngineTimings(per_sample_bytes=self.timings.per_sample_bytes)

    def batch_size(self, patch_size: int) -> int:
        """Samples per generator forward for ``patch_size`` windows: the fixed size, or the adaptive one."""
        size = self.executor.batch_size(patch_size, functools.partial(self._probe_forward, patch_size=patch_size))
        if self.executor.per_sample_bytes is not None:
            self.timings.per_sample_bytes = self.executor.per_sample_bytes
        return size

    def measure_sample_bytes(self, patch_size: int) -> int:
        """Activation bytes one more completion adds to a forward of ``patch_size`` windows (measured now)."""
        per_sample = self.executor.sample_bytes(functools.partial(self._probe_forward, patch_size=patch_size))
        self.timings.per_sample_bytes = per_sample
        return per_sample

    def _probe_forward(self, batch: int, patch_size: int) -> Callable[[], None]:
        image = self._layout(torch.zeros(batch, self.in_channels, patch_size, patch_size))
        dropout = self._dropout(torch.arange(batch, dtype=torch.int64))

        def forward() -> None:
            # Unfused: the memory probe sees the tensors of eager operations only, and no kernels are built for
            # its batch shapes.
            with unfused(self.generator):
                self._complete_holes(image, dropout)

        return forward

    def _dropout(self, seeds: torch.Tensor) -> ChannelDropout | None:
        if self.dropout_p == 0.0 or not self.dropout_layers:
            return None
        return ChannelDropout(self.dropout_p, self.dropout_layers, seeds, kind=self.dropout_kind)

    # -- scoring --------------------------------------------------------------------------------------------

    def scorer(self, scores: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
        """A window scorer computing ``scores`` (names from ``scoring.RAW_SCORES``) in one pass."""
        names = scoring.check_score_names(tuple(scores), scoring.RAW_SCORES)
        self._check_critic(names)
        return functools.partial(self.score, scores=names)

    def _check_critic(self, names: tuple[str, ...]) -> scoring.ScoreNeeds:
        needs = scoring.score_needs(names)
        if (needs.critic_features or needs.critic_output) and self.critic is None:
            raise ConfigError(f"scores {', '.join(names)} need the local critic, and none was given")
        return needs

    def score(self, windows: np.ndarray, window_indices: np.ndarray, scores: Sequence[str]) -> dict[str, np.ndarray]:
        """Scores of windows cut from an image.

        windows: (K, P, P) float32 in [0, 1] (the readers' units); grey windows are repeated over the network's
            input channels. window_indices: (K,) int, the windows' row-major indices in their grid (they key
            the dropout seeds). scores: names from ``scoring.RAW_SCORES``.
        Returns score name -> (K,) float64, higher meaning more anomalous.
        """
        names = scoring.check_score_names(tuple(scores), scoring.RAW_SCORES)
        needs = self._check_critic(names)
        network_input, truth, indices = self._network_windows(windows, window_indices)
        if indices.size == 0:
            return {name: np.zeros(0, dtype=np.float64) for name in names}
        results: dict[str, torch.Tensor] = {}
        with torch.inference_mode(), self.executor.autocast():
            if needs.pluralistic:
                results.update(self._pluralistic_scores(network_input, truth, indices, names, needs.critic_features))
            if needs.deterministic:
                results.update(self._deterministic_scores(network_input, truth, needs.critic_output))
        return {name: results[name].double().cpu().numpy() for name in names}

    def _network_windows(
        self, windows: np.ndarray, window_indices: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(network input (K, C, P, P), ground-truth holes (K, C, m, m), indices (K,)) of windows (K, P, P) in
        [0, 1]: mapped to [-1, 1] as in training; the ground truth stays float32, only the network sees bf16."""
        windows = np.asarray(windows, dtype=np.float32)
        indices = np.asarray(window_indices, dtype=np.int64)
        if windows.ndim != 3 or windows.shape[1] != windows.shape[2] or indices.shape != windows.shape[:1]:
            raise ValueError(f"need windows (K, P, P) and indices (K,), got {windows.shape} and {indices.shape}")
        if windows.shape[1] <= self.mask_size:
            raise ConfigError(f"windows of {windows.shape[1]} px cannot hold a {self.mask_size} px hole")
        exact = torch.from_numpy(windows).to(self.device)[:, None].expand(-1, self.in_channels, -1, -1) * 2.0 - 1.0
        return self._layout(exact), self._hole(exact), indices

    def _generate(self, images: torch.Tensor, seeds: torch.Tensor | None, repeats: int = 1) -> torch.Tensor:
        """Completed holes (N * repeats, C, m, m) of images (N, C, P, P), ``repeats`` per image in a row; dropout
        from ``seeds`` (N * repeats,), or none."""
        started = time.perf_counter()
        dropout = None if seeds is None else self._dropout(seeds)
        holes = self._complete_holes(images, dropout, repeats)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        with self._timings_lock:
            self.timings.generator_s += time.perf_counter() - started
            self.timings.completions += holes.shape[0]
            self.timings.forwards += 1
        return holes

    def _features(self, holes: torch.Tensor) -> torch.Tensor:
        """phi of holes (N, C, m, m), resized to the critic's input if needed: (N, F) float32."""
        started = time.perf_counter()
        features = self.critic.features(self._layout(scoring.critic_input(holes, self.critic.input_size)))
        with self._timings_lock:
            self.timings.critic_s += time.perf_counter() - started
        return features.float()

    def completion_distances(
        self, windows: np.ndarray, window_indices: np.ndarray, spaces: Sequence[scoring.Space] = ("image",)
    ) -> dict[str, np.ndarray]:
        """The M completion distances of each window, before any reduction: space -> (K, M) float64.

        windows, window_indices: as ``score``. spaces: "image" and/or "feature" (needs the local critic). Completion
        j of a window has the same dropout mask whatever M is, so the first m columns are the distances an engine
        with M = m gives.
        """
        names = tuple(f"mcd-{space}" for space in spaces)
        needs = self._check_critic(names)
        network_input, truth, indices = self._network_windows(windows, window_indices)
        if indices.size == 0:
            return {space: np.zeros((0, self.n_completions), dtype=np.float64) for space in spaces}
        with torch.inference_mode(), self.executor.autocast():
            distances = self._distances(network_input, truth, indices, needs.critic_features)
        return {space: distances[space].double().cpu().numpy() for space in spaces}

    def _distances(
        self, windows: torch.Tensor, truth: torch.Tensor, indices: np.ndarray, use_features: bool
    ) -> dict[str, torch.Tensor]:
        """Completion distances space -> (K, M); windows (K, C, P, P) network input, truth (K, C, m, m)."""
        n_windows, m = windows.shape[0], self.n_completions
        seeds = completion_seeds(self.seed, indices, m).view(n_windows, m)
        truth_features = self._features(truth) if use_features else None  # once per window, not per completion
        distances = {"image": torch.empty(n_windows, m, device=self.device)}
        if truth_features is not None:
            distances["feature"] = torch.empty(n_windows, m, device=self.device)
        # Forwards hold whole windows with all their completions (what they share then runs once per window), or
        # a share of one window's completions when M exceeds the batch size.
        step = self.batch_size(windows.shape[-1])
        window_step, completion_step = max(1, step // m), min(m, step)
        jobs = [
            (slice(first, min(first + window_step, n_windows)), slice(start, min(start + completion_step, m)))
            for first in range(0, n_windows, window_step)
            for start in range(0, m, completion_step)
        ]

        def run(job: tuple[slice, slice]) -> None:
            rows, cols = job
            repeats = cols.stop - cols.start
            holes = self._generate(windows[rows], seeds[rows, cols].reshape(-1), repeats)
            holes = holes.view(-1, repeats, *holes.shape[1:])
            distances["image"][rows, cols] = scoring.image_distances(truth[rows], holes)
            if truth_features is not None:
                features = self._features(holes.flatten(0, 1)).view(holes.shape[0], repeats, -1)
                distances["feature"][rows, cols] = scoring.feature_distances(truth_features[rows], features)

        self.executor.run(jobs, run)
        return distances

    def _pluralistic_scores(
        self,
        windows: torch.Tensor,
        truth: torch.Tensor,
        indices: np.ndarray,
        names: tuple[str, ...],
        use_features: bool,
    ) -> dict[str, torch.Tensor]:
        """Reduced completion distances (MCD, mean, ...); windows (K, C, P, P) network input, truth (K, C, m, m)."""
        distances = self._distances(windows, truth, indices, use_features)
        results = {}
        for name in names:
            if name in scoring.PLURALISTIC_SCORES:
                reduction, space = scoring.parse_pluralistic(name)
                results[name] = scoring.reduce_distances(distances[space], reduction, self.quantile,
                                                         self.softmin_temperature)  # fmt: skip
        return results

    def _deterministic_scores(
        self, windows: torch.Tensor, truth: torch.Tensor, use_critic: bool
    ) -> dict[str, torch.Tensor]:
        """Swiecicki et al.'s MSE, critic loss and DMSE of the completion without dropout."""
        n_windows, step = windows.shape[0], self.batch_size(windows.shape[-1])
        results = {"mse": torch.empty(n_windows, device=self.device)}
        if use_critic:
            results["critic"] = torch.empty(n_windows, device=self.device)

        def run(rows: slice) -> None:
            holes = self._generate(windows[rows], None)
            results["mse"][rows] = scoring.hole_mse(truth[rows], holes)
            if use_critic:
                started = time.perf_counter()
                critic_in = self._layout(scoring.critic_input(holes, self.critic.input_size))
                results["critic"][rows] = scoring.critic_loss(self.critic(critic_in))
                with self._timings_lock:
                    self.timings.critic_s += time.perf_counter() - started

        self.executor.run([slice(start, start + step) for start in range(0, n_windows, step)], run)
        if use_critic:
            results["dmse"] = scoring.dmse(results["mse"], results["critic"])
        return results

    def preferred_chunk(self, patch_size: int, scores: Sequence[str]) -> int:
        """Windows per scorer call that fill a few whole forwards without holding many windows at once."""
        per_window = self.n_completions if scoring.score_needs(tuple(scores)).pluralistic else 1
        return max(1, math.ceil(4 * self.workers * self.batch_size(patch_size) / per_window))
