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

The metrics themselves are computed by ``evaluate_images`` (``picard_ad.evaluation.core``) from any
``ImageSource`` (``sources``): ``evaluate`` feeds it the heatmap files (``HeatmapFiles``), the benchmark its score
maps in memory (``ArrayImages``). Every pixel metric is computed twice: over the whole image, as the papers report
it, and over tissue only (``tissue_mask`` of the source image, or given masks), because dark background that any
map scores low inflates whole-image AUROC. Pixel AUROC/AP are given per image (mean, median) and pooled over all
images. Outputs: ``metrics.json``, ``per_image.csv``, ``metrics.md``, ``froc.csv`` and the resolved
``config.yaml``, each written atomically.
"""

from picard_ad.evaluation.config import EvaluationConfig
from picard_ad.evaluation.core import VARIANTS, Evaluation, PooledPixels, evaluate_images
from picard_ad.evaluation.inputs import (
    HeatmapEntry,
    HeatmapFiles,
    ImageLoader,
    find_heatmaps,
    read_heatmap,
)
from picard_ad.evaluation.job import evaluate
from picard_ad.evaluation.report import write_evaluation
from picard_ad.evaluation.sources import ArrayImages, EvaluatedImage, ImageInfo, ImageSource

__all__ = [
    "VARIANTS",
    "ArrayImages",
    "EvaluatedImage",
    "Evaluation",
    "EvaluationConfig",
    "HeatmapEntry",
    "HeatmapFiles",
    "ImageInfo",
    "ImageLoader",
    "ImageSource",
    "PooledPixels",
    "evaluate",
    "evaluate_images",
    "find_heatmaps",
    "read_heatmap",
    "write_evaluation",
]
