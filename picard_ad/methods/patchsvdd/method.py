"""PatchSVDD (Yi and Yoon 2020) behind the method interface, in the sliding-window geometry of PICARD.

``fit`` trains the hierarchical encoder with the generic trainer (``training``), then encodes the tissue windows of
the normal images into the feature bank (``bank``). A heatmap slides K px windows over the image (Konz et al.
2023: 256 px at stride 32, as PICARD); each window is scored at two scales by the distance of its feature to the
nearest normal features: the window itself (K px) and its centred half (K/2 px), the region a window's score is
registered to. Each scale's window scores become a map (``picard_ad.localize``) and the two maps are multiplied
element-wise, Yi and Yoon's multi-scale map.

Why the encoder sees whole windows: Konz et al. used "the same patch and stride size as PICARD, 256 and 32" with
the reference code, whose encoder takes a K px patch for any K = 64 * 2^n by recursing over quadrants down to
32 px sub-patches, and whose two scales are K and K/2. A window is thus one patch of the paper's method, 4.13 s
per window of brute-force search is one or two queries over a large bank, and at phantom scale (64 px windows)
the scales are exactly the reference's 64 and 32 px. Scoring a 256 px window by the reference's 64 px patches
(stride 16) and 32 px patches (stride 4) instead would take 169 + 3249 queries per window and encode each patch
about 50 times over as the windows overlap.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from picard_ad.config import to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError, InputError
from picard_ad.io.base import SliceOrigin
from picard_ad.localize.heatmap import Heatmap, sliding_window_heatmap
from picard_ad.methods.base import AnomalyMethod, register_method
from picard_ad.methods.patchsvdd.bank import BANK_FILE, BankGeometry, FeatureBank, build_bank, read_bank, write_bank
from picard_ad.methods.patchsvdd.config import PRESETS, PatchSVDDTrainConfig
from picard_ad.methods.patchsvdd.faiss_index import ApproximateIndex
from picard_ad.methods.patchsvdd.features import WindowFeatures
from picard_ad.methods.patchsvdd.networks import HierarchicalEncoder, encoder_macs
from picard_ad.methods.patchsvdd.search import ExactIndex
from picard_ad.methods.patchsvdd.settings import SCORE_NAMES, PatchSVDDSettings
from picard_ad.methods.patchsvdd.training import PatchSVDDTraining, architecture_facts, build_networks
from picard_ad.training import (
    Trainer,
    load_network_weights,
    network_file,
)
from picard_ad.training.checkpoint import copy_checkpoint, write_checkpoint
from picard_ad.training.loop import checkpoint_info

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext

ENCODER = "encoder"  # the network scoring needs; the position classifiers only train
SCALE_SCORES = {"window": "nn-distance-window", "centre": "nn-distance-centre"}
COLLAPSED_SPREAD = 1e-3
"""Mean std of a feature dimension over the bank below which SVDD' has pulled all features to one point (measured
on phantoms: 0.08 to 0.1 for a trained encoder, 1e-5 for a collapsed one)."""


@register_method("patchsvdd")
class PatchSVDD(AnomalyMethod):
    """PatchSVDD (Yi and Yoon 2020): distance of each window's features to the nearest normal ones, two scales."""

    settings_class = PatchSVDDSettings
    train_config_class = PatchSVDDTrainConfig
    score_names = SCORE_NAMES
    presets = PRESETS
    default_preset = "paper"

    def __init__(self, train: PatchSVDDTrainConfig | None = None, settings: PatchSVDDSettings | None = None):
        super().__init__(train, settings)
        self.encoder: HierarchicalEncoder | None = None
        self.bank: FeatureBank | None = None
        self.checkpoint: Path | None = None  # the checkpoint folder the encoder was loaded from
        self.bank_file: Path | None = None  # the file the bank was loaded from or written to
        self.model: dict[str, Any] = {}
        self._features: WindowFeatures | None = None
        self._indexes: dict[str, ExactIndex | ApproximateIndex] = {}
        self._search_seconds = 0.0  # spent searching the bank, for the heatmaps' timings

    @classmethod
    def describe_architecture(cls, train: PatchSVDDTrainConfig) -> list[str]:
        networks = build_networks(train)
        counts = {name: sum(p.numel() for p in network.parameters()) for name, network in networks.items()}
        k = train.patch_size
        macs = encoder_macs(k, train.cnum, train.feature_dim)
        widths = ", ".join(str(w * train.cnum) for w in (1, 2, 4, 4, 2, 1, 1))
        levels = len(networks[ENCODER].levels)
        return [
            f"PatchSVDD hierarchical encoder: {k} px windows = {k // 32} x {k // 32} sub-patches of 32 px",
            f"  {levels} aggregation level(s); features D = {train.feature_dim}",
            f"  sub-patch encoder: 3 x 3 convolutions {widths}, {train.feature_dim} channels wide",
            *(f"  {name}: {count:,} parameters" for name, count in counts.items()),
            f"  encoding a window and its centred half: {macs / 1e9:.2f} GMAC",
            f"  feature bank: up to {train.bank_size:,} windows at stride {train.bank_stride} px, two scales",
        ]

    # -- fitting ----------------------------------------------------------------------------------------------------

    def learn(
        self,
        images: NormalImages,
        run_dir: Path | None,
        *,
        resume: bool,
        progress: bool,
        context: DistributedContext | None,
    ) -> None:
        if run_dir is None:
            raise ConfigError("method 'patchsvdd' trains a network: give fit a run folder (run_dir=...)")
        files = images.files(run_dir / "normal_images")  # the trainer samples patches from files
        trainer = Trainer(self.name, self.train_config, PatchSVDDTraining, files, run_dir, resume=resume,
                          context=context, progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        self._load_encoder(run_dir)
        if context is not None and not context.is_main:
            return  # one process builds the bank
        config = self.train_config
        geometry = BankGeometry(config.patch_size, config.bank_stride, self._tissue_threshold(),
                                self.settings.min_tissue_fraction)  # fmt: skip
        bank = build_bank(images.samples(), self.window_features(), geometry, bank_size=config.bank_size,
                          seed=config.seed, progress=progress)  # fmt: skip
        write_bank(bank, run_dir / BANK_FILE, encoder_step=self.model.get("step"))
        self._use_bank(read_bank(run_dir / BANK_FILE), run_dir / BANK_FILE)
        self.fit_report.append(f"feature bank: {len(bank):,} of {bank.facts['tissue_windows']:,} tissue windows of "
                               f"{bank.facts['images']} image(s), stride {geometry.stride} px")  # fmt: skip
        spread = min(float(features.std(axis=0).mean()) for features in bank.features.values())
        if spread < COLLAPSED_SPREAD:
            self.fit_report.append(f"warning: the features have collapsed (std {spread:.1g} across the bank, about 0.1 "
                                   "when trained): retrain with a lower lr or svdd_lambda")  # fmt: skip

    @classmethod
    def from_parts(
        cls,
        encoder: HierarchicalEncoder,
        bank: FeatureBank,
        train: PatchSVDDTrainConfig,
        settings: PatchSVDDSettings | None = None,
    ) -> PatchSVDD:
        """A fitted PatchSVDD from an encoder built for ``train`` and a bank in memory (benchmarks, tests); ``save``
        writes them as a run folder."""
        method = cls(train, settings)
        method.encoder = encoder
        method.model = {"step": None, "patch_size": encoder.patch_size, "feature_dim": encoder.feature_dim}
        method._use_bank(bank, None)
        method.fitted = True
        return method

    def _tissue_threshold(self) -> float | None:
        return self.settings.tissue_threshold if self.settings.skip_background else None

    def _load_encoder(self, directory: Path) -> None:
        checkpoint, info, config = self.read_checkpoint(directory, "last")
        encoder = build_networks(config)[ENCODER]
        load_network_weights(encoder, checkpoint / network_file(ENCODER))
        self.encoder, self.checkpoint = encoder, checkpoint
        self.model = {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"),
                      "data_fingerprint": info.get("data_fingerprint"), "patch_size": config.patch_size,
                      "feature_dim": config.feature_dim}  # fmt: skip
        self._features = None
        self._indexes = {}

    def _use_bank(self, bank: FeatureBank, path: Path | None) -> None:
        if bank.facts.get("patch_size") != self.encoder.patch_size:
            raise InputError(path, f"holds features of {bank.facts.get('patch_size')} px windows, the encoder's are "
                             f"{self.encoder.patch_size} px")  # fmt: skip
        if bank.features["window"].shape[1] != self.encoder.feature_dim:
            raise InputError(path, f"holds {bank.features['window'].shape[1]}-dimensional features, the encoder "
                             f"gives {self.encoder.feature_dim}")  # fmt: skip
        if self.settings.n_neighbours > len(bank):
            raise ConfigError(f"n_neighbours ({self.settings.n_neighbours}) exceeds the {len(bank)} features of the "
                              "bank")  # fmt: skip
        self.bank, self.bank_file = bank, path
        self.model["bank_windows"] = len(bank)
        self._indexes = {}

    # -- state ------------------------------------------------------------------------------------------------------

    def read_state(self, directory: Path) -> None:
        """Load the encoder of the run's last checkpoint and the feature bank built with it."""
        self._load_encoder(directory)
        self._use_bank(read_bank(directory / BANK_FILE), directory / BANK_FILE)

    def write_state(self, directory: Path) -> None:
        """The checkpoint and the bank are the state: copied into ``directory`` unless they already lie there, or
        written there when they were given in memory (``from_parts``)."""
        target = directory / "last"
        if self.checkpoint is None:
            info = checkpoint_info(self.name, self.train_config, None, None, architecture_facts(self.train_config))
            self.checkpoint = write_checkpoint(target, {ENCODER: self.encoder}, info)
        else:
            copy_checkpoint(self.checkpoint, target)
        if self.bank_file is None:
            write_bank(self.bank, directory / BANK_FILE)
            self.bank_file = directory / BANK_FILE
        elif self.bank_file.resolve() != (directory / BANK_FILE).resolve():
            shutil.copyfile(self.bank_file, directory / BANK_FILE)

    def state_files(self) -> list[Path]:
        if self.checkpoint is None or self.bank_file is None:
            raise ConfigError("a PatchSVDD made from parts in memory has no state files yet: save() it to a run "
                              "folder before asking for its identity")  # fmt: skip
        return [self.checkpoint / network_file(ENCODER), self.bank_file]

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model}

    # -- scoring ----------------------------------------------------------------------------------------------------

    def window_features(self) -> WindowFeatures:
        """The encoder wrapped for batched windows on the settings' device (built when first needed)."""
        if self._features is None:
            settings = self.settings
            batch = None if settings.batch_size == "auto" else int(settings.batch_size)
            self._features = WindowFeatures(self.encoder, device=resolve_device(settings.device), bf16=settings.bf16,
                                            batch_size=batch)  # fmt: skip
        return self._features

    def index(self, scale: str) -> ExactIndex | ApproximateIndex:
        """The search over the bank's ``scale`` features ("window" or "centre"), built when first needed."""
        if scale not in self._indexes:
            settings, features = self.settings, self.bank.features[scale]
            if settings.search == "exact":
                self._indexes[scale] = ExactIndex(features, device=self.window_features().device)
            else:
                self._indexes[scale] = ApproximateIndex(
                    features, n_lists=settings.ivf_lists, n_probes=settings.ivf_probes, seed=self.train_config.seed
                )
        return self._indexes[scale]

    def geometry(self) -> tuple[int, int, int]:
        """(window side, centred half, stride) in pixels: the settings' or the model's."""
        k = self.encoder.patch_size
        settings = self.settings
        for name, value, expected in (
            ("patch_size", settings.patch_size, k),
            ("mask_size", settings.mask_size, k // 2),
        ):
            if value is not None and value != expected:
                raise ConfigError(f"{name} must be {expected} px for this model (its encoder's patch is {k} px), "
                                  f"got {value}")  # fmt: skip
        return k, k // 2, settings.stride or self.train_config.bank_stride

    def window_scores(self, windows: np.ndarray, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each scale's score of windows (N, K, K) float32 in [0, 1]: the mean distance of its feature to the
        ``n_neighbours`` nearest of the bank, {"nn-distance-window": (N,), "nn-distance-centre": (N,)} float64.
        ``indices`` (the windows' places in their grid) are not needed: a window's score depends on it alone."""
        features = dict(zip(("window", "centre"), self.window_features()(windows)))
        started = time.perf_counter()
        scores = {
            SCALE_SCORES[scale]: self.index(scale).search(features[scale], self.settings.n_neighbours).distances.mean(1)
            for scale in ("window", "centre")
        }
        self._search_seconds += time.perf_counter() - started
        return scores

    def compute_heatmaps(
        self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
        origin: SliceOrigin | None,
    ) -> dict[str, Heatmap]:  # fmt: skip
        settings = self.settings
        patch_size, mask_size, stride = self.geometry()
        features = self.window_features()
        for scale in ("window", "centre"):
            self.index(scale)  # built once, before the clock of the first image starts
        started = time.perf_counter()
        features.seconds, self._search_seconds = 0.0, 0.0
        maps = sliding_window_heatmap(
            image,
            self.window_scores,
            patch_size=patch_size,
            mask_size=mask_size,
            stride=stride,
            tissue_threshold=self._tissue_threshold(),
            min_tissue_fraction=settings.min_tissue_fraction,
            mode=settings.assembly,
            chunk_size=features.preferred_chunk(),
            progress=progress,
            path=path,
        )
        window, centre = maps[SCALE_SCORES["window"]], maps[SCALE_SCORES["centre"]]
        maps["nn-distance"] = dataclasses.replace(
            window, array=window.array * centre.array, score_name="nn-distance",
            window_scores=window.window_scores * centre.window_scores,
        )  # fmt: skip
        resolved = {**to_dict(settings), "patch_size": patch_size, "mask_size": mask_size, "stride": stride,
                    "device": str(features.device), "bank_windows": len(self.bank)}  # fmt: skip
        timings = {**window.timings, "encoder_s": round(features.seconds, 4),
                   "search_s": round(self._search_seconds, 4),
                   "total_s": round(time.perf_counter() - started, 4)}  # fmt: skip
        return {name: dataclasses.replace(maps[name], settings=resolved, timings=timings) for name in scores}
