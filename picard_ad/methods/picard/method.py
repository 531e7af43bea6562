"""PICARD (Konz et al. 2023) behind the method interface: fit trains the completion network with the generic
trainer, heatmaps come from pluralistic completions of sliding windows.

``load_method(run_dir).heatmap(image)`` loads a trained completion network and its local critic and returns a
``Heatmap``; ``heatmaps`` computes several scores from one pass over the windows (the M completions are shared).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from picard_ad.config import to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError
from picard_ad.io import read_image
from picard_ad.io.base import SliceOrigin
from picard_ad.io.records import read_json_object
from picard_ad.io.writers import atomic_write_text, dumps_json
from picard_ad.localize.heatmap import Heatmap, WindowScorer, scored_windows, sliding_window_heatmap
from picard_ad.localize.windows import extract_windows
from picard_ad.methods.base import AnomalyMethod, register_method
from picard_ad.methods.picard.calibration import (
    CALIBRATION_FILE,
    RAW_SCORE_SETTINGS,
    ContextCalibration,
    ScoreCalibrations,
    window_context,
)
from picard_ad.methods.picard.config import PRESETS, PicardTrainConfig
from picard_ad.methods.picard.engine import CompletionEngine
from picard_ad.methods.picard.generator import SIZE_MULTIPLE, resolve_dropout_layers
from picard_ad.methods.picard.scores import CALIBRATED_PREFIX, PLURALISTIC_SCORES, SCORE_NAMES, uncalibrated
from picard_ad.methods.picard.settings import PicardSettings
from picard_ad.methods.picard.training import PicardTraining, architecture_facts, build_networks
from picard_ad.training import (
    Trainer,
    load_network_weights,
    network_file,
)
from picard_ad.training.checkpoint import copy_checkpoint, write_checkpoint
from picard_ad.training.loop import checkpoint_info

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext

SCORING_NETWORKS = ("generator", "local_critic")  # the global critic only trains


@register_method("picard")
class Picard(AnomalyMethod):
    """PICARD (Konz et al. 2023): the minimum distance between each window's hole and M dropout completions of it."""

    settings_class = PicardSettings
    train_config_class = PicardTrainConfig
    score_names = SCORE_NAMES
    presets = PRESETS
    default_preset = "paper"

    def __init__(self, train: PicardTrainConfig | None = None, settings: PicardSettings | None = None):
        super().__init__(train, settings)
        self.engine: CompletionEngine | None = None
        self.patch_size: int | None = None  # the window and hole the engine uses: the settings', else the model's
        self.mask_size: int | None = None
        self.networks: dict[str, nn.Module] = {}
        self.checkpoint: Path | None = None  # the checkpoint folder the networks were loaded from or saved to
        self.model: dict[str, Any] = {}
        self.calibration: ScoreCalibrations | None = None  # of the calibrated-* scores, made when fitted

    @classmethod
    def describe_architecture(cls, train: PicardTrainConfig) -> list[str]:
        from picard_ad.methods.picard.summary import architecture_lines

        return architecture_lines(train)

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
            raise ConfigError("method 'picard' trains a network: give fit a run folder (run_dir=...)")
        files = images.files(run_dir / "normal_images")  # the trainer samples patches from files
        trainer = Trainer("picard", self.train_config, PicardTraining, files, run_dir, resume=resume,
                          context=context, progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        self.read_state(run_dir)
        if context is None or context.is_main:  # save() writes it
            entries = [(entry.path, index) for entry in files for index in range(entry.n_slices)]
            chosen = np.linspace(0, len(entries) - 1, min(len(entries), self.settings.calibration_images))
            self.calibration = self.calibrate([entries[int(i)] for i in chosen.round()])

    @classmethod
    def from_networks(
        cls,
        networks: Mapping[str, nn.Module],
        train: PicardTrainConfig,
        settings: PicardSettings | None = None,
        step: int | None = None,
    ) -> Picard:
        """A fitted PICARD from networks trained elsewhere (e.g. ``reference_checkpoint.convert_reference_checkpoint``)
        or untrained ones for tests: ``networks`` holds "generator" and "local_critic" built for ``train``;
        ``save`` writes them as the run's checkpoint."""
        method = cls(train, settings)
        missing = [name for name in SCORING_NETWORKS if name not in networks]
        if missing:
            raise ConfigError(f"PICARD needs the networks {', '.join(SCORING_NETWORKS)}; missing: {', '.join(missing)}")
        method._use(dict(networks), train, {"step": step, "data_fingerprint": None})
        method.fitted = True
        return method

    def read_state(self, directory: Path) -> None:
        """Load the generator and local critic of the run's ``settings.checkpoint`` and build the engine."""
        checkpoint, info, config = self.read_checkpoint(directory, self.settings.checkpoint)
        networks = build_networks(config)
        for name in SCORING_NETWORKS:
            load_network_weights(networks[name], checkpoint / network_file(name))
        self.checkpoint = checkpoint
        self._use(networks, config, {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"),
                                     "data_fingerprint": info.get("data_fingerprint")})  # fmt: skip
        path = directory / CALIBRATION_FILE
        self.calibration = (
            ScoreCalibrations.from_dict(read_json_object(path), str(path)) if path.is_file() else None
        )

    def _use(self, networks: dict[str, nn.Module], config: PicardTrainConfig, model: dict[str, Any]) -> None:
        """Score with these networks: window sizes resolved against the model, engine built."""
        self.patch_size = self.settings.patch_size or config.patch_size
        self.mask_size = self.settings.mask_size or config.hole_size
        self._check_geometry(self.patch_size, self.mask_size)
        self.networks = {name: networks[name].eval() for name in SCORING_NETWORKS}
        self.model = {**model, "in_channels": config.in_channels, "cnum": config.cnum,
                      "train_patch_size": config.patch_size, "train_hole_size": config.hole_size}  # fmt: skip
        self.engine = self._engine(self.networks["generator"], self.networks["local_critic"])

    @staticmethod
    def _check_geometry(patch_size: int, mask_size: int) -> None:
        if patch_size % SIZE_MULTIPLE:
            raise ConfigError(f"patch_size must be a multiple of {SIZE_MULTIPLE} for the network, got {patch_size}")
        if mask_size >= patch_size:
            raise ConfigError(f"mask_size ({mask_size}) must be smaller than patch_size ({patch_size})")

    def _engine(self, generator: torch.nn.Module, critic: torch.nn.Module) -> CompletionEngine:
        settings = self.settings
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        return CompletionEngine(
            generator,
            critic,
            mask_size=self.mask_size,
            n_completions=settings.n_completions,
            dropout_p=settings.dropout_p,
            dropout_layers=resolve_dropout_layers(settings.dropout_layers),
            dropout_kind=settings.dropout_kind,
            seed=settings.seed,
            device=resolve_device(settings.device),
            bf16=settings.bf16,
            channels_last=settings.channels_last,
            fused=settings.fused,
            quantile=settings.quantile,
            softmin_temperature=settings.softmin_temperature,
            batch_size=None if settings.batch_size == "auto" else int(settings.batch_size),
        )

    def write_state(self, directory: Path) -> None:
        """The checkpoint is the state: the loaded one copied into ``directory`` unless it already lies there, or
        networks given in memory written as ``directory/last`` (or ``best``, after ``settings.checkpoint``)."""
        target = directory / self.settings.checkpoint
        if self.checkpoint is None:
            info = checkpoint_info(self.name, self.train_config, self.model["step"], None,
                                   architecture_facts(self.train_config))  # fmt: skip
            write_checkpoint(target, self.networks, info)
            self.checkpoint = target
            self.model["checkpoint"] = str(target.resolve())
        else:
            copy_checkpoint(self.checkpoint, target)
        if self.calibration is not None:
            atomic_write_text(directory / CALIBRATION_FILE, dumps_json(self.calibration.to_dict(), indent=1) + "\n")

    def state_files(self) -> list[Path]:
        if self.checkpoint is None:
            raise ConfigError("a PICARD made from networks in memory has no checkpoint yet: save() it to a run folder "
                              "before asking for its identity")  # fmt: skip
        files = [self.checkpoint / network_file(name) for name in SCORING_NETWORKS]
        calibration = None if self.run_dir is None else Path(self.run_dir) / CALIBRATION_FILE
        return files + ([calibration] if calibration is not None and calibration.is_file() else [])

    # -- calibrated scores ----------------------------------------------------------------------------------------

    def calibration_key(self) -> dict[str, Any]:
        """The values of the settings a raw window score depends on (``RAW_SCORE_SETTINGS``), as JSON reads them."""
        values = {**to_dict(self.settings), "patch_size": self.patch_size, "mask_size": self.mask_size}
        return json.loads(json.dumps({name: values[name] for name in RAW_SCORE_SETTINGS}))

    def calibrate(self, images: Sequence[tuple[Path, int] | np.ndarray]) -> ScoreCalibrations:
        """The context calibration of every completion-distance score, fitted on the tissue windows of normal
        ``images`` ((file, slice) pairs or (H, W) arrays in [0, 1]) with the current settings: at most
        ``settings.calibration_windows`` windows, evenly spread over all of them, scored as a heatmap scores them
        (same dropout seeds)."""
        settings = self.settings
        cut = []  # (image, grid, window indices) per image
        for item in images:
            image = item if isinstance(item, np.ndarray) else read_image(item[0], item[1], normalization="auto").pixels
            grid, keep = scored_windows(image, self.patch_size, self.mask_size, settings.stride,
                                        settings.tissue_threshold if settings.skip_background else None,
                                        settings.min_tissue_fraction)  # fmt: skip
            cut.append((image, grid, np.flatnonzero(keep.ravel())))
        total = sum(len(indices) for _, _, indices in cut)
        chosen = set(np.linspace(0, total - 1, min(total, settings.calibration_windows)).round().astype(int).tolist())
        contexts, raw, first = [], {name: [] for name in PLURALISTIC_SCORES}, 0
        for image, grid, indices in cut:
            picked = indices[[first + i in chosen for i in range(len(indices))]] if len(indices) else indices
            first += len(indices)
            windows = extract_windows(image, grid, picked)
            contexts.append(window_context(windows, self.mask_size))
            for name, values in self.engine.score(windows, picked, PLURALISTIC_SCORES).items():
                raw[name].append(values)
        context = np.concatenate(contexts)
        tables = {name: ContextCalibration.fit(context, np.concatenate(values)) for name, values in raw.items()}
        labels = tuple(f"in-memory image {i}" if isinstance(item, np.ndarray) else f"{item[0]}#{item[1]}"
                       for i, item in enumerate(images))  # fmt: skip
        return ScoreCalibrations(self.calibration_key(), labels, len(context), tables)

    def score_calibrations(self) -> ScoreCalibrations:
        """The calibration for the current settings: the fit's, or one refitted (in memory) on the fit's normal
        images when settings such as M differ from the fit's."""
        if self.calibration is None:
            raise ConfigError(
                f"{self.run_dir or 'this PICARD'}: the calibrated-* scores (the default among them) need a "
                "calibration on normal images, and this model has none (fitted before picard-ad had them, or built "
                "in memory): score with an uncalibrated score (--score mcd-image, the paper's), or call "
                "Picard.calibrate(normal_images) and save() the method, or refit"
            )
        if self.calibration.key != self.calibration_key():
            images = []
            for label in self.calibration.images:
                path, _, index = label.rpartition("#")
                if not path or not Path(path).is_file():
                    raise ConfigError(f"{self.run_dir}: the calibration was made with other settings, and it cannot "
                                      f"be refitted for these: its normal {label} is not a readable file")  # fmt: skip
                images.append((Path(path), int(index)))
            self.calibration = self.calibrate(images)
        return self.calibration

    def _calibrated(self, scorer: WindowScorer, names: tuple[str, ...]) -> WindowScorer:
        """``scorer`` (of the raw scores) with the calibrated ``names`` added as z-scores."""
        tables = self.score_calibrations().tables

        def score(windows: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
            raw = scorer(windows, indices)
            context = window_context(windows, self.mask_size)
            return {
                name: tables[uncalibrated(name)].z_scores(context, raw[uncalibrated(name)])
                if name.startswith(CALIBRATED_PREFIX) else raw[name]
                for name in names
            }

        return score

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model}

    def compute_heatmaps(
        self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
        origin: SliceOrigin | None,
    ) -> dict[str, Heatmap]:  # fmt: skip
        settings = self.settings
        raw = tuple(dict.fromkeys(uncalibrated(name) for name in scores))
        scorer = self.engine.scorer(raw)
        if raw != scores:  # first, so that a calibration refitted for these settings is not timed with the image
            scorer = self._calibrated(scorer, scores)
        started = time.perf_counter()
        self.engine.reset_timings()
        heatmaps = sliding_window_heatmap(
            image,
            scorer,
            patch_size=self.patch_size,
            mask_size=self.mask_size,
            stride=settings.stride,
            tissue_threshold=settings.tissue_threshold if settings.skip_background else None,
            min_tissue_fraction=settings.min_tissue_fraction,
            mode=settings.assembly,
            chunk_size=self.engine.preferred_chunk(self.patch_size, raw),
            progress=progress,
            path=path,
        )
        elapsed = time.perf_counter() - started
        engine_timings = self.engine.timings.as_dict()
        resolved = {**to_dict(settings), "patch_size": self.patch_size, "mask_size": self.mask_size,
                    "device": str(self.engine.device)}  # fmt: skip
        return {
            name: dataclasses.replace(
                heatmap,
                settings=resolved,
                timings={**heatmap.timings, **engine_timings, "total_s": round(elapsed, 4)},
            )
            for name, heatmap in heatmaps.items()
        }
