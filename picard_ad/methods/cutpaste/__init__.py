"""CutPaste (Li et al. 2021) as the PICARD paper ran it: a self-supervised 3-way classifier on tissue patches, then
Gaussian densities of window embeddings scored by Mahalanobis distance (registered as method "cutpaste").

Modules, by idea: ``encoder`` and ``head`` (pure ``nn.Module`` networks: the ResNet-18 encoder f, the MLP
projection head and 3-way classifier), ``augment`` (cut-paste and scar views, restricted to tissue), ``config``
(training config and presets), ``training`` (the step for the generic trainer), ``embedding`` (batched window
embeddings), ``gde`` (Ledoit-Wolf Gaussians and Mahalanobis distances), ``settings`` and ``method`` (the registered
method), ``speed`` (seconds per window on this machine).
"""

from picard_ad.methods.cutpaste.augment import CLASS_NAMES, CutPasteAugmentation, cut_paste, scar, three_way
from picard_ad.methods.cutpaste.config import PRESETS, CutPasteTrainConfig
from picard_ad.methods.cutpaste.embedding import WindowEmbedder
from picard_ad.methods.cutpaste.encoder import ResNet18Encoder, fold_batch_norms
from picard_ad.methods.cutpaste.gde import GaussianDensity, ledoit_wolf
from picard_ad.methods.cutpaste.head import ProjectionHead
from picard_ad.methods.cutpaste.method import CutPaste
from picard_ad.methods.cutpaste.settings import SCORE_NAMES, CutPasteSettings
from picard_ad.methods.cutpaste.speed import WindowTiming, seconds_per_window
from picard_ad.methods.cutpaste.training import CutPasteTraining, build_networks

__all__ = [
    "CLASS_NAMES",
    "PRESETS",
    "SCORE_NAMES",
    "CutPaste",
    "CutPasteAugmentation",
    "CutPasteSettings",
    "CutPasteTrainConfig",
    "CutPasteTraining",
    "GaussianDensity",
    "ProjectionHead",
    "ResNet18Encoder",
    "WindowEmbedder",
    "WindowTiming",
    "build_networks",
    "cut_paste",
    "fold_batch_norms",
    "ledoit_wolf",
    "scar",
    "seconds_per_window",
    "three_way",
]
