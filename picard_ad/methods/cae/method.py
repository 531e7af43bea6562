"""The convolutional autoencoder of Davletshina et al. (2020) behind the method interface (method "cae").

``fit`` trains the autoencoder with the generic trainer (``training``) on the normal images prepared by the
preprocessing chain of the settings in effect (``CAESettings``); ``heatmap`` prepares the checked image the same
way (carrier crop and deskew, foreground mask), scores it at the network's input size (``resized_heatmap``: aspect
kept, padded; then equalized on its mask as in training), and maps each error map back through the resize and the
crop onto the image's pixels (0 outside the carrier box and off the mask). The image scores (MSE, L1 and their
top-k means) are computed at the input size on the mask, as the paper defines them, not from the resized maps.
The run folder's checkpoint (``settings.checkpoint``: best by held-out masked MSE by default) is the fitted state.
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from picard_ad.methods.cae.config import PRESETS, CAETrainConfig
from picard_ad.methods.cae.scores import SCORE_NAMES, error_maps, score_maps
from picard_ad.methods.cae.scores import image_scores as pooled_scores
from picard_ad.methods.cae.settings import CAESettings
from picard_ad.methods.cae.training import NETWORK, CAETraining, build_network
from picard_ad.training import Trainer, load_network_weights, network_file
from picard_ad.training.checkpoint import check_resumed_preprocessing, copy_checkpoint

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext


@register_method("cae")
class CAE(AnomalyMethod):
    """Convolutional autoencoder (Davletshina et al. 2020): masked reconstruction error of a preprocessed image."""

    settings_class = CAESettings
    train_config_class = CAETrainConfig
    score_names = SCORE_NAMES
    presets = PRESETS
    default_preset = "paper"

    def __init__(self, train: CAETrainConfig | None = None, settings: CAESettings | None = None):
        super().__init__(train, settings)
        self.network: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.checkpoint: Path | None = None  # the checkpoint folder the network was loaded from
        self.model: dict[str, Any] = {}
        self._last_scores: tuple[str, dict[str, float]] | None = None  # image scores of the last image scored

    @classmethod
    def describe_architecture(cls, train: CAETrainConfig) -> list[str]:
        network = build_network(train)
        millions = sum(p.numel() for p in network.parameters()) / 1e6
        rows, cols, channels = network.bottleneck_shape(train.input_size)
        widths = "/".join(str(train.width * 2**level) for level in range(train.levels + 1))
        return [
            (
                f"encoder: 3x3 conv to {train.width} channels, {train.levels - 1} x (4x4 stride-2 conv, 3x3 conv), "
                f"a 4x4 stride-2 conv; channels {widths}; batch norm and ReLU after every conv"
            ),
            f"bottleneck: {rows} x {cols} x {channels} at {train.input_size} px input",
            (
                f"decoder: {train.levels} x (4x4 stride-2 transposed conv, batch norm, ReLU), 3x3 conv to 1 channel, "
                f"sigmoid: {millions:.2f} M parameters in all"
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
            raise ConfigError("method 'cae' trains a network: give fit a run folder (run_dir=...)")
        chain = self.settings.preprocessing_settings()
        if resume:
            check_resumed_preprocessing(run_dir, to_dict(chain))
        files = images.files(run_dir / "normal_images")
        step = functools.partial(CAETraining, preprocessing=chain)
        trainer = Trainer("cae", self.train_config, step, files, run_dir, resume=resume, context=context,
                          progress=progress, source=images.source)  # fmt: skip
        self.fit_report = trainer.train().summary()
        if context is not None and not context.is_main:
            return
        self._load_network(run_dir)

    # -- state ------------------------------------------------------------------------------------------------------

    def _load_network(self, directory: Path) -> None:
        """The autoencoder of the run's ``settings.checkpoint``, in eval mode on the settings' device."""
        checkpoint, info, config = self.read_checkpoint(directory, self.settings.checkpoint)
        network = build_network(config)
        load_network_weights(network, checkpoint / network_file(NETWORK))
        self.device = resolve_device(self.settings.device)
        self.network = network.eval().to(self.device)
        self.checkpoint = checkpoint
        self.model = {"checkpoint": str(checkpoint.resolve()), "step": info.get("step"),
                      "val_mse": info.get("val_mse"), "data_fingerprint": info.get("data_fingerprint"),
                      "trained_preprocessing": info.get("preprocessing")}  # fmt: skip
        self._last_scores = None

    def read_state(self, directory: Path) -> None:
        """Load the autoencoder of ``directory``'s ``best`` (or ``last``) checkpoint."""
        self._load_network(directory)

    def write_state(self, directory: Path) -> None:
        """The scored checkpoint, copied unless it lies in ``directory`` already."""
        target = directory / self.settings.checkpoint
        copy_checkpoint(self.checkpoint, target)

    def state_files(self) -> list[Path]:
        if self.checkpoint is None:
            raise ConfigError("a CAE fit has no state files until it is trained or loaded")
        return [self.checkpoint / network_file(NETWORK)]

    def model_record(self) -> dict[str, Any]:
        return {**super().model_record(), **self.model}

    # -- scoring ----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, network_input: np.ndarray) -> np.ndarray:
        """The autoencoder's reconstruction of one (S, S) float32 input in [0, 1]: (S, S) float32."""
        tensor = torch.from_numpy(np.ascontiguousarray(network_input, dtype=np.float32))[None, None]
        return self.network(tensor.to(self.device))[0, 0].float().cpu().numpy()

    def _score(self, image: np.ndarray, names: tuple[str, ...]) -> tuple[dict[str, Heatmap], dict[str, float]]:
        """The heatmaps of scores ``names`` on the image's pixels, and every image score, of a checked image."""
        started = time.perf_counter()
        settings, size = self.settings, self.train_config.input_size
        prepared = prepare(image, settings)
        placement = Placement.of(prepared.image.shape, size)
        prepared_at = time.perf_counter()
        found: dict[str, dict[str, float]] = {}

        def scorer(canvas: np.ndarray) -> dict[str, np.ndarray]:
            mask = network_mask(prepared, placement)
            network_input = equalize_canvas(canvas, mask, placement, settings)
            errors = error_maps(network_input, self.reconstruct(network_input), mask)
            found["scores"] = pooled_scores(errors, mask, settings.top_k)
            return {name: values for name, values in score_maps(errors).items() if name in names}

        maps = resized_heatmap(prepared.image, scorer, input_size=size)
        resolved = {**to_dict(settings), "input_size": size, "device": str(self.device),
                    "carrier_box": prepared.carrier_record()}  # fmt: skip
        heatmaps = {}
        for name, heatmap in maps.items():
            array = prepared.to_source(heatmap.array)
            timings = {"prepare_s": round(prepared_at - started, 4), **heatmap.timings,
                       "total_s": round(time.perf_counter() - started, 4)}  # fmt: skip
            heatmaps[name] = Heatmap(array=array, score_name=name, settings=resolved, timings=timings)
        self._last_scores = (_fingerprint(image), found["scores"])
        return heatmaps, found["scores"]

    def compute_heatmaps(
        self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
        origin: SliceOrigin | None,
    ) -> dict[str, Heatmap]:  # fmt: skip
        return self._score(image, scores)[0]

    def image_scores(self, image: np.ndarray) -> dict[str, float]:
        """Every image score of an image (H, W) float in [0, 1]: {score name: value}, at the network's input size
        on the mask (the last image's are reused)."""
        self._require_fitted("score an image")
        pixels = check_image(image, f"method '{self.name}'")
        if self._last_scores is not None and self._last_scores[0] == _fingerprint(pixels):
            return dict(self._last_scores[1])
        return dict(self._score(pixels, ())[1])

    def image_score(
        self, image: np.ndarray, score_map: np.ndarray | None = None, tissue: np.ndarray | None = None,
        origin: SliceOrigin | None = None,
    ) -> float:  # fmt: skip
        """The settings' image score (Davletshina et al.): the mean, or top-k mean, of the squared or absolute
        reconstruction error over the mask at the network's input size. ``score_map``, ``tissue`` and ``origin``
        are not used: the paper's scores are defined on the network input, where the resized maps no longer are."""
        return self.image_scores(image)[self.settings.score]


def _fingerprint(image: np.ndarray) -> str:
    """A digest of an image's shape and pixels (which image the cached scores belong to)."""
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    return f"{pixels.shape}:{hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest()}"
