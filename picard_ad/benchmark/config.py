"""The benchmark's typed config (``picard-ad benchmark --config``): dataset and split, methods, seed, and PICARD's M
sweep and ablations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from picard_ad.data.phantoms import PhantomConfig
from picard_ad.data.synthetic import ANOMALY_KINDS
from picard_ad.errors import ConfigError
from picard_ad.localize.scoring import check_score_names
from picard_ad.methods import create_method
from picard_ad.methods.picard import PicardSettings
from picard_ad.models import resolve_dropout_layers
from picard_ad.models.layers import DROPOUT_KINDS

REFERENCE_METHODS = ("brightness", "local-contrast")


@dataclass(frozen=True)
class DataConfig:
    """The benchmark's dataset and its train/test split (paths as in the dataset adapters).

    kind: "phantoms" (n_normal, n_abnormal, size (H, W) in pixels, pixel_spacing_mm: None keeps the default
        breast's physical size), "folder" (images_dir, annotations,
        patient_pattern), "bcs-dbt" (boxes_csv, filepaths_csv, root, normal_list) or "nifti-labels" (root,
        image_glob, label_glob, brain_mask_glob, axis).
    test_normal_patients: patients with only normal images that go to the test split: a count (int) or a fraction.
    test_abnormal_patients: patients with any abnormal image that go to the test split (count or fraction); the
        others give their normal images to training.
    max_train_images, max_test_images: keep at most this many images per split, evenly spaced (synthetic test
        images come on top); None keeps all.
    synthetic_test: abnormal test images to add, each a normal test image (seeded choice) with one synthetic anomaly
        (``picard_ad.data.synthetic``, exact mask), named ``{base}_synthetic{i:04d}_{kind}``. They let a dataset
        without labelled anomalies be benchmarked; beside real anomalies, both are also reported apart. 0: none.
    synthetic_validation: synthetic abnormal images made from the normal images of training patients held out from
        fitting; each method's Dice threshold is chosen on them, so no labelled anomaly tunes it (thesis §5). 0: none.
    synthetic_validation_patients: training patients held out for ``synthetic_validation`` (count, or fraction
        rounded); at least one is held out.
    synthetic_kinds: anomaly kinds of both synthetic sets (``picard_ad.data.synthetic.ANOMALY_KINDS``), taken in
        turn.
    """

    kind: Literal["phantoms", "folder", "bcs-dbt", "nifti-labels"] = "phantoms"
    n_normal: int = 32
    n_abnormal: int = 6
    size: tuple[int, int] = (512, 384)
    pixel_spacing_mm: float | None = None
    images_dir: Path | None = None
    annotations: str | None = None
    patient_pattern: str | None = None
    boxes_csv: Path | None = None
    filepaths_csv: Path | None = None
    root: Path | None = None
    normal_list: Path | None = None
    image_glob: str = "*/Flair*.nii.gz"
    label_glob: str = "*/OT*.nii.gz"
    brain_mask_glob: str | None = None
    axis: int = 2
    normalization: str = "auto"
    test_normal_patients: int | float = 2
    test_abnormal_patients: int | float = 1.0
    max_train_images: int | None = None
    max_test_images: int | None = None
    synthetic_test: int = 0
    synthetic_validation: int = 0
    synthetic_validation_patients: int | float = 0.2
    synthetic_kinds: tuple[str, ...] = ANOMALY_KINDS

    def __post_init__(self) -> None:
        needed = {"folder": ("images_dir",), "bcs-dbt": ("boxes_csv", "filepaths_csv"), "nifti-labels": ("root",)}
        missing = [name for name in needed.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"data kind '{self.kind}' needs {', '.join(missing)}")
        for name in ("test_normal_patients", "test_abnormal_patients", "synthetic_validation_patients"):
            value = getattr(self, name)
            if value < 0 or (isinstance(value, float) and value > 1):
                raise ValueError(f"{name} must be a count >= 0 or a fraction in [0, 1], got {value}")
        if self.kind == "phantoms":
            self.phantom_config()  # raises ValueError on sizes the generator refuses
        for name in ("max_train_images", "max_test_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("synthetic_test", "synthetic_validation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be a count >= 0, got {getattr(self, name)}")
        if self.synthetic_validation and not self.synthetic_validation_patients:
            raise ValueError("synthetic_validation needs synthetic_validation_patients > 0 to hold out")
        unknown = [kind for kind in self.synthetic_kinds if kind not in ANOMALY_KINDS]
        if unknown or not self.synthetic_kinds:
            problem = f"unknown kind {unknown[0]!r}" if unknown else "no kind given"
            raise ValueError(f"synthetic_kinds: {problem}; valid kinds: {', '.join(ANOMALY_KINDS)}")

    def phantom_config(self) -> PhantomConfig:
        """The phantom generator's settings for kind "phantoms"."""
        if self.pixel_spacing_mm is None:
            return PhantomConfig().resized(tuple(self.size))
        return dataclasses.replace(PhantomConfig(), size=tuple(self.size), pixel_spacing_mm=self.pixel_spacing_mm)


@dataclass(frozen=True)
class MethodEntry:
    """One benchmarked method: its registered name and its config keys (as ``create_method`` takes them)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.config, dict):
            raise TypeError(f"method '{self.name}': config must be a mapping, got {self.config!r}")


@dataclass(frozen=True)
class PicardAblations:
    """PICARD variants scored with the benchmark's one trained PICARD, each a row of the report beside the
    trivial references. A variant changes one ``PicardSettings`` field of the benchmark's PICARD; a value equal to
    the benchmark's own setting reuses its maps. Empty lists run nothing.

    scores: score names (``picard_ad.localize.scoring.SCORE_NAMES``): PICARD's Table 3 (mcd, mean, median x
        image, feature space) and Swiecicki et al.'s single-completion mse, critic and dmse (their Table 2); the
        missing ones of an image come from one pass over its windows.
    dropout_presets: dropout layer presets ("reference", "paper"; ``picard_ad.models.DROPOUT_PRESETS``).
    dropout_kinds: "spatial" (whole channels, PICARD's) and "element" (single activations, the regular dropout of
        the paper's appendix B.2).
    """

    scores: tuple[str, ...] = ()
    dropout_presets: tuple[str, ...] = ()
    dropout_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key, values in (
            ("scores", self.scores),
            ("dropout_presets", self.dropout_presets),
            ("dropout_kinds", self.dropout_kinds),
        ):
            repeated = sorted({value for value in values if values.count(value) > 1})
            if repeated:
                raise ConfigError(
                    f"picard_ablations.{key}: each value may be listed once; repeated: {', '.join(repeated)}"
                )
        try:
            if self.scores:
                check_score_names(self.scores)
            for preset in self.dropout_presets:
                resolve_dropout_layers(preset)
        except ConfigError as exc:
            raise ConfigError(f"picard_ablations: {exc}") from None
        unknown = [kind for kind in self.dropout_kinds if kind not in DROPOUT_KINDS]
        if unknown:
            raise ConfigError(
                f"picard_ablations: unknown dropout kind {unknown[0]!r}; valid kinds: {', '.join(DROPOUT_KINDS)}"
            )

    def variants(self) -> list[tuple[str, str]]:
        """(PicardSettings field, value) of every variant, in report order."""
        return (
            [("score", value) for value in self.scores]
            + [("dropout_layers", value) for value in self.dropout_presets]
            + [("dropout_kind", value) for value in self.dropout_kinds]
        )


ABLATION_SETTINGS = ("score", "dropout_layers", "dropout_kind")
"""The PicardSettings fields that ``PicardAblations`` varies, in report order."""


@dataclass(frozen=True)
class BenchmarkConfig:
    """What ``picard-ad benchmark`` runs: data, methods (references added when missing) and the split seed."""

    data: DataConfig = field(default_factory=DataConfig)
    methods: tuple[MethodEntry, ...] = ()
    seed: int = 0
    picard_m_sweep: tuple[int, ...] = ()  # PICARD's tissue pixel AUROC for each M (n_completions), one trained model
    picard_ablations: PicardAblations = field(default_factory=PicardAblations)

    def __post_init__(self) -> None:
        names = [entry.name for entry in self.methods]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"each method may be listed once; repeated: {', '.join(repeated)}")
        if self.picard_m_sweep and "picard" not in names:
            raise ValueError("picard_m_sweep needs method 'picard' in methods")
        if any(m < 1 for m in self.picard_m_sweep):
            raise ValueError(f"picard_m_sweep values must be at least 1, got {list(self.picard_m_sweep)}")
        variants = self.picard_ablations.variants()
        if variants and "picard" not in names:
            raise ValueError("picard_ablations needs method 'picard' in methods")
        if variants:
            settings = self.picard_settings()
            for setting, value in variants:  # e.g. element dropout with the "paper" layers is refused
                try:
                    dataclasses.replace(settings, **{setting: value})
                except ConfigError as exc:
                    raise ConfigError(f"picard_ablations: {setting} {value!r}: {exc}") from None

    def picard_settings(self) -> PicardSettings:
        """The PicardSettings of the listed method 'picard'."""
        entry = next(entry for entry in self.methods if entry.name == "picard")
        return create_method("picard", **entry.config).config.settings

    def all_methods(self) -> tuple[MethodEntry, ...]:
        """The listed methods, then any trivial reference that is not listed."""
        listed = {entry.name for entry in self.methods}
        return self.methods + tuple(MethodEntry(name) for name in REFERENCE_METHODS if name not in listed)
