"""What the VAE and DAE networks see: whole slices at the model size, z-scored inside the tissue and clipped.

An image or volume slice in the readers' [0, 1] units goes through Davletshina et al.'s preprocessing chain
(``picard_ad.data.preprocessing``: ``raw``, or the carrier cropped and deskewed in ``crop``, its foreground masked
in ``full``), is resized to fit the model's square input with its aspect kept and the rest padded with background
(exactly as ``picard_ad.localize.resized_heatmap`` gives it to a scorer) and equalized as the chain says, then
z-scored with the mean and standard deviation of tissue pixels and clipped to [-clip, clip]. The tissue is the
chain's mask in ``crop`` and ``full``, and in ``raw`` the pixels above a threshold (``picard_ad.data.tissue``: the
brain mask of a skull-stripped scan). ``RAW_CHAIN`` (raw, no equalization) is the data path from before the chain,
to the bit.

Whose tissue pixels (``Preprocessing.zscore``): "volume", the thesis' per-patient z-score, pools the tissue of every
slice of the slice's volume at the model size (``volume_statistics``; a 2-D image is its own volume); "slice" uses
the slice's own. A volume slice is tied to its volume by its ``SliceOrigin``, which the callers pass (the readers'
files, a benchmark's samples); an image given without one is z-scored by its own statistics.

Training augmentation (thesis: mirroring, rotation, multiplicative brightness; the reference code adds Gaussian
noise) is applied to the resized slice: mirroring and rotation before the z-score, brightness (a factor on the
z-scores, which a z-score would otherwise undo) and noise after it, the clip last.

``SliceBank`` holds every usable slice of the training images at the model size (float16, S^2 x 2 bytes a slice:
8 kB at 64 px), decoded once, so a volume is not decompressed per draw; it draws them in shuffled epochs from its
own generator and continues exactly from ``state_dict``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage

from picard_ad.data.normal_images import NormalImages
from picard_ad.data.patches import ImageEntry
from picard_ad.data.preprocessing import (
    Placement,
    Prepared,
    PreprocessingSettings,
    equalize_canvas,
    network_mask,
    prepare,
    resize_with_padding,
)
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import CorruptFileError, InputError, PicardError
from picard_ad.io.base import SliceOrigin

logger = logging.getLogger(__name__)

MIN_TISSUE_PIXELS = 16
"""A slice with fewer tissue pixels is z-scored with the whole image's statistics instead."""
MIN_STD = 0.01
"""Floor of the standard deviation used for the z-score, [0, 1] units (a flat tissue would divide by 0)."""


@dataclass(frozen=True)
class Preprocessing:
    """How a [0, 1] slice becomes network input.

    input_size: the model's square side S, px.
    clip: z-scores are clipped to [-clip, clip] (the thesis: 1.5).
    tissue_threshold: [0, 1] intensity above which a pixel may be tissue (``tissue_mask``).
    zscore: "volume" (the statistics of the tissue of the slice's whole volume: per patient) or "slice".
    """

    input_size: int = 64
    clip: float = 1.5
    tissue_threshold: float = 0.02
    zscore: Literal["slice", "volume"] = "slice"


RAW_CHAIN = PreprocessingSettings(preprocessing="raw", equalization="none")
"""The chain that leaves a slice as it is: the default of the VAE family, its data path from before the chain."""


def fit_to_input(image: np.ndarray, input_size: int) -> np.ndarray:
    """(S, S) float32 in [0, 1]: the image resized so its longer side is S (aspect kept; bilinear, antialiased when
    shrinking) in the top-left corner, the rest 0: what ``resized_heatmap`` hands its scorer."""
    return resize_with_padding(np.asarray(image, dtype=np.float32), input_size)[0]


@dataclass(frozen=True, eq=False)
class ModelInput:
    """A slice at the model size before its z-score.

    image: (S, S) float32 in [0, 1], 0 in the padding.
    mask: (S, S) bool, the chain's mask (``crop``, ``full``; False in the padding): the pixels the z-score
        statistics and the pooled image scores count; None: the tissue above ``tissue_threshold`` (``raw``).
    """

    image: np.ndarray
    mask: np.ndarray | None = None


def chain_input(canvas: np.ndarray, prepared: Prepared, placement: Placement,
                chain: PreprocessingSettings) -> ModelInput:  # fmt: skip
    """The model input of ``canvas``, the prepared image resized onto the square input (``placement``): equalized
    on the chain's mask, which it carries unless the chain is ``raw``."""
    if chain.preprocessing == "raw" and chain.equalization == "none":
        return ModelInput(canvas)  # the slice as resized, untouched (the equalization would clip rounding overshoot)
    mask = network_mask(prepared, placement)
    image = equalize_canvas(canvas, mask, placement, chain)
    return ModelInput(image, None if chain.preprocessing == "raw" else mask)


def model_input(image: np.ndarray, chain: PreprocessingSettings, input_size: int) -> tuple[ModelInput, Prepared]:
    """(model input, the prepared image) of an (H, W) [0, 1] image through ``chain`` at side ``input_size``."""
    prepared = prepare(image, chain)
    canvas, placement = resize_with_padding(prepared.image, input_size)
    return chain_input(canvas, prepared, placement, chain), prepared


def tissue_region(image: np.ndarray, tissue_threshold: float, mask: np.ndarray | None = None) -> np.ndarray:
    """(S, S) bool: the pixels whose statistics z-score a model-size [0, 1] image and over which its pooled image
    scores average: ``mask`` (the chain's), else the tissue above ``tissue_threshold``; every pixel when that holds
    fewer than ``MIN_TISSUE_PIXELS``."""
    tissue = tissue_mask(image, tissue_threshold) if mask is None else np.asarray(mask, dtype=bool)
    return tissue if tissue.sum() >= MIN_TISSUE_PIXELS else np.ones(image.shape, dtype=bool)


def zscore_statistics(image: np.ndarray, tissue_threshold: float,
                      mask: np.ndarray | None = None) -> tuple[float, float]:  # fmt: skip
    """(mean, std) of the ``tissue_region`` pixels of a [0, 1] image; the std floored at ``MIN_STD``."""
    values = image[tissue_region(image, tissue_threshold, mask)]
    return float(values.mean()), max(float(values.std()), MIN_STD)


Statistics = tuple[float, float]
"""(mean, standard deviation) of a z-score, [0, 1] units."""


@functools.lru_cache(maxsize=8)
def _volume_statistics(origin: SliceOrigin, stamp: tuple[int, int], chain: PreprocessingSettings, input_size: int,
                       tissue_threshold: float) -> Statistics | None:  # fmt: skip
    # Scoring a volume slice by slice asks for the same statistics once per slice: decode the volume once.
    from picard_ad.io import iter_slices, read_header

    if read_header(origin.path).n_slices == 1:
        return None
    count, total, squares = 0, 0.0, 0.0
    everything = []  # the pixels of a volume with too little tissue (as tissue_region falls back per slice)
    for scan in iter_slices(origin.path, axis=origin.axis, normalization=origin.normalization):
        model, _ = model_input(scan.pixels, chain, input_size)
        tissue = tissue_mask(model.image, tissue_threshold) if model.mask is None else model.mask
        values = model.image[tissue].astype(np.float64)
        count, total, squares = count + values.size, total + values.sum(), squares + np.square(values).sum()
        everything.append(model.image.ravel())
    if count < MIN_TISSUE_PIXELS:
        values = np.concatenate(everything).astype(np.float64)
        count, total, squares = values.size, values.sum(), np.square(values).sum()
    mean = total / count
    return float(mean), max(float(np.sqrt(max(squares / count - mean * mean, 0.0))), MIN_STD)


def volume_statistics(origin: SliceOrigin, chain: PreprocessingSettings,
                      preprocessing: Preprocessing) -> Statistics | None:  # fmt: skip
    """(mean, std) of the tissue pixels of every slice of ``origin``'s volume, each through ``chain`` to the model
    input (``model_input``; tissue as ``tissue_region`` takes it, every pixel when the volume holds fewer than
    ``MIN_TISSUE_PIXELS`` tissue pixels), the std floored at ``MIN_STD``: the per-patient z-score. None for a 2-D
    image, its own volume: it is z-scored exactly as a slice alone. Cached per file version, chain and
    preprocessing."""
    path = Path(origin.path)
    try:
        status = path.stat()
    except OSError as exc:
        raise InputError(path, f"cannot read the volume for its z-score statistics: {exc.strerror or exc}") from exc
    key = SliceOrigin(path, 0, origin.axis, origin.normalization)  # every slice of a volume shares them
    return _volume_statistics(key, (status.st_mtime_ns, status.st_size), chain, preprocessing.input_size,
                              preprocessing.tissue_threshold)  # fmt: skip


def scoring_statistics(origin: SliceOrigin | None, chain: PreprocessingSettings,
                       preprocessing: Preprocessing) -> Statistics | None:  # fmt: skip
    """The z-score statistics of a slice read from ``origin``: its volume's (``volume_statistics``) when
    ``preprocessing.zscore`` is "volume" and the origin is known; None (the slice's own) otherwise."""
    if origin is None or preprocessing.zscore != "volume":
        return None
    return volume_statistics(origin, chain, preprocessing)


def written_statistics(images: NormalImages, folder: Path, chain: PreprocessingSettings,
                       preprocessing: Preprocessing) -> dict[Path, Statistics] | None:  # fmt: skip
    """The volume statistics of the training samples that ``images.files(folder)`` writes to files of their own,
    keyed by those files, resolved, for samples read from volumes (a ``SliceBank`` takes the rest from their own
    files); None for a per-slice z-score."""
    if preprocessing.zscore != "volume":
        return None
    found = {path.resolve(): volume_statistics(origin, chain, preprocessing)
             for path, origin in images.written_origins(folder).items()}  # fmt: skip
    return {path: statistics for path, statistics in found.items() if statistics is not None}


def normalise(image: np.ndarray, preprocessing: Preprocessing, mask: np.ndarray | None = None,
              statistics: Statistics | None = None) -> np.ndarray:  # fmt: skip
    """Z-scores of an (S, S) [0, 1] image, clipped: (S, S) float32 in [-clip, clip]. statistics: (mean, std) of its
    volume (``volume_statistics``); None: of its own tissue (``mask``, the chain's, where given)."""
    mean, std = zscore_statistics(image, preprocessing.tissue_threshold, mask) if statistics is None else statistics
    return np.clip((image - mean) / std, -preprocessing.clip, preprocessing.clip).astype(np.float32)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation of the resized slices; every random number comes from the generator passed in.

    mirror: left-right mirroring with probability 1/2.
    rotation: rotation by a uniform angle in [-rotation, rotation] degrees (bilinear, background fill).
    brightness: (low, high) range of a uniform factor multiplying the z-scores ((1, 1): none).
    noise_std: Gaussian noise of a standard deviation uniform in [0, noise_std] is added to the z-scores.
    """

    mirror: bool = True
    rotation: float = 10.0
    brightness: tuple[float, float] = (0.9, 1.1)
    noise_std: float = 0.0


def augmented(image: np.ndarray, rng: np.random.Generator, augmentation: Augmentation, preprocessing: Preprocessing,
              mask: np.ndarray | None = None, statistics: Statistics | None = None) -> np.ndarray:  # fmt: skip
    """One augmented network input (S, S) float32 from a resized [0, 1] slice (S, S); its chain's ``mask`` (S, S)
    bool, where it has one, is mirrored and rotated with it (nearest) and z-scores it, unless ``statistics`` (its
    volume's, ``volume_statistics``) are given."""
    if augmentation.mirror and rng.random() < 0.5:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    if augmentation.rotation > 0:
        angle = rng.uniform(-augmentation.rotation, augmentation.rotation)
        image = np.clip(ndimage.rotate(image, angle, reshape=False, order=1, mode="constant", cval=0.0), 0, 1)
        if mask is not None:
            mask = ndimage.rotate(mask.astype(np.float32), angle, reshape=False, order=0, mode="constant") >= 0.5
    if statistics is None:
        statistics = zscore_statistics(np.ascontiguousarray(image), preprocessing.tissue_threshold, mask)
    mean, std = statistics
    scores = (image - mean) / std * rng.uniform(*augmentation.brightness)
    if augmentation.noise_std > 0:
        scores = scores + rng.normal(0.0, rng.uniform(0, augmentation.noise_std), size=scores.shape)
    return np.clip(scores, -preprocessing.clip, preprocessing.clip).astype(np.float32)


@dataclass(frozen=True, eq=False)
class BankBatch:
    """Slices drawn from a ``SliceBank``.

    images: (n, S, S) float32 in [0, 1], resized.
    masks: each slice's chain mask, (S, S) bool (None each in ``raw``).
    statistics: each slice's volume (mean, std) for the z-score (None each when z-scored per slice).
    """

    images: np.ndarray
    masks: Sequence[np.ndarray | None]
    statistics: Sequence[Statistics | None]

    def network_inputs(self, preprocessing: Preprocessing) -> np.ndarray:
        """(n, S, S) float32: every slice z-scored (``normalise``) and clipped, un-augmented."""
        return np.stack([normalise(image, preprocessing, mask, statistics)
                         for image, mask, statistics in zip(self.images, self.masks, self.statistics)])  # fmt: skip


class SliceBank:
    """Every slice of some images with enough tissue, through the chain to the model input, drawn in shuffled
    epochs.

    Args:
        images: the images (2-D files, or volumes used slice by slice).
        input_size: the model's side S, px.
        min_tissue_fraction: slices whose model input has a smaller fraction of tissue pixels are left out.
        tissue_threshold: [0, 1] intensity above which a pixel may be tissue (``raw``).
        seed, stream: the draw order depends only on them.
        source: what the images came from, named in errors.
        chain: the preprocessing chain (``model_input``); ``RAW_CHAIN`` by default.
        zscore: "volume": each slice keeps its volume's z-score statistics (``volume_statistics``): those given in
            ``statistics`` for its file (resolved path; the volume a slice written to a file of its own came from),
            else its file's own (none for a 2-D file); "slice": none. A slice without them is z-scored by its own
            tissue when drawn.
    """

    def __init__(self, images: Sequence[ImageEntry], input_size: int, *, min_tissue_fraction: float,
                 tissue_threshold: float, seed: int, stream: int = 0, source: Path | None = None,
                 chain: PreprocessingSettings = RAW_CHAIN, zscore: Literal["slice", "volume"] = "slice",
                 statistics: Mapping[Path, Statistics] | None = None):  # fmt: skip
        from picard_ad.io import iter_slices

        preprocessing = Preprocessing(input_size, tissue_threshold=tissue_threshold, zscore=zscore)
        slices, masks, self.excluded_images = [], [], []
        slice_statistics: list[Statistics | None] = []
        for entry in images:
            kept, given = 0, (statistics or {}).get(entry.path.resolve())
            try:
                if zscore == "volume" and given is None:
                    given = volume_statistics(SliceOrigin(entry.path), chain, preprocessing)
                for scan in iter_slices(entry.path):
                    model, _ = model_input(scan.pixels, chain, input_size)
                    tissue = tissue_mask(model.image, tissue_threshold) if model.mask is None else model.mask
                    if tissue.mean() >= min_tissue_fraction:
                        slices.append(model.image.astype(np.float16))
                        masks.append(model.mask)
                        if zscore == "volume":
                            slice_statistics.append(given)
                        kept += 1
            except PicardError:
                raise
            except Exception as exc:  # report decoder failures against the file, never skip it silently
                raise CorruptFileError(entry.path, f"cannot be decoded ({type(exc).__name__}: {exc})") from exc
            if kept == 0:
                self.excluded_images.append(entry.path)
                logger.warning("%s: no slice with a tissue fraction of at least %g; left out", entry.path,
                               min_tissue_fraction)  # fmt: skip
        if not slices:
            raise InputError(source, f"no slice of the {len(images)} image(s) shows a tissue fraction of at least "
                             f"{min_tissue_fraction:g} at {input_size} px; lower min_tissue_fraction")  # fmt: skip
        self.slices = np.stack(slices)
        self.masks = None if masks[0] is None else np.stack(masks)  # (n, S, S) bool: the chain's masks, if any
        # (n, 2) float64: each slice's volume (mean, std) for the z-score (NaN: its own), if any slice has them
        self.statistics = (np.asarray([(np.nan, np.nan) if s is None else s for s in slice_statistics])
                           if any(s is not None for s in slice_statistics) else None)  # fmt: skip
        self.seed, self.stream = seed, stream
        self._drawn = 0  # slices drawn so far, over all epochs
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.slices)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng((self.seed, self.stream, epoch)).permutation(len(self.slices))}
        return self._orders[epoch]

    def draw(self, n: int) -> np.ndarray:
        """The next ``n`` resized slices (n, S, S) float32 in [0, 1]."""
        return self.draw_batch(n).images

    def draw_batch(self, n: int) -> BankBatch:
        """The next ``n`` resized slices with their chain masks and volume statistics."""
        indices = []
        for position in range(self._drawn, self._drawn + n):
            epoch, offset = divmod(position, len(self.slices))
            indices.append(int(self._order(epoch)[offset]))
        self._drawn += n
        return self._take(indices)

    def spread(self, n: int) -> np.ndarray:
        """``n`` slices evenly spread over the bank (fewer if it holds fewer): a fixed held-out set."""
        return self.spread_batch(n).images

    def spread_batch(self, n: int) -> BankBatch:
        """``spread`` with the slices' chain masks and volume statistics."""
        indices = np.unique(np.linspace(0, len(self.slices) - 1, num=min(n, len(self.slices))).round().astype(int))
        return self._take(indices)

    def _take(self, indices: Sequence[int] | np.ndarray) -> BankBatch:
        masks = [None] * len(indices) if self.masks is None else list(self.masks[indices])
        statistics = ([None] * len(indices) if self.statistics is None
                      else [None if np.isnan(mean) else (float(mean), float(std))
                            for mean, std in self.statistics[indices]])  # fmt: skip
        return BankBatch(self.slices[indices].astype(np.float32), masks, statistics)

    def state_dict(self) -> dict[str, Any]:
        return {"n_slices": len(self.slices), "drawn": self._drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["n_slices"] != len(self.slices):
            raise ValueError(f"slice bank state is for {state['n_slices']} slices, this bank holds {len(self.slices)}")
        self._drawn = int(state["drawn"])


@dataclass(frozen=True)
class Square:
    """One square pasted by ``context_squares``: its top-left corner and side (px) and its fill (network units)."""

    top: int
    left: int
    side: int
    value: float


def context_squares(x: torch.Tensor, max_squares: int = 3, max_side_fraction: float = 0.5,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[list[Square]]]:  # fmt: skip
    """The ceVAE's context-encoding input: a copy of x with squares of a random intensity pasted in.

    Each sample gets a number of squares uniform in 1..max_squares (thesis: 1-3); each square a side uniform in
    1..max(1, max_side_fraction * S) px, a position uniform among those inside the image and one fill value
    uniform between that sample's minimum and maximum (the thesis: "a random intensity", not zeros; the reference
    code draws the fill from the batch's range and one side per sample). Every random number comes from
    ``generator`` (torch's global one when None), on the CPU.

    x: (N, 1, S, S) network input. Returns the copy (N, 1, S, S) and each sample's squares.
    """
    rows, cols = x.shape[-2:]
    longest = max(1, int(max_side_fraction * min(rows, cols)))
    out = x.clone()
    squares: list[list[Square]] = []

    def integer(low: int, high: int) -> int:  # uniform in low..high
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    for i in range(len(x)):
        low, high = float(x[i].min()), float(x[i].max())
        placed = []
        for _ in range(integer(1, max_squares)):
            side = integer(1, longest)
            top, left = integer(0, rows - side), integer(0, cols - side)
            value = low + (high - low) * float(torch.rand((1,), generator=generator))
            out[i, :, top : top + side, left : left + side] = value
            placed.append(Square(top, left, side, value))
        squares.append(placed)
    return out, squares
