"""How CutPaste scores an image: its settings (YAML keys, command-line flags and keyword arguments share the names).

The window geometry (``WindowSettings``) defaults to the PICARD paper's: 256 px windows (the encoder's training
patch) at stride 32, each score registered to the centred half of its window as PICARD's, windows whose centre
holds no tissue skipped. The settings in effect when the method is fitted also decide which normal windows the
Gaussian densities are fitted on (see ``CutPaste``).

Why ``gde`` defaults to "shared": the PICARD paper writes of a Gaussian "at each location", but a location (a
window's place in the grid) only means the same anatomy in every image when all images are aligned and of one
size. BCS-DBT slices, the paper's data, are neither: they differ in size (about 2,000 x 2,500 px, varying), and
the breast's extent and position vary between patients and views even when left-aligned, so grid position (i, j)
holds chest wall in one slice and background or nipple in another, and a test slice of another size has no
matching grid at all. A per-location Gaussian is also fitted on one window per normal image, a few hundred
samples in 512 dimensions, where the shared Gaussian sees every tissue window. One Gaussian shared by all
locations is therefore the form that fits the paper's DBT setting; per-location Gaussians remain available for
aligned images of one size (registered MRI slices, phantoms of one size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import setting
from picard_ad.errors import ConfigError
from picard_ad.localize.settings import WindowSettings
from picard_ad.methods.base import MethodSettings

SCORE_NAMES = ("mahalanobis",)


@dataclass(frozen=True)
class CutPasteSettings(WindowSettings, MethodSettings):
    """How CutPaste scores an image. Lengths in pixels; intensities in the readers' [0, 1] units.

    ``patch_size`` defaults to the window side the Gaussians were fitted on (the encoder's training patch unless
    set at fit time) and must equal it; ``mask_size`` defaults to half the window, as PICARD's hole.
    """

    score: str = setting("mahalanobis", "score of the heatmap: the Mahalanobis distance of the window's embedding "
                         "to the normal windows' Gaussian", choices=SCORE_NAMES)  # fmt: skip
    gde: Literal["shared", "per-location"] = setting(
        "shared", "one Gaussian for all window locations, or one per location (aligned images of one size only; "
        "fitted when this is set at fit time)"
    )
    image_pooling: Literal["max", "mean"] = setting("max", "image score: max or mean of the window scores on tissue")
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", execution=True)
    bf16: bool = setting(True, "bfloat16 autocast (AMX, AVX512-BF16, tensor cores); off computes in float32",
                         execution=True)  # fmt: skip
    channels_last: bool = setting(True, "NHWC memory layout for the convolutions", execution=True)
    fused: bool = setting(True, "CPU: the encoder traced into oneDNN kernels with convolution, add and ReLU fused",
                          execution=True)  # fmt: skip
    int8: bool = setting(False, "CPU: embed windows with the encoder quantized to int8 (activation ranges measured "
                         "on the normal windows when fitting; the Gaussians are fitted on its embeddings, so it "
                         "must be set when fitting and when scoring alike)")  # fmt: skip
    batch_size: int | Literal["auto"] = setting("auto", "windows per encoder forward, or auto (from free memory and "
                                                "a measured footprint)", ge=1, execution=True)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
