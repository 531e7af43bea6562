"""How PatchSVDD learns: its training config (defaults: the paper setting of Konz et al. 2023) and named presets.

The encoder and its self-supervised training are Yi and Yoon's (2020) reference code's; its patch side K is the
sliding window's (Konz et al.: "the same patch and stride size as PICARD, 256 and 32"), so the two scales are the
window (K) and its centred half (K/2). After training, the features of normal windows at ``bank_stride`` form the
feature bank that scoring searches.
"""

from __future__ import annotations

from dataclasses import dataclass

from picard_ad.config import setting
from picard_ad.errors import ConfigError
from picard_ad.methods.patchsvdd.networks import hierarchy_levels
from picard_ad.training.config import RunSettings


@dataclass(frozen=True)
class PatchSVDDTrainConfig(RunSettings):
    """Everything that defines a PatchSVDD fit; the defaults are the paper setting (a GPU run).

    Lengths in pixels; intensities in [0, 1] as read by ``picard_ad.io`` (the networks see ``x * 2 - 1``). Each
    iteration draws ``batch_size`` pairs for each of four tasks: the relative position of two neighbouring patches
    and the SVDD' pull between two patches a few pixels apart, at sides K and K/2 (the reference's four datasets).
    """

    steps: int = setting(150_000, "iterations (the reference's 300 epochs on an MVTec class of 320 images)", ge=1,
                         run_control=True)  # fmt: skip
    batch_size: int = setting(64, "pairs per task and iteration (four tasks)", ge=1)
    # networks
    patch_size: int = setting(256, "K, the encoder's patch and the sliding window, px: 64 times a power of two "
                              "(the small scale is K/2)", ge=64)  # fmt: skip
    cnum: int = setting(32, "base width of the sub-patch encoder (reference: 32)", ge=1)
    feature_dim: int = setting(64, "D, length of a patch's feature vector (reference: 64)", ge=1)
    # losses
    svdd_lambda: float = setting(1.0, "lambda, weight of the SVDD' loss beside the relative-position loss "
                                 "(Konz et al.: 1)", ge=0.0)  # fmt: skip
    position_noise: float = setting(0.02, "std of the intensity shift per patch and of the noise per pixel added "
                                    "to the relative-position patches (reference: 0.02)", ge=0.0)  # fmt: skip
    lr: float = setting(1e-4, "Adam learning rate (reference: 1e-4)", gt=0.0)
    # patch sampling
    tissue_threshold: float = setting(0.02, "intensity above which a pixel counts as tissue", ge=0.0, le=1.0)
    min_tissue_fraction: float = setting(0.5, "fraction of every training patch that must be tissue", gt=0.0,
                                         le=1.0)  # fmt: skip
    image_pool_size: int = setting(32, "decoded images open at once; each pair comes from one of them", ge=1)
    patches_per_visit: int = setting(64, "regions cut from a decoded image before it is replaced", ge=1)
    val_pairs: int = setting(256, "held-out pairs per task whose loss is the validation metric", ge=1)
    # feature bank
    bank_stride: int = setting(32, "stride of the normal windows whose features form the bank, px (the "
                               "scoring stride by default)", ge=1)  # fmt: skip
    bank_size: int = setting(1_000_000, "most windows in the bank, drawn at random from all tissue windows of "
                             "the normal images", ge=1)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            hierarchy_levels(self.patch_size)
        except ValueError as exc:
            raise ConfigError(f"patch_size: {exc}") from None


PRESETS: dict[str, PatchSVDDTrainConfig] = {
    # Konz et al. 2023: 256 px windows at stride 32, lambda = 1, otherwise the reference's training (D = 64, Adam
    # at 1e-4, batches of 64 pairs per task); a GPU run.
    "paper": PatchSVDDTrainConfig(),
    # Phantom scale (0.5 mm pixels, PICARD's "small": 64 px windows at stride 16), so the two scales are the
    # reference's 64 and 32 px. Half the width and batch and a 10x learning rate, to train on a CPU (measured: 460 to
    # 550 s on one thread of the shared 2-core machine).
    # lambda 0.1: at lambda 1 the SVDD' pull collapsed the features to one point within 50 iterations (seed 1337;
    # the relative position of smooth phantom texture is learnt too slowly to hold them apart).
    "small": PatchSVDDTrainConfig(
        steps=1000,
        batch_size=32,
        patch_size=64,
        cnum=16,
        svdd_lambda=0.1,
        lr=1e-3,
        image_pool_size=8,
        patches_per_visit=16,
        num_workers=1,
        val_images=2,
        val_pairs=64,
        validate_every=100,
        checkpoint_every=250,
        log_every=10,
        sample_every=250,
        bank_stride=16,
    ),
    # A seconds-long fit that checks a pipeline end to end (tests, installs): the encoder stays near random.
    "tiny": PatchSVDDTrainConfig(
        steps=4,
        batch_size=4,
        patch_size=64,
        cnum=4,
        feature_dim=16,
        min_tissue_fraction=0.25,
        image_pool_size=4,
        patches_per_visit=4,
        num_workers=0,
        val_pairs=8,
        validate_every=2,
        checkpoint_every=2,
        log_every=2,
        sample_every=4,
        tensorboard=False,
        bank_stride=16,
    ),
}
