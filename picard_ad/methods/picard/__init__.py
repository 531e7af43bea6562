"""PICARD (Konz et al. 2023) and Swiecicki et al.'s scores: the completion network, its training and its heatmaps.

Modules, by idea: ``generator``, ``contextual_attention`` and ``critics`` (pure ``nn.Module`` networks), ``config``
(training config and presets), ``losses`` and ``training`` (the WGAN-GP step for the generic trainer), ``engine``
(batched completions of sliding windows), ``scores`` (completion distances, Swiecicki's MSE, critic and DMSE),
``calibration`` (completion distances as z-scores among normal windows of similar context), ``settings`` and
``method`` (the registered method "picard"), ``summary`` (parameters and FLOPs) and ``reference_checkpoint``
(converting the reference code's checkpoints).
"""

from picard_ad.methods.picard.calibration import ContextCalibration, ScoreCalibrations
from picard_ad.methods.picard.config import PRESETS, PicardTrainConfig
from picard_ad.methods.picard.contextual_attention import ContextualAttention
from picard_ad.methods.picard.critics import Critic, GlobalCritic, LocalCritic
from picard_ad.methods.picard.engine import CompletionEngine, completion_seeds
from picard_ad.methods.picard.generator import (
    DROPOUT_LAYER_NAMES,
    DROPOUT_PRESETS,
    InpaintingGenerator,
    resolve_dropout_layers,
)
from picard_ad.methods.picard.method import Picard
from picard_ad.methods.picard.scores import (
    CALIBRATED_SCORES,
    DETERMINISTIC_SCORES,
    PLURALISTIC_SCORES,
    RAW_SCORES,
    SCORE_NAMES,
)
from picard_ad.methods.picard.settings import REGION_CROPPED_LAYERS, PicardSettings
from picard_ad.methods.picard.training import PicardTraining, build_networks

__all__ = [
    "CALIBRATED_SCORES",
    "DETERMINISTIC_SCORES",
    "DROPOUT_LAYER_NAMES",
    "DROPOUT_PRESETS",
    "PLURALISTIC_SCORES",
    "PRESETS",
    "RAW_SCORES",
    "REGION_CROPPED_LAYERS",
    "SCORE_NAMES",
    "CompletionEngine",
    "ContextCalibration",
    "ContextualAttention",
    "Critic",
    "GlobalCritic",
    "InpaintingGenerator",
    "LocalCritic",
    "Picard",
    "PicardSettings",
    "PicardTrainConfig",
    "PicardTraining",
    "ScoreCalibrations",
    "build_networks",
    "completion_seeds",
    "resolve_dropout_layers",
]
