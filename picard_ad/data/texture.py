"""Anatomical background of breast phantoms: outline, thickness fall-off, power-law texture, fibres, vessels.

Mammographic backgrounds have a power spectrum that falls as 1/f^beta with beta close to 3 (Burgess et al.,
Med. Phys. 2001); the fibroglandular texture here is a Gaussian random field with exactly that spectrum, made by
filtering white noise in the Fourier domain. Fat lobules, fibrous strands and vessels are drawn on top, oriented
along a fan that converges on the nipple.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
import scipy.ndimage

if TYPE_CHECKING:
    from picard_ad.data.phantoms import PhantomConfig

_PERIPHERY_FLOOR = 0.35  # relative brightness at the skin edge; processed images equalise the thin periphery
_TEXTURE_ELONGATION = 1.6  # density blobs run this much longer towards the nipple than across
_SUBCUTANEOUS_FAT_MM = 8.0  # fat layer under the skin, in which fibroglandular tissue fades out
_FAT_LOBULES_PER_CM2 = 0.2  # rounded fat lobules that show as dark holes in dense tissue
_FAT_LOBULE_RADIUS_MM = (2.0, 6.0)
_FAN_FOCUS = 2.2  # structures converge on a point this many breast depths from the chest wall (beyond the nipple)


def _filtered_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    gain: Callable[[np.ndarray], np.ndarray],
    elongation: float,
) -> np.ndarray:
    """White noise filtered by ``gain(f)``, f the (anisotropic) frequency in cycles/px; zero mean, unit std.

    The noise is drawn on a grid of fast FFT sizes and cropped, which also removes the wrap-around
    correlation between opposite edges.
    """
    height, width = shape
    fft_h = scipy.fft.next_fast_len(height + height // 8, real=True)
    fft_w = scipy.fft.next_fast_len(width + width // 8, real=True)
    spectrum = scipy.fft.rfft2(rng.standard_normal((fft_h, fft_w), dtype=np.float32), workers=-1)
    fy = np.fft.fftfreq(fft_h).astype(np.float32)[:, None]
    # Shrinking the column frequency stretches structures along the columns by ``elongation``.
    fx = np.fft.rfftfreq(fft_w).astype(np.float32)[None, :] * np.float32(elongation)
    frequency = np.sqrt(fy * fy + fx * fx)
    frequency[0, 0] = 1.0  # placeholder, the mean is removed below
    spectrum *= gain(frequency).astype(np.float32)
    spectrum[0, 0] = 0.0
    field = scipy.fft.irfft2(spectrum, s=(fft_h, fft_w), workers=-1)[:height, :width]
    field -= field.mean()
    return (field / max(float(field.std()), 1e-12)).astype(np.float32)


def power_law_noise(
    shape: tuple[int, int],
    beta: float,
    rng: np.random.Generator,
    *,
    largest_scale_px: float | None = None,
    elongation: float = 1.0,
) -> np.ndarray:
    """Gaussian random field whose power spectrum falls as 1/f^beta.

    Args:
        shape: (H, W) of the field in pixels.
        beta: spectral exponent; 3.0 matches mammographic backgrounds.
        rng: source of the white noise; the same generator state gives the same field.
        largest_scale_px: wavelength in pixels below which the spectrum flattens
            (P(f) = (f^2 + f0^2)^(-beta/2), f0 = 1 / largest_scale_px), so the image is not dominated by one
            blob as large as the image; None keeps the pure power law down to the lowest frequency.
        elongation: >= 1 stretches structures along the columns (x) by this factor; the radial average of the
            spectrum still falls as 1/f^beta.

    Returns:
        (H, W) float32 field with zero mean and unit standard deviation.
    """
    f0_squared = 0.0 if largest_scale_px is None else (1.0 / largest_scale_px) ** 2
    return _filtered_noise(shape, rng, lambda f: (f * f + f0_squared) ** (-beta / 4.0), elongation)


def soft_ellipses(
    shape: tuple[int, int],
    centres: np.ndarray,
    radii_px: np.ndarray,
    angles: np.ndarray,
    edge: float = 0.3,
) -> np.ndarray:
    """Filled ellipses with soft edges, combined by maximum (e.g. fat lobules).

    Args:
        shape: (H, W) of the output.
        centres: (N, 2) float (row, column) in pixels.
        radii_px: (N, 2) float semi-axes in pixels, the first along the direction ``angles``.
        angles: (N,) float, direction of the first semi-axis in radians (0 = along the columns).
        edge: width of the smooth fall from 1 to 0, as a fraction of the radius.

    Returns:
        (H, W) float32 in [0, 1], 1 inside an ellipse's core.
    """
    height, width = shape
    out = np.zeros(shape, dtype=np.float32)
    for (row, col), (ra, rb), angle in zip(centres, radii_px, angles, strict=True):
        reach = int(np.ceil(max(ra, rb))) + 1
        r0, r1 = max(int(row) - reach, 0), min(int(row) + reach + 1, height)
        c0, c1 = max(int(col) - reach, 0), min(int(col) + reach + 1, width)
        if r0 >= r1 or c0 >= c1:
            continue
        dy, dx = np.ogrid[r0 - row : r1 - row, c0 - col : c1 - col]
        along = dx * np.cos(angle) + dy * np.sin(angle)
        across = dy * np.cos(angle) - dx * np.sin(angle)
        q = np.sqrt((along / ra) ** 2 + (across / rb) ** 2)
        x = np.clip((1.0 - q) / edge, 0.0, 1.0)
        np.maximum(out[r0:r1, c0:c1], (x * x * (3 - 2 * x)).astype(np.float32), out=out[r0:r1, c0:c1])
    return out


def random_curves(starts: np.ndarray, ends: np.ndarray, rng: np.random.Generator, waviness: float) -> list[np.ndarray]:
    """Smooth random curves from ``starts`` to ``ends``, each sampled about once per pixel.

    A curve's lateral offset from its chord is a sum of five sine harmonics with amplitudes falling as k^-1.5,
    scaled by ``waviness`` times the chord length, and vanishes at both ends.

    Args:
        starts, ends: (N, 2) float (row, column) in pixels.
        rng: random source for the offsets.
        waviness: offset amplitude relative to the chord length (0 gives straight lines).

    Returns:
        N arrays of shape (M_i, 2), float64 (row, column), M_i = ceil(chord length) + 1 (at least 2).
    """
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    ends = np.atleast_2d(np.asarray(ends, dtype=np.float64))
    chords = ends - starts
    lengths = np.hypot(chords[:, 0], chords[:, 1])
    n_points = np.maximum(np.ceil(lengths).astype(int) + 1, 2)
    if n_points.size == 0:
        return []
    harmonics = np.arange(1, 6)
    amplitudes = rng.normal(0.0, 1.0, (len(starts), harmonics.size)) * waviness * lengths[:, None] / harmonics**1.5
    phases = rng.uniform(0.0, np.pi, (len(starts), harmonics.size))
    # All curves are evaluated on one padded grid of positions t in [0, 1], then cut to their own length.
    t = np.minimum(np.arange(n_points.max())[None, :] / (n_points[:, None] - 1), 1.0)
    waves = np.sin(np.pi * harmonics[None, None, :] * t[:, :, None] + phases[:, None, :])
    offsets = np.sin(np.pi * t) * (amplitudes[:, None, :] * waves).sum(2)
    normals = np.stack([-chords[:, 1], chords[:, 0]], axis=1) / np.maximum(lengths, 1e-9)[:, None]
    points = starts[:, None, :] + t[:, :, None] * chords[:, None, :] + offsets[:, :, None] * normals[:, None, :]
    return [points[i, :m] for i, m in enumerate(n_points)]


def draw_curves(
    shape: tuple[int, int],
    curves: Sequence[np.ndarray],
    widths_px: Sequence[float],
    amplitudes: Sequence[float],
    *,
    taper: bool = False,
) -> np.ndarray:
    """Render curves as bright lines with a Gaussian cross-section.

    Curves of similar width (within about 12 %) are splatted into one impulse image and blurred together, so
    thousands of thin strands cost about as much as one.

    Args:
        shape: (H, W) of the output.
        curves: (N, 2) point arrays (row, column), spaced at most about 1 px apart.
        widths_px: full width at half maximum of each line, in pixels.
        amplitudes: peak intensity of each line.
        taper: fade each line in and out over the first and last fifth of its length.

    Returns:
        (H, W) float32, 0 away from the curves.
    """
    height, width = shape
    out = np.zeros(shape, dtype=np.float32)
    classes_per_octave = 3
    groups: dict[int, list[int]] = {}
    for index, fwhm in enumerate(widths_px):
        groups.setdefault(int(round(classes_per_octave * np.log2(max(fwhm, 1e-3)))), []).append(index)
    for key, members in groups.items():
        points = np.concatenate([curves[i] for i in members])
        weights = np.concatenate([_point_weights(curves[i], amplitudes[i], taper) for i in members])
        top, left = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
        inside = (top >= 0) & (top < height - 1) & (left >= 0) & (left < width - 1)
        if not inside.any():
            continue
        points, top, left, weights = points[inside], top[inside], left[inside], weights[inside]
        sigma = 2.0 ** (key / classes_per_octave) / 2.3548
        pad = int(np.ceil(3 * sigma)) + 2
        r0, r1 = max(top.min() - pad, 0), min(top.max() + pad + 2, height)
        c0, c1 = max(left.min() - pad, 0), min(left.max() + pad + 2, width)
        impulses = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
        # Bilinear splatting keeps sub-pixel positions, so thin lines are not jagged.
        fr, fc = points[:, 0] - top, points[:, 1] - left
        rows, cols = top - r0, left - c0
        for dr, share_r in ((0, 1 - fr), (1, fr)):
            for dc, share_c in ((0, 1 - fc), (1, fc)):
                np.add.at(impulses, (rows + dr, cols + dc), weights * share_r * share_c)
        # A line of unit density blurred by a Gaussian peaks at 1 / (sqrt(2 pi) sigma).
        line = scipy.ndimage.gaussian_filter(impulses, sigma, truncate=3.0)
        out[r0:r1, c0:c1] += np.float32(np.sqrt(2 * np.pi) * sigma) * line
    return out


def _point_weights(points: np.ndarray, amplitude: float, taper: bool) -> np.ndarray:
    """Line density carried by each point: the length of its step times the amplitude (and the taper)."""
    step = np.hypot(*np.diff(points, axis=0).T)
    weights = np.append(step, step[-1] if step.size else 1.0) * amplitude
    if taper:
        t = np.linspace(0.0, 1.0, len(points))
        weights = weights * np.clip(5.0 * np.minimum(t, 1.0 - t), 0.0, 1.0)
    return weights


@dataclass(frozen=True)
class _BreastGeometry:
    """Breast outline of a left-sided breast: ellipse-like, centred on the chest wall at ``centre_row``."""

    centre_row: float
    half_height: float  # vertical semi-axis, px
    depth: float  # chest wall to nipple, px
    harmonics: np.ndarray  # relative outline modulation for k = 2..5
    phases: np.ndarray

    @classmethod
    def draw(cls, shape: tuple[int, int], rng: np.random.Generator) -> _BreastGeometry:
        height, width = shape
        return cls(
            centre_row=height * rng.uniform(0.45, 0.55),
            half_height=height * rng.uniform(0.4, 0.53),
            depth=width * rng.uniform(0.6, 0.82),
            harmonics=rng.normal(0.0, 0.015, 4) / np.arange(1, 5),
            phases=rng.uniform(0.0, 2 * np.pi, 4),
        )

    def tissue(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Boolean breast mask at float32 pixel coordinates ``rows``, ``cols`` (broadcastable)."""
        v = (rows - np.float32(self.centre_row)) / np.float32(self.half_height)
        u = cols / np.float32(self.depth)
        theta = np.arctan2(v, u)
        outline = np.ones(np.broadcast_shapes(v.shape, u.shape), dtype=np.float32)
        for k, (amplitude, phase) in enumerate(zip(self.harmonics, self.phases), start=2):
            outline += np.float32(amplitude) * np.cos(np.float32(k) * theta + np.float32(phase))
        return v * v + u * u < outline * outline

    def fan_rows(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Row coordinate in a frame whose rows converge on the fan's focus beyond the nipple.

        Texture drawn in this frame and sampled back has structures that fan out from the nipple to the chest
        wall, as ducts and Cooper's ligaments do; a focus well beyond the nipple keeps the warp gentle.
        """
        focus = _FAN_FOCUS * self.depth
        return (rows - self.centre_row) * focus / (focus - np.minimum(cols, self.depth))

    def fan_angles(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Direction (radians, 0 = along the columns) from each point towards the fan's focus."""
        return np.arctan2(self.centre_row - rows, _FAN_FOCUS * self.depth - cols)


def breast_anatomy(config: PhantomConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lesion-free breast against the left image edge, drawn from ``rng``.

    Returns:
        image: (H, W) float32, tissue intensity before noise and clipping, 0 outside the breast.
        tissue: (H, W) bool breast mask.
        depth_px: (H, W) float32 distance to the skin (nearest background pixel) in pixels, 0 outside; the image
            edges do not count as skin, since the breast continues past them.
    """
    height, width = config.size
    geometry = _BreastGeometry.draw(config.size, rng)
    rows, cols = np.ogrid[0:height, 0:width]
    tissue = geometry.tissue(rows.astype(np.float32), cols.astype(np.float32))
    depth_px = scipy.ndimage.distance_transform_edt(tissue).astype(np.float32)

    # Texture fields are drawn in the fan frame and sampled at the tissue pixels only.
    t_rows, t_cols = (index.astype(np.float32) for index in np.nonzero(tissue))
    fan = geometry.fan_rows(t_rows, t_cols)
    fan_height = int(np.ceil(2 * np.abs(fan).max())) + 4
    coords = np.stack([fan + fan_height / 2, t_cols])

    def in_fan(field_: np.ndarray) -> np.ndarray:
        return scipy.ndimage.map_coordinates(field_, coords, order=1, mode="nearest")

    texture = in_fan(
        power_law_noise(
            (fan_height, width),
            config.texture_beta,
            rng,
            largest_scale_px=config.mm_to_px(config.texture_largest_scale_mm),
            elongation=_TEXTURE_ELONGATION,
        )
    )

    # Fibroglandular tissue concentrates behind the nipple and thins towards the periphery.
    centrality = np.exp(
        -(((t_rows - geometry.centre_row) / (0.6 * geometry.half_height)) ** 2)
        - (((t_cols - 0.4 * geometry.depth) / (0.55 * geometry.depth)) ** 2)
    )
    subcutaneous = np.clip(depth_px[tissue] / config.mm_to_px(_SUBCUTANEOUS_FAT_MM), 0.0, 1.0)
    density = rng.uniform(*config.breast_density) * (0.4 + 1.2 * centrality) * subcutaneous
    lobules = _fat_lobules(config, geometry, tissue, rng)[tissue]
    glandular = _soft_clip(density + config.texture_std * texture * (0.3 + 0.7 * subcutaneous) - 0.4 * lobules)
    anatomy = np.zeros(config.size, dtype=np.float32)
    anatomy[tissue] = config.fat_intensity + (config.dense_intensity - config.fat_intensity) * glandular
    strand_weight = np.zeros(config.size, dtype=np.float32)
    strand_weight[tissue] = 0.3 + glandular
    anatomy += (_fibres(config, geometry, strand_weight, rng) + _vessels(config, geometry, rng)) * tissue

    # The compressed breast's free edge is roughly a half cylinder of diameter equal to the compressed
    # thickness, so the x-ray path length falls as a circle within half that thickness of the skin.
    rim = np.clip(depth_px / config.mm_to_px(config.compressed_thickness_mm / 2), 0.0, 1.0)
    thickness = np.sqrt(1.0 - (1.0 - rim) ** 2)
    image = anatomy * (_PERIPHERY_FLOOR + (1.0 - _PERIPHERY_FLOOR) * thickness)
    skin_px = max(config.mm_to_px(config.skin_thickness_mm), 0.5)
    image += config.skin_contrast * np.exp(-0.5 * (depth_px / skin_px) ** 2) * tissue
    return image.astype(np.float32), tissue, depth_px


def _soft_clip(x: np.ndarray, softness: float = 0.08) -> np.ndarray:
    """Clamp to [0, 1] with rounded corners, so saturated tissue keeps some texture instead of flat plateaus."""
    return softness * (np.logaddexp(0.0, x / softness) - np.logaddexp(0.0, (x - 1.0) / softness))


def _fat_lobules(
    config: PhantomConfig, geometry: _BreastGeometry, tissue: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Fat lobules: soft ellipses elongated along the fan, scattered uniformly in the breast; (H, W) in [0, 1]."""
    flat = np.flatnonzero(tissue)
    n_lobules = int(round(_FAT_LOBULES_PER_CM2 * flat.size * (config.pixel_spacing_mm / 10) ** 2))
    rows, cols = np.divmod(rng.choice(flat, size=n_lobules), config.size[1])
    radii = config.mm_to_px(rng.uniform(*_FAT_LOBULE_RADIUS_MM, n_lobules))
    radii = np.stack([radii * rng.uniform(1.0, 1.8, n_lobules), radii], axis=1)
    angles = geometry.fan_angles(rows, cols)
    return soft_ellipses(config.size, np.stack([rows, cols], axis=1).astype(np.float64), radii, angles, edge=0.6)


def _fibres(
    config: PhantomConfig, geometry: _BreastGeometry, weight: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Fibrous strands: short, slightly curved lines pointing roughly at the nipple, placed with density ``weight``."""
    n_fibres = int(round(config.fibres_per_cm2 * np.count_nonzero(weight) * (config.pixel_spacing_mm / 10) ** 2))
    if n_fibres == 0 or config.fibre_contrast == 0:
        return np.zeros(config.size, dtype=np.float32)
    flat = weight.ravel()
    centres = rng.choice(flat.size, size=n_fibres, p=flat / flat.sum())
    rows, cols = np.divmod(centres, config.size[1])
    angles = geometry.fan_angles(rows, cols) + rng.normal(0.0, 0.45, n_fibres)
    half_lengths = config.mm_to_px(rng.uniform(2.5, 15.0, n_fibres))
    centres = np.stack([rows, cols], axis=1).astype(np.float64)
    offsets = half_lengths[:, None] * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    curves = random_curves(centres - offsets, centres + offsets, rng, waviness=0.05)
    widths = config.mm_to_px(rng.uniform(0.3, 1.0, n_fibres))
    amplitudes = config.fibre_contrast * rng.uniform(0.3, 1.0, n_fibres)
    return draw_curves(config.size, curves, widths, amplitudes, taper=True)


def _vessels(config: PhantomConfig, geometry: _BreastGeometry, rng: np.random.Generator) -> np.ndarray:
    """Ducts and vessels: wavy lines from behind the nipple to the chest wall, fanning out."""
    n = config.n_vessels
    starts = np.stack(
        [
            geometry.centre_row + rng.normal(0.0, 0.08, n) * geometry.half_height,
            geometry.depth * rng.uniform(0.65, 0.95, n),
        ],
        axis=1,
    )
    ends = np.stack([geometry.centre_row + rng.uniform(-0.9, 0.9, n) * geometry.half_height, np.zeros(n)], axis=1)
    curves = random_curves(starts, ends, rng, waviness=0.07)
    widths = config.mm_to_px(rng.uniform(*config.vessel_width_mm, n))
    amplitudes = rng.uniform(*config.vessel_contrast, n)
    return draw_curves(config.size, curves, widths, amplitudes, taper=True)
