"""How PICARD scores an image: its settings (YAML keys, command-line flags and keyword arguments share the names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import check_settings, setting
from picard_ad.errors import ConfigError
from picard_ad.layers import DropoutKind
from picard_ad.localize.settings import WindowSettings
from picard_ad.methods.base import MethodSettings
from picard_ad.methods.picard.engine import MAX_COMPLETIONS
from picard_ad.methods.picard.generator import (
    DECODER_DEPTH,
    coarse_layer_specs,
    fine_layer_specs,
    resolve_dropout_layers,
)
from picard_ad.methods.picard.scores import SCORE_NAMES

REGION_CROPPED_LAYERS: frozenset[str] = frozenset(
    [f"coarse_generator.{spec.name}" for spec in coarse_layer_specs()[-DECODER_DEPTH:]]
    + [f"fine_generator.{spec.name}" for key in ("attention_decoder", "merge") for spec in fine_layer_specs()[key]]
)
"""Layers that ``InpaintingGenerator.complete_region`` (the engine's inference path) runs on crops of their
feature maps: both stages' decoders and the attention decoder. (It crops each stage's conv10_atrous too, except
under element dropout of that layer.)"""


@dataclass(frozen=True)
class PicardSettings(WindowSettings, MethodSettings):
    """How PICARD scores an image. Lengths in pixels; intensities in the readers' [0, 1] units.

    ``dropout_kind`` "element" is refused on the decoder layers that the engine runs on crops
    (``REGION_CROPPED_LAYERS``), as their masks would be the crop's. ``patch_size`` and ``mask_size`` default to
    the model's training patch and hole sizes.
    """

    score: str = setting("calibrated-quantile-feature", "score of the heatmap (the default chosen by the study in "
                         "docs/picard-study.md; the paper's is mcd-image): PICARD's completion distances (mcd = "
                         "minimum, mean, median, a low quantile or a soft minimum; image or critic-feature space; "
                         "calibrated-*: as a z-score among normal windows of similar context) or Swiecicki et al.'s "
                         "mse, critic, dmse", choices=SCORE_NAMES)  # fmt: skip
    quantile: float = setting(0.1, "quantile of the M completion distances that quantile-image and "
                              "quantile-feature take (0: the minimum, as mcd)", ge=0.0, le=1.0)  # fmt: skip
    softmin_temperature: float = setting(0.1, "temperature of softmin-image and softmin-feature, in units of the "
                                         "window's mean completion distance (near 0: the minimum; large: the mean)",
                                         gt=0.0)  # fmt: skip
    n_completions: int = setting(10, "M, dropout completions per window", ge=1, le=MAX_COMPLETIONS, aliases=("--M",))
    dropout_p: float = setting(0.5, "drop probability of a channel (or activation); 0 turns dropout off",
                               ge=0.0, lt=1.0)  # fmt: skip
    dropout_layers: str | tuple[str, ...] = setting(
        "reference", "'reference' (the reference code's 9 coarse layers), 'paper' (the paper's rule, both stages) "
        "or comma-separated qualified layer names", metavar="PRESET|LAYERS",
    )  # fmt: skip
    dropout_kind: DropoutKind = setting("spatial", "drop whole channels (PICARD's spatial dropout) or single "
                                        "activations (the regular dropout of the paper's appendix B.2)")  # fmt: skip
    seed: int = setting(1337, "run seed of the dropout masks (the reference's 1337)", ge=0, lt=2**31)
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", execution=True)
    bf16: bool = setting(True, "bfloat16 autocast (AMX / tensor cores); off computes in float32", execution=True)
    channels_last: bool = setting(True, "NHWC memory layout for the convolutions", execution=True)
    fused: bool = setting(True, "CPU: each convolution with its activation and dropout as one oneDNN kernel",
                          execution=True)  # fmt: skip
    batch_size: int | Literal["auto"] = setting("auto", "completions per generator forward, or auto (from free "
                                                "memory and a measured footprint)", ge=1, execution=True)  # fmt: skip
    threads: int | None = setting(None, "torch CPU threads [torch's default]", ge=1, execution=True)
    calibration_images: int = setting(8, "normal training images (evenly spaced) whose windows calibrate the "
                                      "calibrated-* scores when the method is fitted", ge=1)  # fmt: skip
    calibration_windows: int = setting(1000, "at most this many of their tissue windows, evenly spread", ge=2)
    checkpoint: Literal["last", "best"] = setting("last", "which checkpoint of the run: last, or best (lowest "
                                                  "held-out completion L1)")  # fmt: skip

    def __post_init__(self) -> None:
        if isinstance(self.dropout_layers, list):
            object.__setattr__(self, "dropout_layers", tuple(self.dropout_layers))
        check_settings(self)
        layers = resolve_dropout_layers(self.dropout_layers)
        cropped = sorted(layers & REGION_CROPPED_LAYERS)
        if self.dropout_kind == "element" and cropped:
            raise ConfigError(
                f"element dropout needs each layer's full feature map, but the engine runs {', '.join(cropped)} on "
                "crops around the hole; use dropout_layers 'reference' or layers outside the decoders"
            )
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
