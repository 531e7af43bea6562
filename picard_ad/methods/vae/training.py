"""The VAE's and the DAE's training steps for the generic ``picard_ad.training.Trainer``.

Each iteration draws ``batch_size`` slices from the ``SliceBank`` of the training images (through the
preprocessing chain of the method's settings at fit time, ``chain``, recorded in the checkpoint), augments them
(``data.augmented``) and takes one Adam step on the loss summed over pixels and averaged over the batch:

- VAE: the negative ELBO L_KL + L_rec with one reparameterised z per slice (thesis eq. 3.4);
- DAE: L_rec of the clean slice reconstructed from a copy with Gaussian noise of std ``noise_std`` added.

The validation metric is that loss on a fixed set of held-out slices without augmentation, its random numbers
drawn from a generator seeded with the run's seed, so it changes only with the weights. The learning rate is
multiplied by ``plateau_factor`` when ``plateau_patience`` validations in a row bring no new lowest value (the
thesis' reduction on a plateau; the decision is rank 0's and reaches the other ranks at the next iteration). The
reparameterisation and denoising noise come from torch's global generator, whose state the trainer checkpoints,
so a resumed run continues exactly.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from picard_ad.config import to_dict
from picard_ad.data.patches import ImageEntry
from picard_ad.data.preprocessing import PreprocessingSettings
from picard_ad.methods.vae.config import AutoencoderTrainConfig, CEVAETrainConfig
from picard_ad.methods.vae.data import RAW_CHAIN, SliceBank, Statistics, augmented, context_squares
from picard_ad.methods.vae.losses import cevae_loss_terms, kl_divergence, reconstruction_nll
from picard_ad.methods.vae.networks import FEATURE_MAPS, ConvAutoencoder
from picard_ad.training import distributed
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep

NETWORK = "autoencoder"
"""The network's name in checkpoints (``autoencoder.safetensors``)."""
GRID_SAMPLES = 6
_VALIDATION_STREAM, _AUGMENT, _VALIDATION_NOISE, _VALIDATION_SQUARES = 1_000_000, 7, 8, 9


def feature_maps(config: AutoencoderTrainConfig) -> tuple[int, ...]:
    """The feature maps of the four strided levels: the config's ``feature_maps`` ("16-64-256-1024") where it has
    one (the ceVAE), else the VAE's 16-32-64-256."""
    named = getattr(config, "feature_maps", None)
    return tuple(int(maps) for maps in named.split("-")) if named else FEATURE_MAPS


def build_network(config: AutoencoderTrainConfig, variational: bool) -> ConvAutoencoder:
    """A freshly initialised network of the config's input size, latent size and feature maps."""
    return ConvAutoencoder(config.input_size, config.z_dim, variational, feature_maps(config))


def architecture_facts(config: AutoencoderTrainConfig, variational: bool,
                       chain: PreprocessingSettings = RAW_CHAIN) -> dict[str, Any]:  # fmt: skip
    """What a checkpoint's ``config.json`` says about the network (read by ``picard-ad describe``) and the chain
    its slices went through."""
    return {
        "architecture": "zimmerer-dcgan-vae" if variational else "zimmerer-dcgan-ae",
        "input_size": config.input_size,
        "z_dim": config.z_dim,
        "feature_maps": list(feature_maps(config)),
        "variational": variational,
        "likelihood": config.likelihood,
        "scale": config.scale,
        "intensity_normalisation": f"z-score inside the tissue of each {config.zscore}, clipped to +-{config.clip}",
        "preprocessing": to_dict(chain),
    }


class AutoencoderTraining(TrainingStep):
    """The training shared by the VAE and the DAE; subclasses say whether the code is variational and the loss.

    chain: the preprocessing chain the slices go through (the method's settings at fit time; ``RAW_CHAIN``
    otherwise).
    statistics: the volume z-score statistics of image files written from volume slices (``SliceBank``).
    """

    variational: ClassVar[bool]
    validation_name = "val_loss"

    def __init__(self, config: AutoencoderTrainConfig, device: torch.device, context: DistributedContext,
                 chain: PreprocessingSettings = RAW_CHAIN,
                 statistics: Mapping[Path, Statistics] | None = None):  # fmt: skip
        super().__init__(config, device, context)
        self.chain, self.statistics = chain, statistics
        self.networks = {NETWORK: self.build(config)}
        self.optimizers = {"adam": torch.optim.Adam(self.networks[NETWORK].parameters(), config.lr)}
        self.lr = config.lr
        self.plateau_best: float | None = None
        self.plateau_waited = 0

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        self.preprocessing, self.augmentation = config.preprocessing(), config.augmentation()
        options = dict(min_tissue_fraction=config.min_tissue_fraction, tissue_threshold=config.tissue_threshold,
                       seed=config.seed, source=source, chain=self.chain, zscore=config.zscore,
                       statistics=self.statistics)  # fmt: skip
        self.bank = SliceBank(train_images, config.input_size, stream=self.context.rank, **options)
        held_out = SliceBank(val_images, config.input_size, stream=_VALIDATION_STREAM, **options)
        inputs = held_out.spread_batch(config.val_slices).network_inputs(self.preprocessing)
        self.validation_inputs = torch.from_numpy(inputs)[:, None]
        self.augment_rng = np.random.default_rng((config.seed, _AUGMENT, self.context.rank))

    @classmethod
    def build(cls, config: AutoencoderTrainConfig) -> torch.nn.Module:
        """A freshly initialised network of this training (what the method loads its checkpoint into)."""
        return build_network(config, cls.variational)

    # -- one iteration -------------------------------------------------------------------------------------------

    @abstractmethod
    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The loss and its terms per sample, (N,) float32 nats each; x (N, 1, S, S) on the device."""

    def _noise(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=self.device if generator is None else generator.device)

    def _follow_rank0_lr(self, iteration: int) -> None:
        if self.context.enabled and iteration > 1 and (iteration - 1) % self.config.validate_every == 0:
            self.lr = float(distributed.gather_json(self.lr, self.context, self.device)[0])

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        self._follow_rank0_lr(iteration)
        optimizer = self.optimizers["adam"]
        for group in optimizer.param_groups:
            group["lr"] = self.lr
        drawn = self.bank.draw_batch(self.config.batch_size)
        batch = np.stack([augmented(image, self.augment_rng, self.augmentation, self.preprocessing, mask, statistics)
                          for image, mask, statistics in zip(drawn.images, drawn.masks, drawn.statistics)])  # fmt: skip
        terms = self.loss_terms(self.to_device(torch.from_numpy(batch)[:, None]))
        loss = terms["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.networks[NETWORK], self.context)
        optimizer.step()
        return {name: value.detach().mean() for name, value in terms.items()}

    # -- validation and samples ----------------------------------------------------------------------------------

    @torch.no_grad()
    def _held_out(self, fn) -> list[torch.Tensor]:
        network = self.networks[NETWORK]
        network.eval()
        try:
            generator = torch.Generator(self.device).manual_seed(self.config.seed + _VALIDATION_NOISE)
            chunk = self.config.batch_size
            return [fn(self.to_device(self.validation_inputs[start : start + chunk]), generator)
                    for start in range(0, len(self.validation_inputs), chunk)]  # fmt: skip
        finally:
            network.train()

    def validate(self) -> float:
        """The mean held-out loss per slice, nats (L_KL + L_rec for the VAE, L_rec for the DAE); also steps the
        plateau rule."""
        losses = self._held_out(lambda x, generator: self.loss_terms(x, generator)["loss"].cpu())
        value = float(torch.cat(losses).mean())
        if self.plateau_best is None or value < self.plateau_best:
            self.plateau_best, self.plateau_waited = value, 0
        else:
            self.plateau_waited += 1
            if self.plateau_waited >= self.config.plateau_patience:
                self.lr *= self.config.plateau_factor
                self.plateau_waited = 0
        return value

    def sample_grid(self) -> SampleGrid:
        """Held-out inputs, their reconstructions (posterior mean) and |error|, z-scores shown over [-clip, clip]."""
        network = self.networks[NETWORK]
        inputs = self.validation_inputs[:GRID_SAMPLES]
        outputs = self._held_out(lambda x, _: network.decode(network.encode(x)[0]).float().cpu())
        reconstructions = torch.cat(outputs)[:GRID_SAMPLES]
        clip = self.config.clip
        shown = [((images[:, 0] + clip) / (2 * clip)).clamp(0, 1).numpy() for images in (inputs, reconstructions)]
        error = ((inputs - reconstructions).abs()[:, 0] / clip).clamp(0, 1).numpy()
        return SampleGrid(side_by_side(*shown, error), ("input", "reconstruction", "|error|"))

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict(), "augment": self.augment_rng.bit_generator.state, "lr": self.lr,
                "plateau_best": self.plateau_best, "plateau_waited": self.plateau_waited}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])
        self.augment_rng.bit_generator.state = state["augment"]
        self.lr, self.plateau_best, self.plateau_waited = state["lr"], state["plateau_best"], state["plateau_waited"]

    def describe(self) -> dict[str, Any]:
        return architecture_facts(self.config, self.variational, self.chain)

    @property
    def excluded_images(self) -> list[Path]:
        return self.bank.excluded_images


class VAETraining(AutoencoderTraining):
    """The VAE: L_KL + L_rec with one reparameterised sample of z."""

    variational = True
    loss_names = ("loss", "kl", "rec")
    curve_panels = (
        CurvePanel("negative ELBO", (("loss", "L_KL + L_rec (train)"),), log_scale=True, with_validation=True),
        CurvePanel("terms", (("kl", "L_KL"), ("rec", "L_rec"))),
    )

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        network = self.networks[NETWORK]
        with self.autocast():
            mean, log_sigma = network.encode(x)
            mean, log_sigma = mean.float(), log_sigma.float()
            z = mean + log_sigma.exp() * self._noise(mean.shape, generator)
            reconstruction = network.decode(z).float()
        kl = kl_divergence(mean, log_sigma)
        rec = reconstruction_nll(x.float(), reconstruction, self.config.likelihood, self.config.scale)
        return {"loss": kl + rec, "kl": kl, "rec": rec}


class DAETraining(AutoencoderTraining):
    """The DAE: L_rec of the clean slice from a noisy copy."""

    variational = False
    loss_names = ("loss",)
    curve_panels = (CurvePanel("reconstruction", (("loss", "L_rec (train)"),), log_scale=True, with_validation=True),)

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        network = self.networks[NETWORK]
        noisy = x + self.config.noise_std * self._noise(x.shape, generator)
        with self.autocast():
            reconstruction = network.decode(network.encode(noisy)[0]).float()
        return {"loss": reconstruction_nll(x.float(), reconstruction, self.config.likelihood, self.config.scale)}


class CEVAETraining(VAETraining):
    """The ceVAE: the VAE's loss plus ce_factor times the context-encoding term (``losses.cevae_loss_terms``).

    The squares of the context-encoding input are drawn on the CPU from torch's global generator in training
    (checkpointed by the trainer) and from one reseeded at every validation, so the held-out loss changes only
    with the weights.
    """

    config: CEVAETrainConfig
    loss_names = ("loss", "kl", "rec", "ce")
    curve_panels = (
        CurvePanel("loss", (("loss", "L_KL + L_rec + factor L_CE (train)"),), log_scale=True, with_validation=True),
        CurvePanel("terms", (("kl", "L_KL"), ("rec", "L_rec"), ("ce", "L_CE"))),
    )

    def validate(self) -> float:
        self._square_generator = torch.Generator().manual_seed(self.config.seed + _VALIDATION_SQUARES)
        try:
            return super().validate()
        finally:
            self._square_generator = None

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        config = self.config
        squares = getattr(self, "_square_generator", None) if generator is not None else None
        masked, _ = context_squares(x.float().cpu(), config.max_squares, config.max_square_fraction, squares)
        network = self.networks[NETWORK]
        noise = self._noise((len(x), network.z_dim), generator)
        with self.autocast():
            return cevae_loss_terms(network, x, masked.to(x.device, x.dtype), noise, config.likelihood, config.scale,
                                    config.ce_factor)  # fmt: skip
