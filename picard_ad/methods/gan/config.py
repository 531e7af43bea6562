"""How Davletshina et al.'s GANs train: one training config for the three (fields a GAN does not use say so) and
each method's presets (paper: appendix "Training Details").

Paper: DCGAN batch 80 at 512 px, 500 epochs of 2,554 normal hands (32 steps an epoch: 16,000 steps), z_dim 2,048,
Adam at 1e-3 (G) and 1e-5 (D), soft labels with delta 0.01, spectral norm, minibatch discrimination. BiGAN and
α-GAN: batch 16 at 128 px, 500 epochs (160 steps an epoch: 80,000 steps), z_dim 100, Adam at 1e-3 (G, E) and
5e-6 (D, C), hinge loss; α-GAN with minibatch discrimination. All use the "default" augmentation (flips). Adam's
beta1 is not given: 0.5 (DCGAN's). The α-GAN reconstruction weight is not given either: ours.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from picard_ad.config import setting
from picard_ad.methods.gan.networks import levels_of
from picard_ad.training.config import RunSettings


@dataclass(frozen=True)
class GANTrainConfig(RunSettings):
    """A GAN training run. ``steps`` counts discriminator-and-generator steps of ``batch_size`` real images."""

    steps: int = setting(16_000, "training steps (one discriminator and one generator update each)", ge=1,
                         run_control=True)  # fmt: skip
    batch_size: int = setting(80, "real images per step and process", ge=2)
    input_size: int = setting(512, "side of the square images, a power of two (aspect kept, padded)", ge=8)
    z_dim: int = setting(2048, "length of the latent code z ~ N(0, I)", ge=1)
    generator_width: int = setting(16, "generator channels next to the image (doubling towards 4 x 4); the "
                                   "encoder's too", ge=1)  # fmt: skip
    discriminator_width: int = setting(4, "discriminator channels next to the image (doubling towards 4 x 4)", ge=1)
    generator_lr: float = setting(1e-3, "Adam learning rate of the generator (and encoder)", gt=0.0)
    discriminator_lr: float = setting(1e-5, "Adam learning rate of the discriminator(s)", gt=0.0)
    beta1: float = setting(0.5, "Adam beta1 of every optimizer (beta2 0.999)", ge=0.0, lt=1.0)
    soft_delta: float = setting(0.01, "dcgan: soft labels, real targets U(1 - delta, 1) and fake U(0, delta)",
                                ge=0.0, lt=0.5)  # fmt: skip
    minibatch_kernels: int = setting(16, "minibatch discrimination kernels of the image discriminator (dcgan, "
                                     "alpha-gan; 0: none)", ge=0)  # fmt: skip
    minibatch_kernel_dim: int = setting(16, "dimension of each minibatch discrimination kernel", ge=1)
    reconstruction_weight: float = setting(10.0, "alpha-gan: weight of the masked L1 reconstruction loss of "
                                           "G(E(x)) beside the adversarial losses", ge=0.0)  # fmt: skip
    self_attention: bool = setting(True, "self-attention after the encoder blocks at 8 and 4 px and the alpha-gan "
                                   "discriminator block at 8 px (the paper's † layers)")  # fmt: skip
    augmentation: Literal["advanced", "default", "none"] = setting(
        "default", "the paper's augmentations (the GANs used default: flips only); see the cae's"
    )
    equalization_order: Literal["before-augmentation", "after-augmentation"] = setting(
        "before-augmentation", "whether the settings' histogram equalization comes before or after augmentation"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        levels_of(self.input_size)


_SMALL = GANTrainConfig(
    # A 2-core CPU in a few minutes: 64 px, Adam 2e-4 for both players (the paper's 1e-5 / 5e-6 for D need its
    # tens of thousands of steps).
    steps=1000, batch_size=16, input_size=64, z_dim=64, generator_width=16, discriminator_width=16,
    generator_lr=2e-4, discriminator_lr=2e-4, val_images=2, validate_every=100, checkpoint_every=200,
    log_every=20, sample_every=200, num_workers=0,
)  # fmt: skip
_TINY = GANTrainConfig(
    # seconds, for tests: learns next to nothing
    steps=4, batch_size=4, input_size=32, z_dim=8, generator_width=4, discriminator_width=4, generator_lr=1e-3,
    discriminator_lr=1e-3, minibatch_kernels=4, minibatch_kernel_dim=4, validate_every=2, checkpoint_every=2,
    log_every=2, sample_every=4, num_workers=0, tensorboard=False,
)  # fmt: skip
_ENCODING = dict(batch_size=16, input_size=128, z_dim=100, generator_width=64, discriminator_width=64,
                 steps=80_000, generator_lr=1e-3, discriminator_lr=5e-6, val_images=64, validate_every=800,
                 checkpoint_every=4000, sample_every=4000)  # fmt: skip

DCGAN_PRESETS: dict[str, GANTrainConfig] = {
    "paper": GANTrainConfig(val_images=64, validate_every=800, checkpoint_every=2000, sample_every=2000),
    # the paper's slow discriminator, less slow: with equal rates D won at once and G collapsed to a grid pattern
    "small": replace(_SMALL, generator_lr=1e-3, discriminator_lr=5e-5),
    "tiny": _TINY,
}
ALPHA_GAN_PRESETS: dict[str, GANTrainConfig] = {
    "paper": GANTrainConfig(**_ENCODING),
    "small": replace(_SMALL, reconstruction_weight=10.0),
    "tiny": _TINY,
}
BIGAN_PRESETS: dict[str, GANTrainConfig] = {
    "paper": GANTrainConfig(**_ENCODING, minibatch_kernels=0),
    "small": replace(_SMALL, minibatch_kernels=0),
    "tiny": replace(_TINY, minibatch_kernels=0),
}
