"""How the VAE and the DAE score an image: their settings (YAML keys, command-line flags and keyword arguments).

Thesis (section 3.1.4) versus its reference code, and what is the default here:

- Gradients: the thesis computes them with SmoothGrad (Smilkov et al. 2017; no parameters given), the MICCAI 2019
  reference code with one vanilla backward pass. Default ``gradient: smoothgrad`` with ``smoothgrad_runs`` 20 and
  noise std 0.1 (z-score units), the defaults of the trixi SmoothGrad the reference tooling calls; each run adds
  fresh noise to the clean input and the runs' gradients are averaged before the absolute value (Smilkov's
  algorithm; trixi accumulates the noise over runs and averages absolute values, which is not built).
- Smoothing of the gradient maps (against the convolutions' checkerboard artefacts): the thesis uses a Gaussian of
  kernel size 5 (sigma not given: taken from the kernel size by OpenCV's rule, 0.3 ((k - 1) / 2 - 1) + 0.8 =
  1.1); the reference code a kernel of 7 with sigma 3 (``smoothing_kernel: 7, smoothing_sigma: 3``). Zero padding
  at the border, as the reference code.
- combi: the thesis' |x - g(f(x))| * |dKL/dx| (eq. 3.10) with the smoothed KL gradient map, unnormalised; the
  reference code min-max normalises the gradient over a batch and multiplies by the per-pixel Gaussian NLL (or the
  squared error), which is not built (a per-batch normalisation makes an image's map depend on its batch-mates).
- Reconstructions use the posterior mean z = f_mu(x), as does the reconstruction term whose gradients are taken;
  ``sampling-variance`` decodes ``n_samples`` draws of z ~ q(z|x) (the thesis gives no number) and gives their
  per-pixel variance (the thesis reports the standard deviation: the same ranking).

Image scores (``sample_score``): the thesis' negative ELBO L_KL + L_rec (eq. 3.14) or one of its terms, in nats;
or Davletshina et al.'s (2020) VAE scores ``mse`` and ``l1`` (their third, KL, is ``kl``): the mean squared or
absolute difference between the network input and its posterior-mean reconstruction over the tissue (the chain's
foreground mask in ``crop`` and ``full``), in z-score units.

Preprocessing (the VAE, DAE, ceVAE and pchVAE): Davletshina et al.'s chain (``PreprocessingSettings``, the CAE's
keys and flags), by default ``raw`` without equalization, which is the data path from before the chain to the bit.
The chain of the settings at fit time prepares the training slices and is recorded in the checkpoint; scoring
uses the settings' chain.

Every map is computed at the model's input size in z-score units (or nats per z-score unit for gradients) and
mapped back to the image (resized, and through the carrier crop in ``crop`` and ``full``: 0 outside its box).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from picard_ad.config import setting
from picard_ad.data.preprocessing import PreprocessingSettings
from picard_ad.errors import ConfigError
from picard_ad.methods.base import MethodSettings
from picard_ad.methods.vae.data import RAW_CHAIN

VAE_SCORES = ("combi", "kl-grad", "elbo-grad", "rec-grad", "rec", "rec-smoothed", "sampling-variance")
DAE_SCORES = ("rec", "rec-smoothed")
CEVAE_SCORES = ("combi", "kl-grad")
GRADIENT_SCORES = ("combi", "kl-grad", "elbo-grad", "rec-grad")


def opencv_sigma(kernel: int) -> float:
    """OpenCV's sigma of a Gaussian of ``kernel`` taps when none is given: 0.3 ((k - 1) / 2 - 1) + 0.8."""
    return 0.3 * ((kernel - 1) / 2 - 1) + 0.8


@dataclass(frozen=True)
class AutoencoderSettings(MethodSettings):
    """What scoring with the VAE and the DAE shares."""

    checkpoint: Literal["best", "last"] = setting("best", "which checkpoint scores: best (lowest held-out loss, what "
                                                  "the thesis' early stop keeps) or last")  # fmt: skip
    smoothing_kernel: int = setting(5, "taps of the Gaussian that smooths gradient maps and rec-smoothed (thesis: 5; "
                                    "reference code: 7); 1 switches smoothing off", ge=1)  # fmt: skip
    smoothing_sigma: float | None = setting(None, "its sigma in model pixels [from the kernel: 1.1 for 5] (reference "
                                            "code: 3)", gt=0.0)  # fmt: skip
    sample_score: Literal["kl+rec", "kl", "rec", "mse", "l1", "map"] = setting(
        "kl+rec", "image score: the negative ELBO L_KL + L_rec (thesis eq. 3.14) or one term of it (nats); mse or "
        "l1, the mean squared or absolute error of the posterior-mean reconstruction over the tissue (z-score units; "
        "with kl, Davletshina et al.'s VAE scores); or map (the 0.99 quantile of the score map over tissue)"
    )
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", execution=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.smoothing_kernel % 2 == 0:
            raise ConfigError(f"smoothing_kernel must be odd, got {self.smoothing_kernel}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    @property
    def sigma(self) -> float:
        """The smoothing Gaussian's sigma in model pixels."""
        return self.smoothing_sigma if self.smoothing_sigma is not None else opencv_sigma(self.smoothing_kernel)


def _chain_setting(name: str, default: Any) -> Any:
    """The chain's setting ``name`` (its help, choices and bounds) with another default."""
    field = next(field for field in dataclasses.fields(PreprocessingSettings) if field.name == name)
    return dataclasses.field(default=default, metadata=field.metadata)


@dataclass(frozen=True)
class ChainedAutoencoderSettings(PreprocessingSettings, AutoencoderSettings):
    """The scoring settings with Davletshina et al.'s preprocessing chain (the CAE's keys), by default the slices as
    they are (``RAW_CHAIN``: raw, no equalization)."""

    preprocessing: Literal["raw", "crop", "full"] = _chain_setting("preprocessing", RAW_CHAIN.preprocessing)
    equalization: Literal["none", "global", "clahe"] = _chain_setting("equalization", RAW_CHAIN.equalization)

    def __post_init__(self) -> None:
        AutoencoderSettings.__post_init__(self)  # checks every field, the chain's included


@dataclass(frozen=True)
class VAESettings(ChainedAutoencoderSettings):
    """How the VAE scores an image (see the module docstring for thesis versus reference-code choices)."""

    score: str = setting("combi", "score of the heatmap: combi (|x - g(f(x))| * |dKL/dx|), kl-grad, elbo-grad, "
                         "rec-grad, rec (|x - g(f(x))|), rec-smoothed or sampling-variance",
                         choices=VAE_SCORES)  # fmt: skip
    gradient: Literal["smoothgrad", "vanilla"] = setting("smoothgrad", "input gradients by SmoothGrad (thesis) or one "
                                                         "backward pass (reference code)")  # fmt: skip
    smoothgrad_runs: int = setting(20, "SmoothGrad: noisy copies whose gradients are averaged", ge=1)
    smoothgrad_noise: float = setting(0.1, "SmoothGrad: std of the Gaussian noise added to the input z-scores",
                                      ge=0.0)  # fmt: skip
    n_samples: int = setting(16, "sampling-variance: decodes of z ~ q(z|x) whose per-pixel variance is the map",
                             ge=2)  # fmt: skip
    seed: int = setting(0, "seed of SmoothGrad's noise and of the sampled codes (the same for every image)", ge=0)


@dataclass(frozen=True)
class DAESettings(ChainedAutoencoderSettings):
    """How the DAE scores an image: its reconstruction error |x - g(f(x))| (thesis Table 3.2's DAE)."""

    score: str = setting("rec", "score of the heatmap: rec (|x - g(f(x))|) or rec-smoothed", choices=DAE_SCORES)
    sample_score: Literal["rec", "mse", "l1", "map"] = setting(
        "rec", "image score: L_rec of the clean slice (nats); mse or l1, the mean squared or absolute reconstruction "
        "error over the tissue (z-score units); or map (the 0.99 quantile of the score map over tissue)"
    )


@dataclass(frozen=True)
class CEVAESettings(ChainedAutoencoderSettings):
    """How the ceVAE scores an image: combi (thesis section 3.2.3, Table 3.5) or kl-grad (section 4.2, less sensitive
    to intensity), gradients as the VAE's; image score the negative ELBO L_KL + L_rec of the slice."""

    score: str = setting("combi", "score of the heatmap: combi (|x - g(f(x))| * |dKL/dx|) or kl-grad",
                         choices=CEVAE_SCORES)  # fmt: skip
    gradient: Literal["smoothgrad", "vanilla"] = setting("smoothgrad", "input gradients by SmoothGrad (thesis) or one "
                                                         "backward pass")  # fmt: skip
    smoothgrad_runs: int = setting(20, "SmoothGrad: noisy copies whose gradients are averaged (the MOOD example: 2)",
                                   ge=1)  # fmt: skip
    smoothgrad_noise: float = setting(0.1, "SmoothGrad: std of the Gaussian noise added to the input z-scores",
                                      ge=0.0)  # fmt: skip
    seed: int = setting(0, "seed of SmoothGrad's noise (the same for every image)", ge=0)
