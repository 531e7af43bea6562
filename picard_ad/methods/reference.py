"""The trivial reference maps as registered methods, so every benchmark scores them beside the real ones.

They learn nothing: ``fit`` records nothing and only marks them fitted. A method that does not beat them on
tissue does not localize anomalies (see ``reference_maps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picard_ad.data.samples import Sample
from picard_ad.methods.base import AnomalyMethod, register_method
from picard_ad.methods.reference_maps import brightness_map, local_contrast_map


@dataclass(frozen=True)
class BrightnessConfig:
    """sigma: standard deviation of the smoothing Gaussian, pixels."""

    sigma: float = 4.0

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")


@dataclass(frozen=True)
class LocalContrastConfig:
    """fine_sigma, coarse_sigma: standard deviations of the two Gaussians (fine < coarse), pixels."""

    fine_sigma: float = 4.0
    coarse_sigma: float = 32.0

    def __post_init__(self) -> None:
        if not 0 < self.fine_sigma < self.coarse_sigma:
            raise ValueError(f"need 0 < fine_sigma < coarse_sigma, got {self.fine_sigma} and {self.coarse_sigma}")


class _Untrained(AnomalyMethod):
    needs_training = False

    def learn(self, normal_samples: Sequence[Sample], work_dir: Path | None) -> None:
        """Nothing to learn."""


@register_method("brightness")
class Brightness(_Untrained):
    """Gaussian-smoothed intensity: lesions are bright on mammograms."""

    config_class = BrightnessConfig

    def compute_score_map(self, image: np.ndarray) -> np.ndarray:
        return brightness_map(image, sigma=self.config.sigma)


@register_method("local-contrast")
class LocalContrast(_Untrained):
    """Fine minus coarse Gaussian smoothing: bright blobs on their surroundings."""

    config_class = LocalContrastConfig

    def compute_score_map(self, image: np.ndarray) -> np.ndarray:
        return local_contrast_map(image, fine_sigma=self.config.fine_sigma, coarse_sigma=self.config.coarse_sigma)
