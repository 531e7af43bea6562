"""How the CAE scores an image: its settings, the preprocessing chain's included (YAML keys, flags and keyword
arguments share the names).

The chain's settings (``PreprocessingSettings``: ``preprocessing`` raw / crop / full, equalization, ...) decide
both how the normal images are prepared when the method is fitted and how a checked image is prepared when it is
scored, so a benchmark ablation over ``preprocessing`` rescores a fitted network with another chain (the paper's
Table 1 retrains one network per column: fit one method per value for that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import setting
from picard_ad.data.preprocessing import PreprocessingSettings
from picard_ad.errors import ConfigError
from picard_ad.methods.base import MethodSettings
from picard_ad.methods.cae.scores import SCORE_NAMES


@dataclass(frozen=True)
class CAESettings(PreprocessingSettings, MethodSettings):
    """How the CAE scores an image: its preprocessing, score and checkpoint."""

    score: str = setting("mse", "the score: mse or l1 (mean squared or absolute reconstruction error on the mask), "
                         "or their mean over the top_k worst pixels; maps show the squared or absolute error",
                         choices=SCORE_NAMES)  # fmt: skip
    top_k: int = setting(200, "pixels of highest error the top-k scores average, at the network's input size "
                         "(paper: 200)", ge=1)  # fmt: skip
    checkpoint: Literal["best", "last"] = setting("best", "the run's checkpoint scored with: best (lowest held-out "
                                                  "masked MSE) or last")  # fmt: skip
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", execution=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
