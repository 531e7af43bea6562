"""Sliding-window localization: window grids, window scores from completions, batching and heatmap assembly."""

from picard_ad.localize.assembly import assemble_heatmap
from picard_ad.localize.engine import CompletionEngine, completion_seeds
from picard_ad.localize.heatmap import Heatmap, sliding_window_heatmap
from picard_ad.localize.scoring import (
    DETERMINISTIC_SCORES,
    PLURALISTIC_SCORES,
    SCORE_NAMES,
)
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows

__all__ = [
    "DETERMINISTIC_SCORES",
    "PLURALISTIC_SCORES",
    "SCORE_NAMES",
    "CompletionEngine",
    "Heatmap",
    "WindowGrid",
    "assemble_heatmap",
    "completion_seeds",
    "extract_windows",
    "sliding_window_heatmap",
    "tissue_windows",
]
