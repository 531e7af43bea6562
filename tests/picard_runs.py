"""Tiny PICARD run folders and images for tests (importable: pytest puts tests/ on the path)."""

from pathlib import Path

import numpy as np
import torch
from networks import he_initialised

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.io.writers import write_png
from picard_ad.methods.picard import Picard, PicardTrainConfig, build_networks

FAST = {"n_completions": 2, "stride": 32, "bf16": False, "channels_last": False, "device": "cpu"}
"""Scoring settings that keep a test fast and exact (float32, two completions)."""


def write_tiny_run(run_dir, cnum: int = 4, seed: int = 0, step: int = 12):
    """A run folder with a He-initialised (untrained) network for 64 px patches and 32 px holes, its calibrated
    scores calibrated on one normal phantom (``run_dir/normal_images``), as a fit would."""
    torch.manual_seed(seed)
    config = PicardTrainConfig(cnum=cnum, patch_size=64, hole_size=32, hole_max_shrink=4)
    networks = build_networks(config)
    he_initialised(networks["generator"])
    picard = Picard.from_networks(networks, config, step=step)
    normal = Path(run_dir) / "normal_images" / "normal_0000.png"
    phantom = PhantomConfig(size=(160, 128), pixel_spacing_mm=0.5, mass_diameter_mm=(5.0, 9.0),
                            calcification_cluster_mm=(4.0, 6.0), side="L")  # fmt: skip
    write_png(normal, generate_phantom(phantom, seed=100, n_lesions=0).image, bit_depth=16)
    picard.calibration = picard.calibrate([(normal, 0)])
    picard.save(run_dir)
    return run_dir


class PaddedPhantom:
    """A small phantom with 96 black columns added on the right, so some windows see only background."""

    def __init__(self):
        config = PhantomConfig(size=(160, 128), pixel_spacing_mm=0.5, mass_diameter_mm=(5.0, 9.0),
                               calcification_cluster_mm=(4.0, 6.0), side="L")
        self.image = np.pad(generate_phantom(config, seed=4, n_lesions=1).image, ((0, 0), (0, 96)))
