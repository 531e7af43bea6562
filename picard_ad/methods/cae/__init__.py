"""The convolutional autoencoder of Davletshina et al. (2020) on radiographs prepared by their preprocessing chain
(registered as method "cae").

Modules, by idea: ``networks`` (the pure ``nn.Module``), ``scores`` (masked loss, error maps, image scores),
``config`` (training config and presets), ``data`` (prepared training images and the paper's augmentation),
``training`` (the step for the generic trainer), ``settings`` and ``method`` (the registered method). The
preprocessing chain is ``picard_ad.data.preprocessing``.
"""

from picard_ad.methods.cae.config import PRESETS, CAETrainConfig
from picard_ad.methods.cae.data import TrainingImage, augment, load_training_images
from picard_ad.methods.cae.method import CAE
from picard_ad.methods.cae.networks import ConvAutoencoder
from picard_ad.methods.cae.scores import SCORE_NAMES, error_maps, image_scores, masked_mse, score_maps
from picard_ad.methods.cae.settings import CAESettings
from picard_ad.methods.cae.training import CAETraining, build_network

__all__ = [
    "CAE",
    "PRESETS",
    "SCORE_NAMES",
    "CAESettings",
    "CAETrainConfig",
    "CAETraining",
    "ConvAutoencoder",
    "TrainingImage",
    "augment",
    "build_network",
    "error_maps",
    "image_scores",
    "load_training_images",
    "masked_mse",
    "score_maps",
]
