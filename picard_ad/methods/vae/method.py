"""The VAE and the DAE of Zimmerer's thesis (section 3.1) behind the method interface (methods "vae" and "dae").

``fit`` trains the network with the generic trainer (``training``) on whole slices at the model size, prepared by
the preprocessing chain of the settings in effect (recorded in the checkpoint; a resume with another chain is
refused), as the CAE does; ``heatmap`` prepares an image by the settings' chain (``raw`` by default; carrier crop
and deskew, foreground mask), resizes it to the model input (``resized_heatmap``: aspect kept, padded with
background), equalizes, z-scores it inside its tissue and clips it as in training (``data``), computes the
requested maps at the model size (``scores``) and maps each back through the resize and the crop onto the image's
pixels (0 outside the carrier box). The run folder's checkpoint (``settings.checkpoint``: best by held-out loss by
default) is the fitted state.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from picard_ad.config import to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.data.preprocessing import Placement, PreprocessingSettings, prepare
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError
from picard_ad.io.base import SliceOrigin
from picard_ad.localize.heatmap import Heatmap
from picard_ad.localize.whole_image import resized_heatmap
from picard_ad.methods.base import AnomalyMethod, check_image, register_method
from picard_ad.methods.cae.scores import error_maps
from picard_ad.methods.cae.scores import image_scores as pooled_scores
from picard_ad.methods.vae.config import (
    CEVAE_PRESETS,
    DAE_PRESETS,
    VAE_PRESETS,
    AutoencoderTrainConfig,
    CEVAETrainConfig,
    DAETrainConfig,
    VAETrainConfig,
)
from picard_ad.methods.vae.data import (
    RAW_CHAIN,
    Statistics,
    chain_input,
    model_input,
    normalise,
    scoring_statistics,
    tissue_region,
    written_statistics,
)
from picard_ad.methods.vae.networks import ConvAutoencoder
from picard_ad.methods.vae.scores import GradientOptions, ReconstructionScores, VAEScores
from picard_ad.methods.vae.settings import (
    CEVAE_SCORES,
    DAE_SCORES,
    VAE_SCORES,
    CEVAESettings,
    ChainedAutoencoderSettings,
    DAESettings,
    VAESettings,
)
from picard_ad.methods.vae.training import (
    NETWORK,
    CEVAETraining,
    DAETraining,
    VAETraining,
    feature_maps,
)
from picard_ad.training import Trainer, load_network_weights, network_file
from picard_ad.training.checkpoint import check_resumed_preprocessing, copy_checkpoint

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext


class _Autoencoder(AnomalyMethod):
    """What the VAE and the DAE share: training, the checkpoint as state, the whole-image scoring path."""

    step_class: ClassVar[type]
    settings: ChainedAutoencoderSettings
    train_config: AutoencoderTrainConfig

    def __init__(self, train: Any = None, settings: Any = None):
        super().__init__(train, settings)
        self.network: ConvAutoencoder | None = None
        self.checkpoint: Path | None = None  # the checkpoint folder the network was loaded from
        self.model: dict[str, Any] = {}

    @classmethod
    def describe_architecture(cls, train: AutoencoderTrainConfig) -> list[str]:
        network = cls.step_class.build(train)
        millions = sum(p.numel() for p in network.parameters()) / 1e6
        code = f"mean and log sigma of {train.z_dim} latents" if network.variational else f"{train.z_dim} latents"
        return [
            (f"encoder: 4 x (4x4 conv, stride 2, LeakyReLU) with {'/'.join(map(str, feature_maps(train)))} maps, then "
             f"a {train.input_size // 16}x"
             f"{train.input_size // 16} conv to {code}; decoder: its mirror with transposed convolutions"),
            f"{train.input_size} x {train.input_size} px input, z-scored in the tissue and clipped to +-{train.clip}: "
            f"{millions:.2f} M parameters",
        ]

    # -- fitting ----------------------------------------------------------------------------------------------------

    def learn(self, images: NormalImages, run_dir: Path | None, *, resume: bool, progress: bool,
              context: DistributedContext | None) -> None:  # fmt: skip
        if run_dir is None:
            raise ConfigError(f"method '{self.name}' trains a network: give fit a run folder (run_dir=...)")
        chain = self.chain()
        if resume:  # a checkpoint from before the chain was trained on the raw slices
            check_resumed_preprocessing(run_dir, to_dict(chain), unrecorded=to_dict(RAW_CHAIN))
        folder = run_dir / "normal_images"
        files = images.files(folder)  # the trainer reads the slices from files
        statistics = written_statistics(images, folder, chain, self.train_config.preprocessing())
        step = functools.partial(self.step_class, chain=chain, statistics=statistics)
        trainer = Trainer(self.name, self.train_config, step, files, run_dir, resume=resume,
                          context=context, progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        if context is None or context.is_main:
            self.read_state(run_dir)

    # -- state ------------------------------------------------------------------------------------------------------

    def read_state(self, directory: Path) -> None:
        """Load the network of the run's ``settings.checkpoint``."""
        checkpoint, info, config = self.read_checkpoint(directory, self.settings.checkpoint)
        network = self.step_class.build(config)
        load_network_weights(network, checkpoint / network_file(NETWORK))
        self.network = network.eval().to(resolve_device(self.settings.device))
        self.checkpoint = checkpoint
        self.model = {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"),
                      "val_loss": info.get("val_loss"), "data_fingerprint": info.get("data_fingerprint"),
                      "trained_preprocessing": info.get("preprocessing", to_dict(RAW_CHAIN))}  # fmt: skip

    def write_state(self, directory: Path) -> None:
        """The checkpoint is the state: copied into ``directory`` unless it lies there already."""
        target = directory / self.settings.checkpoint
        copy_checkpoint(self.checkpoint, target)
        self.checkpoint = target

    def state_files(self) -> list[Path]:
        return [self.checkpoint / network_file(NETWORK)]

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model}

    # -- scoring ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def _scores(self) -> VAEScores | ReconstructionScores:
        """The network's scores: its pixel scores and image scores."""

    def _options(self) -> tuple[GradientOptions, int, int]:
        settings = self.settings
        options = GradientOptions(runs=1, noise=0.0, taps=settings.smoothing_kernel, sigma=settings.sigma)
        return options, 0, 0

    def chain(self) -> PreprocessingSettings:
        """The settings' preprocessing chain."""
        return self.settings.preprocessing_settings()

    def network_input(self, image: np.ndarray, mask: np.ndarray | None = None,
                      statistics: Statistics | None = None) -> torch.Tensor:  # fmt: skip
        """(1, 1, S, S) float32 network input of an (S, S) [0, 1] model-size image: z-scored by its volume's
        ``statistics`` where given, else inside its own tissue (the chain's ``mask`` where given), and clipped."""
        tensor = torch.from_numpy(normalise(image, self.train_config.preprocessing(), mask, statistics))[None, None]
        return tensor.to(next(self.network.parameters()).device)

    def statistics(self, origin: SliceOrigin | None) -> Statistics | None:
        """The z-score statistics of a slice from ``origin`` (``scoring_statistics``: its volume's, or None)."""
        return scoring_statistics(origin, self.chain(), self.train_config.preprocessing())

    def compute_heatmaps(self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
                         origin: SliceOrigin | None) -> dict[str, Heatmap]:  # fmt: skip
        started = time.perf_counter()
        scorer, (options, n_samples, seed) = self._scores(), self._options()
        chain, size = self.chain(), self.train_config.input_size
        prepared = prepare(image, chain)
        placement = Placement.of(prepared.image.shape, size)
        statistics = self.statistics(origin)

        def score(canvas: np.ndarray) -> dict[str, np.ndarray]:
            model = chain_input(canvas, prepared, placement, chain)
            x = self.network_input(model.image, model.mask, statistics)
            maps = scorer.maps(x, scores, options, n_samples, seed)
            return {name: values[0].cpu().numpy() for name, values in maps.items()}

        heatmaps = resized_heatmap(prepared.image, score, input_size=size)
        resolved = {**to_dict(self.settings), "input_size": size, "smoothing_sigma": self.settings.sigma,
                    "device": str(next(self.network.parameters()).device),
                    "carrier_box": prepared.carrier_record(), "zscore_statistics": statistics}  # fmt: skip
        elapsed = round(time.perf_counter() - started, 4)
        return {name: dataclasses.replace(heatmap, array=prepared.to_source(heatmap.array), settings=resolved,
                                          timings={**heatmap.timings, "total_s": elapsed})
                for name, heatmap in heatmaps.items()}  # fmt: skip

    def sample_terms(self, image: np.ndarray, origin: SliceOrigin | None = None) -> dict[str, float]:
        """The image's sample scores at the model size, through the settings' chain: {"kl": L_KL (VAE only), "rec":
        L_rec} in nats, and Davletshina et al.'s {"mse", "l1"}: the mean squared and absolute difference between
        the network input and its posterior-mean reconstruction over the tissue (the chain's mask in crop and
        full), z-score units.

        image: (H, W) float in [0, 1]; origin: as in ``heatmaps``.
        """
        self._require_fitted("score an image")
        pixels = check_image(image, f"method '{self.name}'")
        model, _ = model_input(pixels, self.chain(), self.train_config.input_size)
        x = self.network_input(model.image, model.mask, self.statistics(origin))
        scorer = self._scores()
        with torch.no_grad():
            kl, rec = scorer.terms(x)
            reconstruction = scorer.reconstruct(x)[0, 0].cpu().numpy()
        tissue = tissue_region(model.image, self.train_config.tissue_threshold, model.mask)
        pooled = pooled_scores(error_maps(x[0, 0].cpu().numpy(), reconstruction, tissue), tissue, top_k=1)
        terms = {"rec": float(rec[0]), "mse": pooled["mse"], "l1": pooled["l1"]}
        if kl is not None:
            terms["kl"] = float(kl[0])
        return terms

    def sample_score_name(self) -> str | None:
        """``settings.sample_score`` ("kl+rec", "kl", "rec", "mse" or "l1"), None for "map"."""
        return None if self.settings.sample_score == "map" else self.settings.sample_score

    def image_score(self, image: np.ndarray, score_map: np.ndarray | None = None, tissue: np.ndarray | None = None,
                    origin: SliceOrigin | None = None) -> float:  # fmt: skip
        """One score per image, ``settings.sample_score``: L_KL + L_rec (the negative ELBO, thesis eq. 3.14), L_KL or
        L_rec of the image at the model size, in nats; Davletshina et al.'s MSE or L1 of the reconstruction over the
        tissue, z-score units (``sample_terms``; the score map and tissue are not used); or "map", the base class's
        0.99 quantile of the score map over tissue. origin: as in ``heatmaps``."""
        kind = self.settings.sample_score
        if kind == "map":
            return super().image_score(image, score_map, tissue, origin)
        terms = self.sample_terms(image, origin)
        return sum(terms[name] for name in kind.split("+"))


@register_method("vae")
class VAE(_Autoencoder):
    """Zimmerer's convolutional VAE: KL and ELBO gradients, combi, reconstruction error and sampling variance."""

    settings_class = VAESettings
    train_config_class = VAETrainConfig
    step_class = VAETraining
    score_names = VAE_SCORES
    presets = VAE_PRESETS
    default_preset = "thesis"

    def _scores(self) -> VAEScores:
        return VAEScores(self.network, self.train_config.likelihood, self.train_config.scale)

    def _options(self) -> tuple[GradientOptions, int, int]:
        settings = self.settings
        smoothgrad = settings.gradient == "smoothgrad"
        options = GradientOptions(runs=settings.smoothgrad_runs if smoothgrad else 1,
                                  noise=settings.smoothgrad_noise if smoothgrad else 0.0,
                                  taps=settings.smoothing_kernel, sigma=settings.sigma)  # fmt: skip
        return options, getattr(settings, "n_samples", 0), settings.seed


@register_method("cevae")
class CEVAE(VAE):
    """Zimmerer's context-encoding VAE (thesis section 3.2.3): the VAE plus a context-encoding term; combi, kl-grad.

    Image score the negative ELBO of a slice; ``volume_score`` gives a volume's maximum over its slices."""

    settings_class = CEVAESettings
    train_config_class = CEVAETrainConfig
    step_class = CEVAETraining
    score_names = CEVAE_SCORES
    presets = CEVAE_PRESETS
    default_preset = "thesis"

    def volume_score(self, path: str | Path, axis: int = 2) -> float:
        """The MOOD example's sample score of a volume: the maximum over its slices of ``image_score`` (the negative
        ELBO L_KL + L_rec of each slice at the model size by default), in nats."""
        from picard_ad.io import iter_slices

        path = Path(path)
        return max(self.image_score(image.pixels, origin=SliceOrigin(path, image.meta.slice_index, axis))
                   for image in iter_slices(path, axis=axis))  # fmt: skip


@register_method("dae")
class DAE(_Autoencoder):
    """Zimmerer's convolutional network as a denoising autoencoder: reconstruction error."""

    settings_class = DAESettings
    train_config_class = DAETrainConfig
    step_class = DAETraining
    score_names = DAE_SCORES
    presets = DAE_PRESETS
    default_preset = "thesis"

    def _scores(self) -> ReconstructionScores:
        return ReconstructionScores(self.network, self.train_config.likelihood, self.train_config.scale)
