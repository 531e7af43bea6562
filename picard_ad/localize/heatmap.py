"""Sliding-window anomaly heatmaps: a plain function over (image, window scorer, window geometry).

``sliding_window_heatmap`` lays the window grid over the image, skips windows whose masked centre shows no
tissue, asks the scorer for the scores of the others a chunk at a time, and assembles each score's window grid
into a full-resolution map. The scorer is any callable ``(windows (K, P, P) float32 in [0, 1], window indices
(K,) int64) -> {score name: (K,) float}`` (PICARD's completion engine bound to its score names, or any other
method's patch scorer), so the algorithm can be read and tested without a network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError
from picard_ad.localize.assembly import assemble_heatmap
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows

WindowScorer = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
AssemblyMode = Literal["interpolated", "averaged"]


@dataclass(frozen=True, eq=False)
class Heatmap:
    """One score's anomaly map of one image, with what it was assembled from when it came from windows.

    array: (H, W) float32, higher = more anomalous, in the image's (reader-aligned) orientation.
    score_name: the method's score, e.g. "mcd-image".
    settings: the settings that produced it (plain, JSON-serialisable values).
    timings: seconds per stage (e.g. "tissue_s", "scoring_s", "assembly_s", "total_s") and counts.
    grid: the window geometry of a sliding-window map; None for a map scored on the whole image.
    window_scores: (n_rows, n_cols) float64 score of each window; skipped windows hold the lowest score of the
        scored ones (0 when none was scored). None without a grid.
    skipped: (n_rows, n_cols) bool, windows not scored because their masked centre showed no tissue. None without
        a grid.
    """

    array: np.ndarray
    score_name: str
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    grid: WindowGrid | None = None
    window_scores: np.ndarray | None = None
    skipped: np.ndarray | None = None

    @property
    def n_windows(self) -> int:
        """Windows in the grid, scored or skipped (0 for a whole-image map)."""
        return 0 if self.grid is None else self.grid.n_windows

    @property
    def n_skipped_windows(self) -> int:
        """Windows skipped as background."""
        return 0 if self.skipped is None else int(self.skipped.sum())

    def to_sidecar(self) -> dict[str, Any]:
        """A JSON-serialisable description: score, geometry, window counts, settings and timings."""
        record: dict[str, Any] = {"score": self.score_name, "image_shape": list(self.array.shape)}
        if self.grid is not None:
            scored = self.window_scores[~self.skipped]
            record.update(
                grid_shape=list(self.grid.shape),
                patch_size=self.grid.patch_size,
                mask_size=self.grid.mask_size,
                stride=self.grid.stride,
                n_windows=self.n_windows,
                n_skipped_windows=self.n_skipped_windows,
                window_score_range=[float(scored.min()), float(scored.max())] if scored.size else None,
            )
        return {**record, "settings": dict(self.settings), "timings": dict(self.timings)}


def scored_windows(
    image: np.ndarray,
    patch_size: int,
    mask_size: int,
    stride: int,
    tissue_threshold: float | None = 0.02,
    min_tissue_fraction: float = 0.0,
    path: str | Path | None = None,
) -> tuple[WindowGrid, np.ndarray]:
    """(grid, keep): the window grid of ``image`` and which windows ``sliding_window_heatmap`` scores, (n_rows,
    n_cols) bool (arguments as there)."""
    grid = WindowGrid.cover(image.shape, patch_size, mask_size, stride, path=path)
    if tissue_threshold is None:
        return grid, np.ones(grid.shape, dtype=bool)
    return grid, tissue_windows(grid, tissue_mask(image, tissue_threshold), min_tissue_fraction)


def sliding_window_heatmap(
    image: np.ndarray,
    scorer: WindowScorer,
    *,
    patch_size: int,
    mask_size: int,
    stride: int,
    tissue_threshold: float | None = 0.02,
    min_tissue_fraction: float = 0.0,
    mode: AssemblyMode = "interpolated",
    chunk_size: int = 64,
    progress: bool = False,
    path: str | Path | None = None,
) -> dict[str, Heatmap]:
    """Score every tissue window of an image and assemble one heatmap per score the scorer returns.

    Args:
        image: (H, W) float image in [0, 1], dark background (as the readers return it).
        scorer: (windows (K, P, P) float32, indices (K,) int64) -> {score name: (K,) scores}.
        patch_size, mask_size, stride: window side, centred hole side and step, in pixels.
        tissue_threshold: intensity above which a pixel may be tissue (``picard_ad.data.tissue``); windows
            whose hole region has no more than ``min_tissue_fraction`` tissue are skipped and get the lowest
            score. None scores every window.
        mode: "interpolated" (scores interpolated between window centres) or "averaged" (Swiecicki et al.'s
            mean of the scores whose hole covers a pixel).
        chunk_size: windows cut out and handed to the scorer at once (bounds the memory of the cut-outs).
        progress: show a tqdm bar over the scored windows on stderr.
        path: the image's file, named in errors.
    """
    started = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {image.shape}")
    if mode not in ("interpolated", "averaged"):
        raise ConfigError(f"assembly mode must be 'interpolated' or 'averaged', got {mode!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    grid, keep = scored_windows(image, patch_size, mask_size, stride, tissue_threshold, min_tissue_fraction, path)
    tissue_done = time.perf_counter()

    indices = np.flatnonzero(keep.ravel())
    scores: dict[str, np.ndarray] = {}
    bar = _progress_bar(len(indices), progress, path)
    try:
        for start in range(0, len(indices), chunk_size):
            chunk = indices[start : start + chunk_size]
            chunk_scores = scorer(extract_windows(image, grid, chunk), chunk)
            for name, values in chunk_scores.items():
                if name not in scores:
                    scores[name] = np.full(grid.n_windows, np.nan)
                scores[name][chunk] = np.asarray(values, dtype=np.float64)
            bar.update(len(chunk))
    finally:
        bar.close()
    if not scores:
        # No tissue anywhere: an empty call still names the scores, and every map is then all lowest (0).
        empty = np.zeros((0, patch_size, patch_size), dtype=np.float32)
        scores = {name: np.full(grid.n_windows, np.nan) for name in scorer(empty, indices)}
    scoring_done = time.perf_counter()

    window_scores = {name: values.reshape(grid.shape) for name, values in scores.items()}
    arrays = {name: assemble_heatmap(values, grid, mode) for name, values in window_scores.items()}
    finished = time.perf_counter()
    settings = {
        "patch_size": patch_size,
        "mask_size": mask_size,
        "stride": stride,
        "tissue_threshold": tissue_threshold,
        "min_tissue_fraction": min_tissue_fraction,
        "assembly": mode,
    }
    timings = {
        "tissue_s": round(tissue_done - started, 4),
        "scoring_s": round(scoring_done - tissue_done, 4),
        "assembly_s": round(finished - scoring_done, 4),
        "total_s": round(finished - started, 4),
        "scored_windows": len(indices),
    }
    heatmaps = {}
    for name, values in window_scores.items():
        scored_values = values[keep]
        lowest = float(scored_values.min()) if scored_values.size else 0.0
        heatmaps[name] = Heatmap(
            array=arrays[name],
            score_name=name,
            settings=dict(settings),
            timings=dict(timings),
            grid=grid,
            window_scores=np.where(keep, values, lowest),
            skipped=~keep,
        )
    return heatmaps


def _progress_bar(total: int, enabled: bool, path: str | Path | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="window", desc=Path(path).name if path else "windows", disable=not enabled,
                leave=False, dynamic_ncols=True)
