"""PICARD (Konz et al. 2023): anomaly heatmaps from pluralistic completions of sliding windows.

``Picard.load(run_dir).heatmap(image)`` loads a trained completion network and its local critic and returns a
``Heatmap``; ``heatmaps`` computes several scores from one pass over the windows. Every setting lives in the
frozen ``PicardSettings`` (YAML keys, CLI flags and keyword arguments share its field names).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from picard_ad.config import from_dict, to_dict
from picard_ad.data.samples import Sample
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError
from picard_ad.io.base import ScanImage
from picard_ad.io.writers import write_png
from picard_ad.localize.engine import MAX_COMPLETIONS, CompletionEngine
from picard_ad.localize.heatmap import Heatmap, sliding_window_heatmap
from picard_ad.localize.scoring import check_score_names
from picard_ad.methods.base import AnomalyMethod, register_method
from picard_ad.models import resolve_dropout_layers
from picard_ad.models.generator import DECODER_DEPTH, SIZE_MULTIPLE, coarse_layer_specs, fine_layer_specs
from picard_ad.models.layers import DROPOUT_KINDS, DropoutKind
from picard_ad.training.config import TrainConfig, preset_config

REGION_CROPPED_LAYERS: frozenset[str] = frozenset(
    [f"coarse_generator.{spec.name}" for spec in coarse_layer_specs()[-DECODER_DEPTH:]]
    + [f"fine_generator.{spec.name}" for key in ("attention_decoder", "merge") for spec in fine_layer_specs()[key]]
)
"""Layers that ``InpaintingGenerator.complete_region`` (the engine's inference path) runs on crops of their
feature maps: both stages' decoders and the attention decoder. (It crops each stage's conv10_atrous too, except
under element dropout of that layer.)"""


@dataclass(frozen=True)
class PicardSettings:
    """How PICARD scores an image. Lengths in pixels; intensities in the readers' [0, 1] units.

    score: the score ``Picard.heatmap`` returns ("mcd-image", "mcd-feature", "mean-image", "mean-feature",
        "median-image", "median-feature", "mse", "critic", "dmse").
    n_completions: M, dropout completions per window (the paper's 10).
    dropout_p: drop probability of a channel (or an activation, for element dropout), 0.5; 0 turns test-time
        dropout off.
    dropout_layers: "reference" (the reference code's effective 9 coarse layers, the default), "paper" (the
        paper's rule, both stages) or a list of qualified layer names.
    dropout_kind: "spatial" (whole channels, the paper's) or "element" (single activations, the regular dropout
        the paper compares it with in appendix B.2); element dropout is refused on the decoder layers that the
        engine runs on crops (``REGION_CROPPED_LAYERS``), as their masks would be the crop's.
    seed: run seed of the dropout masks (the reference's 1337).
    patch_size, mask_size: window and hole sides; None takes the model's training patch and hole sizes.
    stride: step between windows (32).
    skip_background: skip windows whose hole region holds no tissue (they get the lowest score).
    tissue_threshold: intensity above which a pixel may be tissue.
    min_tissue_fraction: a window is scored when its hole region's tissue fraction exceeds this.
    assembly: "interpolated" (scores interpolated between window centres) or "averaged" (Swiecicki et al.).
    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    bf16: bfloat16 autocast (AMX / tensor cores); false computes in float32.
    channels_last: NHWC memory layout for the convolutions.
    fused: on the CPU, run each convolution with its activation and dropout as one oneDNN kernel (values equal
        within bf16 rounding; false runs plain torch).
    batch_size: completions per generator forward, or "auto" (from free memory and a measured footprint).
    threads: torch CPU threads, or None to keep torch's default.
    checkpoint: which checkpoint of the run: "last" or "best".
    """

    score: str = "mcd-image"
    n_completions: int = 10
    dropout_p: float = 0.5
    dropout_layers: str | tuple[str, ...] = "reference"
    dropout_kind: DropoutKind = "spatial"
    seed: int = 1337
    patch_size: int | None = None
    mask_size: int | None = None
    stride: int = 32
    skip_background: bool = True
    tissue_threshold: float = 0.02
    min_tissue_fraction: float = 0.0
    assembly: Literal["interpolated", "averaged"] = "interpolated"
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    fused: bool = True
    batch_size: int | Literal["auto"] = "auto"
    threads: int | None = None
    checkpoint: Literal["last", "best"] = "last"

    def __post_init__(self) -> None:
        if isinstance(self.dropout_layers, list):
            object.__setattr__(self, "dropout_layers", tuple(self.dropout_layers))
        check_score_names((self.score,))
        layers = resolve_dropout_layers(self.dropout_layers)
        if self.dropout_kind not in DROPOUT_KINDS:
            raise ConfigError(f"unknown dropout_kind {self.dropout_kind!r}; valid kinds: {', '.join(DROPOUT_KINDS)}")
        cropped = sorted(layers & REGION_CROPPED_LAYERS)
        if self.dropout_kind == "element" and cropped:
            raise ConfigError(
                f"element dropout needs each layer's full feature map, but the engine runs {', '.join(cropped)} on "
                "crops around the hole; use dropout_layers 'reference' or layers outside the decoders"
            )
        if not 1 <= self.n_completions <= MAX_COMPLETIONS:
            raise ConfigError(f"n_completions (M) must be in 1 .. {MAX_COMPLETIONS}, got {self.n_completions}")
        if not 0.0 <= self.dropout_p < 1.0:
            raise ConfigError(f"dropout_p must be in [0, 1), got {self.dropout_p}")
        if not 0 <= self.seed < 2**31:
            raise ConfigError(f"seed must be in 0 .. 2**31 - 1, got {self.seed}")
        if self.stride < 1:
            raise ConfigError(f"stride must be at least 1 pixel, got {self.stride}")
        for name in ("patch_size", "mask_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive number of pixels, got {value}")
        if not 0.0 <= self.min_tissue_fraction < 1.0:
            raise ConfigError(f"min_tissue_fraction must be in [0, 1), got {self.min_tissue_fraction}")
        if self.batch_size != "auto" and (isinstance(self.batch_size, bool) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be 'auto' or a positive number of completions, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "settings") -> PicardSettings:
        """Settings from a plain mapping (YAML), unknown keys rejected."""
        return from_dict(cls, data, where=where)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


class Picard:
    """A trained PICARD model with its settings: image in, anomaly heatmap(s) out.

    Args:
        generator: the trained ``InpaintingGenerator``.
        critic: its ``LocalCritic`` (phi), or None (then only image-space and MSE scores work).
        settings: ``PicardSettings`` with patch_size and mask_size resolved (not None).
        model: description of the model for sidecars (run folder, checkpoint step, ...).
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module | None,
        settings: PicardSettings,
        model: dict[str, Any] | None = None,
    ):
        if settings.patch_size is None or settings.mask_size is None:
            raise ConfigError("Picard needs patch_size and mask_size; Picard.load takes them from the model")
        if settings.patch_size % SIZE_MULTIPLE:
            raise ConfigError(
                f"patch_size must be a multiple of {SIZE_MULTIPLE} for the network, got {settings.patch_size}"
            )
        if settings.mask_size >= settings.patch_size:
            raise ConfigError(
                f"mask_size ({settings.mask_size}) must be smaller than patch_size ({settings.patch_size})"
            )
        self.settings = settings
        self.model = dict(model or {})
        self.device = resolve_device(settings.device)
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        self.engine = CompletionEngine(
            generator,
            critic,
            mask_size=settings.mask_size,
            n_completions=settings.n_completions,
            dropout_p=settings.dropout_p,
            dropout_layers=resolve_dropout_layers(settings.dropout_layers),
            dropout_kind=settings.dropout_kind,
            seed=settings.seed,
            device=self.device,
            bf16=settings.bf16,
            channels_last=settings.channels_last,
            fused=settings.fused,
            batch_size=None if settings.batch_size == "auto" else int(settings.batch_size),
        )

    @classmethod
    def load(cls, run_dir: str | Path, settings: PicardSettings | None = None, **overrides: Any) -> Picard:
        """Load the generator and local critic of a training run (or checkpoint folder).

        settings: base settings (defaults when None); overrides: field values replacing them, e.g.
        ``Picard.load(run, n_completions=5, score="mcd-feature")``. Unset patch and mask sizes come from the
        model's training patch and hole sizes.
        """
        from picard_ad.training.checkpoint import (
            checkpoint_dir,
            load_generator,
            load_local_critic,
            read_checkpoint_info,
        )

        base = settings or PicardSettings()
        try:
            settings = dataclasses.replace(base, **overrides)
        except TypeError as exc:
            raise ConfigError(f"unknown PICARD setting: {exc}") from None
        generator, config = load_generator(run_dir, settings.checkpoint)
        critic, _ = load_local_critic(run_dir, settings.checkpoint)
        info = read_checkpoint_info(run_dir, settings.checkpoint)
        settings = dataclasses.replace(
            settings,
            patch_size=settings.patch_size or config.patch_size,
            mask_size=settings.mask_size or config.hole_size,
        )
        model = {
            "run_dir": str(Path(run_dir).resolve()),
            "checkpoint": str(checkpoint_dir(run_dir, settings.checkpoint).resolve()),
            "step": info.get("step"),
            "data_fingerprint": info.get("data_fingerprint"),
            "in_channels": config.in_channels,
            "cnum": config.cnum,
            "train_patch_size": config.patch_size,
            "train_hole_size": config.hole_size,
        }
        return cls(generator, critic, settings, model)

    def heatmap(self, image: np.ndarray | ScanImage, *, progress: bool = False) -> Heatmap:
        """The heatmap of ``settings.score`` for one image.

        image: (H, W) float array in [0, 1] with a dark background, or a ``ScanImage`` from the readers. The
            heatmap is in the orientation of the pixels given (``meta.orientation.undo`` maps it back).
        """
        return self.heatmaps(image, (self.settings.score,), progress=progress)[self.settings.score]

    def heatmaps(
        self, image: np.ndarray | ScanImage, scores: tuple[str, ...] | None = None, *, progress: bool = False
    ) -> dict[str, Heatmap]:
        """Heatmaps of several scores from one pass over the windows (the M completions are shared).

        scores: names from ``picard_ad.localize.scoring.SCORE_NAMES``; None means ``(settings.score,)``.
        """
        names = check_score_names(scores or (self.settings.score,))
        path = None
        if isinstance(image, ScanImage):
            path = image.meta.path
            image = image.pixels
        settings = self.settings
        started = time.perf_counter()
        self.engine.reset_timings()
        heatmaps = sliding_window_heatmap(
            image,
            self.engine.scorer(names),
            patch_size=settings.patch_size,
            mask_size=settings.mask_size,
            stride=settings.stride,
            tissue_threshold=settings.tissue_threshold if settings.skip_background else None,
            min_tissue_fraction=settings.min_tissue_fraction,
            mode=settings.assembly,
            chunk_size=self.engine.preferred_chunk(settings.patch_size, names),
            progress=progress,
            path=path,
        )
        elapsed = time.perf_counter() - started
        engine_timings = self.engine.timings.as_dict()
        resolved = {**settings.to_dict(), "device": str(self.device)}
        return {
            name: dataclasses.replace(
                heatmap,
                settings=resolved,
                timings={**heatmap.timings, **engine_timings, "total_s": round(elapsed, 4)},
            )
            for name, heatmap in heatmaps.items()
        }


def _small_training() -> TrainConfig:
    return preset_config("small")


@dataclass(frozen=True)
class PicardMethodConfig:
    """PICARD as a benchmark method: how its completion network trains and how it scores.

    train: ``TrainConfig`` of the completion network (default: the CPU ``small`` preset).
    settings: ``PicardSettings`` of the heatmaps (patch and hole sizes default to the trained ones).
    """

    train: TrainConfig = dataclasses.field(default_factory=_small_training)
    settings: PicardSettings = dataclasses.field(default_factory=PicardSettings)


@register_method("picard")
class PicardMethod(AnomalyMethod):
    """PICARD behind the method interface: fit trains the completion network, score maps are its heatmaps."""

    config_class = PicardMethodConfig

    def learn(self, normal_samples: Sequence[Sample], work_dir: Path | None) -> None:
        from picard_ad.training.trainer import run_holds_training, train

        if work_dir is None:
            raise ConfigError("method 'picard' trains a network: call fit(..., work_dir=FOLDER)")
        images = work_dir / "normal_images"
        for sample in normal_samples:  # the trainer samples patches from files
            write_png(images / f"{sample.name}.png", sample.load_image(), bit_depth=16)
        run_dir = work_dir / "run"
        train(self.config.train, images, run_dir, resume=run_holds_training(run_dir), progress=False)
        self._picard = Picard.load(run_dir, self.config.settings)

    def compute_score_map(self, image: np.ndarray) -> np.ndarray:
        return self._picard.heatmap(image).array

    def write_state(self, directory: Path) -> None:
        shutil.copytree(self._picard.model["checkpoint"], directory / "checkpoint", dirs_exist_ok=True)

    def read_state(self, directory: Path) -> None:
        self._picard = Picard.load(directory / "checkpoint", self.config.settings)
