"""The benchmark's typed config (``picard-ad benchmark --config``): dataset and split, methods, seed, and ablations
(a fitted method rescored with one setting changed)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from picard_ad.config import from_dict, to_dict
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.data.synthetic import ANOMALY_KINDS
from picard_ad.errors import ConfigError
from picard_ad.methods import AnomalyMethod, create_method

REFERENCE_METHODS = ("brightness", "local-contrast")


@dataclass(frozen=True)
class DataConfig:
    """The benchmark's dataset and its train/test split (paths as in the dataset adapters).

    kind: "phantoms" (n_normal, n_abnormal, size (H, W) in pixels, pixel_spacing_mm: None keeps the default
        breast's physical size), "folder" (images_dir, annotations,
        patient_pattern), "bcs-dbt" (boxes_csv, filepaths_csv, root, normal_list) or "nifti-labels" (root,
        image_glob, label_glob, brain_mask_glob, axis).
    test_normal_patients, test_normal_fraction: patients with only normal images that go to the test split, as a
        count or as a fraction of them (rounded); at most one of the two; neither: 2 patients.
    test_abnormal_patients, test_abnormal_fraction: patients with any abnormal image that go to the test split (a
        count or a fraction; neither: all of them); the others give their normal images to training.
    test_patients: the test split's patients by id, instead of a seeded choice (a fold of a cross-validation, e.g.
        leave one patient out); excludes the four counts and fractions above.
    max_train_images, max_test_images: keep at most this many images per split, evenly spaced (synthetic test
        images come on top); None keeps all.
    max_side: images (with their masks) whose longer side exceeds this many pixels are shrunk to it when loaded,
        aspect kept (``picard_ad.data.samples.shrunk``), before anything else sees them: fitting, synthetic
        anomalies, scoring and evaluation. For large images (4,500 x 2,800 px mammograms) scored by methods with a
        64-128 px input; None: as read.
    synthetic_test: abnormal test images to add, each a normal test image (seeded choice) with one synthetic anomaly
        (``picard_ad.data.synthetic``, exact mask), named ``{base}_synthetic{i:04d}_{kind}``. They let a dataset
        without labelled anomalies be benchmarked; beside real anomalies, both are also reported apart. 0: none.
    synthetic_validation: synthetic abnormal images made from the normal images of training patients held out from
        fitting; each method's Dice threshold is chosen on them, so no labelled anomaly tunes it (thesis §5). 0: none.
    synthetic_validation_patients, synthetic_validation_fraction: training patients held out for
        ``synthetic_validation``, as a count or a fraction (rounded; neither: 0.2); at least one is held out.
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
    test_normal_patients: int | None = None
    test_normal_fraction: float | None = None
    test_abnormal_patients: int | None = None
    test_abnormal_fraction: float | None = None
    test_patients: tuple[str, ...] | None = None
    max_train_images: int | None = None
    max_test_images: int | None = None
    max_side: int | None = None
    synthetic_test: int = 0
    synthetic_validation: int = 0
    synthetic_validation_patients: int | None = None
    synthetic_validation_fraction: float | None = None
    synthetic_kinds: tuple[str, ...] = ANOMALY_KINDS

    def __post_init__(self) -> None:
        needed = {"folder": ("images_dir",), "bcs-dbt": ("boxes_csv", "filepaths_csv"), "nifti-labels": ("root",)}
        missing = [name for name in needed.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"data kind '{self.kind}' needs {', '.join(missing)}")
        for share in ("test_normal", "test_abnormal", "synthetic_validation"):
            count, fraction = getattr(self, f"{share}_patients"), getattr(self, f"{share}_fraction")
            if count is not None and fraction is not None:
                raise ValueError(f"give {share}_patients (a count) or {share}_fraction, not both")
            if count is not None and count < 0:
                raise ValueError(f"{share}_patients must be a count >= 0, got {count}")
            if fraction is not None and not 0.0 <= fraction <= 1.0:
                raise ValueError(f"{share}_fraction must be in [0, 1], got {fraction}")
        if self.test_patients is not None:
            patients = self.test_patients
            object.__setattr__(self, "test_patients", (patients,) if isinstance(patients, str) else tuple(patients))
            shares = [f"test_{group}_{kind}" for group in ("normal", "abnormal") for kind in ("patients", "fraction")]
            counted = [name for name in shares if getattr(self, name) is not None]
            if counted:
                raise ValueError(f"give test_patients or {counted[0]}, not both")
            if not self.test_patients:
                raise ValueError("test_patients names no patient")
        if self.kind == "phantoms":
            self.phantom_config()  # raises ValueError on sizes the generator refuses
        for name in ("max_train_images", "max_test_images", "max_side"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("synthetic_test", "synthetic_validation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be a count >= 0, got {getattr(self, name)}")
        if self.synthetic_validation and not self.patient_share("synthetic_validation"):
            raise ValueError("synthetic_validation needs patients to hold out (synthetic_validation_patients or "
                             "_fraction > 0)")
        unknown = [kind for kind in self.synthetic_kinds if kind not in ANOMALY_KINDS]
        if unknown or not self.synthetic_kinds:
            problem = f"unknown kind {unknown[0]!r}" if unknown else "no kind given"
            raise ValueError(f"synthetic_kinds: {problem}; valid kinds: {', '.join(ANOMALY_KINDS)}")

    def patient_share(self, share: Literal["test_normal", "test_abnormal", "synthetic_validation"]) -> int | float:
        """How many patients of a group to choose: a count (int) or a fraction (float), with the defaults above."""
        count, fraction = getattr(self, f"{share}_patients"), getattr(self, f"{share}_fraction")
        if count is not None:
            return count
        if fraction is not None:
            return fraction
        return {"test_normal": 2, "test_abnormal": 1.0, "synthetic_validation": 0.2}[share]

    def phantom_config(self) -> PhantomConfig:
        """The phantom generator's settings for kind "phantoms"."""
        if self.pixel_spacing_mm is None:
            return PhantomConfig().resized(tuple(self.size))
        return dataclasses.replace(PhantomConfig(), size=tuple(self.size), pixel_spacing_mm=self.pixel_spacing_mm)


@dataclass(frozen=True)
class MethodEntry:
    """One benchmarked method: its registered name, the training preset its ``train`` keys start from (None: the
    method's default), its training-config and settings keys (as ``create_method`` takes them), and its label.

    label: the entry's name in the report and results, in ablations (``method: LABEL``) and as its folders
        ``OUT/methods/LABEL`` and ``OUT/maps/LABEL``; None (the default) becomes the method's name. Labels let one
        method be fitted several times with other settings, e.g. once per preprocessing chain (``label: cae-raw,
        settings: {preprocessing: raw}``): each entry is a separate fit. Letters, digits, ``.``, ``_`` and ``-``.
    """

    name: str
    preset: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self) -> None:
        if self.label is None:
            object.__setattr__(self, "label", self.name)
        if not isinstance(self.label, str) or not self.label or self.label.startswith(".") or (
            _folder_safe(self.label) != self.label
        ):
            raise ConfigError(f"method '{self.name}': label {self.label!r} must be a folder name of letters, digits, "
                              "'.', '_' and '-', not starting with '.'")  # fmt: skip
        for key in ("train", "settings"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"method '{self.label}': {key} must be a mapping, got {getattr(self, key)!r}")

    def create(self) -> AnomalyMethod:
        """The unfitted method (ConfigError names an unknown method or key)."""
        return create_method(self.name, preset=self.preset, train=self.train, settings=self.settings)


def _folder_safe(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return "".join(char if char.isalnum() or char in "._-" else "_" for char in text)


@dataclass(frozen=True)
class Ablation:
    """A fitted method rescored with one of its settings changed to each value, every variant a row of the report
    beside the trivial references (e.g. PICARD's M sweep: ``method: picard, setting: n_completions, values: [1, 5,
    10]``). ``method`` is the label of a method entry (its name unless the entry sets ``label``). A value equal to
    the method's own setting reuses its maps; the variants of ``setting: score`` come from one pass over each
    image."""

    method: str
    setting: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        labels = [self.label(value) for value in self.values]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"ablation {self.method}.{self.setting}: each value may be listed once; repeated: "
                              f"{', '.join(repeated)}")  # fmt: skip
        if not self.values:
            raise ConfigError(f"ablation {self.method}.{self.setting}: no values")

    @staticmethod
    def label(value: Any) -> str:
        """The value as the report and the cache folders name it."""
        return _folder_safe(value)

    def folder_name(self, value: Any) -> str:
        """The cache folder of one variant's maps under ``OUT/maps`` (``method`` is the entry's label)."""
        return f"{self.method}-{self.setting}-{self.label(value)}"

    def variant_settings(self, method: AnomalyMethod, value: Any) -> Any:
        """The method's settings with this ablation's setting set to ``value``, checked."""
        where = f"ablation {self.method}.{self.setting} = {value!r}"
        if self.setting not in to_dict(method.settings):
            raise ConfigError(f"{where}: method '{self.method}' has no setting '{self.setting}'; its settings: "
                              f"{', '.join(to_dict(method.settings))}")  # fmt: skip
        return from_dict(type(method.settings), {**to_dict(method.settings), self.setting: value}, where=where)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What ``picard-ad benchmark`` runs: data, methods (references added when missing), the split seed, and
    ablations of the fitted methods."""

    data: DataConfig = field(default_factory=DataConfig)
    methods: tuple[MethodEntry, ...] = ()
    seed: int = 0
    ablations: tuple[Ablation, ...] = ()

    def __post_init__(self) -> None:
        labels = [entry.label for entry in self.all_methods()]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"each method entry needs its own label (default: the method's name); repeated: "
                              f"{', '.join(repeated)} (give the entries of one method distinct 'label's)")  # fmt: skip
        entries = {entry.label: entry for entry in self.all_methods()}
        for ablation in self.ablations:
            if ablation.method not in entries:
                raise ConfigError(f"ablation of '{ablation.method}': no method entry has this label ("
                                  f"{', '.join(labels)})")  # fmt: skip
            method = entries[ablation.method].create()
            for value in ablation.values:  # e.g. PICARD's element dropout with the "paper" layers is refused
                ablation.variant_settings(method, value)
                if ablation.folder_name(value) in entries:  # the variant's maps would land in that entry's folder
                    raise ConfigError(f"ablation {ablation.method}.{ablation.setting} = {value!r}: its maps folder "
                                      f"'{ablation.folder_name(value)}' is a method entry's label; rename that label")

    def all_methods(self) -> tuple[MethodEntry, ...]:
        """The listed methods, then any trivial reference whose method is not listed."""
        listed = {entry.name for entry in self.methods}
        return self.methods + tuple(MethodEntry(name) for name in REFERENCE_METHODS if name not in listed)

    def entry(self, label: str) -> MethodEntry:
        """The method entry (listed or reference) of ``label``."""
        for entry in self.all_methods():
            if entry.label == label:
                return entry
        raise KeyError(f"no method entry labelled {label!r}")
