"""The benchmark's typed results: one per method, one per PICARD ablation variant, and the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from picard_ad.benchmark.config import REFERENCE_METHODS, BenchmarkConfig
from picard_ad.config import to_dict
from picard_ad.data.samples import Sample
from picard_ad.io.writers import strict_json


@dataclass
class MethodResult:
    """Metrics and timings of one method on the test split; ``per_image`` holds (name, tissue pixel AUROC), synthetic
    test images named ``..._synthetic{i:04d}_{kind}``; ``real_vs_synthetic`` maps "real" and "synthetic" to the
    metrics of each kind of abnormal test image apart (``evaluate_by_origin``; empty unless the test split has both);
    ``maps_computed`` counts test and synthetic validation maps computed now. ``name`` is the method entry's label,
    ``method`` its registered method (None: the same as ``name``)."""

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    per_image: list[tuple[str, float]]
    reused_fit: bool
    maps_computed: int
    beats_references: bool | None = None
    real_vs_synthetic: dict[str, dict[str, Any]] = field(default_factory=dict)
    method: str | None = None

    @property
    def is_reference(self) -> bool:
        """Whether this is a trivial reference (``REFERENCE_METHODS``), whatever its label."""
        return (self.method or self.name) in REFERENCE_METHODS


@dataclass
class AblationResult:
    """One variant of an ablation, evaluated like a method: the method entry's label, the setting it changes and the
    value it takes (as a label), metrics (as ``MethodResult.metrics``, without fit time), per-image tissue pixel
    AUROC of the abnormal test images as (name, AUROC), maps computed now, and whether it beats the best
    reference."""

    method: str
    setting: str
    value: str
    metrics: dict[str, Any]
    per_image: list[tuple[str, float]]
    maps_computed: int
    beats_references: bool | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.setting}={self.value}"


@dataclass
class BenchmarkResult:
    """The whole benchmark: config, data summary, one MethodResult per method, the test samples (real, then
    synthetic), per method the pooled tissue pixels as (labels (N,) bool, scores (N,) float32), and the ablations'
    variants."""

    config: BenchmarkConfig
    data_summary: dict[str, Any]
    methods: list[MethodResult]
    best_reference: str
    test: list[Sample] = field(repr=False, default_factory=list)
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=dict)
    ablations: list[AblationResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return strict_json(
            {
                "config": to_dict(self.config),
                "data": self.data_summary,
                "best_reference": self.best_reference,
                "methods": {
                    m.name: {
                        "method": m.method or m.name,
                        **m.metrics,
                        "config": m.config,
                        "beats_references": m.beats_references,
                        "reused_fit": m.reused_fit,
                        "maps_computed": m.maps_computed,
                        "per_image_tissue_pixel_auroc": dict(m.per_image),
                        "real_vs_synthetic": m.real_vs_synthetic,
                    }
                    for m in self.methods
                },
                "ablations": [
                    {
                        "method": a.method,
                        "setting": a.setting,
                        "value": a.value,
                        **a.metrics,
                        "beats_references": a.beats_references,
                        "maps_computed": a.maps_computed,
                        "per_image_tissue_pixel_auroc": dict(a.per_image),
                    }
                    for a in self.ablations
                ],
            }
        )
