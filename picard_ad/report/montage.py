"""Save a grid of greyscale images with titles, optional mask outlines and optional heatmap overlays.

Panels are drawn from previews of at most MAX_PANEL_PIXELS pixels: larger images, their overlays and masks are
reduced by whole-block averaging (masks: a block is set when any of its pixels is) before matplotlib sees them, so
the memory of a montage does not grow with the images' size (matplotlib's resampling of a full 12000 x 12000
image alone needs gigabytes) and what is drawn is what the panel can show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from picard_ad.io.writers import atomic_path

# A panel is 400-800 pixels wide as written (panel_inches x dpi); 2 megapixels (1414 x 1414) leave matplotlib's
# antialiasing room to work with, at about 30 MB of preview and 100-200 MB of matplotlib's working memory.
MAX_PANEL_PIXELS = 2_000_000
_BAND_BYTES = 16 * 2**20  # working memory of one band of rows while reducing


def preview_factor(shape: tuple[int, ...], max_pixels: int = MAX_PANEL_PIXELS) -> int:
    """The smallest whole block side that brings an (H, W) image to at most ``max_pixels`` pixels."""
    rows, cols = shape[:2]
    factor = max(1, math.ceil(math.sqrt(rows * cols / max_pixels)))
    while math.ceil(rows / factor) * math.ceil(cols / factor) > max_pixels:
        factor += 1
    return factor


def reduce_blocks(array: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """(H, W) -> (ceil(H / factor), ceil(W / factor)) by blocks of factor x factor pixels (partial at the edges).

    how: "mean" (float32; NaN pixels are left out, a block of NaN only is NaN) or "any" (bool). Works through
    bands of rows, so its memory beyond the result is bounded (``_BAND_BYTES``) whatever the size of ``array``.
    ``factor`` 1 returns ``array`` unchanged.
    """
    if factor == 1:
        return array
    if how not in ("mean", "any"):
        raise ValueError(f"how must be 'mean' or 'any', got {how!r}")
    rows, cols = np.shape(array)
    out_rows, out_cols = -(-rows // factor), -(-cols // factor)
    result = np.empty((out_rows, out_cols), dtype=bool if how == "any" else np.float32)
    band = max(1, _BAND_BYTES // (factor * factor * out_cols * 17))  # output rows per band: ~17 bytes a pixel
    for start in range(0, out_rows, band):
        stop = min(out_rows, start + band)
        part = np.asarray(array[start * factor : stop * factor])
        shape = (stop - start, factor, out_cols, factor)
        padding = ((0, shape[0] * factor - part.shape[0]), (0, out_cols * factor - cols))
        if how == "any":
            blocks = np.pad(part.astype(bool, copy=False), padding).reshape(shape)
            result[start:stop] = blocks.any(axis=(1, 3))
            continue
        values = np.pad(part.astype(np.float64), padding, constant_values=np.nan).reshape(shape)
        finite = np.isfinite(values)
        counts = finite.sum(axis=(1, 3))
        sums = np.where(finite, values, 0.0).sum(axis=(1, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            result[start:stop] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return result


def save_montage(
    path: str | Path,
    images: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    overlays: Sequence[np.ndarray | None] | None = None,
    n_columns: int | None = None,
    panel_inches: float = 4.0,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    outline_color: str = "red",
    overlay_cmap: str = "jet",
    overlay_alpha: float = 0.4,
    dpi: int = 100,
) -> None:
    """Write ``images`` as a grid of panels in one picture (format from the suffix, e.g. .png), atomically.

    Args:
        path: output file.
        images: (H, W) greyscale arrays; sizes may differ. Each panel shows a preview of at most
            MAX_PANEL_PIXELS pixels (block means; see the module's docstring).
        titles: one title per image.
        masks: per image, None or an (H, W) bool mask whose outline is drawn in ``outline_color``.
        overlays: per image, None or an (H, W) float map (e.g. an anomaly heatmap) drawn over the image with
            ``overlay_cmap`` at ``overlay_alpha``, scaled to its own min..max; NaN pixels stay transparent.
        n_columns: panels per row; default: about twice as many columns as rows (3 x 2 for 6 images).
        panel_inches: width of one panel; its height follows the tallest image's aspect ratio.
        value_range: grey level range shown black to white; None scales each image to its own min..max.
        dpi: resolution of the written picture.
    """
    from matplotlib.figure import Figure

    n_images = len(images)
    if n_images == 0:
        raise ValueError("save_montage needs at least one image")
    for name, per_image in (("titles", titles), ("masks", masks), ("overlays", overlays)):
        if per_image is not None and len(per_image) != n_images:
            raise ValueError(f"{name} has {len(per_image)} entries for {n_images} images")
    for index, image in enumerate(images):
        if np.ndim(image) != 2:
            raise ValueError(f"image {index} must be (H, W), got shape {np.shape(image)}")
        for name, per_image in (("mask", masks), ("overlay", overlays)):
            if per_image is not None and per_image[index] is not None and np.shape(per_image[index]) != np.shape(image):
                raise ValueError(
                    f"{name} {index} has shape {np.shape(per_image[index])}, its image {np.shape(image)}"
                )
    if n_columns is not None and n_columns < 1:
        raise ValueError(f"n_columns must be at least 1, got {n_columns}")
    columns = n_columns or math.ceil(n_images / max(1, round(math.sqrt(n_images / 2))))
    rows = math.ceil(n_images / columns)
    aspect = max(np.shape(image)[0] / np.shape(image)[1] for image in images)
    title_inches = 0.35 if titles is not None else 0.0
    figure = Figure(figsize=(columns * panel_inches, rows * (panel_inches * aspect + title_inches)), dpi=dpi)
    axes = figure.subplots(rows, columns, squeeze=False)
    low, high = value_range if value_range is not None else (None, None)
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index >= n_images:
            continue
        factor = preview_factor(np.shape(images[index]))
        image = reduce_blocks(images[index], factor)
        ax.imshow(np.asarray(image, dtype=np.float32), cmap="gray", vmin=low, vmax=high)
        if overlays is not None and overlays[index] is not None:
            overlay = reduce_blocks(overlays[index], factor)
            ax.imshow(np.asarray(overlay, dtype=np.float32), cmap=overlay_cmap, alpha=overlay_alpha)
        if masks is not None and masks[index] is not None:
            mask = np.asarray(reduce_blocks(masks[index], factor, "any"), dtype=bool)
            if mask.any():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=outline_color, linewidths=0.8)
        if titles is not None:
            ax.set_title(titles[index], fontsize=9)
    figure.subplots_adjust(
        left=0.005,
        right=0.995,
        bottom=0.005,
        top=0.995 - title_inches / figure.get_figheight(),
        wspace=0.02,
        hspace=title_inches / (panel_inches * aspect) + 0.02,  # in units of the panel height
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi, facecolor="white")
