"""A small heatmap output folder for the viewer's tests: two PNG images (one with an annotated bright spot), a
three-slice NIfTI volume whose slices differ, brightness heatmaps and an evaluation, written by the CLI."""

import nibabel
import numpy as np
import pytest
from click.testing import CliRunner

from picard_ad.cli import main
from picard_ad.io.writers import write_mask_png, write_png

SPOT = (30, 40, 8)  # row, column, radius of the bright disk in spot.png (96 x 80)


def _disk(shape, row, col, radius):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def _cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture()
def spot_disk():
    """Row, column and radius of the bright, annotated disk in spot.png."""
    return SPOT


@pytest.fixture(scope="session")
def heatmap_folder(tmp_path_factory):
    """(heatmaps folder with an ``eval`` subfolder, images folder, masks folder, volume file)."""
    from picard_ad.methods import create_method

    root = tmp_path_factory.mktemp("viewer")
    images, masks = root / "images", root / "masks"
    spot = _disk((96, 80), *SPOT)
    write_png(images / "spot.png", np.where(spot, 0.9, 0.3) + np.linspace(0, 0.05, 80)[None, :])
    write_mask_png(masks / "spot.png", spot)
    write_png(images / "plain.png", np.tile(np.linspace(0.2, 0.6, 80), (96, 1)))
    volume = np.full((64, 48, 3), 100.0)
    for index, (row, col) in enumerate([(12, 12), (32, 24), (50, 36)]):
        volume[..., index][_disk((64, 48), row, col, 6)] = 900.0
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), root / "vol.nii.gz")
    create_method("brightness", settings={"sigma": 2.0}).save(root / "run")
    out = root / "hm"
    _cli("heatmap", images, root / "vol.nii.gz", "--model", root / "run", "--out", out, "--annotations", masks,
         "--quiet")
    _cli("evaluate", "--heatmaps", out, "--annotations", masks, "--out", out / "eval", "--quiet")
    return out, images, masks, root / "vol.nii.gz"
