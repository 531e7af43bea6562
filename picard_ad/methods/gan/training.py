"""The GANs' training steps for the generic ``picard_ad.training.Trainer``.

The data are the cae's (``picard_ad.methods.cae.data``): normal images through the preprocessing chain once, held
in memory at the input size, drawn with replacement and augmented per step, padded onto the square input and taken
to [-1, 1] (background and padding -1). Every random number a step draws (images, augmentation, codes, soft labels,
reparametrisation noise) comes from one generator saved with the checkpoint, so a resumed run equals an
uninterrupted one. Each step updates the discriminator(s) once on the detached fakes, then the generator (and
encoder) once against the updated, frozen discriminator(s).

- ``DCGANTraining``: the non-saturating GAN loss with soft labels (real targets U(1 - delta, 1), fake U(0, delta);
  the generator aims at 1). Validation: the mean ``disc`` score 1 - D(x) of held-out normal images.
- ``AlphaGANTraining`` (Rosca et al. 2017): hinge losses for D (real x against G(E(x)) and G(z)) and C (prior z
  against E(x)), the generator and encoder minimising w * masked L1(G(E(x)), x) - mean D(G(E(x))) / 2 -
  mean D(G(z)) / 2 - mean C(E(x)). Validation: held-out masked MSE of G(E(x)).
- ``BiGANTraining`` (Donahue et al. 2017): hinge loss for D on pairs (x, E(x)) real against (G(z), z) fake; G and
  E minimise mean D(G(z), z) - mean D(x, E(x)) negated as in the hinge generator loss. Validation: held-out masked
  MSE of G(E(x)).

E gives a mean and log variance; training reconstructs from a sample of that Gaussian, scoring from the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from picard_ad.config import to_dict
from picard_ad.data.patches import ImageEntry
from picard_ad.data.preprocessing import PreprocessingSettings
from picard_ad.errors import InputError
from picard_ad.methods.cae.data import load_training_images, to_canvas
from picard_ad.methods.cae.training import augmented_batch, stack
from picard_ad.methods.gan.config import GANTrainConfig
from picard_ad.methods.gan.networks import (
    CodeDiscriminator,
    Encoder,
    Generator,
    ImageDiscriminator,
    JointDiscriminator,
    top_channels,
)
from picard_ad.training import distributed
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep, frozen

GRID_SAMPLES = 6
_STREAM = 11  # stream of the step's generator, derived from config.seed
ATTENTION_SIDES = (8, 4)  # encoder blocks marked † in the paper's tables


def to_network(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] intensities -> the networks' [-1, 1]."""
    return images * 2 - 1


def to_intensity(images: torch.Tensor) -> torch.Tensor:
    """The networks' [-1, 1] -> [0, 1] intensities."""
    return (images + 1) / 2


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the mask's pixels (a batch, all (N, 1, S, S)): scalar."""
    return ((a - b).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over the mask's pixels: scalar."""
    return ((a - b) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def build_networks(kind: str, config: GANTrainConfig) -> dict[str, nn.Module]:
    """Freshly initialised networks of GAN ``kind`` (dcgan, alpha-gan, bigan), by their checkpoint names."""
    size, z_dim = config.input_size, config.z_dim
    attention = ATTENTION_SIDES if config.self_attention else ()
    if kind == "dcgan":
        features = 2 * top_channels(size, config.discriminator_width)  # 1 x 1 x 512 at the paper's 4 x 4 x 256
        return {
            "generator": Generator(z_dim, size, config.generator_width, batch_norm=False),
            "discriminator": ImageDiscriminator(size, config.discriminator_width, features,
                                                minibatch_kernels=config.minibatch_kernels,
                                                kernel_dim=config.minibatch_kernel_dim,
                                                batch_size=config.batch_size),
        }  # fmt: skip
    networks: dict[str, nn.Module] = {
        "generator": Generator(z_dim, size, config.generator_width, batch_norm=True),
        "encoder": Encoder(size, config.generator_width, z_dim, attention),
    }
    if kind == "alpha-gan":
        networks["discriminator"] = ImageDiscriminator(
            size, config.discriminator_width, top_channels(size, config.discriminator_width),
            minibatch_kernels=config.minibatch_kernels, kernel_dim=config.minibatch_kernel_dim,
            batch_size=config.batch_size, attention_sides=tuple(side for side in attention if side == 8))
        networks["code_discriminator"] = CodeDiscriminator(z_dim)
    elif kind == "bigan":
        networks["discriminator"] = JointDiscriminator(size, config.discriminator_width, z_dim)
    else:
        raise ValueError(f"unknown GAN {kind!r}")
    return networks


class GANTraining(TrainingStep):
    """What the three GANs share: prepared data, one random generator, validation by reconstruction or D.

    preprocessing: the chain the images go through (the method's settings at fit time; defaults otherwise).
    """

    kind: ClassVar[str]
    curve_panels = ()

    def __init__(self, config: GANTrainConfig, device: torch.device, context: DistributedContext,
                 preprocessing: PreprocessingSettings | None = None):  # fmt: skip
        super().__init__(config, device, context)
        self.preprocessing = preprocessing or PreprocessingSettings()
        self.networks = build_networks(self.kind, config)

    def _adam(self, modules: Sequence[nn.Module], lr: float) -> torch.optim.Adam:
        return torch.optim.Adam([p for m in modules for p in m.parameters()], lr=lr, betas=(self.config.beta1, 0.999))

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        before = config.equalization_order == "before-augmentation"
        self.rng = np.random.default_rng((config.seed, _STREAM, self.context.rank))
        self.train_set = load_training_images(train_images, self.preprocessing, config.input_size, before)
        if not self.train_set:
            raise InputError(source, "holds no training image")
        same = val_images is train_images and before
        validation = self.train_set if same else load_training_images(val_images, self.preprocessing,
                                                                      config.input_size, True)  # fmt: skip
        self.validation = stack([to_canvas(item, config.input_size) for item in validation])
        self.grid_codes = torch.from_numpy(
            np.random.default_rng((config.seed, _STREAM + 1)).standard_normal((GRID_SAMPLES, config.z_dim))
        ).float()

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch on the device: images (n, 1, S, S) in [-1, 1] and masks (n, 1, S, S) 0/1."""
        images, masks = augmented_batch(self.train_set, self.rng, n, self.config, self.preprocessing)
        return self.to_device(to_network(images)), masks.to(self.device)

    def noise(self, n: int) -> torch.Tensor:
        """(n, z_dim) float32 standard normal draws of the step's generator, on the device."""
        return torch.from_numpy(self.rng.standard_normal((n, self.config.z_dim), dtype=np.float32)).to(self.device)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a sample of E's Gaussian, its mean) of network-range images."""
        mean, log_variance = self.networks["encoder"](images)
        return mean + torch.exp(0.5 * log_variance) * self.noise(len(images)), mean

    def step_optimizer(self, name: str, loss: torch.Tensor, *modules: nn.Module) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for module in modules:
            distributed.average_gradients(module, self.context)
        optimizer.step()

    @torch.no_grad()
    def _evaluated(self, fn):
        modules = list(self.networks.values())
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            return fn()
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)

    def reconstructions(self, count: int | None = None) -> torch.Tensor:
        """G(mean of E(x)) of the held-out images, [0, 1], (N, 1, S, S) on the CPU."""
        images = self.validation[0][:count]

        def run():
            outputs = []
            for start in range(0, len(images), self.config.batch_size):
                chunk = self.to_device(to_network(images[start : start + self.config.batch_size]))
                mean, _ = self.networks["encoder"](chunk)
                outputs.append(to_intensity(self.networks["generator"](mean)).cpu())
            return torch.cat(outputs)

        return self._evaluated(run)

    def generated(self) -> np.ndarray:
        """G of the fixed grid codes, [0, 1], (GRID_SAMPLES, S, S)."""
        codes = self.grid_codes.to(self.device)
        return self._evaluated(lambda: to_intensity(self.networks["generator"](codes))[:, 0].cpu().numpy())

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def describe(self) -> dict[str, Any]:
        config = self.config
        return {"architecture": f"davletshina-{self.kind}", "in_channels": 1, "input_size": config.input_size,
                "z_dim": config.z_dim, "intensity_normalisation": "chain output in [0, 1], then x * 2 - 1",
                "preprocessing": to_dict(self.preprocessing)}  # fmt: skip


class DCGANTraining(GANTraining):
    """DCGAN with minibatch discrimination, soft labels and spectral norm (no batch norm)."""

    kind = "dcgan"
    loss_names = ("d_loss", "g_loss", "d_real", "d_fake")
    validation_name = "val_disc"
    curve_panels = (CurvePanel("losses", (("d_loss", "discriminator"), ("g_loss", "generator"))),
                    CurvePanel("D(x) probability", (("d_real", "real"), ("d_fake", "fake")), with_validation=True))

    def __init__(self, config, device, context, preprocessing=None):
        super().__init__(config, device, context, preprocessing)
        self.optimizers = {"generator": self._adam([self.networks["generator"]], config.generator_lr),
                           "discriminator": self._adam([self.networks["discriminator"]], config.discriminator_lr)}

    def _targets(self, n: int, real: bool) -> torch.Tensor:
        delta = self.config.soft_delta
        values = self.rng.uniform(1 - delta, 1, n) if real else self.rng.uniform(0, delta, n)
        return torch.from_numpy(values.astype(np.float32)).to(self.device)

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        generator, discriminator = self.networks["generator"], self.networks["discriminator"]
        n = self.config.batch_size
        real, _ = self.draw(n)
        discriminator.remember(real)
        with self.autocast():
            fake = generator(self.noise(n))
            real_logits, fake_logits = discriminator(real).float(), discriminator(fake.detach()).float()
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, self._targets(n, True))
                      + F.binary_cross_entropy_with_logits(fake_logits, self._targets(n, False)))  # fmt: skip
        self.step_optimizer("discriminator", d_loss, discriminator)
        with frozen(discriminator):
            with self.autocast():
                g_logits = discriminator(fake).float()
                g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
            self.step_optimizer("generator", g_loss, generator)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach()}  # fmt: skip

    def validate(self) -> float:
        """Mean disc score 1 - D(x) of the held-out normal images (each scored alone against the reference)."""
        images = self.validation[0]
        discriminator = self.networks["discriminator"]

        def run():
            logits = [discriminator(self.to_device(to_network(images[i : i + 1])), against_reference=True)
                      for i in range(len(images))]  # fmt: skip
            return float(1 - torch.sigmoid(torch.cat(logits)).mean())

        return self._evaluated(run)

    def sample_grid(self) -> SampleGrid:
        real = self.validation[0][:GRID_SAMPLES, 0].numpy()
        fake = self.generated()[: len(real)]
        return SampleGrid(side_by_side(real, fake), ("held-out real", "generated"))


class _EncodingTraining(GANTraining):
    """α-GAN and BiGAN: an encoder beside the generator, validated by reconstruction."""

    validation_name = "val_mse"

    def validate(self) -> float:
        """Masked MSE of G(E(x)) on the held-out normal images, [0, 1] intensity units squared."""
        images, masks = self.validation
        return float(masked_mse(self.reconstructions(), images, masks))

    def sample_grid(self) -> SampleGrid:
        images, masks = (t[:GRID_SAMPLES, 0].numpy() for t in self.validation)
        reconstruction = self.reconstructions(GRID_SAMPLES)[:, 0].numpy()
        columns = (images, reconstruction, np.abs(images - reconstruction) * masks, self.generated()[: len(images)])
        return SampleGrid(side_by_side(*columns), ("input", "G(E(x))", "error", "G(z)"))


class AlphaGANTraining(_EncodingTraining):
    """α-GAN: encoder, generator, image discriminator (minibatch discrimination) and code discriminator."""

    kind = "alpha-gan"
    loss_names = ("d_loss", "c_loss", "g_loss", "reconstruction")
    curve_panels = (CurvePanel("losses", (("d_loss", "D hinge"), ("c_loss", "C hinge"), ("g_loss", "G and E"))),
                    CurvePanel("reconstruction", (("reconstruction", "masked L1 (train)"),), log_scale=True,
                               with_validation=True))  # fmt: skip

    def __init__(self, config, device, context, preprocessing=None):
        super().__init__(config, device, context, preprocessing)
        nets = self.networks
        self.optimizers = {
            "generator": self._adam([nets["generator"], nets["encoder"]], config.generator_lr),
            "discriminators": self._adam([nets["discriminator"], nets["code_discriminator"]], config.discriminator_lr),
        }

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        nets = self.networks
        generator, discriminator, code = nets["generator"], nets["discriminator"], nets["code_discriminator"]
        n = self.config.batch_size
        real, mask = self.draw(n)
        discriminator.remember(real)
        with self.autocast():
            z_hat, _ = self.encode(real)
            z = self.noise(n)
            reconstruction, generated = generator(z_hat).float(), generator(z).float()
            d_loss = (F.relu(1 - discriminator(real).float()).mean()
                      + 0.5 * F.relu(1 + discriminator(reconstruction.detach()).float()).mean()
                      + 0.5 * F.relu(1 + discriminator(generated.detach()).float()).mean())  # fmt: skip
            c_loss = F.relu(1 - code(z).float()).mean() + F.relu(1 + code(z_hat.detach()).float()).mean()
        self.step_optimizer("discriminators", d_loss + c_loss, discriminator, code)
        with frozen(discriminator, code):
            with self.autocast():
                l1 = masked_l1(to_intensity(reconstruction), to_intensity(real), mask)
                adversarial = -0.5 * (discriminator(reconstruction).float().mean()
                                      + discriminator(generated).float().mean())  # fmt: skip
                g_loss = self.config.reconstruction_weight * l1 + adversarial - code(z_hat).float().mean()
            self.step_optimizer("generator", g_loss, generator, nets["encoder"])
        return {"d_loss": d_loss.detach(), "c_loss": c_loss.detach(), "g_loss": g_loss.detach(),
                "reconstruction": l1.detach()}  # fmt: skip


class BiGANTraining(_EncodingTraining):
    """BiGAN / ALI: encoder, generator and a discriminator of (image, code) pairs."""

    kind = "bigan"
    loss_names = ("d_loss", "g_loss")
    curve_panels = (CurvePanel("losses", (("d_loss", "D hinge"), ("g_loss", "G and E"))),)

    def __init__(self, config, device, context, preprocessing=None):
        super().__init__(config, device, context, preprocessing)
        nets = self.networks
        self.optimizers = {"generator": self._adam([nets["generator"], nets["encoder"]], config.generator_lr),
                           "discriminator": self._adam([nets["discriminator"]], config.discriminator_lr)}

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        nets = self.networks
        generator, discriminator = nets["generator"], nets["discriminator"]
        n = self.config.batch_size
        real, _ = self.draw(n)
        with self.autocast():
            z_hat, _ = self.encode(real)
            z = self.noise(n)
            generated = generator(z)
            d_loss = (F.relu(1 - discriminator(real, z_hat.detach()).float()).mean()
                      + F.relu(1 + discriminator(generated.detach(), z).float()).mean())  # fmt: skip
        self.step_optimizer("discriminator", d_loss, discriminator)
        with frozen(discriminator):
            with self.autocast():
                g_loss = discriminator(real, z_hat).float().mean() - discriminator(generated, z).float().mean()
            self.step_optimizer("generator", g_loss, generator, nets["encoder"])
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


TRAINING = {"dcgan": DCGANTraining, "alpha-gan": AlphaGANTraining, "bigan": BiGANTraining}
