"""Fixtures shared across test folders."""

import pytest
import torch

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.io.base import forget_reported_notes
from picard_ad.io.writers import write_png
from picard_ad.methods.picard import PicardTrainConfig


@pytest.fixture(autouse=True)
def fresh_read_warnings():
    """Readers warn once per file and process; each test starts as a new process would, whatever ran before it."""
    forget_reported_notes()


@pytest.fixture()
def one_torch_thread():
    """Tiny networks gain nothing from threads, and busy-waiting threads crawl on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL_PHANTOM = PhantomConfig(
    size=(192, 160), pixel_spacing_mm=0.5, mass_diameter_mm=(4.0, 8.0), calcification_cluster_mm=(4.0, 6.0)
)


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory):
    """Six small normal phantoms (192 x 160 PNG)."""
    folder = tmp_path_factory.mktemp("train_phantoms")
    for index in range(6):
        write_png(folder / f"normal_{index}.png", generate_phantom(SMALL_PHANTOM, seed=100 + index).image)
    return folder


@pytest.fixture
def tiny_config():
    """A network and schedule small enough for a CPU test: 32 px patches, cnum 4, checkpoints every 3 steps."""
    return PicardTrainConfig(
        cnum=4,
        patch_size=32,
        hole_size=16,
        hole_max_shrink=2,
        batch_size=4,
        n_critic=2,
        steps=6,
        val_images=1,
        val_patches=4,
        validate_every=3,
        checkpoint_every=3,
        sample_every=3,
        log_every=2,
        image_pool_size=2,
        patches_per_visit=2,
        num_workers=0,
        min_tissue_fraction=0.5,
        tensorboard=False,
        device="cpu",
        seed=5,
    )
