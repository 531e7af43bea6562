"""The GANs of Davletshina et al. (2020) on radiographs prepared by their preprocessing chain: "dcgan" (with
minibatch discrimination; discriminator probability and AnoGAN's latent search), "alpha-gan" and "bigan"
(reconstruction error of G(E(x)) and discriminator probability).

Modules, by idea: ``layers`` (minibatch discrimination, self-attention), ``networks`` (pure ``nn.Module``s),
``config`` (training config and presets), ``training`` (the steps for the generic trainer; data from
``picard_ad.methods.cae.data``), ``scores`` (discriminator probability, latent search), ``settings`` and
``method`` (the registered methods).
"""

from picard_ad.methods.gan.config import ALPHA_GAN_PRESETS, BIGAN_PRESETS, DCGAN_PRESETS, GANTrainConfig
from picard_ad.methods.gan.layers import MinibatchDiscrimination, SelfAttention
from picard_ad.methods.gan.method import DCGAN, AlphaGAN, BiGAN, RadiographGAN
from picard_ad.methods.gan.networks import (
    CodeDiscriminator,
    Encoder,
    Generator,
    ImageDiscriminator,
    JointDiscriminator,
)
from picard_ad.methods.gan.scores import LatentSearch, anogan_terms, disc_score, latent_search
from picard_ad.methods.gan.settings import DCGANSettings, EncodingGANSettings, GANSettings
from picard_ad.methods.gan.training import (
    AlphaGANTraining,
    BiGANTraining,
    DCGANTraining,
    GANTraining,
    build_networks,
)

__all__ = [
    "ALPHA_GAN_PRESETS",
    "BIGAN_PRESETS",
    "DCGAN",
    "DCGAN_PRESETS",
    "AlphaGAN",
    "AlphaGANTraining",
    "BiGAN",
    "BiGANTraining",
    "CodeDiscriminator",
    "DCGANSettings",
    "DCGANTraining",
    "Encoder",
    "EncodingGANSettings",
    "GANSettings",
    "GANTrainConfig",
    "GANTraining",
    "Generator",
    "ImageDiscriminator",
    "JointDiscriminator",
    "LatentSearch",
    "MinibatchDiscrimination",
    "RadiographGAN",
    "SelfAttention",
    "anogan_terms",
    "build_networks",
    "disc_score",
    "latent_search",
]
