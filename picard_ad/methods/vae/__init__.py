"""Zimmerer's VAE, DAE (PhD thesis, section 3.1; methods "vae" and "dae"), ceVAE and CRADL (section 3.2.3, "cevae"
and "cradl"; CRADL's SimCLR stage in ``simclr``, its Gaussian mixture in ``gmm``, the rest in ``cradl``) and pchVAE
(section 3.3, "pchvae", with its ablations; ``pchvae``).

Modules, by idea: ``networks`` (the pure ``nn.Module``: the DCGAN-like convolutional encoder and decoder),
``losses`` (closed-form KL, Gaussian or Laplace -log p(x|z)), ``data`` (slices through Davletshina et al.'s
preprocessing chain at the model size, z-scored inside the tissue and clipped; augmentation; the slice bank training
draws from), ``config`` (training configs and presets),
``training`` (the steps for the generic trainer, with the learning rate reduced on a plateau), ``scores`` (the
pixel scores: reconstruction error, KL / reconstruction / ELBO gradients by SmoothGrad or one backward pass, combi,
sampling variance; the sample scores), ``settings`` and ``method`` (the registered methods). Where the thesis and
its reference code differ, ``settings`` and ``config`` say which is the default.
"""

from picard_ad.methods.vae.config import (
    CEVAE_PRESETS,
    DAE_PRESETS,
    VAE_PRESETS,
    AutoencoderTrainConfig,
    CEVAETrainConfig,
    DAETrainConfig,
    VAETrainConfig,
)
from picard_ad.methods.vae.cradl import (
    CRADL,
    CRADL_PRESETS,
    CRADLScores,
    CRADLSettings,
    CRADLTrainConfig,
    CRADLTraining,
)
from picard_ad.methods.vae.data import (
    RAW_CHAIN,
    Augmentation,
    ModelInput,
    Preprocessing,
    SliceBank,
    Square,
    augmented,
    context_squares,
    fit_to_input,
    model_input,
    normalise,
)
from picard_ad.methods.vae.gmm import GaussianMixture, fit_mixture, select_mixture
from picard_ad.methods.vae.losses import cevae_loss_terms, kl_divergence, pixel_nll, reconstruction_nll
from picard_ad.methods.vae.method import CEVAE, DAE, VAE
from picard_ad.methods.vae.networks import ConvAutoencoder, ConvDecoder, ConvEncoder
from picard_ad.methods.vae.pchvae import (
    PCHVAE,
    PCHVAE_PRESETS,
    HierarchicalVAE,
    PCHVAESettings,
    PCHVAETrainConfig,
    PCHVAETraining,
    hierarchical_loss_terms,
)
from picard_ad.methods.vae.scores import GradientOptions, ReconstructionScores, VAEScores, gaussian_smooth
from picard_ad.methods.vae.settings import (
    CEVAE_SCORES,
    DAE_SCORES,
    VAE_SCORES,
    CEVAESettings,
    ChainedAutoencoderSettings,
    DAESettings,
    VAESettings,
)
from picard_ad.methods.vae.simclr import ProjectionHead, SimCLREncoder, nt_xent, two_views
from picard_ad.methods.vae.training import CEVAETraining, DAETraining, VAETraining, build_network

__all__ = [
    "PCHVAE",
    "PCHVAE_PRESETS",
    "HierarchicalVAE",
    "PCHVAESettings",
    "PCHVAETrainConfig",
    "PCHVAETraining",
    "hierarchical_loss_terms",
    "CRADL",
    "CRADL_PRESETS",
    "CRADLScores",
    "CRADLSettings",
    "CRADLTrainConfig",
    "CRADLTraining",
    "GaussianMixture",
    "ProjectionHead",
    "SimCLREncoder",
    "fit_mixture",
    "nt_xent",
    "select_mixture",
    "two_views",
    "CEVAE",
    "CEVAE_PRESETS",
    "CEVAE_SCORES",
    "CEVAESettings",
    "CEVAETrainConfig",
    "CEVAETraining",
    "Square",
    "cevae_loss_terms",
    "context_squares",
    "DAE",
    "DAE_PRESETS",
    "DAE_SCORES",
    "VAE",
    "VAE_PRESETS",
    "VAE_SCORES",
    "RAW_CHAIN",
    "Augmentation",
    "AutoencoderTrainConfig",
    "ChainedAutoencoderSettings",
    "ConvAutoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "DAESettings",
    "DAETrainConfig",
    "DAETraining",
    "GradientOptions",
    "ModelInput",
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
    "model_input",
    "normalise",
    "pixel_nll",
    "reconstruction_nll",
]
