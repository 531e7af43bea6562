"""Evaluation metrics: exact ranking metrics, per-image pixel localization, Dice with calibration, MOOD AP."""

from picard_ad.metrics.localization import (
    ImageMetrics,
    LocalizationSummary,
    image_level_metrics,
    pixel_metrics,
    summarize,
)
from picard_ad.metrics.mood import (
    mood_batch_aps,
    mood_batches,
    mood_pixel_ap,
    mood_sample_ap,
)
from picard_ad.metrics.ranking import (
    PrecisionRecallCurve,
    RocCurve,
    ThresholdCounts,
    average_precision,
    average_precision_from_counts,
    binary_labels,
    precision_recall_curve,
    roc_auc,
    roc_auc_from_counts,
    roc_curve,
    threshold_counts,
)
from picard_ad.metrics.segmentation import (
    DiceEvaluation,
    ThresholdCalibration,
    best_dice,
    calibrate_threshold,
    dice,
    dice_at_threshold,
)

__all__ = [
    "DiceEvaluation",
    "ImageMetrics",
    "LocalizationSummary",
    "PrecisionRecallCurve",
    "RocCurve",
    "ThresholdCalibration",
    "ThresholdCounts",
    "average_precision",
    "average_precision_from_counts",
    "best_dice",
    "binary_labels",
    "calibrate_threshold",
    "dice",
    "dice_at_threshold",
    "image_level_metrics",
    "mood_batch_aps",
    "mood_batches",
    "mood_pixel_ap",
    "mood_sample_ap",
    "pixel_metrics",
    "precision_recall_curve",
    "roc_auc",
    "roc_auc_from_counts",
    "roc_curve",
    "summarize",
    "threshold_counts",
]
