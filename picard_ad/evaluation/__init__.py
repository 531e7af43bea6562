"""The job behind ``picard-ad evaluate``: heatmaps + annotations + tissue masks -> per-image and aggregate metrics.

Heatmap contract (what ``picard-ad heatmap`` writes; another method's maps are evaluated if written the same way):
every ``NAME_heatmap.npy`` (one (H, W) float map) or ``NAME_heatmap.nii.gz`` (slice i is ``data[:, :, i]``)
under the heatmaps folder has a sidecar ``NAME.json`` beside it holding ``"input"``, the source image path
(absolute, or relative to the sidecar's folder or to the working folder; ``"key": {"input": {"path"}}``, the
absolute path ``picard-ad heatmap`` records, is tried last), and ``"slices": [{"slice_index": i}, ...]``, the
source slices the heatmap holds (may be left out for a 2-D image: slice 0). The heatmap lies in the source's
stored orientation, at its resolution.

Annotations (any spec of ``picard_ad.io.annotations.read_annotations``) are matched to the heatmaps' source images
all at once: an annotation names an image by its path relative to the annotated root, and one that would name two
sources is refused. A source without annotation is evaluated as a normal image; such heatmaps, and annotated images
without heatmap, are listed in ``metrics.json`` and its notes, and a source whose name misses an annotation's only
by letter case, zero padding or separators is refused as a likely misspelling.

Every pixel metric is computed twice: over the whole image, as the papers report it, and over tissue only
(``tissue_mask`` of the source image, or given masks), because dark background that any map scores low inflates
whole-image AUROC. Two passes keep memory bounded: the first reads each image once and keeps only small
per-image results (and packed masks of lesion images); the second re-reads the heatmaps of lesion images for
Dice. Outputs: ``metrics.json``, ``per_image.csv``, ``metrics.md``, ``froc.csv`` and the resolved
``config.yaml``, each written atomically.
"""

from picard_ad.evaluation.inputs import (
    HeatmapEntry,
    ImageLoader,
    LoadedImage,
    find_heatmaps,
    read_heatmap,
)
from picard_ad.evaluation.job import VARIANTS, Evaluation, EvaluationConfig, evaluate
from picard_ad.evaluation.report import write_evaluation

__all__ = [
    "VARIANTS",
    "Evaluation",
    "EvaluationConfig",
    "HeatmapEntry",
    "ImageLoader",
    "LoadedImage",
    "evaluate",
    "find_heatmaps",
    "read_heatmap",
    "write_evaluation",
]
