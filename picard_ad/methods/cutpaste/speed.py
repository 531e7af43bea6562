"""How fast CutPaste scores windows on this machine: seconds per window, for benchmarks and the docs.

``seconds_per_window()`` times what scoring one window costs, its embedding and its Mahalanobis distance, with
the code path ``CutPaste.heatmap`` runs (``WindowEmbedder``: folded batch norms, bf16, channels_last, fused
kernels, batches from ``BatchedExecutor``), on an untrained encoder of the training config's width (the weights do
not change the time) and random windows. Window cutting and heatmap assembly are left out: they are the same for
every sliding-window method. The PICARD paper's Table 2 reports 0.087 s per 256 px window for CutPaste.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from picard_ad.device import resolve_device
from picard_ad.methods.cutpaste.config import PRESETS, CutPasteTrainConfig
from picard_ad.methods.cutpaste.embedding import WindowEmbedder
from picard_ad.methods.cutpaste.gde import GaussianDensity
from picard_ad.methods.cutpaste.settings import CutPasteSettings
from picard_ad.methods.cutpaste.training import build_networks

PAPER_SECONDS_PER_WINDOW = 0.087
"""CutPaste's inference time per 256 px patch in the PICARD paper (Table 2)."""


@dataclass(frozen=True)
class WindowTiming:
    """Seconds per window of CutPaste scoring, and what it ran with.

    seconds_per_window: wall seconds per window over the timed windows (embedding + Mahalanobis distance).
    speedup_over_paper: ``PAPER_SECONDS_PER_WINDOW / seconds_per_window``.
    """

    seconds_per_window: float
    speedup_over_paper: float
    windows: int
    patch_size: int
    width: int
    batch_size: int
    workers: int
    device: str
    bf16: bool
    channels_last: bool
    fused: bool
    int8: bool


def seconds_per_window(
    train: CutPasteTrainConfig = PRESETS["paper"],
    settings: CutPasteSettings | None = None,
    *,
    windows: int = 256,
    seed: int = 0,
) -> WindowTiming:
    """Time CutPaste's scoring of ``windows`` random windows, after an untimed pass over the same windows (batch
    sizing and kernel building happen once per run, not per window).

    Args:
        train: the training config whose encoder width and patch size are timed (default: the paper's).
        settings: the execution options (device, bf16, channels_last, fused, batch_size, int8: its ranges then
            measured on random windows); patch_size, when set, replaces the config's.
        windows: windows timed; a multiple of the batch size times the workers keeps every forward full, as
            in a large image.
        seed: of the random windows and weights.
    """
    settings = settings or CutPasteSettings()
    patch_size = settings.patch_size or train.patch_size
    torch.manual_seed(seed)
    encoder = build_networks(train)["encoder"].eval()
    embedder = WindowEmbedder(
        encoder,
        device=resolve_device(settings.device),
        bf16=settings.bf16,
        channels_last=settings.channels_last,
        fused=settings.fused,
        batch_size=None if settings.batch_size == "auto" else int(settings.batch_size),
        int8=settings.int8,
    )
    data = np.random.default_rng(seed).random((windows, patch_size, patch_size), dtype=np.float32)
    if settings.int8:  # ranges of random windows: the time does not depend on them
        embedder.calibrate_int8(data[:64])
    dims = encoder.embedding_dim
    density = GaussianDensity(
        mean=np.zeros((1, dims), np.float32),
        covariance=np.eye(dims, dtype=np.float32)[None],
        precision=np.eye(dims, dtype=np.float32)[None],
        shrinkage=np.zeros(1, np.float32),
        count=np.full(1, 2),
    )
    batch = embedder.batch_size(patch_size)
    density.distance(embedder(data))  # warm-up: builds the kernels of every batch shape the timed pass meets
    started = time.perf_counter()
    density.distance(embedder(data))
    elapsed = time.perf_counter() - started
    per_window = elapsed / windows
    return WindowTiming(
        seconds_per_window=per_window,
        speedup_over_paper=PAPER_SECONDS_PER_WINDOW / per_window,
        windows=windows,
        patch_size=patch_size,
        width=train.width,
        batch_size=batch,
        workers=embedder.workers,
        device=str(embedder.device),
        bf16=settings.bf16,
        channels_last=settings.channels_last,
        fused=embedder.fused,
        int8=settings.int8,
    )
