"""PatchSVDD (Yi and Yoon 2020) as Konz et al. 2023 ran it on DBT: a self-supervised patch encoder and the distance of
each window's features to the nearest features of normal windows.

Modules, by idea: ``networks`` (the hierarchical encoder and the position classifier, pure ``nn.Module``s),
``config`` (training config and presets), ``pairs``, ``losses`` and ``training`` (the Patch SVDD step for the
generic trainer), ``features`` (windows to features in batches), ``bank`` (the features of normal windows),
``search`` (exact nearest neighbours by blocked matrix products) and ``faiss_index`` (approximate ones),
``settings`` and ``method`` (the registered method "patchsvdd"), ``speed`` and ``search_comparison`` (the measurements
of docs/patchsvdd.md).
"""

from picard_ad.methods.patchsvdd.bank import BANK_FILE, BankGeometry, FeatureBank, build_bank, read_bank, write_bank
from picard_ad.methods.patchsvdd.config import PRESETS, PatchSVDDTrainConfig
from picard_ad.methods.patchsvdd.faiss_index import ApproximateIndex
from picard_ad.methods.patchsvdd.features import WindowFeatures
from picard_ad.methods.patchsvdd.method import PatchSVDD
from picard_ad.methods.patchsvdd.networks import HierarchicalEncoder, PositionClassifier, SubPatchEncoder
from picard_ad.methods.patchsvdd.pairs import POSITION_OFFSETS, PairSampler, PatchPairs
from picard_ad.methods.patchsvdd.search import ExactIndex, Neighbours, brute_force_neighbours, squared_distances
from picard_ad.methods.patchsvdd.settings import SCORE_NAMES, PatchSVDDSettings
from picard_ad.methods.patchsvdd.training import PatchSVDDTraining, build_networks

__all__ = [
    "BANK_FILE",
    "POSITION_OFFSETS",
    "PRESETS",
    "SCORE_NAMES",
    "ApproximateIndex",
    "BankGeometry",
    "ExactIndex",
    "FeatureBank",
    "HierarchicalEncoder",
    "Neighbours",
    "PairSampler",
    "PatchPairs",
    "PatchSVDD",
    "PatchSVDDSettings",
    "PatchSVDDTrainConfig",
    "PatchSVDDTraining",
    "PositionClassifier",
    "SubPatchEncoder",
    "WindowFeatures",
    "brute_force_neighbours",
    "build_bank",
    "build_networks",
    "read_bank",
    "squared_distances",
    "write_bank",
]
