"""Davletshina et al.'s (2020) GANs behind the method interface: "dcgan", "alpha-gan" and "bigan".

``fit`` trains the networks with the generic trainer on the normal images prepared by the preprocessing chain of
the settings in effect (the cae's data code); ``heatmap`` prepares the checked image the same way, scores it at the
network's input size (``resized_heatmap``, then equalized on its mask as in training) and maps each map back onto
the image's pixels (0 outside the carrier box and off the mask). Scores (``scores``): "disc" for all three (one
value, drawn on the whole mask), AnoGAN's latent search for the DCGAN, the reconstruction error of G(E(x)) for the
α-GAN and BiGAN (the cae's error maps and image scores).
"""

from __future__ import annotations

import functools
import hashlib
import time
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from picard_ad.config import to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.data.preprocessing import Placement, equalize_canvas, network_mask, prepare
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError
from picard_ad.io.base import SliceOrigin
from picard_ad.localize.heatmap import Heatmap
from picard_ad.localize.whole_image import resized_heatmap
from picard_ad.methods.base import AnomalyMethod, check_image, register_method
from picard_ad.methods.cae.scores import error_maps, score_maps
from picard_ad.methods.cae.scores import image_scores as pooled_scores
from picard_ad.methods.gan.config import ALPHA_GAN_PRESETS, BIGAN_PRESETS, DCGAN_PRESETS, GANTrainConfig
from picard_ad.methods.gan.networks import top_channels
from picard_ad.methods.gan.scores import disc_score, latent_search
from picard_ad.methods.gan.settings import DCGAN_SCORES, ENCODING_SCORES, DCGANSettings, EncodingGANSettings
from picard_ad.methods.gan.training import TRAINING, build_networks, to_intensity, to_network
from picard_ad.training import Trainer, load_network_weights, network_file
from picard_ad.training.checkpoint import check_resumed_preprocessing, copy_checkpoint

DISC_NOTE = ("disc is one image score (1 - D(x)) drawn on every pixel of the mask: this map does not localize "
             "anything (docs/radiograph-gans.md)")

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext


class RadiographGAN(AnomalyMethod):
    """What the three GANs share: fit, state and the scoring path; ``score_canvas`` is each one's scores."""

    train_config_class = GANTrainConfig
    default_preset = "paper"
    kind: ClassVar[str]

    def __init__(self, train: GANTrainConfig | None = None, settings: Any = None):
        super().__init__(train, settings)
        self.networks: dict[str, torch.nn.Module] = {}
        self.device = torch.device("cpu")
        self.checkpoint: Path | None = None
        self.model: dict[str, Any] = {}
        self._cache: tuple[str, dict[str, tuple[np.ndarray, float]]] | None = None  # (image digest, per score)

    @classmethod
    def describe_architecture(cls, train: GANTrainConfig) -> list[str]:
        lines = []
        for name, network in build_networks(cls.kind, train).items():
            millions = sum(p.numel() for p in network.parameters()) / 1e6
            lines.append(f"{name}: {type(network).__name__}, {millions:.2f} M parameters")
        top = top_channels(train.input_size, train.generator_width)
        lines.append(f"{train.input_size} px images, z_dim {train.z_dim}, generator 4 x 4 x {top} up to the image")
        return lines

    # -- fitting ----------------------------------------------------------------------------------------------------

    def learn(self, images: NormalImages, run_dir: Path | None, *, resume: bool, progress: bool,
              context: DistributedContext | None) -> None:  # fmt: skip
        if run_dir is None:
            raise ConfigError(f"method '{self.name}' trains networks: give fit a run folder (run_dir=...)")
        chain = self.settings.preprocessing_settings()
        if resume:
            check_resumed_preprocessing(run_dir, to_dict(chain))
        files = images.files(run_dir / "normal_images")
        step = functools.partial(TRAINING[self.kind], preprocessing=chain)
        trainer = Trainer(self.name, self.train_config, step, files, run_dir, resume=resume, context=context,
                          progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        if context is not None and not context.is_main:
            return
        self._load_networks(run_dir)

    # -- state ------------------------------------------------------------------------------------------------------

    def _load_networks(self, directory: Path) -> None:
        checkpoint, info, config = self.read_checkpoint(directory, self.settings.checkpoint)
        networks = build_networks(self.kind, config)
        self.device = resolve_device(self.settings.device)
        for name, network in networks.items():
            load_network_weights(network, checkpoint / network_file(name))
            networks[name] = network.eval().to(self.device)
        self.networks, self.checkpoint = networks, checkpoint
        self.model = {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"),
                      "data_fingerprint": info.get("data_fingerprint"),
                      "trained_preprocessing": info.get("preprocessing")}  # fmt: skip
        self._cache = None

    def read_state(self, directory: Path) -> None:
        """Load the networks of ``directory``'s ``last`` (or ``best``) checkpoint."""
        self._load_networks(directory)

    def write_state(self, directory: Path) -> None:
        target = directory / self.settings.checkpoint
        copy_checkpoint(self.checkpoint, target)

    def state_files(self) -> list[Path]:
        if self.checkpoint is None:
            raise ConfigError(f"a {self.name} fit has no state files until it is trained or loaded")
        return [self.checkpoint / network_file(name) for name in sorted(self.networks)]

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model}

    # -- scoring ----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def disc(self, network_input: torch.Tensor) -> float:
        """1 - D(x) of one network input (1, 1, S, S) in [-1, 1]."""
        discriminator = self.networks["discriminator"]
        if self.kind == "bigan":
            mean, _ = self.networks["encoder"](network_input)
            return float(disc_score(discriminator(network_input, mean))[0])
        return float(disc_score(discriminator(network_input, against_reference=True))[0])

    @abstractmethod
    def score_canvas(self, network_input: np.ndarray, mask: np.ndarray,
                     names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, float]]:  # fmt: skip
        """{score: (map (S, S) float32, image score)} of one equalized network input (S, S) in [0, 1], mask bool."""

    def _scores(self, image: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[Heatmap, float]]:
        """The heatmaps on the image's pixels and image scores of ``names`` of a checked image."""
        started = time.perf_counter()
        settings, size = self.settings, self.train_config.input_size
        prepared = prepare(image, settings)
        placement = Placement.of(prepared.image.shape, size)
        prepared_at = time.perf_counter()
        values: dict[str, float] = {}

        def scorer(canvas: np.ndarray) -> dict[str, np.ndarray]:
            mask = network_mask(prepared, placement)
            network_input = equalize_canvas(canvas, mask, placement, settings)
            found = self.score_canvas(network_input, mask, names)
            values.update({name: value for name, (_, value) in found.items()})
            return {name: array for name, (array, _) in found.items()}

        maps = resized_heatmap(prepared.image, scorer, input_size=size)
        resolved = {**to_dict(settings), "input_size": size, "device": str(self.device)}
        out = {}
        for name, heatmap in maps.items():
            timings = {"prepare_s": round(prepared_at - started, 4), **heatmap.timings,
                       "total_s": round(time.perf_counter() - started, 4)}  # fmt: skip
            noted = {**resolved, "map_note": DISC_NOTE} if name == "disc" else resolved
            out[name] = (Heatmap(array=prepared.to_source(heatmap.array), score_name=name, settings=noted,
                                 timings=timings), values[name])  # fmt: skip
        return out

    def _cached(self, image: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[Heatmap, float]]:
        """Scores of ``names``, reusing those of the last image scored (the latent search is slow)."""
        digest = _fingerprint(image)
        if self._cache is None or self._cache[0] != digest:
            self._cache = (digest, {})
        known = self._cache[1]
        missing = tuple(name for name in names if name not in known)
        if missing:
            known.update(self._scores(image, missing))
        return {name: known[name] for name in names}

    def compute_heatmaps(self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
                         origin: SliceOrigin | None) -> dict[str, Heatmap]:  # fmt: skip
        return {name: heatmap for name, (heatmap, _) in self._cached(image, scores).items()}

    def image_scores(self, image: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Image scores of an image (H, W) float in [0, 1] (all of the method's by default): {name: value}."""
        self._require_fitted("score an image")
        pixels = check_image(image, f"method '{self.name}'")
        return {name: value for name, (_, value) in self._cached(pixels, names or self.score_names).items()}

    def image_score(self, image: np.ndarray, score_map: np.ndarray | None = None, tissue: np.ndarray | None = None,
                    origin: SliceOrigin | None = None) -> float:  # fmt: skip
        """The settings' image score, computed at the network's input size on the mask (``score_map``, ``tissue``
        and ``origin`` are not used)."""
        return self.image_scores(image, (self.settings.score,))[self.settings.score]


def _fingerprint(image: np.ndarray) -> str:
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    return f"{pixels.shape}:{hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest()}"


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None].to(device)


@register_method("dcgan")
class DCGAN(RadiographGAN):
    """DCGAN with minibatch discrimination (Davletshina et al. 2020): discriminator probability, AnoGAN residual."""

    settings_class = DCGANSettings
    score_names = DCGAN_SCORES
    presets = DCGAN_PRESETS
    kind = "dcgan"

    def score_canvas(self, network_input, mask, names):
        x = to_network(_tensor(network_input, self.device))
        out = {}
        if "disc" in names:
            value = self.disc(x)
            out["disc"] = (np.where(mask, value, 0.0).astype(np.float32), value)
        if "anogan" in names:
            s = self.settings
            found = latent_search(self.networks["generator"], self.networks["discriminator"], x,
                                  _tensor(mask, self.device), iterations=s.latent_iterations, lr=s.latent_lr,
                                  lam=s.latent_lambda, seed=s.latent_seed)  # fmt: skip
            out["anogan"] = (found.residual_map, found.score)
        return out


class _EncodingGAN(RadiographGAN):
    settings_class = EncodingGANSettings
    score_names = ENCODING_SCORES

    @torch.no_grad()
    def reconstruct(self, network_input: np.ndarray) -> np.ndarray:
        """G(mean of E(x)) of one (S, S) input in [0, 1]: (S, S) float32 in [0, 1]."""
        x = to_network(_tensor(network_input, self.device))
        mean, _ = self.networks["encoder"](x)
        return to_intensity(self.networks["generator"](mean))[0, 0].float().cpu().numpy()

    def score_canvas(self, network_input, mask, names):
        out = {}
        if any(name != "disc" for name in names):
            errors = error_maps(network_input, self.reconstruct(network_input), mask)
            pooled, maps = pooled_scores(errors, mask, self.settings.top_k), score_maps(errors)
            out.update({name: (maps[name], pooled[name]) for name in names if name != "disc"})
        if "disc" in names:
            value = self.disc(to_network(_tensor(network_input, self.device)))
            out["disc"] = (np.where(mask, value, 0.0).astype(np.float32), value)
        return out


@register_method("alpha-gan")
class AlphaGAN(_EncodingGAN):
    """α-GAN (Rosca et al. 2017) as Davletshina et al. trained it: reconstruction error, discriminator probability."""

    presets = ALPHA_GAN_PRESETS
    kind = "alpha-gan"


@register_method("bigan")
class BiGAN(_EncodingGAN):
    """BiGAN / ALI as Davletshina et al. trained it: reconstruction error of G(E(x)), joint discriminator
    probability."""

    presets = BIGAN_PRESETS
    kind = "bigan"
