"""CRADL (Zimmerer's thesis, section 3.2.3; Lüth et al. 2021), registered as method "cradl": a SimCLR encoder of
normal slices, a Gaussian mixture of their representations, and the gradient of its negative log-likelihood as
the pixel score.

Stage 1 (``CRADLTraining`` on the generic trainer): the encoder and projection head of ``simclr`` trained with
NT-Xent (temperature 0.5) on pairs of augmented views of normal slices; Adam with weight decay 1e-6 and a cosine
learning-rate schedule after a linear warm-up (the thesis: lr 1e-4, 10 warm-up epochs of 100; here steps). The
held-out metric is NT-Xent of fixed view pairs of held-out slices, and the best checkpoint scores by default.

Stage 2 (in ``fit`` after training): the un-augmented training slices' representations (network input as the
VAE's: resized, z-scored in the tissue, clipped) get a Gaussian mixture for each K in (1, 2, 4, 8) by EM
(``gmm``; full covariances by default, ``covariance: diag`` as an option), and the K with the highest mean
log-likelihood of the held-out normal images' slices is kept (the training slices themselves when no image is held
out, which then favours the largest K). The mixture is fitted to the representations of the checkpoint that
scores (``settings.checkpoint``) and saved beside it (``gmm_best.safetensors`` / ``gmm_last.safetensors``).

Scores: ``nll-grad``, |d(-log p(f(x)))/dx| by SmoothGrad (the default, as the VAE's) or one backward pass,
Gaussian-smoothed like the VAE's gradient maps (kernel 5 by default); image score the negative log-likelihood
-log p(f(x)) of the slice (nats), or ``map``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from picard_ad.config import setting, to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.data.patches import ImageEntry
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError, InputError
from picard_ad.io.base import SliceOrigin
from picard_ad.localize.heatmap import Heatmap
from picard_ad.localize.whole_image import resized_heatmap
from picard_ad.methods.base import AnomalyMethod, check_image, register_method
from picard_ad.methods.vae.config import ZSCORE_DEFAULT, ZSCORE_HELP
from picard_ad.methods.vae.data import (
    RAW_CHAIN,
    Augmentation,
    BankBatch,
    Preprocessing,
    SliceBank,
    Statistics,
    fit_to_input,
    normalise,
    scoring_statistics,
    written_statistics,
)
from picard_ad.methods.vae.gmm import GaussianMixture, select_mixture
from picard_ad.methods.vae.scores import GradientOptions, gaussian_smooth
from picard_ad.methods.vae.settings import AutoencoderSettings
from picard_ad.methods.vae.simclr import ProjectionHead, SimCLREncoder, nt_xent, two_views
from picard_ad.training import (
    Trainer,
    distributed,
    load_network_weights,
    network_file,
)
from picard_ad.training.checkpoint import copy_checkpoint
from picard_ad.training.config import RunSettings
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.loop import split_validation_images
from picard_ad.training.step import CurvePanel, TrainingStep

ENCODER, HEAD = "encoder", "head"
COMPONENTS = (1, 2, 4, 8)
"""The mixture sizes tried (the thesis: GMM-1, -2, -4, -8)."""
_VALIDATION_STREAM, _AUGMENT, _VALIDATION_VIEWS = 1_000_000, 7, 10


@dataclass(frozen=True)
class CRADLTrainConfig(RunSettings):
    """A CRADL run: the SimCLR stage's network, data and optimiser, and the mixture fitted after it."""

    steps: int = setting(20_000, "optimiser steps of batch_size pairs of views", ge=1, run_control=True)
    batch_size: int = setting(64, "slices per step (each gives two views)", ge=2)
    val_images: int = setting(2, "images held out for the validation loss and the choice of K (0: the training "
                              "images)", ge=0)  # fmt: skip
    validate_every: int = setting(500, "iterations between validations", ge=1, run_control=True)
    # network
    input_size: int = setting(128, "side of the square network input, px (thesis: 128)", ge=16)
    width: int = setting(64, "feature maps of the first of four strided levels (x1, 2, 4, 8); the representation "
                         "has 8 width dimensions (thesis: 64 -> 512)", ge=1)  # fmt: skip
    projection_hidden: int = setting(512, "hidden units of the projection head (thesis: 512)", ge=1)
    projection_dim: int = setting(256, "output of the projection head (thesis: 256)", ge=1)
    temperature: float = setting(0.5, "NT-Xent temperature (thesis: 0.5)", gt=0.0)
    # data
    clip: float = setting(1.5, "z-scores inside the tissue are clipped to [-clip, clip]", gt=0.0)
    tissue_threshold: float = setting(0.02, "[0, 1] intensity above which a pixel may be tissue (z-score mask)",
                                      ge=0.0, lt=1.0)  # fmt: skip
    zscore: Literal["slice", "volume"] = setting(ZSCORE_DEFAULT, ZSCORE_HELP)
    min_tissue_fraction: float = setting(0.05, "training slices with less tissue than this fraction of the input "
                                         "are left out", ge=0.0, le=1.0)  # fmt: skip
    val_slices: int = setting(64, "held-out slices of the validation loss", ge=2)
    # augmentation (thesis: crop, scale, mirror, rotate, brightness, Gaussian noise)
    min_crop_scale: float = setting(0.7, "random square crops of a side uniform in [this, 1] of the slice's, resized "
                                    "back", gt=0.0, le=1.0)  # fmt: skip
    mirror: bool = setting(True, "random left-right mirroring")
    rotation: float = setting(10.0, "random rotation by up to this many degrees either way", ge=0.0, le=180.0)
    brightness: tuple[float, float] = setting((0.9, 1.1), "z-scores multiplied by a factor uniform in this range",
                                              gt=0.0)  # fmt: skip
    augment_noise: float = setting(0.1, "Gaussian noise of a std uniform in [0, this] added to the z-scores",
                                   ge=0.0)  # fmt: skip
    # optimisation
    lr: float = setting(1e-4, "Adam learning rate after the warm-up (thesis: 1e-4)", gt=0.0)
    weight_decay: float = setting(1e-6, "Adam weight decay (thesis: 1e-6)", ge=0.0)
    warmup_steps: int = setting(2000, "linear warm-up before the cosine decay (thesis: 10 of 100 epochs)", ge=0)
    # the mixture
    covariance: Literal["full", "diag"] = setting("full", "mixture covariances: full (scikit-learn's default) or "
                                                  "diagonal")  # fmt: skip
    reg_covar: float = setting(1e-6, "added to every variance of the mixture (scikit-learn's default)", gt=0.0)
    gmm_tol: float = setting(0.1, "EM stops when the mean log-likelihood changes by less (nats; thesis: 0.1)",
                             gt=0.0)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_size % 16:
            raise ConfigError(f"input_size must be a multiple of 16, got {self.input_size}")
        if self.brightness[0] > self.brightness[1]:
            raise ConfigError(f"brightness must be a (min, max) pair with min <= max, got {self.brightness}")

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.input_size, self.clip, self.tissue_threshold, self.zscore)

    def augmentation(self) -> Augmentation:
        return Augmentation(self.mirror, self.rotation, self.brightness, self.augment_noise)


CRADL_PRESETS: dict[str, CRADLTrainConfig] = {
    "thesis": CRADLTrainConfig(zscore="volume"),
    # phantom scale on the 2-core CPU in a few minutes: 64 px, a quarter of the width, a faster learning rate
    "small": CRADLTrainConfig(steps=600, batch_size=32, input_size=64, width=16, val_images=4, val_slices=32,
                              validate_every=100, checkpoint_every=300, log_every=20, sample_every=600,
                              num_workers=0, lr=1e-3, warmup_steps=60, covariance="diag", bf16=True,
                              zscore="volume"),
    "tiny": CRADLTrainConfig(steps=4, batch_size=4, input_size=32, width=4, projection_hidden=16, projection_dim=8,
                             val_images=0, val_slices=4, validate_every=2, checkpoint_every=2, log_every=2,
                             sample_every=4, num_workers=0, tensorboard=False, lr=1e-3, warmup_steps=1,
                             min_tissue_fraction=0.0),
}  # fmt: skip


@dataclass(frozen=True)
class CRADLSettings(AutoencoderSettings):
    """How CRADL scores an image: the smoothed gradient of the mixture's negative log-likelihood of the slice's
    representation; image score that negative log-likelihood."""

    score: str = setting("nll-grad", "score of the heatmap: nll-grad (|d(-log p(f(x)))/dx|)", choices=("nll-grad",))
    sample_score: Literal["nll", "map"] = setting(
        "nll", "image score: -log p(f(x)) of the slice at the model size (nats), or map (the 0.99 quantile of the map "
        "over tissue)")
    gradient: Literal["smoothgrad", "vanilla"] = setting("smoothgrad", "input gradients by SmoothGrad or one "
                                                         "backward pass")  # fmt: skip
    smoothgrad_runs: int = setting(20, "SmoothGrad: noisy copies whose gradients are averaged", ge=1)
    smoothgrad_noise: float = setting(0.1, "SmoothGrad: std of the Gaussian noise added to the input z-scores",
                                      ge=0.0)  # fmt: skip
    seed: int = setting(0, "seed of SmoothGrad's noise (the same for every image)", ge=0)


def build_networks(config: CRADLTrainConfig) -> dict[str, torch.nn.Module]:
    encoder = SimCLREncoder(config.width)
    return {ENCODER: encoder, HEAD: ProjectionHead(encoder.representation_dim, config.projection_hidden,
                                                   config.projection_dim)}  # fmt: skip


def learning_rate(config: CRADLTrainConfig, iteration: int) -> float:
    """The learning rate of iteration (1-based): linear warm-up to ``lr``, then cosine decay to 0 at ``steps``."""
    if iteration <= config.warmup_steps:
        return config.lr * iteration / config.warmup_steps
    progress = (iteration - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * config.lr * (1 + math.cos(math.pi * min(1.0, progress)))


class CRADLTraining(TrainingStep):
    """SimCLR on normal slices: two augmented views per slice, NT-Xent of their projections."""

    loss_names = ("loss",)
    validation_name = "val_nt_xent"
    curve_panels = (CurvePanel("NT-Xent", (("loss", "NT-Xent (train)"),), with_validation=True),)

    def __init__(self, config: CRADLTrainConfig, device: torch.device, context: DistributedContext,
                 statistics: Mapping[Path, Statistics] | None = None):  # fmt: skip
        super().__init__(config, device, context)
        self.statistics = statistics  # of the slices written to files of their own (``SliceBank``)
        self.networks = build_networks(config)
        parameters = [p for network in self.networks.values() for p in network.parameters()]
        self.optimizers = {"adam": torch.optim.Adam(parameters, config.lr, weight_decay=config.weight_decay)}

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        self.preprocessing, self.augmentation = config.preprocessing(), config.augmentation()
        options = dict(min_tissue_fraction=config.min_tissue_fraction, tissue_threshold=config.tissue_threshold,
                       seed=config.seed, source=source, zscore=config.zscore, statistics=self.statistics)  # fmt: skip
        self.bank = SliceBank(train_images, config.input_size, stream=self.context.rank, **options)
        held_out = SliceBank(val_images, config.input_size, stream=_VALIDATION_STREAM, **options)
        rng = np.random.default_rng((config.seed, _VALIDATION_VIEWS))
        self.validation_views = self._views(held_out.spread_batch(config.val_slices), rng)
        self.augment_rng = np.random.default_rng((config.seed, _AUGMENT, self.context.rank))

    def _views(self, batch: BankBatch, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of every slice of the batch, each (n, 1, S, S)."""
        pairs = [two_views(image, rng, self.augmentation, self.preprocessing, self.config.min_crop_scale, statistics)
                 for image, statistics in zip(batch.images, batch.statistics)]  # fmt: skip
        return tuple(torch.from_numpy(np.stack(views))[:, None] for views in zip(*pairs))

    def _loss(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        encoder, head = self.networks[ENCODER], self.networks[HEAD]
        with self.autocast():
            projections = head(encoder(torch.cat([first, second]))).float()
        return nt_xent(*projections.chunk(2), self.config.temperature)

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        optimizer = self.optimizers["adam"]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(self.config, iteration)
        views = self._views(self.bank.draw_batch(self.config.batch_size), self.augment_rng)
        first, second = (self.to_device(view) for view in views)
        loss = self._loss(first, second)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for network in self.networks.values():
            distributed.average_gradients(network, self.context)
        optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def validate(self) -> float:
        """NT-Xent of the fixed held-out view pairs (one batch)."""
        for network in self.networks.values():
            network.eval()
        try:
            return float(self._loss(*(self.to_device(views) for views in self.validation_views)))
        finally:
            for network in self.networks.values():
                network.train()

    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict(), "augment": self.augment_rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])
        self.augment_rng.bit_generator.state = state["augment"]

    def describe(self) -> dict[str, Any]:
        return {"architecture": "simclr-conv", "input_size": self.config.input_size, "width": self.config.width,
                "representation_dim": 8 * self.config.width,
                "intensity_normalisation": f"z-score inside the tissue, clipped to +-{self.config.clip}"}  # fmt: skip

    @property
    def excluded_images(self) -> list[Path]:
        return self.bank.excluded_images


class CRADLScores:
    """nll-grad maps and the negative log-likelihood of network inputs at the model size."""

    def __init__(self, encoder: SimCLREncoder, mixture: GaussianMixture):
        self.encoder, self.mixture = encoder, mixture

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(f(x)) per sample: x (N, 1, S, S) -> (N,) float64 nats."""
        return -self.mixture.log_likelihood(self.encoder(x).cpu())

    def maps(self, x: torch.Tensor, options: GradientOptions, seed: int = 0) -> torch.Tensor:
        """|d(-log p(f(x)))/dx|, SmoothGrad-averaged and smoothed: x (N, 1, S, S) -> (N, S, S) float32."""
        generator = torch.Generator(x.device).manual_seed(seed)
        copies = x.expand(options.runs, *x.shape)
        if options.noise > 0:
            copies = copies + options.noise * torch.randn(copies.shape, generator=generator, device=x.device)
        copies = copies.reshape(options.runs * len(x), *x.shape[1:]).detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.nll(copies).sum(), copies)
        gradient = gradient.reshape(options.runs, len(x), *x.shape[2:]).mean(dim=0)
        return gaussian_smooth(gradient.abs(), options.taps, options.sigma).float()


def _mixture_file(checkpoint: str) -> str:
    return f"gmm_{checkpoint}.safetensors"


@register_method("cradl")
class CRADL(AnomalyMethod):
    """CRADL: SimCLR representations of slices, a Gaussian mixture of the normal ones, nll-grad maps."""

    settings_class = CRADLSettings
    train_config_class = CRADLTrainConfig
    score_names = ("nll-grad",)
    presets = CRADL_PRESETS
    default_preset = "thesis"
    settings: CRADLSettings
    train_config: CRADLTrainConfig

    def __init__(self, train: Any = None, settings: Any = None):
        super().__init__(train, settings)
        self.encoder: SimCLREncoder | None = None
        self.mixture: GaussianMixture | None = None
        self.selection: dict[str, Any] = {}
        self.checkpoint: Path | None = None
        self.model: dict[str, Any] = {}

    @classmethod
    def describe_architecture(cls, train: CRADLTrainConfig) -> list[str]:
        networks = build_networks(train)
        millions = sum(p.numel() for n in networks.values() for p in n.parameters()) / 1e6
        maps = "/".join(str(train.width * f) for f in (1, 2, 4, 8))
        return [f"SimCLR encoder: 4 x (4x4 conv, stride 2, LeakyReLU) with {maps} maps, global average pool to "
                f"{8 * train.width}-d representations; projection head {train.projection_hidden}-{train.projection_dim}"
                f" (NT-Xent, temperature {train.temperature}): {millions:.2f} M parameters",
                f"Gaussian mixture ({train.covariance} covariances), K in {COMPONENTS} chosen by held-out likelihood"]

    # -- fitting ----------------------------------------------------------------------------------------------------

    def learn(self, images: NormalImages, run_dir: Path | None, *, resume: bool, progress: bool,
              context: DistributedContext | None) -> None:  # fmt: skip
        if run_dir is None:
            raise ConfigError(f"method '{self.name}' trains a network: give fit a run folder (run_dir=...)")
        folder = run_dir / "normal_images"
        files = images.files(folder)
        statistics = written_statistics(images, folder, RAW_CHAIN, self.train_config.preprocessing())
        step = functools.partial(CRADLTraining, statistics=statistics)
        trainer = Trainer(self.name, self.train_config, step, files, run_dir, resume=resume,
                          context=context, progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        if context is not None and not context.is_main:
            return
        self._load_encoder(run_dir)
        train_files, held_out_files = split_validation_images(files, self.train_config, images.source or run_dir)
        train = self.representations(train_files, images.source, statistics)
        held_out = self.representations(held_out_files, images.source, statistics)
        config = self.train_config
        selection = select_mixture(train, held_out, COMPONENTS, config.covariance, reg_covar=config.reg_covar,
                                   tol=config.gmm_tol, seed=config.seed)  # fmt: skip
        self.mixture = selection.mixture
        self.selection = {"checkpoint": self.settings.checkpoint, "components": self.mixture.n_components,
                          "covariance": config.covariance, "train_slices": len(train),
                          "held_out_slices": len(held_out),
                          "held_out_log_likelihood": {str(k): v for k, v in
                                                      selection.held_out_log_likelihood.items()}}  # fmt: skip
        self._write_mixture(run_dir)

    @torch.no_grad()
    def representations(self, files: Sequence[ImageEntry], source: Path | None,
                        statistics: Mapping[Path, Statistics] | None = None) -> torch.Tensor:  # fmt: skip
        """f(x) of every usable slice of the images, un-augmented: (N, 8 width) float64. statistics: the volume
        z-score statistics of files written from volume slices (``SliceBank``)."""
        config = self.train_config
        bank = SliceBank(files, config.input_size, min_tissue_fraction=config.min_tissue_fraction,
                         tissue_threshold=config.tissue_threshold, seed=config.seed, source=source,
                         zscore=config.zscore, statistics=statistics)  # fmt: skip
        inputs = torch.from_numpy(bank.spread_batch(len(bank)).network_inputs(config.preprocessing()))[:, None]
        device = next(self.encoder.parameters()).device
        return torch.cat([self.encoder(chunk.to(device)).cpu() for chunk in inputs.split(256)]).double()

    # -- state ------------------------------------------------------------------------------------------------------

    def _load_encoder(self, directory: Path) -> None:
        checkpoint, info, config = self.read_checkpoint(directory, self.settings.checkpoint)
        encoder = build_networks(config)[ENCODER]
        load_network_weights(encoder, checkpoint / network_file(ENCODER))
        self.encoder = encoder.eval().to(resolve_device(self.settings.device))
        self.checkpoint = checkpoint
        self.model = {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"), "val_nt_xent":
                      info.get("val_loss"), "data_fingerprint": info.get("data_fingerprint")}  # fmt: skip

    def _write_mixture(self, directory: Path) -> None:
        tensors = {name: value.contiguous() for name, value in self.mixture.state().items()}
        save_file(tensors, directory / _mixture_file(self.settings.checkpoint),
                  metadata={"selection": json.dumps(self.selection)})  # fmt: skip

    def read_state(self, directory: Path) -> None:
        """The encoder of ``settings.checkpoint`` and the mixture fitted to its representations."""
        self._load_encoder(directory)
        path = directory / _mixture_file(self.settings.checkpoint)
        if not path.is_file():
            raise InputError(directory, f"holds no mixture fitted to the '{self.settings.checkpoint}' checkpoint's "
                             f"representations ({path.name}); fit with checkpoint: {self.settings.checkpoint}")
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            self.selection = json.loads(handle.metadata()["selection"])
        self.mixture = GaussianMixture.from_state(load_file(path))

    def write_state(self, directory: Path) -> None:
        target = directory / self.settings.checkpoint
        copy_checkpoint(self.checkpoint, target)
        self.checkpoint = target
        self._write_mixture(directory)

    def state_files(self) -> list[Path]:
        return [self.checkpoint / network_file(ENCODER),
                self.checkpoint.parent / _mixture_file(self.settings.checkpoint)]  # fmt: skip

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model, "mixture": self.selection}

    # -- scoring ----------------------------------------------------------------------------------------------------

    def _options(self) -> GradientOptions:
        settings = self.settings
        smoothgrad = settings.gradient == "smoothgrad"
        return GradientOptions(runs=settings.smoothgrad_runs if smoothgrad else 1,
                               noise=settings.smoothgrad_noise if smoothgrad else 0.0,
                               taps=settings.smoothing_kernel, sigma=settings.sigma)  # fmt: skip

    def network_input(self, image: np.ndarray, statistics: Statistics | None = None) -> torch.Tensor:
        """(1, 1, S, S) float32 network input of an (S, S) [0, 1] model-size image: z-scored (by its volume's
        ``statistics`` where given) and clipped."""
        tensor = torch.from_numpy(normalise(image, self.train_config.preprocessing(), statistics=statistics))
        return tensor[None, None].to(next(self.encoder.parameters()).device)

    def compute_heatmaps(self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
                         origin: SliceOrigin | None) -> dict[str, Heatmap]:  # fmt: skip
        started = time.perf_counter()
        scorer, options = CRADLScores(self.encoder, self.mixture), self._options()
        statistics = scoring_statistics(origin, RAW_CHAIN, self.train_config.preprocessing())

        def score(model_input: np.ndarray) -> dict[str, np.ndarray]:
            x = self.network_input(model_input, statistics)
            return {"nll-grad": scorer.maps(x, options, self.settings.seed)[0].cpu().numpy()}

        heatmaps = resized_heatmap(image, score, input_size=self.train_config.input_size)
        resolved = {**to_dict(self.settings), "input_size": self.train_config.input_size,
                    "smoothing_sigma": self.settings.sigma, "components": self.mixture.n_components,
                    "zscore_statistics": statistics}  # fmt: skip
        elapsed = round(time.perf_counter() - started, 4)
        return {name: dataclasses.replace(heatmap, settings=resolved, timings={**heatmap.timings, "total_s": elapsed})
                for name, heatmap in heatmaps.items() if name in scores}  # fmt: skip

    def sample_score_name(self) -> str | None:
        """``settings.sample_score``: "nll", None for "map"."""
        return None if self.settings.sample_score == "map" else self.settings.sample_score

    def image_score(self, image: np.ndarray, score_map: np.ndarray | None = None, tissue: np.ndarray | None = None,
                    origin: SliceOrigin | None = None) -> float:  # fmt: skip
        """``settings.sample_score``: -log p(f(x)) of the image at the model size (nats; the map and tissue are not
        used; ``origin`` as in ``heatmaps``), or "map", the base class's 0.99 quantile of the score map over
        tissue."""
        if self.settings.sample_score == "map":
            return super().image_score(image, score_map, tissue, origin)
        self._require_fitted("score an image")
        pixels = fit_to_input(check_image(image, f"method '{self.name}'"), self.train_config.input_size)
        statistics = scoring_statistics(origin, RAW_CHAIN, self.train_config.preprocessing())
        with torch.no_grad():
            return float(CRADLScores(self.encoder, self.mixture).nll(self.network_input(pixels, statistics))[0])
