"""How the GANs score an image: the preprocessing chain's settings (the same keys as the cae's) and each method's
scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import setting
from picard_ad.data.preprocessing import PreprocessingSettings
from picard_ad.errors import ConfigError
from picard_ad.methods.base import MethodSettings

DCGAN_SCORES = ("disc", "anogan")
ENCODING_SCORES = ("mse", "l1", "mse-top-k", "l1-top-k", "disc")


@dataclass(frozen=True)
class GANSettings(PreprocessingSettings, MethodSettings):
    """What every GAN's settings hold: the chain, the checkpoint scored and the device."""

    checkpoint: Literal["best", "last"] = setting("last", "the run's checkpoint scored with: last, or best (lowest "
                                                  "held-out metric: see docs/radiograph-gans.md)")  # fmt: skip
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", execution=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclass(frozen=True)
class DCGANSettings(GANSettings):
    """DCGAN scores: the discriminator's probability, or AnoGAN's latent search (Schlegl et al. 2017)."""

    score: str = setting("disc", "disc: 1 - D(x), the discriminator's probability that the image is fake (map: "
                         "that one value on the whole mask); anogan: (1 - lambda) residual + lambda feature loss "
                         "after the latent search (map: |x - G(z*)|)", choices=DCGAN_SCORES)  # fmt: skip
    latent_iterations: int = setting(500, "anogan: Adam steps of the latent search for z* (Schlegl et al.: 500)",
                                     ge=0)  # fmt: skip
    latent_lr: float = setting(0.01, "anogan: Adam learning rate of the latent search", gt=0.0)
    latent_lambda: float = setting(0.1, "anogan: weight lambda of the feature loss (Schlegl et al.: 0.1)",
                                   ge=0.0, le=1.0)  # fmt: skip
    latent_seed: int = setting(0, "anogan: seed of the starting code z0 (the same for every image)", ge=0)


@dataclass(frozen=True)
class EncodingGANSettings(GANSettings):
    """α-GAN and BiGAN scores: the reconstruction error of G(E(x)) and the discriminator's probability."""

    score: str = setting("mse", "mse / l1: mean squared / absolute error of the reconstruction G(E(x)) on the mask, "
                         "or their top_k means (maps: the error); disc: the discriminator's probability of fake "
                         "(map: that value on the whole mask)", choices=ENCODING_SCORES)  # fmt: skip
    top_k: int = setting(200, "pixels of highest error the top-k scores average, at the network's input size",
                         ge=1)  # fmt: skip
