"""PatchSVDD's feature bank: the features of normal windows that each window of a new image is compared with.

The reference keeps the feature of every patch of every training image. Here the bank holds the tissue windows of
the normal images at ``bank_stride``, cut as the heatmaps cut them (window K, centred half K/2, background
windows skipped by the same rule), with the features of both scales. When there are more than ``bank_size``
windows, that many are drawn uniformly at random (seeded): a first pass counts each image's tissue windows and a
second encodes only the drawn ones, so neither memory nor time grows with the windows left out. The bank is saved
as safetensors (two float32 tensors, facts as JSON metadata), never pickled.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from picard_ad.data.patches import upscale_to_patch
from picard_ad.data.samples import Sample
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import CorruptFileError, InputError
from picard_ad.io.writers import atomic_path
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows
from picard_ad.methods.patchsvdd.features import WindowFeatures

BANK_FILE = "feature_bank.safetensors"
FORMAT, FORMAT_VERSION = "picard-ad/patchsvdd-bank", 1
METADATA_KEY = "picard_ad"
SCALES = ("window", "centre")  # the window (K px) and its centred half (K/2 px)


@dataclass(frozen=True)
class BankGeometry:
    """Which windows of an image are cut: side ``patch_size`` (K) at ``stride``, px; those whose centred half holds
    no more than ``min_tissue_fraction`` tissue (pixels above ``tissue_threshold``; None: keep all) are skipped."""

    patch_size: int
    stride: int
    tissue_threshold: float | None
    min_tissue_fraction: float

    def windows(self, image: np.ndarray) -> tuple[np.ndarray, WindowGrid, np.ndarray]:
        """(the image, upscaled when a side is below K as training does; its grid; (n,) int64 kept windows)."""
        image = upscale_to_patch(image, self.patch_size)
        grid = WindowGrid.cover(image.shape, self.patch_size, self.patch_size // 2, self.stride)
        if self.tissue_threshold is None:
            return image, grid, np.arange(grid.n_windows)
        keep = tissue_windows(grid, tissue_mask(image, self.tissue_threshold), self.min_tissue_fraction)
        return image, grid, np.flatnonzero(keep.ravel())


@dataclass(frozen=True, eq=False)
class FeatureBank:
    """Features of normal windows: ``features[scale]`` (N, D) float32 for each of ``SCALES``, row i of both from
    the same window; ``facts``: how it was built (JSON-serialisable)."""

    features: dict[str, np.ndarray]
    facts: dict[str, Any]

    def __len__(self) -> int:
        return len(self.features[SCALES[0]])


def draw_windows(counts: Sequence[int], bank_size: int, seed: int) -> list[np.ndarray]:
    """Which of each image's tissue windows enter the bank: per image, sorted positions among its ``counts[i]``
    windows; all of them when there are at most ``bank_size``, else ``bank_size`` drawn uniformly."""
    total = int(sum(counts))
    if total <= bank_size:
        return [np.arange(count) for count in counts]
    chosen = np.sort(np.random.default_rng((seed, 11)).choice(total, size=bank_size, replace=False))
    edges = np.cumsum([0, *counts])
    return [chosen[(chosen >= low) & (chosen < high)] - low for low, high in itertools.pairwise(edges)]


def build_bank(
    samples: Sequence[Sample],
    features: WindowFeatures,
    geometry: BankGeometry,
    *,
    bank_size: int,
    seed: int,
    progress: bool = False,
) -> FeatureBank:
    """The feature bank of normal images (at most ``bank_size`` windows, see ``draw_windows``)."""
    from tqdm import tqdm

    counts = [len(geometry.windows(sample.load_image())[2]) for sample in samples]
    if sum(counts) == 0:
        raise InputError(None, "the normal images hold no tissue window for the feature bank (all background?)")
    drawn = draw_windows(counts, bank_size, seed)
    parts: dict[str, list[torch.Tensor]] = {scale: [] for scale in SCALES}
    chunk = features.preferred_chunk()
    for sample, positions in tqdm(list(zip(samples, drawn)), desc="feature bank", unit="image", disable=not progress,
                                  dynamic_ncols=True):  # fmt: skip
        if len(positions) == 0:
            continue
        image, grid, kept = geometry.windows(sample.load_image())
        selected = kept[positions]
        for start in range(0, len(selected), chunk):
            window, centre = features(extract_windows(image, grid, selected[start : start + chunk]))
            parts["window"].append(window)
            parts["centre"].append(centre)
    facts = {
        "patch_size": geometry.patch_size,
        "stride": geometry.stride,
        "tissue_threshold": geometry.tissue_threshold,
        "min_tissue_fraction": geometry.min_tissue_fraction,
        "images": len(samples),
        "tissue_windows": int(sum(counts)),
        "windows": int(sum(len(positions) for positions in drawn)),
        "seed": seed,
    }
    return FeatureBank({scale: torch.cat(parts[scale]).numpy() for scale in SCALES}, facts)


def write_bank(bank: FeatureBank, path: Path, **facts: Any) -> None:
    """Save ``bank`` to ``path`` (safetensors, atomically); ``facts`` are recorded beside the bank's own."""
    # one metadata entry: safetensors writes several in a random order, and equal banks should be equal files
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "facts": {**bank.facts, **facts}}
    metadata = {METADATA_KEY: json.dumps(record, sort_keys=True)}
    tensors = {scale: torch.from_numpy(np.ascontiguousarray(bank.features[scale])) for scale in SCALES}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)


def read_bank(path: Path) -> FeatureBank:
    """The bank ``write_bank`` saved; InputError when missing, CorruptFileError when not a bank."""
    if not path.is_file():
        raise InputError(path, "missing: the fit did not finish its feature bank (rerun picard-ad fit --resume)")
    try:
        with safe_open(path, "pt") as handle:
            record = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
        tensors = load_file(path)
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"not a readable safetensors file ({exc})") from None
    if record.get("format") != FORMAT or record.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(path, f"not a {FORMAT} version {FORMAT_VERSION} file")
    if set(tensors) != set(SCALES) or len({tuple(tensors[scale].shape) for scale in SCALES}) != 1:
        raise CorruptFileError(path, f"needs tensors {', '.join(SCALES)} of one shape, holds {sorted(tensors)}")
    if tensors[SCALES[0]].ndim != 2 or tensors[SCALES[0]].dtype != torch.float32:
        raise CorruptFileError(path, "its features are not (N, D) float32")
    return FeatureBank({scale: tensors[scale].numpy() for scale in SCALES}, record["facts"])
