"""Synthetic local anomalies with exact masks, after the artificial anomalies of the MOOD 2020 challenge.

MOOD built its abnormal test cases from normal scans by adding artificial anomalies, which gives exact masks:
rendered-in images and superimposed lesions, local contrast change, pixel shuffling, deformations and strong
blurring. Zimmerer's thesis (§4.1, §4.2) found that even simple toy spheres rank methods usefully, so sets built
here serve for threshold choice and model selection without any labelled anomaly, and as a benchmark.

Kinds (all work on 2-D images (H, W) and 3-D volumes (D, H, W), float in [0, 1]):

- ``disc``: a disc (sphere in 3-D) of one random intensity, blended in with a soft rim (the MOOD toy sphere).
- ``contrast``: deviations from the region's mean intensity scaled by a random factor (or its inverse).
- ``shuffle``: the pixels of the region randomly permuted (hard edge).
- ``blur``: the region replaced by a Gaussian-blurred copy of the image.
- ``deformation``: a smooth random displacement field that fades to 0 at the region's rim, sampled with
  linear interpolation.
- ``paste``: a patch of another image (``source_image``), blended in.

Mask convention: the mask is the region where the operation was applied, i.e. where its blending weight (or,
for ``deformation``, its displacement taper) is at least 1 % of the full effect. Every pixel outside the mask is
bit-identical to the input. Inside the mask, a pixel may keep its value by chance (a shuffle that puts a value
back in place, a contrast change of a flat or clipped area, a paste of an equal value); it still counts as
anomalous, so masks have no holes. ``info["changed_fraction"]`` reports how many mask pixels actually changed.
Regions lie entirely inside the tissue mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import numpy as np
from scipy import ndimage

from picard_ad.data.synthetic_regions import (
    Region,
    deep_centre,
    draw_semi_major,
    place_region,
    random_rotation,
    tissue_depth,
)

AnomalyKind = Literal["disc", "contrast", "shuffle", "blur", "deformation", "paste"]
ANOMALY_KINDS: tuple[str, ...] = get_args(AnomalyKind)

__all__ = [
    "ANOMALY_KINDS",
    "AnomalyKind",
    "SyntheticAnomalyConfig",
    "SyntheticSample",
    "insert_anomaly",
    "make_synthetic_set",
]


def _require_pair(name: str, value: tuple[float, float], low: float, high: float | None = None) -> None:
    """Raise ValueError unless ``value`` is a (min, max) pair with low <= min <= max (<= high)."""
    if len(value) != 2 or not low <= value[0] <= value[1] or (high is not None and value[1] > high):
        upper = f" and at most {high}" if high is not None else ""
        raise ValueError(f"{name} must be (min, max) with min <= max, at least {low}{upper}; got {tuple(value)}")


@dataclass(frozen=True)
class SyntheticAnomalyConfig:
    """Ranges the synthetic anomalies draw their parameters from (uniformly unless stated).

    Attributes:
        radius_fraction: semi-major axis as a fraction of the image's smallest side.
        min_radius_px: smallest semi-major axis in pixels, whatever the image size.
        aspect: the other semi-axes as a fraction of the semi-major one (disc: always round).
        edge_px: width of the soft rim in pixels (disc, contrast, blur, deformation taper, paste).
        min_intensity_difference: a disc's intensity differs from the region's mean by at least this ([0, 1]
            units, below 0.5).
        contrast_factor: magnitude of the contrast factor, drawn log-uniformly; it is applied as given or
            inverted with equal probability (so (2, 4) gives factors in [0.25, 0.5] or [2, 4]).
        blur_sigma_px: standard deviation of the blurring Gaussian in pixels.
        deformation_amplitude: largest displacement as a fraction of the semi-major axis.
        deformation_smoothness: standard deviation of the Gaussian that smooths the displacement noise, as a
            fraction of the semi-major axis.
    """

    radius_fraction: tuple[float, float] = (0.04, 0.12)
    min_radius_px: float = 3.0
    aspect: tuple[float, float] = (0.5, 1.0)
    edge_px: float = 2.0
    min_intensity_difference: float = 0.15
    contrast_factor: tuple[float, float] = (2.0, 4.0)
    blur_sigma_px: tuple[float, float] = (2.0, 5.0)
    deformation_amplitude: tuple[float, float] = (0.2, 0.4)
    deformation_smoothness: float = 0.4

    def __post_init__(self) -> None:
        _require_pair("radius_fraction", self.radius_fraction, 0.0, 0.5)
        _require_pair("aspect", self.aspect, 0.05, 1.0)
        _require_pair("contrast_factor", self.contrast_factor, 1.0)
        _require_pair("blur_sigma_px", self.blur_sigma_px, 0.1)
        _require_pair("deformation_amplitude", self.deformation_amplitude, 0.0, 1.0)
        if self.min_radius_px < 1.0:
            raise ValueError(f"min_radius_px must be at least 1, got {self.min_radius_px}")
        if self.edge_px < 0.0:
            raise ValueError(f"edge_px must be >= 0, got {self.edge_px}")
        if not 0.0 <= self.min_intensity_difference < 0.5:
            raise ValueError(f"min_intensity_difference must be in [0, 0.5), got {self.min_intensity_difference}")
        if self.deformation_smoothness <= 0.0:
            raise ValueError(f"deformation_smoothness must be > 0, got {self.deformation_smoothness}")


class SyntheticSample(NamedTuple):
    """An image with one synthetic anomaly: image (same shape and dtype as the input), mask (bool), info."""

    image: np.ndarray
    mask: np.ndarray
    info: dict


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2-D (H, W) or 3-D (D, H, W), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} must be a float array in [0, 1], got dtype {image.dtype}")
    if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(f"{name} must be finite and in [0, 1], got values in [{image.min()}, {image.max()}]")
    return image


def _check_tissue(tissue_mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    if tissue_mask is None:
        return np.ones(shape, dtype=bool)
    tissue = np.asarray(tissue_mask)
    if tissue.shape != shape:
        raise ValueError(f"{name} has shape {tissue.shape}, the image has shape {shape}")
    return tissue.astype(bool)


def _blend(original: np.ndarray, anomaly: np.ndarray, region: Region) -> np.ndarray:
    """(1 - alpha) * original + alpha * anomaly over the region's window; alpha = 1 gives anomaly exactly."""
    alpha = region.alpha
    return (1.0 - alpha) * original + alpha * anomaly


def _disc(window: np.ndarray, region: Region, config: SyntheticAnomalyConfig, rng: np.random.Generator):
    """Blend a constant intensity, at least min_intensity_difference from the region's mean, into the disc."""
    mean = float(window[region.mask].mean())
    gap = config.min_intensity_difference
    below, above = max(mean - gap, 0.0), max(1.0 - (mean + gap), 0.0)
    # Uniform over [0, mean - gap] U [mean + gap, 1]; the two pieces total at least 1 - 2 * gap > 0.
    draw = rng.uniform(0.0, below + above)
    intensity = draw if draw < below else mean + gap + (draw - below)
    return _blend(window, np.full_like(window, intensity), region), {"intensity": float(intensity)}


def _contrast(window: np.ndarray, region: Region, config: SyntheticAnomalyConfig, rng: np.random.Generator):
    """Scale deviations from the region's mean by a random factor, clipped to [0, 1]."""
    mean = float(window[region.mask].mean())
    magnitude = float(np.exp(rng.uniform(*np.log(config.contrast_factor))))
    factor = magnitude if rng.random() < 0.5 else 1.0 / magnitude
    changed = np.clip(mean + factor * (window - mean), 0.0, 1.0)
    return _blend(window, changed, region), {"factor": factor, "region_mean": mean}


def _shuffle(window: np.ndarray, region: Region, rng: np.random.Generator):
    """Randomly permute the region's pixels."""
    shuffled = window.copy()
    shuffled[region.mask] = rng.permutation(window[region.mask])
    return shuffled, {}


def _padded_window(region: Region, shape: tuple[int, ...], pad: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The region's window grown by ``pad`` pixels (clipped to the image), and the window inside it."""
    grown = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(region.window, shape))
    inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(region.window, grown))
    return grown, inner


def _blur(image: np.ndarray, region: Region, config: SyntheticAnomalyConfig, rng: np.random.Generator):
    """Replace the region by a Gaussian-blurred copy; the blur sees the surroundings, only the region changes."""
    sigma = float(rng.uniform(*config.blur_sigma_px))
    grown, inner = _padded_window(region, image.shape, int(np.ceil(4 * sigma)))
    blurred = ndimage.gaussian_filter(image[grown].astype(np.float64), sigma, mode="nearest")[inner]
    return _blend(image[region.window], blurred, region), {"sigma_px": sigma}


def _deformation(image: np.ndarray, region: Region, config: SyntheticAnomalyConfig, rng: np.random.Generator):
    """Warp the region by smoothed random noise displacements, tapered by the region's alpha."""
    semi_major = region.semi_axes_px[0]
    amplitude = float(rng.uniform(*config.deformation_amplitude)) * semi_major
    smoothness = config.deformation_smoothness * semi_major
    alpha = region.alpha
    # Samples lie within the amplitude of the window; a crop that large behaves like the whole image.
    grown, _ = _padded_window(region, image.shape, int(np.ceil(amplitude)) + 1)
    ranges = [np.arange(s.start - g.start, s.stop - g.start) for s, g in zip(region.window, grown)]
    coordinates = np.stack(np.meshgrid(*ranges, indexing="ij")).astype(np.float64)
    for axis in range(image.ndim):
        field = ndimage.gaussian_filter(rng.standard_normal(alpha.shape), smoothness, mode="reflect")
        coordinates[axis] += amplitude * alpha * field / np.abs(field).max()
    # Linear interpolation never leaves the range of its neighbours and is exact where the displacement is 0.
    crop = image[grown].astype(np.float64)
    warped = ndimage.map_coordinates(crop, coordinates, order=1, mode="nearest")
    return warped, {"amplitude_px": amplitude, "smoothness_px": smoothness}


def _paste(
    window: np.ndarray, region: Region, rng: np.random.Generator, source: np.ndarray, source_tissue: np.ndarray
):
    """Blend in the same-shaped patch of ``source`` around a random centre deep enough in its tissue."""
    centre = deep_centre(tissue_depth(source_tissue), max(region.semi_axes_px), rng, "source tissue")
    shift = [c - rc for c, rc in zip(centre, region.centre)]
    patch = source[tuple(slice(s.start + d, s.stop + d) for s, d in zip(region.window, shift))]
    return _blend(window, patch.astype(np.float64), region), {"source_centre": list(centre)}


def insert_anomaly(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    tissue_mask: np.ndarray | None = None,
    config: SyntheticAnomalyConfig = SyntheticAnomalyConfig(),
    source_image: np.ndarray | None = None,
    source_tissue_mask: np.ndarray | None = None,
) -> SyntheticSample:
    """Insert one synthetic anomaly of ``kind`` at a random place inside the tissue.

    Args:
        image: (H, W) or (D, H, W) float array in [0, 1]; not modified.
        kind: one of ANOMALY_KINDS.
        rng: random source; the result is a deterministic function of its state.
        tissue_mask: bool array of the image's shape where the anomaly may lie; None = the whole image.
        config: parameter ranges.
        source_image: float array in [0, 1] with the image's number of dimensions (any size); required for
            ``paste``, ignored otherwise.
        source_tissue_mask: bool array of the source's shape where the pasted patch may come from; None = all.

    Returns:
        (image with the anomaly, same shape and dtype; bool mask of the anomaly; JSON-ready info with the kind,
        the region geometry, the drawn parameters, ``mask_pixels`` and ``changed_fraction``).

    Raises:
        ValueError: unknown kind, invalid inputs, missing source image, or tissue too small for the anomaly.
    """
    if kind not in ANOMALY_KINDS:
        raise ValueError(f"unknown anomaly kind {kind!r}; valid kinds: {', '.join(ANOMALY_KINDS)}")
    image = _check_image(image, "image")
    tissue = _check_tissue(tissue_mask, image.shape, "tissue_mask")
    if kind == "paste":
        if source_image is None:
            raise ValueError("anomaly kind 'paste' needs a source_image to take the patch from")
        source = _check_image(source_image, "source_image")
        if source.ndim != image.ndim:
            raise ValueError(f"source_image must be {image.ndim}-D like the image, got shape {source.shape}")
        source_tissue = _check_tissue(source_tissue_mask, source.shape, "source_tissue_mask")

    depth = tissue_depth(tissue)
    low_px = max(config.min_radius_px, config.radius_fraction[0] * min(image.shape))
    high_px = max(low_px, config.radius_fraction[1] * min(image.shape))
    semi_major = draw_semi_major(depth, low_px, high_px, rng)
    if kind == "disc":
        semi_axes = (semi_major,) * image.ndim
        rotation = np.eye(image.ndim)
    else:
        minor = np.sort(rng.uniform(*config.aspect, image.ndim - 1))[::-1] * semi_major
        semi_axes = (semi_major, *map(float, minor))
        rotation = random_rotation(image.ndim, rng)
    edge_px = 0.0 if kind == "shuffle" else config.edge_px
    region = place_region(depth, semi_axes, rotation, edge_px, rng)

    window = image[region.window].astype(np.float64)
    if kind == "disc":
        values, params = _disc(window, region, config, rng)
    elif kind == "contrast":
        values, params = _contrast(window, region, config, rng)
    elif kind == "shuffle":
        values, params = _shuffle(window, region, rng)
    elif kind == "blur":
        values, params = _blur(image, region, config, rng)
    elif kind == "deformation":
        values, params = _deformation(image, region, config, rng)
    else:
        values, params = _paste(window, region, rng, source, source_tissue)

    out = image.copy()
    inside = region.mask
    out[region.window][inside] = np.clip(values[inside], 0.0, 1.0).astype(image.dtype)
    mask = region.full_mask(image.shape)
    changed = int(np.count_nonzero(out[mask] != image[mask]))
    info = {"kind": kind, **region.info(), "edge_px": edge_px, **params}
    info.update(mask_pixels=int(inside.sum()), changed_fraction=changed / int(inside.sum()))
    return SyntheticSample(out, mask, info)


def make_synthetic_set(
    images: Sequence[np.ndarray],
    tissue_masks: Sequence[np.ndarray | None] | None,
    kinds: Sequence[str] = ANOMALY_KINDS,
    n: int = 100,
    seed: int = 0,
    config: SyntheticAnomalyConfig = SyntheticAnomalyConfig(),
    kind_order: Literal["cycle", "random"] = "cycle",
) -> list[SyntheticSample]:
    """Build ``n`` abnormal samples, each a random base image with one anomaly.

    Sample ``i`` draws from its own generator seeded with (seed, i), so a sample does not depend on how many
    were made before it. ``paste`` takes its patch from another randomly chosen image of the set (the same one
    when there is only one).

    Args:
        images: normal base images, each (H, W) or (D, H, W) float in [0, 1]; sizes may differ.
        tissue_masks: one bool mask (or None = whole image) per image, or None for all.
        kinds: anomaly kinds to use, each one of ANOMALY_KINDS.
        n: number of samples.
        seed: base seed.
        config: parameter ranges.
        kind_order: "cycle" takes kinds round-robin (sample i gets kinds[i % len(kinds)]), "random" draws one.

    Returns:
        list of SyntheticSample; each info also holds ``index``, ``image_index`` and, for paste,
        ``source_index``.

    Raises:
        ValueError: empty images or kinds, unknown kind or order, mismatched tissue masks, or an image whose
            tissue cannot hold an anomaly (the message names the image index).
    """
    unknown = [k for k in kinds if k not in ANOMALY_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty list of {', '.join(ANOMALY_KINDS)}; got {list(kinds)}")
    if kind_order not in ("cycle", "random"):
        raise ValueError(f"kind_order must be 'cycle' or 'random', got {kind_order!r}")
    if not images:
        raise ValueError("no images to insert anomalies into")
    masks = [None] * len(images) if tissue_masks is None else list(tissue_masks)
    if len(masks) != len(images):
        raise ValueError(f"got {len(masks)} tissue masks for {len(images)} images")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")

    samples = []
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        kind = kinds[index % len(kinds)] if kind_order == "cycle" else kinds[int(rng.integers(len(kinds)))]
        image_index = int(rng.integers(len(images)))
        extra: dict = {"index": index, "image_index": image_index}
        source = source_tissue = None
        if kind == "paste":
            other = int(rng.integers(max(len(images) - 1, 1)))
            source_index = other + 1 if len(images) > 1 and other >= image_index else other
            source, source_tissue = images[source_index], masks[source_index]
            extra["source_index"] = source_index
        try:
            sample = insert_anomaly(
                images[image_index], kind, rng, masks[image_index], config, source, source_tissue
            )
        except ValueError as exc:
            raise ValueError(f"image {image_index}: {exc}") from None
        sample.info.update(extra)
        samples.append(sample)
    return samples
