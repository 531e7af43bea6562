"""Where a sliding-window method looks: the settings of the window grid, background skipping and assembly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import check_settings, setting


@dataclass(frozen=True)
class WindowSettings:
    """Window geometry of a patch scorer (``sliding_window_heatmap``); lengths in pixels, intensities in [0, 1].

    Methods that score windows derive their settings from this class, so the same YAML keys and flags mean the
    same for all of them.
    """

    patch_size: int | None = setting(None, "window side in pixels [the model's training patch]", ge=1)
    mask_size: int | None = setting(
        None, "side of the centred region a window's score describes (PICARD's hole) [the model's]", ge=1
    )
    stride: int = setting(32, "step between windows in pixels", ge=1)
    skip_background: bool = setting(True, "skip windows whose centred region holds no tissue (lowest score)")
    tissue_threshold: float = setting(0.02, "intensity above which a pixel may be tissue", ge=0.0, le=1.0)
    min_tissue_fraction: float = setting(
        0.0, "score a window when more than this fraction of its centred region is tissue", ge=0.0, lt=1.0
    )
    assembly: Literal["interpolated", "averaged"] = setting(
        "interpolated", "window scores to a map: interpolated between window centres, or averaged (Swiecicki)"
    )

    def __post_init__(self) -> None:
        check_settings(self)
