"""Context calibration of window scores, fitted on normal windows only (issue 17, docs/picard-study.md).

A completion distance is larger where normal tissue is bright or textured: there is more to get wrong. Scored raw,
such windows rank above a faint anomaly in flat tissue, and the map follows brightness. The calibration compares each
window's score with the scores the same model gives to normal windows of similar context: windows are binned by two
features of the context the network sees (the window without its hole), the mean intensity and the standard
deviation (texture energy), into equal-count bins of the normal windows; the calibrated score is the z-score within
the window's bin. The hole itself is left out of the context on purpose: an anomaly inside the hole must not move its
window into a bin whose normal windows score high.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from picard_ad.errors import ConfigError

CONTEXT_FEATURES: tuple[str, ...] = ("mean", "std")
"""The context features, in the readers' [0, 1] intensity units, over the window outside its centred hole."""


def window_context(windows: np.ndarray, mask_size: int) -> np.ndarray:
    """(K, 2) mean and standard deviation of each window's pixels outside its centred ``mask_size`` hole.

    windows: (K, P, P) in [0, 1].
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3 or windows.shape[1] != windows.shape[2] or windows.shape[1] <= mask_size:
        raise ValueError(f"need (K, P, P) windows larger than the {mask_size} px hole, got {windows.shape}")
    if windows.shape[0] == 0:
        return np.zeros((0, len(CONTEXT_FEATURES)))
    offset = (windows.shape[1] - mask_size) // 2
    context = np.ones(windows.shape[1:], dtype=bool)
    context[offset : offset + mask_size, offset : offset + mask_size] = False
    pixels = windows[:, context]
    return np.stack([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


@dataclass(frozen=True)
class ContextCalibration:
    """Mean and standard deviation of normal windows' scores per context bin.

    edges: per context feature, the inner bin edges (bins - 1 increasing values); a value equal to an edge falls in
        the upper bin, values beyond the outer edges in the outer bins.
    mean, std: (bins, bins) statistics per cell (row: mean-intensity bin, column: texture bin). A cell holding fewer
        than ``min_count`` normal windows takes its row's statistics (all windows of that mean-intensity bin), and the
        global ones if the row too holds fewer; ``std`` is at least ``STD_FLOOR`` times the global one, so a cell of
        near-identical scores cannot blow its z-scores up.
    count: (bins, bins) normal windows per cell.
    """

    edges: tuple[tuple[float, ...], tuple[float, ...]]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray

    STD_FLOOR = 0.05

    @classmethod
    def fit(cls, context: np.ndarray, scores: np.ndarray, bins: int = 4, min_count: int = 20) -> ContextCalibration:
        """Fit on normal windows: context (N, 2) from ``window_context``, scores (N,) their raw scores; ``bins`` per
        feature, fewer when N < bins**2 x min_count."""
        context, scores = np.asarray(context, dtype=np.float64), np.asarray(scores, dtype=np.float64)
        if context.ndim != 2 or context.shape[1] != len(CONTEXT_FEATURES) or scores.shape != context.shape[:1]:
            raise ValueError(f"need context (N, 2) and scores (N,), got {context.shape} and {scores.shape}")
        if bins < 1 or min_count < 2:
            raise ValueError(f"need bins >= 1 and min_count >= 2, got {bins} and {min_count}")
        if len(scores) < 2 or not np.isfinite(scores).all() or not np.isfinite(context).all():
            raise ConfigError(
                f"the context calibration needs at least 2 normal windows, all with finite scores, got "
                f"{int(np.isfinite(scores).sum())} of {len(scores)}"
            )
        bins = max(1, min(bins, int(np.sqrt(len(scores) / min_count))))  # about min_count windows per cell at least
        quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = tuple(tuple(float(v) for v in np.quantile(context[:, j], quantiles)) for j in range(2))
        rows, cols = (np.searchsorted(edges[j], context[:, j], side="right") for j in range(2))
        global_mean, global_std = scores.mean(), scores.std()
        floor = max(cls.STD_FLOOR * global_std, np.finfo(np.float64).tiny)
        mean, std, count = (np.empty((bins, bins)) for _ in range(3))
        for row in range(bins):
            in_row = rows == row
            row_stats = (scores[in_row].mean(), scores[in_row].std()) if in_row.sum() >= min_count else None
            for col in range(bins):
                cell = in_row & (cols == col)
                count[row, col] = cell.sum()
                if cell.sum() >= min_count:
                    mean[row, col], std[row, col] = scores[cell].mean(), scores[cell].std()
                else:
                    mean[row, col], std[row, col] = row_stats or (global_mean, global_std)
        return cls(edges, mean, np.maximum(std, floor), count.astype(np.int64))

    def cells(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) bin of each window's context (K, 2)."""
        context = np.asarray(context, dtype=np.float64)
        return tuple(np.searchsorted(self.edges[j], context[:, j], side="right") for j in range(2))

    def z_scores(self, context: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(K,) calibrated scores: (score - cell mean) / cell std of each window."""
        rows, cols = self.cells(context)
        return (np.asarray(scores, dtype=np.float64) - self.mean[rows, cols]) / self.std[rows, cols]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (``from_dict`` reads it back)."""
        return {
            "features": list(CONTEXT_FEATURES),
            "edges": [list(e) for e in self.edges],
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "calibration") -> ContextCalibration:
        """The calibration of a ``to_dict`` record; ConfigError names ``where`` when the record is malformed."""
        try:
            if list(record["features"]) != list(CONTEXT_FEATURES):
                raise ValueError(f"features {record['features']!r}, expected {list(CONTEXT_FEATURES)}")
            edges = tuple(tuple(float(v) for v in e) for e in record["edges"])
            mean, std = np.asarray(record["mean"], dtype=np.float64), np.asarray(record["std"], dtype=np.float64)
            count = np.asarray(record["count"], dtype=np.int64)
            bins = len(edges[0]) + 1
            if len(edges) != 2 or len(edges[1]) + 1 != bins or {mean.shape, std.shape, count.shape} != {(bins, bins)}:
                raise ValueError("edges and tables do not agree in size")
            if not (np.isfinite(mean).all() and (std > 0).all()):
                raise ValueError("means must be finite and standard deviations positive")
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not a context calibration ({exc})") from None
        return cls(edges, mean, std, count)


CALIBRATION_FILE = "score_calibration.json"
"""Where a PICARD run keeps the calibration its fit made (beside ``method.json``)."""

RAW_SCORE_SETTINGS: tuple[str, ...] = (
    "checkpoint", "patch_size", "mask_size", "n_completions", "dropout_p", "dropout_layers", "dropout_kind", "seed",
    "quantile", "softmin_temperature",
)  # fmt: skip
"""The scoring settings a window's raw score depends on: a calibration holds for these values only."""


@dataclass(frozen=True)
class ScoreCalibrations:
    """The context calibration of every completion-distance score, for one set of raw-score settings.

    key: the values of ``RAW_SCORE_SETTINGS`` it was fitted with. images: the normal images whose windows it was
    fitted on, as "PATH" or "PATH#SLICE" (so another key can be refitted on the same windows). windows: how many.
    tables: raw score name (e.g. "mcd-image") -> its calibration.
    """

    key: dict[str, Any]
    images: tuple[str, ...]
    windows: int
    tables: dict[str, ContextCalibration]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "picard-ad/score-calibration",
            "format_version": 1,
            "key": self.key,
            "images": list(self.images),
            "windows": self.windows,
            "tables": {name: table.to_dict() for name, table in self.tables.items()},
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str) -> ScoreCalibrations:
        if not isinstance(record, dict) or record.get("format") != "picard-ad/score-calibration":
            raise ConfigError(f"{where}: not a picard-ad score calibration")
        try:
            tables = {name: ContextCalibration.from_dict(table, f"{where}: {name}")
                      for name, table in record["tables"].items()}  # fmt: skip
            return cls(dict(record["key"]), tuple(record["images"]), int(record["windows"]), tables)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{where}: malformed score calibration ({exc})") from None
