"""How PICARD's completion network trains: its training config (defaults: the paper's) and named presets."""

from __future__ import annotations

from dataclasses import dataclass

from picard_ad.config import setting
from picard_ad.errors import ConfigError
from picard_ad.training.config import RunSettings

CRITIC_DOWNSAMPLING = 16  # the critics downsample 16-fold: the global one sees the patch, the local one the hole box


@dataclass(frozen=True)
class PicardTrainConfig(RunSettings):
    """Everything that defines a completion-network training run; the defaults are the paper's settings.

    Intensities are in [0, 1] as read by ``picard_ad.io``; the networks see ``x * 2 - 1`` in [-1, 1]. Lengths are in
    pixels. ``steps`` counts critic iterations (one batch each); the generator steps on every ``n_critic``-th
    iteration, as in the reference trainer. Square patches hold a square hole box of side ``hole_size`` placed
    anywhere inside; each side of the hole then shrinks by a random 0..``hole_max_shrink`` px per sample.
    """

    steps: int = setting(130_000, "critic iterations (the generator steps every n_critic-th)", ge=1, run_control=True)
    batch_size: int = setting(55, "patches per iteration and process", ge=1)
    # networks
    in_channels: int = setting(1, "image channels the networks take (grey images are repeated)", ge=1)
    cnum: int = setting(32, "base channel width of the generator and critics", ge=1)
    # geometry
    patch_size: int = setting(256, "training patch side, px (a multiple of 16)", ge=16)
    hole_size: int = setting(128, "side of the hole box, px (a multiple of 16)", ge=16)
    hole_max_shrink: int = setting(16, "each side of a hole shrinks by a random 0..this px", ge=0)
    # patch sampling
    tissue_threshold: float = setting(0.005, "intensity at or above which a pixel counts as tissue", ge=0.0, le=1.0)
    min_tissue_fraction: float = setting(
        0.0, "fraction of a patch that must be tissue (0: one pixel, as the reference)", ge=0.0, le=1.0
    )
    flips: bool = setting(False, "random horizontal and vertical flips of the patches")
    image_pool_size: int = setting(16, "decoded images open at once; each patch comes from one of them", ge=1)
    patches_per_visit: int = setting(4, "patches cut from a decoded image before it is replaced", ge=1)
    val_patches: int = setting(64, "held-out patches with centred holes that give the validation L1", ge=1)
    # optimisation
    n_critic: int = setting(5, "critic iterations per generator step", ge=1)
    lr: float = setting(1e-4, "Adam learning rate of generator and critics", gt=0.0)
    betas: tuple[float, float] = setting((0.5, 0.9), "Adam betas", ge=0.0, lt=1.0)
    coarse_l1_alpha: float = setting(1.2, "weight of the coarse stage in the L1 terms", ge=0.0)
    l1_loss_alpha: float = setting(1.2, "weight of the discounted hole L1", ge=0.0)
    ae_loss_alpha: float = setting(1.2, "weight of the known-region (autoencoder) L1", ge=0.0)
    global_wgan_loss_alpha: float = setting(1.0, "weight of the global critic's Wasserstein terms", ge=0.0)
    gan_loss_alpha: float = setting(0.001, "weight of the generator's adversarial loss", ge=0.0)
    wgan_gp_lambda: float = setting(10.0, "gradient penalty weight", ge=0.0)
    spatial_discount_gamma: float = setting(0.9, "spatial discount of the hole L1 per pixel inwards", gt=0.0, le=1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("patch_size", "hole_size"):
            if getattr(self, name) % CRITIC_DOWNSAMPLING:
                raise ConfigError(f"{name} must be a multiple of {CRITIC_DOWNSAMPLING} (the critics' input), got "
                                  f"{getattr(self, name)}")  # fmt: skip
        if self.hole_size >= self.patch_size:
            raise ConfigError(f"hole_size ({self.hole_size}) must be smaller than patch_size ({self.patch_size})")
        if 2 * self.hole_max_shrink >= self.hole_size:
            raise ConfigError(
                f"hole_max_shrink ({self.hole_max_shrink}) must be less than half of hole_size ({self.hole_size})"
            )


PRESETS: dict[str, PicardTrainConfig] = {
    # Konz et al. 2023 / reference default.yaml: 256 px patches, 128 px holes, batch 55.
    "paper": PicardTrainConfig(),
    # CPU demo: a quarter of the geometry and half the width (64 px patches, 32 px box, 0..4 px shrink), bf16 and
    # channels_last (fast on CPUs with AVX512-BF16/AMX; pass --no-bf16 elsewhere), and, to get visible completions
    # within about 10 minutes on two cores, one critic step per generator step at a higher learning rate.
    "small": PicardTrainConfig(
        cnum=16,
        patch_size=64,
        hole_size=32,
        hole_max_shrink=4,
        min_tissue_fraction=0.5,
        flips=True,
        image_pool_size=8,
        patches_per_visit=8,
        num_workers=1,
        val_images=2,
        val_patches=32,
        validate_every=100,
        batch_size=16,
        steps=2000,
        n_critic=1,
        lr=5e-4,
        bf16=True,
        channels_last=True,
        checkpoint_every=250,
        log_every=10,
        sample_every=250,
    ),
    # A seconds-long fit that checks a pipeline end to end (installs, smoke tests): completions stay blurry.
    "tiny": PicardTrainConfig(
        cnum=4,
        patch_size=32,
        hole_size=16,
        hole_max_shrink=2,
        num_workers=0,
        val_patches=8,
        validate_every=2,
        batch_size=4,
        steps=4,
        n_critic=2,
        checkpoint_every=2,
        log_every=2,
        sample_every=4,
        tensorboard=False,
    ),
}
