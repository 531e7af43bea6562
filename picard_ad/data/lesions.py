"""Synthetic lesions for breast phantoms: masses (round, lobulated, spiculated) and calcification clusters.

Each lesion is rendered as a small patch of added intensity with an exact boolean mask, then placed inside the
breast where it does not touch the skin line or another lesion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.ndimage

from picard_ad.data.texture import power_law_noise
from picard_ad.io.annotations import Box

LesionKind = Literal["round", "lobulated", "spiculated", "calcification"]
LESION_KINDS: tuple[str, ...] = get_args(LesionKind)
MASS_KINDS: tuple[str, ...] = LESION_KINDS[:3]

# Signal below this fraction of a lesion's contrast counts as background when placing lesions apart.
_NEGLIGIBLE = 0.02


@dataclass
class Lesion:
    """One lesion of a phantom.

    Attributes:
        kind: one of LESION_KINDS.
        mask: (H, W) bool, the lesion's pixels (for a calcification cluster: its specks, dilated by 1 px).
        box: bounding box of ``mask`` (end-exclusive convention of picard_ad.io.annotations), label = kind.
        diameter_px: mean core diameter of a mass, or the diameter of a calcification cluster, in pixels.
        contrast: peak intensity added to the background, in image units ([0, 1] scale); a mass's interior is
            mottled around this profile by about 20 %.
    """

    kind: str
    mask: np.ndarray
    box: Box
    diameter_px: float
    contrast: float


@dataclass(frozen=True)
class LesionPatch:
    """A lesion rendered around its centre, before placement.

    Attributes:
        kind: one of LESION_KINDS.
        signal: (h, w) float32 intensity to add.
        mask: (h, w) bool lesion pixels.
        centre: (row, column) of the lesion centre inside the patch.
        reach_px: largest distance from the centre to a pixel with non-negligible signal.
        diameter_px, contrast: as in Lesion.
    """

    kind: str
    signal: np.ndarray
    mask: np.ndarray
    centre: tuple[int, int]
    reach_px: float
    diameter_px: float
    contrast: float


def _crop_to_signal(
    kind: str, signal: np.ndarray, mask: np.ndarray, centre: int, diameter_px: float, contrast: float
) -> LesionPatch:
    """Crop a square patch centred on (centre, centre) to its significant pixels."""
    significant = (signal >= _NEGLIGIBLE * contrast) | mask
    rows, cols = np.flatnonzero(significant.any(1)), np.flatnonzero(significant.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = np.nonzero(significant)
    reach = float(np.sqrt(((dy - centre) ** 2 + (dx - centre) ** 2).max()))
    return LesionPatch(
        kind=kind,
        signal=np.ascontiguousarray(signal[r0:r1, c0:c1] * significant[r0:r1, c0:c1], dtype=np.float32),
        mask=np.ascontiguousarray(mask[r0:r1, c0:c1]),
        centre=(int(centre - r0), int(centre - c0)),
        reach_px=reach,
        diameter_px=float(diameter_px),
        contrast=float(contrast),
    )


def _outline_radius(theta: np.ndarray, radius: float, amplitudes: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Radius of a star-shaped outline: radius * (1 + sum_k a_k cos(k theta + phi_k)), k = 2, 3, ..."""
    harmonics = np.arange(2, 2 + amplitudes.size)
    modulation = (amplitudes[:, None, None] * np.cos(harmonics[:, None, None] * theta + phases[:, None, None])).sum(0)
    return radius * (1.0 + modulation)


def mass_patch(kind: str, diameter_px: float, contrast: float, rng: np.random.Generator) -> LesionPatch:
    """Render a mass of ``kind`` ("round", "lobulated" or "spiculated").

    The outline's radius is modulated by a few harmonics (slightly for round masses, with 3-5 marked lobes for
    lobulated ones); a spiculated mass adds 10-24 thin radial spicules, tapering in brightness and width, to a
    core. The edge is a logistic ramp about 6 % of the radius wide, the profile is slightly domed, as the
    projection of a dense nodule, and mottled by a 1/f^3 texture of 20 % standard deviation.

    Args:
        kind: mass kind.
        diameter_px: mean core diameter in pixels (>= 4).
        contrast: peak added intensity before mottling.
        rng: random source for shape details.

    Returns:
        LesionPatch whose mask is the core (inside the outline) plus, for spiculated masses, the spicule parts
        brighter than 40 % of the contrast (about the inner half of each spicule).
    """
    if kind not in MASS_KINDS:
        raise ValueError(f"unknown mass kind {kind!r}; expected one of {', '.join(MASS_KINDS)}")
    radius = diameter_px / 2.0
    n_harmonics = 5  # k = 2..6
    amplitudes = rng.normal(0.0, 0.02, n_harmonics)
    if kind == "round":
        amplitudes[0] = rng.uniform(0.0, 0.1)  # slight ellipticity
    elif kind == "lobulated":
        lobes = int(rng.integers(3, 6))
        amplitudes[lobes - 2] = rng.uniform(0.12, 0.2)
        amplitudes[0] += rng.uniform(0.0, 0.08)
    phases = rng.uniform(0.0, 2 * np.pi, n_harmonics)
    outline_max = radius * (1.0 + np.abs(amplitudes).sum())
    spicule_lengths = rng.uniform(0.5, 1.5, int(rng.integers(10, 25))) * radius if kind == "spiculated" else None
    edge = max(0.6, 0.06 * radius) if kind != "spiculated" else max(0.8, 0.1 * radius)
    half = int(np.ceil(outline_max + 8 * edge + (spicule_lengths.max() if spicule_lengths is not None else 0.0))) + 2

    dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    outline = _outline_radius(theta, radius, amplitudes, phases)
    inside = rho <= outline
    ramp = 1.0 / (1.0 + np.exp(np.clip((rho - outline) / edge, -50, 50)))
    dome = np.sqrt(np.clip(1.0 - (rho / outline) ** 2, 0.0, 1.0))
    # Internal texture, so a mass is not a flat disc; the mask is the outline regardless.
    mottle = 1.0 + 0.2 * power_law_noise(dy.shape, 3.0, rng, largest_scale_px=radius)
    signal = contrast * ramp * (0.75 + 0.25 * dome) * np.clip(mottle, 0.5, 1.5)
    mask = inside

    if spicule_lengths is not None:
        spicules = np.zeros_like(signal)
        for length in spicule_lengths:
            angle = rng.uniform(0.0, 2 * np.pi)
            direction = np.array([np.sin(angle), np.cos(angle)])
            base_radius = float(_outline_radius(np.array([[angle]]), radius, amplitudes, phases)[0, 0]) * 0.8
            total = base_radius * 0.25 + length  # from inside the core to the tip
            widest = max(1.5, radius * rng.uniform(0.06, 0.1))  # FWHM at the base, px
            # Only the spicule's bounding square (plus its width) is evaluated.
            ends = np.array([base_radius, base_radius + total])[:, None] * direction[None, :] + half
            lo = np.maximum(np.floor(ends.min(0) - 2 * widest).astype(int), 0)
            hi = np.minimum(np.ceil(ends.max(0) + 2 * widest).astype(int) + 1, 2 * half + 1)
            window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
            along = dy[window] * direction[0] + dx[window] * direction[1] - base_radius
            across = dy[window] * direction[1] - dx[window] * direction[0]
            t = np.clip(along / total, 0.0, 1.0)
            fwhm = widest * (1.0 - 0.6 * t)
            beyond = np.where(along < 0, along, np.where(along > total, along - total, 0.0))
            line = 0.8 * contrast * (1.0 - t) * np.exp(-4 * np.log(2) * (across**2 + beyond**2) / fwhm**2)
            np.maximum(spicules[window], line, out=spicules[window])
        signal = np.maximum(signal, spicules)
        mask = mask | (spicules >= 0.4 * contrast)
    return _crop_to_signal(kind, signal.astype(np.float32), mask, half, diameter_px, contrast)


def calcification_patch(
    n_specks: int,
    cluster_diameter_px: float,
    speck_diameter_px: tuple[float, float],
    contrast: float,
    rng: np.random.Generator,
) -> LesionPatch:
    """Render a cluster of ``n_specks`` tiny bright specks scattered in an ellipse of ``cluster_diameter_px``.

    Each speck is a Gaussian with full width at half maximum drawn from ``speck_diameter_px`` (at least 1 px)
    and a peak of 60-100 % of ``contrast``. The mask is each speck's half-maximum region (at least its centre
    pixel), dilated by one pixel.
    """
    radius = cluster_diameter_px / 2.0
    aspect = rng.uniform(0.6, 1.0)
    orientation = rng.uniform(0.0, np.pi)
    largest = max(speck_diameter_px[1], 1.0)
    half = int(np.ceil(radius + 3 * largest)) + 3
    signal = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float32)
    mask = np.zeros(signal.shape, dtype=bool)
    for _ in range(n_specks):
        # Uniform in the unit disc, then squashed and rotated into the cluster ellipse.
        r, phi = np.sqrt(rng.uniform()), rng.uniform(0.0, 2 * np.pi)
        u, v = radius * r * np.cos(phi), radius * aspect * r * np.sin(phi)
        row = half + int(round(u * np.sin(orientation) + v * np.cos(orientation)))
        col = half + int(round(u * np.cos(orientation) - v * np.sin(orientation)))
        fwhm = max(rng.uniform(*speck_diameter_px), 1.0)
        peak = contrast * rng.uniform(0.6, 1.0)
        reach = int(np.ceil(1.5 * fwhm)) + 1
        rr, cc = np.mgrid[row - reach : row + reach + 1, col - reach : col + reach + 1]
        speck = peak * np.exp(-4 * np.log(2) * ((rr - row) ** 2 + (cc - col) ** 2) / fwhm**2)
        window = (slice(row - reach, row + reach + 1), slice(col - reach, col + reach + 1))
        np.maximum(signal[window], speck, out=signal[window])
        mask[window] |= speck >= 0.5 * peak
    mask = scipy.ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))
    return _crop_to_signal("calcification", signal, mask, half, cluster_diameter_px, contrast)


def mask_box(mask: np.ndarray, label: str | None = None) -> Box:
    """Bounding box of the True pixels of a non-empty (H, W) mask (end-exclusive)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        raise ValueError("mask is empty")
    top, left = int(rows[0]), int(cols[0])
    return Box(x=left, y=top, width=int(cols[-1]) - left + 1, height=int(rows[-1]) - top + 1, label=label)


def place_lesions(
    image: np.ndarray,
    depth_px: np.ndarray,
    patches: list[LesionPatch],
    margin_px: float,
    gap_px: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[Lesion]]:
    """Add lesion patches to ``image`` at random places inside the breast, apart from each other.

    Every pixel of a lesion with non-negligible signal lies at least ``margin_px`` inside the tissue, and the
    bounding rectangles of the lesions' signal are at least ``gap_px`` apart, so masks never overlap.

    Args:
        image: (H, W) float32 phantom without lesions; not modified.
        depth_px: (H, W) distance from each tissue pixel to the nearest background pixel, in pixels (0 outside).
        patches: rendered lesions, placed in order.
        margin_px: minimum distance from a lesion to the skin edge, in pixels.
        gap_px: minimum gap between lesion rectangles, in pixels.
        rng: random source for the positions.

    Returns:
        (image with the lesions added, lesions with full-size masks and boxes).

    Raises:
        ValueError: a lesion does not fit anywhere (breast too small for the lesion size or count).
    """
    out = image.copy()
    height, width = image.shape
    taken: list[tuple[int, int, int, int]] = []  # (top, left, bottom, right) end-exclusive
    lesions = []
    for patch in patches:
        ph, pw = patch.signal.shape
        cy, cx = patch.centre
        allowed = depth_px >= patch.reach_px + margin_px
        for top, left, bottom, right in taken:
            # Centres that would bring this patch's rectangle within gap_px of a placed one.
            row_from, row_to = max(top - gap_px - (ph - cy) + 1, 0), max(bottom + gap_px + cy, 0)
            col_from, col_to = max(left - gap_px - (pw - cx) + 1, 0), max(right + gap_px + cx, 0)
            allowed[row_from:row_to, col_from:col_to] = False
        candidates = np.flatnonzero(allowed)
        if candidates.size == 0:
            raise ValueError(
                f"no room for a {patch.kind} lesion of {patch.diameter_px:.0f} px after placing {len(lesions)}: "
                "the breast is too small for this lesion size or number of lesions"
            )
        row, col = divmod(int(candidates[rng.integers(candidates.size)]), width)
        top, left = row - cy, col - cx
        window = (slice(top, top + ph), slice(left, left + pw))
        out[window] += patch.signal
        mask = np.zeros((height, width), dtype=bool)
        mask[window] = patch.mask
        taken.append((top, left, top + ph, left + pw))
        lesions.append(Lesion(patch.kind, mask, mask_box(mask, patch.kind), patch.diameter_px, patch.contrast))
    return out, lesions
