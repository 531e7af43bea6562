"""How the VAE and the DAE learn: their training configs (defaults: the thesis' HCP -> BraTS setup, section
3.1.4) and named presets.

The thesis: the DCGAN-like network of ``networks`` at 64 x 64 px with z = 256, a Gaussian p(x|z) with c = 1, Adam
at learning rate 1e-4 reduced by 0.1 when the validation loss plateaus, training stopped after three epochs
without improvement; augmentation by multiplicative brightness, mirroring and rotation; slices z-scored and
clipped to [-1.5, 1.5] (section 3.2.3). The generic trainer counts iterations, not epochs: ``validate_every`` is
the "epoch" of the plateau rule, and instead of stopping early the run keeps the checkpoint of the lowest
held-out loss (``RUN_DIR/best``), which the methods score with by default (the model an early stop would leave).
Where the thesis gives no number (batch size, rotation range, brightness range, plateau patience), the reference
code's is used: batch 64, rotation +-0.1 rad (5.7 degrees), brightness x U(0.95, 1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import setting
from picard_ad.errors import ConfigError
from picard_ad.methods.vae.data import Augmentation, Preprocessing
from picard_ad.methods.vae.networks import DOWNSAMPLING
from picard_ad.training.config import RunSettings

ZSCORE_DEFAULT = "slice"  # what runs from before the setting did; the presets take the thesis' "volume"
ZSCORE_HELP = ("z-score statistics from the tissue of the slice's whole volume (the thesis' per-patient z-score; a "
               "2-D image is its own volume) or of the slice alone")


@dataclass(frozen=True)
class AutoencoderTrainConfig(RunSettings):
    """What the VAE and the DAE share: network size, preprocessing, augmentation, likelihood and optimisation.

    Intensities: the readers' [0, 1] for thresholds; the networks see z-scores (``data``). ``steps`` counts
    optimiser steps of ``batch_size`` slices.
    """

    steps: int = setting(20_000, "optimiser steps of batch_size slices", ge=1, run_control=True)
    batch_size: int = setting(64, "slices per step and process (the reference code: 64)", ge=1)
    val_images: int = setting(2, "images (volumes or 2-D images) held out for the validation loss (0: validate on "
                              "training images)", ge=0)  # fmt: skip
    validate_every: int = setting(500, "iterations between validations: the 'epoch' of the plateau rule", ge=1,
                                  run_control=True)  # fmt: skip
    # network
    input_size: int = setting(64, "side of the square network input, px: 64 (thesis default) or 128", ge=16)
    z_dim: int = setting(256, "latent variables (thesis: 256)", ge=1)
    # data
    clip: float = setting(1.5, "z-scores inside the tissue are clipped to [-clip, clip] (thesis: 1.5)", gt=0.0)
    tissue_threshold: float = setting(0.02, "[0, 1] intensity above which a pixel may be tissue (z-score mask)",
                                      ge=0.0, lt=1.0)  # fmt: skip
    zscore: Literal["slice", "volume"] = setting(ZSCORE_DEFAULT, ZSCORE_HELP)
    min_tissue_fraction: float = setting(0.05, "training slices with less tissue than this fraction of the input "
                                         "are left out", ge=0.0, le=1.0)  # fmt: skip
    val_slices: int = setting(64, "held-out slices (spread over the held-out images) of the validation loss", ge=1)
    # augmentation
    mirror: bool = setting(True, "random left-right mirroring")
    rotation: float = setting(5.7, "random rotation by up to this many degrees either way (reference: 0.1 rad)",
                              ge=0.0, le=180.0)  # fmt: skip
    brightness: tuple[float, float] = setting((0.95, 1.1), "z-scores multiplied by a factor uniform in this range "
                                              "(reference code: 0.95-1.1)", gt=0.0)  # fmt: skip
    augment_noise: float = setting(0.0, "Gaussian noise of a std uniform in [0, this] added to the z-scores (thesis: "
                                   "none; reference code: up to sqrt(0.05) = 0.22)", ge=0.0)  # fmt: skip
    # likelihood p(x|z)
    likelihood: Literal["gaussian", "laplace"] = setting("gaussian", "p(x|z): gaussian (L2 loss, thesis) or laplace "
                                                         "(L1 loss)")  # fmt: skip
    scale: float = setting(1.0, "c, the scale (standard deviation) of p(x|z) (thesis default 1; log c = 1.4 tuned "
                           "for FashionMNIST)", gt=0.0)  # fmt: skip
    # optimisation
    lr: float = setting(1e-4, "Adam learning rate at the start (thesis: 1e-4)", gt=0.0)
    plateau_factor: float = setting(0.1, "the learning rate is multiplied by this on a validation plateau (thesis: "
                                    "0.1)", gt=0.0, le=1.0)  # fmt: skip
    plateau_patience: int = setting(2, "validations without a new lowest loss that make a plateau", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_size % DOWNSAMPLING:
            raise ConfigError(f"input_size must be a multiple of {DOWNSAMPLING}, got {self.input_size}")
        if self.brightness[0] > self.brightness[1]:
            raise ConfigError(f"brightness must be a (min, max) pair with min <= max, got {self.brightness}")

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.input_size, self.clip, self.tissue_threshold, self.zscore)

    def augmentation(self) -> Augmentation:
        return Augmentation(self.mirror, self.rotation, self.brightness, self.augment_noise)


@dataclass(frozen=True)
class VAETrainConfig(AutoencoderTrainConfig):
    """A VAE training run: the negative ELBO L_KL + L_rec with one reparameterised sample of z per slice."""


@dataclass(frozen=True)
class DAETrainConfig(AutoencoderTrainConfig):
    """A denoising-autoencoder run: the same network without the variational code, trained to reconstruct each
    slice from a copy with Gaussian noise added (the thesis does not give the noise level)."""

    noise_std: float = setting(0.2, "std of the Gaussian noise added to the input z-scores in training", gt=0.0)


@dataclass(frozen=True)
class CEVAETrainConfig(AutoencoderTrainConfig):
    """A context-encoding VAE run (thesis section 3.2.3): L_KL + L_rec + ce_factor * L_CE, where L_CE is L_rec of the
    clean slice reconstructed through the mean encoder from a copy with 1 to ``max_squares`` squares of a random
    intensity pasted in (no KL on that copy). The thesis' losses are L1 (``likelihood: laplace``)."""

    likelihood: Literal["gaussian", "laplace"] = setting("laplace", "p(x|z): laplace (L1 loss, the ceVAE of the "
                                                         "thesis) or gaussian (L2 loss)")  # fmt: skip
    feature_maps: Literal["16-32-64-256", "16-64-256-1024"] = setting(
        "16-32-64-256", "feature maps of the four strided levels: the VAE's (section 3.1) or the ceVAE's of section "
        "3.2.3 (16/64/256/1024)")
    ce_factor: float = setting(1.0, "weight of the context-encoding term L_CE beside L_KL + L_rec (thesis: 1, the sum "
                               "of the three terms; 0: a plain VAE)", ge=0.0)  # fmt: skip
    max_squares: int = setting(3, "the CE input gets 1 to this many squares (thesis: 1-3)", ge=1)
    max_square_fraction: float = setting(0.5, "largest square side, fraction of the input side (reference code: "
                                         "1/2)", gt=0.0, le=1.0)  # fmt: skip


def _small(cls: type, **extra) -> AutoencoderTrainConfig:
    # Phantom scale on a 2-core CPU in a few minutes: 64 px, a smaller code and batch, a faster learning rate.
    # bf16 autocast: 20-25 % faster steps on this project's Zen 4 CPU (AVX512-BF16); --no-bf16 elsewhere.
    return cls(steps=1500, batch_size=32, z_dim=128, val_images=4, val_slices=32, validate_every=100,
               checkpoint_every=500, log_every=20, sample_every=500, num_workers=0, lr=5e-4, plateau_patience=3,
               bf16=True, zscore="volume", **extra)  # fmt: skip


def _tiny(cls: type, **extra) -> AutoencoderTrainConfig:
    # A seconds-long fit that checks a pipeline end to end; it learns next to nothing.
    return cls(steps=4, batch_size=4, input_size=32, z_dim=8, val_images=0, val_slices=4, validate_every=2,
               checkpoint_every=2, log_every=2, sample_every=4, num_workers=0, tensorboard=False, lr=1e-3,
               min_tissue_fraction=0.0, **extra)  # fmt: skip


VAE_PRESETS: dict[str, VAETrainConfig] = {
    "thesis": VAETrainConfig(zscore="volume"),
    "small": _small(VAETrainConfig),
    "tiny": _tiny(VAETrainConfig),
}
CEVAE_PRESETS: dict[str, CEVAETrainConfig] = {
    # Section 3.2.3: 64 px, maps 16/64/256/1024, z = 1024, Adam 2e-4, batch 64 (60 epochs of HCP: ~20k steps).
    "thesis": CEVAETrainConfig(feature_maps="16-64-256-1024", z_dim=1024, lr=2e-4, zscore="volume"),
    "small": _small(CEVAETrainConfig),
    "tiny": _tiny(CEVAETrainConfig),
}
DAE_PRESETS: dict[str, DAETrainConfig] = {
    "thesis": DAETrainConfig(zscore="volume"),
    "small": _small(DAETrainConfig),
    "tiny": _tiny(DAETrainConfig),
}
