"""The trivial reference maps as registered methods, so every benchmark scores them beside the real ones.

They learn nothing: ``fit`` only marks them fitted (and saves their settings when given a folder). A method that
does not beat them on tissue does not localize anomalies (see ``picard_ad.methods.reference.maps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from picard_ad.config import setting
from picard_ad.data.normal_images import NormalImages
from picard_ad.errors import ConfigError
from picard_ad.methods.base import AnomalyMethod, MethodSettings, register_method
from picard_ad.methods.reference.maps import brightness_map, local_contrast_map

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext


@dataclass(frozen=True)
class BrightnessSettings(MethodSettings):
    """Gaussian-smoothed intensity."""

    score: str = setting("brightness", "the score of the heatmap", choices=("brightness",))
    sigma: float = setting(4.0, "standard deviation of the smoothing Gaussian, pixels", gt=0.0)


@dataclass(frozen=True)
class LocalContrastSettings(MethodSettings):
    """Fine minus coarse Gaussian smoothing."""

    score: str = setting("local-contrast", "the score of the heatmap", choices=("local-contrast",))
    fine_sigma: float = setting(4.0, "standard deviation of the fine Gaussian, pixels", gt=0.0)
    coarse_sigma: float = setting(32.0, "standard deviation of the coarse Gaussian, pixels (> fine_sigma)", gt=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fine_sigma < self.coarse_sigma:
            raise ConfigError(f"need fine_sigma < coarse_sigma, got {self.fine_sigma} and {self.coarse_sigma}")


class _Untrained(AnomalyMethod):
    needs_training = False

    def learn(
        self,
        images: NormalImages,
        run_dir: Path | None,
        *,
        resume: bool,
        progress: bool,
        context: DistributedContext | None,
    ) -> None:
        """Nothing to learn."""


@register_method("brightness")
class Brightness(_Untrained):
    """Gaussian-smoothed intensity, a trivial reference: lesions are bright on mammograms."""

    settings_class = BrightnessSettings
    score_names = ("brightness",)

    def compute_score_maps(self, image: np.ndarray, scores: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {"brightness": brightness_map(image, sigma=self.settings.sigma)}


@register_method("local-contrast")
class LocalContrast(_Untrained):
    """Fine minus coarse Gaussian smoothing, a trivial reference: bright blobs on their surroundings."""

    settings_class = LocalContrastSettings
    score_names = ("local-contrast",)

    def compute_score_maps(self, image: np.ndarray, scores: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {
            "local-contrast": local_contrast_map(
                image, fine_sigma=self.settings.fine_sigma, coarse_sigma=self.settings.coarse_sigma
            )
        }
