"""Zimmerer's VAE and DAE for anomaly localization (PhD thesis, section 3.1; registered as methods "vae" and "dae").

Modules, by idea: ``networks`` (the pure ``nn.Module``: the DCGAN-like convolutional encoder and decoder),
``losses`` (closed-form KL, Gaussian or Laplace -log p(x|z)), ``data`` (slices at the model size, z-scored inside the
tissue and clipped; augmentation; the slice bank training draws from), ``config`` (training configs and presets),
``training`` (the steps for the generic trainer, with the learning rate reduced on a plateau), ``scores`` (the
pixel scores: reconstruction error, KL / reconstruction / ELBO gradients by SmoothGrad or one backward pass, combi,
sampling variance; the sample scores), ``settings`` and ``method`` (the registered methods). Where the thesis and
its reference code differ, ``settings`` and ``config`` say which is the default.
"""

from picard_ad.methods.vae.config import (
    DAE_PRESETS,
    VAE_PRESETS,
    AutoencoderTrainConfig,
    DAETrainConfig,
    VAETrainConfig,
)
from picard_ad.methods.vae.data import Augmentation, Preprocessing, SliceBank, augmented, fit_to_input, normalise
from picard_ad.methods.vae.losses import kl_divergence, pixel_nll, reconstruction_nll
from picard_ad.methods.vae.method import DAE, VAE
from picard_ad.methods.vae.networks import ConvAutoencoder, ConvDecoder, ConvEncoder
from picard_ad.methods.vae.scores import GradientOptions, ReconstructionScores, VAEScores, gaussian_smooth
from picard_ad.methods.vae.settings import DAE_SCORES, VAE_SCORES, DAESettings, VAESettings
from picard_ad.methods.vae.training import DAETraining, VAETraining, build_network

__all__ = [
    "DAE",
    "DAE_PRESETS",
    "DAE_SCORES",
    "VAE",
    "VAE_PRESETS",
    "VAE_SCORES",
    "Augmentation",
    "AutoencoderTrainConfig",
    "ConvAutoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "DAESettings",
    "DAETrainConfig",
    "DAETraining",
    "GradientOptions",
    "Preprocessing",
    "ReconstructionScores",
    "SliceBank",
    "VAEScores",
    "VAESettings",
    "VAETrainConfig",
    "VAETraining",
    "augmented",
    "build_network",
    "fit_to_input",
    "gaussian_smooth",
    "kl_divergence",
    "normalise",
    "pixel_nll",
    "reconstruction_nll",
]
