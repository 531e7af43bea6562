"""Where the evaluated images come from: a small protocol read one image at a time, and its in-memory form.

``evaluate_images`` reads any ``ImageSource``: ``picard-ad evaluate`` feeds it heatmap files (``HeatmapFiles``), a
caller holding its score maps in memory, such as the benchmark, an ``ArrayImages``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from picard_ad.io.annotations import Box
from picard_ad.metrics.lesions import lesions_from_mask
from picard_ad.metrics.ranking import binary_labels


@dataclass(frozen=True)
class ImageInfo:
    """What is known of an image without reading its pixels.

    name: unique within its source, used in rows, notes and errors. identity: equal for two entries of the same
    image (the calibration split must not share one with the test split). shape: (H, W) pixels. fields: extra
    per-image row fields placed after the name (``picard-ad evaluate``: source, slice_index, heatmap).
    """

    name: str
    identity: str
    shape: tuple[int, int]
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class EvaluatedImage:
    """An image ready to evaluate: heatmap (H, W) real, finite; lesion and tissue masks (H, W) bool; lesions as
    boxes (px) for lesion-level sensitivity."""

    info: ImageInfo
    heatmap: np.ndarray
    lesion: np.ndarray
    tissue: np.ndarray
    lesions: tuple[Box, ...]


class ImageSource(Protocol):
    """Images to evaluate, indexed 0..len-1 and read on demand, so only one is held in memory at a time.

    info(i): metadata without reading pixels. load(i): the whole image. heatmap(i): its heatmap alone, as
    ``load(i).heatmap``, for the second (Dice) pass.
    """

    def __len__(self) -> int: ...

    def info(self, index: int) -> ImageInfo: ...

    def load(self, index: int) -> EvaluatedImage: ...

    def heatmap(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class ArrayImages:
    """An ``ImageSource`` over arrays held in memory (or sequences that compute item i on access).

    names: N unique image names. heatmaps: N (H, W) real, finite score maps. lesion_masks, tissue_masks: N (H, W)
    bool (or 0/1). lesions: N sequences of boxes (px); None: one box per 8-connected region of the lesion mask
    (``lesions_from_mask``). identities: N; None: the names. fields: N mappings of extra row fields; None: none.
    """

    names: Sequence[str]
    heatmaps: Sequence[np.ndarray]
    lesion_masks: Sequence[np.ndarray]
    tissue_masks: Sequence[np.ndarray]
    lesions: Sequence[Sequence[Box]] | None = None
    identities: Sequence[str] | None = None
    fields: Sequence[Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        lengths = {
            key: len(value) for key, value in vars(self).items() if value is not None and key != "names"
        }
        wrong = {key: n for key, n in lengths.items() if n != len(self.names)}
        if wrong:
            raise ValueError(f"ArrayImages: {len(self.names)} names but {wrong} items; give one per image")

    def __len__(self) -> int:
        return len(self.names)

    def info(self, index: int) -> ImageInfo:
        return self._info(index, np.shape(self.heatmaps[index]))

    def load(self, index: int) -> EvaluatedImage:
        heatmap = self.heatmap(index)
        name = self.names[index]
        lesion = binary_labels(self.lesion_masks[index], what=f"image {name!r}: lesion mask")
        tissue = binary_labels(self.tissue_masks[index], what=f"image {name!r}: tissue mask")
        if heatmap.ndim != 2 or lesion.shape != heatmap.shape or tissue.shape != heatmap.shape:
            raise ValueError(f"image {name!r}: heatmap {heatmap.shape}, lesion mask {lesion.shape} and tissue mask "
                             f"{tissue.shape} must be equal (H, W) shapes")
        lesions = lesions_from_mask(lesion) if self.lesions is None else self.lesions[index]
        return EvaluatedImage(self._info(index, heatmap.shape), heatmap, lesion, tissue, tuple(lesions))

    def heatmap(self, index: int) -> np.ndarray:
        return np.asarray(self.heatmaps[index])

    def _info(self, index: int, shape: tuple[int, ...]) -> ImageInfo:
        identity = self.names[index] if self.identities is None else self.identities[index]
        return ImageInfo(self.names[index], identity, tuple(shape), {} if self.fields is None else self.fields[index])
