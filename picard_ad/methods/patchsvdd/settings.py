"""How PatchSVDD scores an image: its settings (YAML keys, command-line flags and keyword arguments share the names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import check_settings, setting
from picard_ad.errors import ConfigError
from picard_ad.localize.settings import WindowSettings
from picard_ad.methods.base import MethodSettings

SCORE_NAMES = ("nn-distance", "nn-distance-window", "nn-distance-centre")
"""The product of the two scales' maps (Yi and Yoon's multi-scale map), then each scale's map: the distance of a
window's feature, and of its centred half's, to the nearest normal features."""


@dataclass(frozen=True)
class PatchSVDDSettings(WindowSettings, MethodSettings):
    """How PatchSVDD scores an image. Lengths in pixels; intensities in the readers' [0, 1] units; distances in
    feature units (features lie in (-1, 1)^D)."""

    score: str = setting("nn-distance", "score of the heatmap: the product of the two scales' maps, or one scale's "
                         "(window: K px; centre: its centred K/2 px)", choices=SCORE_NAMES)  # fmt: skip
    patch_size: int | None = setting(None, "window side in pixels; the encoder's patch side K, the only one it "
                                     "encodes [the model's]", ge=1)  # fmt: skip
    mask_size: int | None = setting(None, "side of the centred region a window's score describes and background "
                                    "skipping looks at; the small scale, K/2 [the model's]", ge=1)  # fmt: skip
    stride: int | None = setting(None, "step between windows in pixels [the stride of the feature bank]", ge=1)
    n_neighbours: int = setting(1, "k: a window's distance is the mean over its k nearest normal features "
                                "(Yi and Yoon: 1)", ge=1, le=1024)  # fmt: skip
    search: Literal["exact", "approximate"] = setting(
        "exact", "nearest normal features: exact (blocked matrix products, equal to brute force) or approximate "
        "(faiss inverted file: pip install faiss-cpu)"
    )  # fmt: skip
    ivf_lists: int = setting(1024, "approximate search: k-means cells of the bank (at most one per 39 features)",
                             ge=1)  # fmt: skip
    ivf_probes: int = setting(8, "approximate search: cells scanned per window", ge=1)
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", execution=True)
    bf16: bool = setting(False, "bfloat16 autocast of the encoder (faster on AMX/AVX512-BF16 CPUs and GPUs); the "
                         "bank stays as fitted, so distances gain bf16 rounding", execution=True)  # fmt: skip
    batch_size: int | Literal["auto"] = setting("auto", "windows per encoder forward, or auto (from free memory "
                                                "and a measured footprint)", ge=1, execution=True)  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
