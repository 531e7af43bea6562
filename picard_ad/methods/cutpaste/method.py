"""CutPaste (Li et al. 2021) as the PICARD paper ran it, behind the method interface.

``fit`` trains the 3-way classifier with the generic trainer (``training``), then embeds the windows of every
normal image with the trained encoder and fits Gaussian densities to them (``gde``); ``heatmap`` embeds every
window of an image at the given stride (``sliding_window_heatmap``: windows whose centre shows no tissue are
skipped; embeddings in memory-sized batches, ``embedding``) and scores it by the Mahalanobis distance of its
embedding to the normal Gaussian (PICARD appendix C).

The Gaussians are fitted on the windows the fit-time settings select (window size, stride, background rule), so
they describe exactly the windows that are scored: the shared Gaussian always, on every tissue window of every
normal image; per-location Gaussians too when the settings at fit time ask for them (``gde: per-location``), one
per grid position on that position's tissue windows, a position with fewer than two holding the shared
Gaussian. The run folder holds the trainer's checkpoints (``last`` is the encoder used: Li et al. score with the
final model), ``gde.safetensors`` (means, covariances, precisions, shrinkages, counts) and ``gde.json`` (the
window geometry and encoder step they were fitted with).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from picard_ad.config import to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.data.samples import Sample
from picard_ad.data.tissue import tissue_mask
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError, CorruptFileError, InputError
from picard_ad.io.base import SliceOrigin
from picard_ad.io.records import read_record
from picard_ad.io.writers import atomic_path, atomic_write_text
from picard_ad.localize.heatmap import Heatmap, sliding_window_heatmap
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows
from picard_ad.methods.base import AnomalyMethod, check_image, register_method
from picard_ad.methods.cutpaste.augment import CLASS_NAMES
from picard_ad.methods.cutpaste.config import PRESETS, CutPasteTrainConfig
from picard_ad.methods.cutpaste.embedding import WindowEmbedder
from picard_ad.methods.cutpaste.encoder import multiply_adds
from picard_ad.methods.cutpaste.gde import GaussianDensity
from picard_ad.methods.cutpaste.settings import SCORE_NAMES, CutPasteSettings
from picard_ad.methods.cutpaste.training import CutPasteTraining, build_networks
from picard_ad.training import Trainer, load_network_weights, network_file
from picard_ad.training.checkpoint import copy_checkpoint

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext

GDE_FILE = "gde.safetensors"
GDE_RECORD = "gde.json"
GDE_FORMAT = "picard-ad/cutpaste-gde"
GDE_FORMAT_VERSION = 1
FIT_CHUNK = 256
"""Windows cut out of a normal image at once while fitting (bounds their memory on large images)."""
INT8_CALIBRATION_WINDOWS = 512
"""Normal windows (a seeded choice over all images' tissue windows) whose activations set the int8 ranges."""
INT8_PREFIX = "int8."  # the int8 activation ranges' names in gde.safetensors


@register_method("cutpaste")
class CutPaste(AnomalyMethod):
    """CutPaste 3-Way (Li et al. 2021): Mahalanobis distance of a window's embedding to normal windows' Gaussian."""

    settings_class = CutPasteSettings
    train_config_class = CutPasteTrainConfig
    score_names = SCORE_NAMES
    presets = PRESETS
    default_preset = "paper"

    def __init__(self, train: CutPasteTrainConfig | None = None, settings: CutPasteSettings | None = None):
        super().__init__(train, settings)
        self.embedder: WindowEmbedder | None = None
        self.checkpoint: Path | None = None  # the checkpoint folder the encoder was loaded from
        self.densities: dict[str, GaussianDensity] = {}  # "shared", and "per-location" when fitted
        self.geometry: dict[str, Any] = {}  # the contents of gde.json: what the densities were fitted on
        self.int8_ranges: dict[str, np.ndarray] = {}  # the int8 encoder's activation ranges, when int8
        self.model: dict[str, Any] = {}

    @classmethod
    def describe_architecture(cls, train: CutPasteTrainConfig) -> list[str]:
        networks = build_networks(train)
        encoder = networks["encoder"]
        millions = {name: sum(p.numel() for p in network.parameters()) / 1e6 for name, network in networks.items()}
        dims = encoder.embedding_dim
        return [
            (
                f"encoder f: ResNet-18 layout, stages of {train.width}/{2 * train.width}/{4 * train.width}/"
                f"{8 * train.width} channels, grey input, trained from scratch: {millions['encoder']:.2f} M "
                f"parameters, {multiply_adds(encoder, train.patch_size) / 1e9:.3g} G multiply-adds per "
                f"{train.patch_size} px window"
            ),
            f"embedding f(x): the last stage's global average, {dims} values (what the Gaussian densities model)",
            (
                f"projection head g (training only): {train.head_layers} x (linear {dims} -> batch norm -> ReLU), "
                f"linear -> {train.projection_dim}, 3-way classifier ({', '.join(CLASS_NAMES)}): "
                f"{millions['head']:.2f} M parameters"
            ),
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
            raise ConfigError("method 'cutpaste' trains a network: give fit a run folder (run_dir=...)")
        files = images.files(run_dir / "normal_images")  # the trainer samples patches from files
        trainer = Trainer("cutpaste", self.train_config, CutPasteTraining, files, run_dir, resume=resume,
                          context=context, progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        if context is not None and not context.is_main:
            return  # the main process fits the densities and saves the method
        self._load_encoder(run_dir)
        self._fit_densities(images.samples(), progress)

    def _fit_densities(self, samples: Sequence[Sample], progress: bool) -> None:
        """Embed the windows of every normal image that the settings would score and fit the Gaussians to them."""
        settings = self.settings
        patch_size = settings.patch_size or self.train_config.patch_size
        mask_size = settings.mask_size or patch_size // 2
        per_location = settings.gde == "per-location"
        if settings.int8:
            self.int8_ranges = self.embedder.calibrate_int8(self._calibration_windows(samples, patch_size, mask_size))
        embeddings: list[np.ndarray] = []
        by_location: dict[int, list[np.ndarray]] = {}
        first: tuple[str, WindowGrid] | None = None
        for sample in tqdm(samples, desc="embedding normal windows", unit="image", disable=not progress):
            image = check_image(sample.load_image(), f"normal image {sample.name}")
            grid = WindowGrid.cover(image.shape, patch_size, mask_size, settings.stride, path=sample.name)
            first = first or (sample.name, grid)
            if per_location and grid != first[1]:
                raise ConfigError(
                    f"per-location Gaussians need normal images of one size: {sample.name} is "
                    f"{image.shape[0]} x {image.shape[1]}, {first[0]} is {first[1].image_shape[0]} x "
                    f"{first[1].image_shape[1]}; use gde: shared (one Gaussian for all locations, the form for "
                    "DBT slices of different sizes and positions)"
                )
            indices = np.flatnonzero(self._scored_windows(image, grid))
            for start in range(0, len(indices), FIT_CHUNK):
                chunk = indices[start : start + FIT_CHUNK]
                embedded = self.embedder(extract_windows(image, grid, chunk))
                embeddings.append(embedded)
                if per_location:
                    for index, embedding in zip(chunk.tolist(), embedded):
                        by_location.setdefault(index, []).append(embedding)
        windows = sum(len(block) for block in embeddings)
        if windows < 2:
            raise InputError(None, f"the normal images hold {windows} window(s) with tissue at patch size "
                             f"{patch_size} and stride {settings.stride}; a Gaussian needs at least 2")  # fmt: skip
        shared = GaussianDensity.fit([np.concatenate(embeddings)])
        self.densities = {"shared": shared}
        grid = first[1]
        self.geometry = {
            "format": GDE_FORMAT,
            "format_version": GDE_FORMAT_VERSION,
            "encoder_step": self.model["step"],
            "embedding_dim": shared.dims,
            "patch_size": patch_size,
            "mask_size": mask_size,
            "stride": settings.stride,
            "skip_background": settings.skip_background,
            "tissue_threshold": settings.tissue_threshold,
            "min_tissue_fraction": settings.min_tissue_fraction,
            "bf16": settings.bf16,
            "int8": settings.int8,
            "normal_images": len(samples),
            "windows": windows,
            "shared_shrinkage": float(shared.shrinkage[0]),
        }
        if per_location:
            empty = np.zeros((0, shared.dims), dtype=np.float32)
            groups = [np.stack(by_location[i]) if i in by_location else empty for i in range(grid.n_windows)]
            located = GaussianDensity.fit(groups, fallback=shared)
            self.densities["per-location"] = located
            self.geometry.update(image_shape=list(grid.image_shape), grid_shape=list(grid.shape),
                                 locations_on_shared=int((located.count == 0).sum()))  # fmt: skip
        self.fit_report.append(
            f"Gaussian densities fitted on {windows} windows of {len(samples)} normal images "
            f"({', '.join(self.densities)}; {shared.dims}-d embeddings, shared shrinkage {shared.shrinkage[0]:.3f})"
        )

    def _calibration_windows(self, samples: Sequence[Sample], patch_size: int, mask_size: int) -> np.ndarray:
        """(K, P, P) float32: up to ``INT8_CALIBRATION_WINDOWS`` of the normal windows the Gaussians are fitted on,
        a seeded choice spread over all images."""
        found = []  # (image number, window index) of every scored window
        for number, sample in enumerate(samples):
            image = sample.load_image()
            grid = WindowGrid.cover(image.shape, patch_size, mask_size, self.settings.stride, path=sample.name)
            indices = np.flatnonzero(self._scored_windows(image, grid))
            found.extend((number, int(index)) for index in indices)
        rng = np.random.default_rng(self.train_config.seed)
        chosen = sorted(rng.choice(len(found), size=min(len(found), INT8_CALIBRATION_WINDOWS), replace=False))
        windows = []
        for number in sorted({found[i][0] for i in chosen}):
            image = samples[number].load_image()
            grid = WindowGrid.cover(image.shape, patch_size, mask_size, self.settings.stride, path=samples[number].name)
            indices = np.array([found[i][1] for i in chosen if found[i][0] == number])
            windows.append(extract_windows(image, grid, indices))
        return np.concatenate(windows)

    def _scored_windows(self, image: np.ndarray, grid: WindowGrid) -> np.ndarray:
        """(n_rows, n_cols) bool: the windows a heatmap scores (``sliding_window_heatmap``'s background rule)."""
        settings = self.settings
        if not settings.skip_background:
            return np.ones(grid.shape, dtype=bool)
        return tissue_windows(grid, tissue_mask(image, settings.tissue_threshold), settings.min_tissue_fraction)

    # -- state ------------------------------------------------------------------------------------------------------

    def _load_encoder(self, directory: Path) -> None:
        """The encoder of the run's last checkpoint, ready to embed windows with the settings' execution options."""
        checkpoint, info, config = self.read_checkpoint(directory, "last")
        encoder = build_networks(config)["encoder"]
        load_network_weights(encoder, checkpoint / network_file("encoder"))
        settings = self.settings
        self.embedder = WindowEmbedder(
            encoder.eval(),
            device=resolve_device(settings.device),
            bf16=settings.bf16,
            channels_last=settings.channels_last,
            fused=settings.fused,
            batch_size=None if settings.batch_size == "auto" else int(settings.batch_size),
            int8=settings.int8,
        )
        self.checkpoint = checkpoint
        self.model = {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"),
                      "data_fingerprint": info.get("data_fingerprint"), "width": config.width,
                      "train_patch_size": config.patch_size}  # fmt: skip

    def read_state(self, directory: Path) -> None:
        """Load the encoder of ``directory/last`` and the Gaussian densities fitted with it."""
        self._load_encoder(directory)
        record = read_record(directory / GDE_RECORD, GDE_FORMAT, GDE_FORMAT_VERSION,
                             "CutPaste Gaussian density record (written when a fit finishes)")  # fmt: skip
        if record.get("encoder_step") != self.model["step"]:
            raise ConfigError(
                f"{directory}: the Gaussian densities were fitted with the encoder of step {record.get('encoder_step')}"
                f", but {self.checkpoint} holds step {self.model['step']}; refit them: picard-ad fit --method cutpaste "
                f"--data NORMAL_IMAGES --out {directory} --resume"
            )
        if record.get("int8", False) != self.settings.int8:
            fitted = "int8" if record.get("int8", False) else "bf16/float32"
            raise ConfigError(f"{directory}: its Gaussians were fitted on {fitted} embeddings; score with int8: "
                              f"{str(not self.settings.int8).lower()}, or refit with the int8 you want")  # fmt: skip
        path = directory / GDE_FILE
        if not path.is_file():
            raise InputError(path, "missing: the run's Gaussian densities (written when a fit finishes)")
        try:
            tensors = load_file(path)
            self.int8_ranges = {name[len(INT8_PREFIX):]: value for name, value in tensors.items()
                                if name.startswith(INT8_PREFIX)}  # fmt: skip
            if self.settings.int8:
                self.embedder.use_int8(self.int8_ranges)
            self.densities = {name: GaussianDensity.from_tensors(tensors, name) for name in ("shared", "per-location")
                              if f"{name}.mean" in tensors}  # fmt: skip
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise CorruptFileError(path, f"not a readable set of Gaussian densities ({exc})") from None
        if "shared" not in self.densities or self.densities["shared"].dims != self.embedder.embedding_dim:
            raise CorruptFileError(path, f"holds no shared Gaussian of the encoder's {self.embedder.embedding_dim} "
                                   "dimensions")  # fmt: skip
        self.geometry = record

    def write_state(self, directory: Path) -> None:
        """The encoder's checkpoint (copied unless it lies in ``directory`` already) and the Gaussian densities."""
        target = directory / "last"
        copy_checkpoint(self.checkpoint, target)
        tensors = {key: value for density in self.densities for key, value in
                   self.densities[density].tensors(density).items()}  # fmt: skip
        tensors.update({INT8_PREFIX + name: value for name, value in self.int8_ranges.items()})
        with atomic_path(directory / GDE_FILE) as temporary:
            save_file(tensors, temporary)
        atomic_write_text(directory / GDE_RECORD, json.dumps(self.geometry, indent=1) + "\n")

    def state_files(self) -> list[Path]:
        if self.run_dir is None:
            raise ConfigError("a CutPaste fit has no state files until it is saved to a run folder")
        return [self.checkpoint / network_file("encoder"), self.run_dir / GDE_FILE, self.run_dir / GDE_RECORD]

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model, "gde": self.geometry}

    # -- scoring ----------------------------------------------------------------------------------------------------

    def _window_sizes(self) -> tuple[int, int]:
        """(patch_size, mask_size) of the windows scored: the settings', which must match the fitted window side."""
        fitted = self.geometry["patch_size"]
        patch_size = self.settings.patch_size or fitted
        if patch_size != fitted:
            raise ConfigError(f"the Gaussian densities were fitted on {fitted} px windows, so patch_size must be "
                              f"{fitted}, not {patch_size} (refit to score other windows)")  # fmt: skip
        return patch_size, self.settings.mask_size or patch_size // 2

    def _density(self, grid: WindowGrid, path: Path | None) -> GaussianDensity:
        """The Gaussians the settings ask for; per-location ones only for the grid they were fitted on."""
        if self.settings.gde == "shared":
            return self.densities["shared"]
        if "per-location" not in self.densities:
            raise ConfigError("this CutPaste fit has no per-location Gaussians: they are fitted when the settings "
                              "at fit time say gde: per-location (a 'settings:' mapping in the fit's --config file); "
                              "or score with gde: shared")  # fmt: skip
        fitted = self.geometry
        if list(grid.image_shape) != fitted["image_shape"] or grid.stride != fitted["stride"]:
            height, width = fitted["image_shape"]
            raise InputError(
                path,
                f"per-location Gaussians were fitted on the {fitted['grid_shape'][0]} x {fitted['grid_shape'][1]} "
                f"window grid of {height} x {width} normal images at stride {fitted['stride']}; this image is "
                f"{grid.image_shape[0]} x {grid.image_shape[1]} at stride {grid.stride}, so its windows have no "
                f"fitted counterparts. Score {height} x {width} images at stride {fitted['stride']}, or use gde: "
                "shared (images of other sizes or positions)",
            )
        return self.densities["per-location"]

    def compute_heatmaps(
        self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
        origin: SliceOrigin | None,
    ) -> dict[str, Heatmap]:  # fmt: skip
        settings = self.settings
        started = time.perf_counter()
        patch_size, mask_size = self._window_sizes()
        grid = WindowGrid.cover(image.shape, patch_size, mask_size, settings.stride, path=path)
        density = self._density(grid, path)
        per_location = density.n_locations > 1

        def scorer(windows: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
            embeddings = self.embedder(windows)
            return {"mahalanobis": density.distance(embeddings, indices if per_location else None)}

        heatmaps = sliding_window_heatmap(
            image,
            scorer,
            patch_size=patch_size,
            mask_size=mask_size,
            stride=settings.stride,
            tissue_threshold=settings.tissue_threshold if settings.skip_background else None,
            min_tissue_fraction=settings.min_tissue_fraction,
            mode=settings.assembly,
            chunk_size=4 * self.embedder.workers * self.embedder.batch_size(patch_size),
            progress=progress,
            path=path,
        )
        resolved = {**to_dict(settings), "patch_size": patch_size, "mask_size": mask_size,
                    "device": str(self.embedder.device)}  # fmt: skip
        elapsed = round(time.perf_counter() - started, 4)
        return {
            name: dataclasses.replace(heatmap, settings=resolved, timings={**heatmap.timings, "total_s": elapsed})
            for name, heatmap in heatmaps.items()
        }

    def image_score(
        self, image: np.ndarray, score_map: np.ndarray | None = None, tissue: np.ndarray | None = None,
        origin: SliceOrigin | None = None,
    ) -> float:  # fmt: skip
        """One score per image: the max (or mean, ``image_pooling``) of the window scores on tissue.

        The window scores are read off the score map at the windows' centres (where the interpolated map equals
        them exactly; an averaged map gives the mean of the scores covering the centre), over the windows whose
        centre lies on ``tissue`` (None: ``tissue_mask`` of the image at the settings' threshold), or over all
        windows when none does. score_map: this method's map of ``image`` when already computed (``origin`` is not
        used).
        """
        self._require_fitted("score an image")
        pixels = check_image(image, f"method '{self.name}'")
        scores = self.score_map(pixels) if score_map is None else np.asarray(score_map)
        tissue = tissue_mask(pixels, self.settings.tissue_threshold) if tissue is None else np.asarray(tissue, bool)
        if scores.shape != pixels.shape or tissue.shape != pixels.shape:
            raise ValueError(f"score map {scores.shape} and tissue mask {tissue.shape} must match the image "
                             f"{pixels.shape}")  # fmt: skip
        patch_size, mask_size = self._window_sizes()
        grid = WindowGrid.cover(pixels.shape, patch_size, mask_size, self.settings.stride)
        rows, cols = (centres.astype(np.int64) for centres in grid.mask_centres())
        window_scores, on_tissue = scores[np.ix_(rows, cols)], tissue[np.ix_(rows, cols)]
        pooled = window_scores[on_tissue] if on_tissue.any() else window_scores.ravel()
        return float(pooled.max() if self.settings.image_pooling == "max" else pooled.mean())
