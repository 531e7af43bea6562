"""``picard-ad benchmark``: fit several methods on the normal training images of one dataset, score its test images
and compare them, with the trivial reference maps always beside them.

PICARD's ablations (its M sweep, then scores, dropout layers and dropout kind) rescore the test images with the one
trained PICARD, changing one setting at a time, and are evaluated like the methods.

The job is resumable: a fitted method is saved under ``OUT/methods/NAME`` (reused when its config is unchanged) and
every score map is cached under ``OUT/maps/NAME`` (a PICARD variant's under ``OUT/maps/picard-SETTING-VALUE``), so an
interrupted run recomputes nothing it finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from picard_ad.config import from_dict, to_dict
from picard_ad.data.datasets import (
    bcs_dbt_dataset,
    folder_dataset,
    nifti_label_dataset,
    phantom_dataset,
)
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.errors import ConfigError
from picard_ad.io.writers import atomic_path, atomic_write_text
from picard_ad.localize.scoring import check_score_names
from picard_ad.methods import AnomalyMethod, create_method
from picard_ad.methods.base import METHOD_FILE, read_method_record
from picard_ad.methods.picard import Picard, PicardSettings
from picard_ad.metrics import (
    average_precision,
    image_level_metrics,
    json_ready,
    pixel_metrics,
    roc_auc,
    summarize,
)
from picard_ad.models import resolve_dropout_layers
from picard_ad.models.layers import DROPOUT_KINDS

__all__ = [
    "AblationResult",
    "BenchmarkConfig",
    "BenchmarkResult",
    "DataConfig",
    "MethodEntry",
    "MethodResult",
    "PicardAblations",
    "evaluate_maps",
    "fitted_method",
    "flag_methods",
    "load_dataset",
    "map_file",
    "picard_m_point",
    "picard_variant",
    "run_benchmark",
    "score_map_sets",
    "score_maps",
    "score_picard_ablations",
    "split_dataset",
]

REFERENCE_METHODS = ("brightness", "local-contrast")
FIT_RECORD = "fit.json"
TIMINGS_FILE = "timings.json"


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
    max_train_images, max_test_images: keep at most this many images per split, evenly spaced; None keeps all.
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

    def __post_init__(self) -> None:
        needed = {"folder": ("images_dir",), "bcs-dbt": ("boxes_csv", "filepaths_csv"), "nifti-labels": ("root",)}
        missing = [name for name in needed.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"data kind '{self.kind}' needs {', '.join(missing)}")
        for name in ("test_normal_patients", "test_abnormal_patients"):
            value = getattr(self, name)
            if value < 0 or (isinstance(value, float) and value > 1):
                raise ValueError(f"{name} must be a count >= 0 or a fraction in [0, 1], got {value}")
        if self.kind == "phantoms":
            self.phantom_config()  # raises ValueError on sizes the generator refuses
        for name in ("max_train_images", "max_test_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

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
        for key, values in (("scores", self.scores), ("dropout_presets", self.dropout_presets),
                            ("dropout_kinds", self.dropout_kinds)):
            repeated = sorted({value for value in values if values.count(value) > 1})
            if repeated:
                raise ConfigError(f"picard_ablations.{key}: each value may be listed once; repeated: "
                                  f"{', '.join(repeated)}")
        try:
            if self.scores:
                check_score_names(self.scores)
            for preset in self.dropout_presets:
                resolve_dropout_layers(preset)
        except ConfigError as exc:
            raise ConfigError(f"picard_ablations: {exc}") from None
        unknown = [kind for kind in self.dropout_kinds if kind not in DROPOUT_KINDS]
        if unknown:
            raise ConfigError(f"picard_ablations: unknown dropout kind {unknown[0]!r}; valid kinds: "
                              f"{', '.join(DROPOUT_KINDS)}")

    def variants(self) -> list[tuple[str, str]]:
        """(PicardSettings field, value) of every variant, in report order."""
        return ([("score", value) for value in self.scores]
                + [("dropout_layers", value) for value in self.dropout_presets]
                + [("dropout_kind", value) for value in self.dropout_kinds])


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


# --- data -----------------------------------------------------------------------------------------------------------


def load_dataset(data: DataConfig, seed: int) -> list[Sample]:
    """All samples of the configured dataset."""
    if data.kind == "phantoms":
        return phantom_dataset(data.n_normal, data.n_abnormal, data.phantom_config(), seed)
    if data.kind == "folder":
        return folder_dataset(data.images_dir, data.annotations, patient_pattern=data.patient_pattern,
                              normalization=data.normalization)
    if data.kind == "bcs-dbt":
        return bcs_dbt_dataset(data.boxes_csv, data.filepaths_csv, data.root, data.normal_list,
                               normalization=data.normalization)
    return nifti_label_dataset(data.root, data.image_glob, data.label_glob, data.brain_mask_glob, data.axis,
                               normalization=data.normalization)


def _evenly(samples: list[Sample], limit: int | None) -> list[Sample]:
    if limit is None or len(samples) <= limit:
        return samples
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]


def _test_patients(patients: list[str], wanted: float, seed: int) -> set[str]:
    """A seeded random choice of ``wanted`` (an int count, or a float fraction rounded) of the sorted ``patients``."""
    count = min(len(patients), round(wanted * len(patients)) if isinstance(wanted, float) else wanted)
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[int(i)] for i in order[:count]}


def split_dataset(samples: Sequence[Sample], data: DataConfig, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, test): train holds the normal images of the patients outside the test split."""
    abnormal = sorted({s.patient_id for s in samples if not s.is_normal})
    normal_only = sorted({s.patient_id for s in samples} - set(abnormal))
    test = _test_patients(abnormal, data.test_abnormal_patients, seed)
    test |= _test_patients(normal_only, data.test_normal_patients, seed + 1)
    train = [s for s in samples if s.patient_id not in test and s.is_normal]
    tested = [s for s in samples if s.patient_id in test]
    train, tested = _evenly(train, data.max_train_images), _evenly(tested, data.max_test_images)
    if not train:
        raise ConfigError("the benchmark's training split holds no normal image; test fewer patients")
    if not any(not s.is_normal for s in tested):
        raise ConfigError("the benchmark's test split holds no abnormal image; test more abnormal patients")
    return train, tested


# --- fitting and scoring --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _resolved(method: AnomalyMethod, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return _plain(to_dict(from_dict(type(method.config), config, where=f"saved method '{method.name}'")))
    except ConfigError:
        return config  # not a config this method takes: it cannot match


def fitted_method(entry: MethodEntry, train: Sequence[Sample], method_dir: Path) -> tuple[AnomalyMethod, float, bool]:
    """(method, fit seconds, reused): the saved method in ``method_dir`` when its config matches, else a new fit."""
    method = create_method(entry.name, **entry.config)
    if (method_dir / METHOD_FILE).is_file():
        record = read_method_record(method_dir)
        # Resolved, so that a method saved before a setting existed (its record lacks the key) still matches.
        if record["name"] != entry.name or _resolved(method, record["config"]) != _plain(to_dict(method.config)):
            raise ConfigError(f"{method_dir}: holds '{record['name']}' fitted with another config; remove the "
                              "folder or choose another --out")
        seconds = json.loads((method_dir / FIT_RECORD).read_text())["fit_seconds"]
        return AnomalyMethod.load(method_dir), seconds, True
    start = time.perf_counter()
    method.fit(train, work_dir=method_dir / "work")
    seconds = time.perf_counter() - start
    atomic_write_text(method_dir / FIT_RECORD, json.dumps({"fit_seconds": seconds}))  # before method.json, which
    method.save(method_dir)  # marks the fit finished
    return method, seconds, False


def map_file(maps_dir: Path, sample: Sample) -> Path:
    """Where the score map of ``sample`` is cached (folders in its name flattened)."""
    return maps_dir / (sample.name.replace("/", "__") + ".npy")


def score_maps(
    score_map: Callable[[np.ndarray], np.ndarray], test: Sequence[Sample], maps_dir: Path
) -> tuple[list[np.ndarray], list[float], int]:
    """(score maps, seconds per map, maps computed now) of the test samples; cached maps are read back.

    score_map: image (H, W) float32 in [0, 1] -> score map (H, W) float32, e.g. a method's ``score_map``.
    """
    maps, seconds, computed = score_map_sets(lambda image, _: {"": score_map(image)}, test, {"": maps_dir})
    return maps[""], seconds[""], computed[""]


def score_map_sets(
    score_maps: Callable[[np.ndarray, tuple[str, ...]], dict[str, np.ndarray]],
    test: Sequence[Sample],
    maps_dirs: dict[str, Path],
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[float]], dict[str, int]]:
    """Score maps of several variants that one call computes together (PICARD's scores from one pass over the
    windows), each cached in its own folder as ``score_maps`` caches one.

    score_maps: (image (H, W) float32 in [0, 1], names of the variants it still lacks) -> name -> score map (H, W).
    maps_dirs: variant name -> its cache folder.
    Returns, by variant name: the score maps of the test samples, the seconds of the call that computed each map
    (shared by the variants computed in that call) and how many maps were computed now.
    """
    timings = {name: _timings(folder) for name, folder in maps_dirs.items()}
    maps: dict[str, list[np.ndarray]] = {name: [] for name in maps_dirs}
    computed = dict.fromkeys(maps_dirs, 0)
    for sample in test:
        missing = tuple(name for name, folder in maps_dirs.items()
                        if not (map_file(folder, sample).is_file() and sample.name in timings[name]))
        fresh = {}
        if missing:
            start = time.perf_counter()
            fresh = score_maps(sample.load_image(), missing)
            seconds = time.perf_counter() - start
            for name in missing:
                fresh[name] = np.asarray(fresh[name], dtype=np.float32)
                with atomic_path(map_file(maps_dirs[name], sample)) as tmp:
                    np.save(tmp, fresh[name])
                timings[name][sample.name] = seconds
                atomic_write_text(maps_dirs[name] / TIMINGS_FILE, json.dumps(timings[name], indent=1))
                computed[name] += 1
        for name, folder in maps_dirs.items():
            maps[name].append(fresh[name] if name in fresh else np.load(map_file(folder, sample)))
    seconds_per_map = {name: [timings[name][sample.name] for sample in test] for name in maps_dirs}
    return maps, seconds_per_map, computed


def _timings(maps_dir: Path) -> dict[str, float]:
    path = maps_dir / TIMINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# --- evaluation -----------------------------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """Metrics and timings of one method on the test split; ``per_image`` holds (name, tissue pixel AUROC)."""

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    per_image: list[tuple[str, float]]
    reused_fit: bool
    maps_computed: int
    beats_references: bool | None = None


@dataclass
class AblationResult:
    """One PICARD variant of the ablations, evaluated like a method: the ``PicardSettings`` field it changes and
    the value it takes, metrics (as ``MethodResult.metrics``, without fit time), per-image tissue pixel AUROC of
    the abnormal test images as (name, AUROC), maps computed now, and whether it beats the best reference."""

    setting: str
    value: str
    metrics: dict[str, Any]
    per_image: list[tuple[str, float]]
    maps_computed: int
    beats_references: bool | None = None

    @property
    def name(self) -> str:
        return f"picard {self.setting}={self.value}"


@dataclass
class BenchmarkResult:
    """The whole benchmark: config, data summary, one MethodResult per method, PICARD's M sweep (one dict per M),
    the test samples, per method the pooled tissue pixels as (labels (N,) bool, scores (N,) float32), and PICARD's
    ablations."""

    config: BenchmarkConfig
    data_summary: dict[str, Any]
    methods: list[MethodResult]
    best_reference: str
    m_sweep: list[dict[str, Any]] = field(default_factory=list)
    test: list[Sample] = field(repr=False, default_factory=list)
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=dict)
    ablations: list[AblationResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json_ready({
            "config": to_dict(self.config),
            "data": self.data_summary,
            "best_reference": self.best_reference,
            "picard_m_sweep": self.m_sweep,
            "methods": {m.name: {**m.metrics, "beats_references": m.beats_references, "reused_fit": m.reused_fit,
                                 "maps_computed": m.maps_computed, "per_image_tissue_pixel_auroc": dict(m.per_image)}
                        for m in self.methods},
            "picard_ablations": [{"setting": a.setting, "value": a.value, **a.metrics,
                                  "beats_references": a.beats_references, "maps_computed": a.maps_computed,
                                  "per_image_tissue_pixel_auroc": dict(a.per_image)} for a in self.ablations],
        })


def evaluate_maps(
    method: AnomalyMethod, loaded: Sequence[LoadedSample], test: Sequence[Sample], maps: Sequence[np.ndarray]
) -> tuple[dict[str, Any], list[tuple[str, float]], tuple[np.ndarray, np.ndarray]]:
    """(metrics, per-image tissue pixel AUROC of abnormal images, pooled (labels, scores) of tissue pixels)."""
    whole_scores = np.concatenate([m.ravel() for m in maps])
    whole_labels = np.concatenate([s.lesion_mask.ravel() for s in loaded])
    tissue = np.concatenate([s.tissue_mask.ravel() for s in loaded])
    per_image = [pixel_metrics(m, s.lesion_mask, s.tissue_mask, sample.name)
                 for m, s, sample in zip(maps, loaded, test) if not sample.is_normal]
    summary = summarize(per_image)
    metrics: dict[str, Any] = {
        "pixel_auroc": roc_auc(whole_labels, whole_scores),
        "pixel_ap": average_precision(whole_labels, whole_scores),
        "tissue_pixel_auroc": roc_auc(whole_labels[tissue], whole_scores[tissue]),
        "tissue_pixel_ap": average_precision(whole_labels[tissue], whole_scores[tissue]),
        "tissue_pixel_auroc_mean_per_image": summary.mean_pixel_auroc,
        "tissue_pixel_ap_mean_per_image": summary.mean_pixel_ap,
        "image_auroc": None,
        "image_ap": None,
    }
    if any(sample.is_normal for sample in test):
        scores = [method.image_score(s.image, m, s.tissue_mask) for m, s in zip(maps, loaded)]
        image = image_level_metrics(np.array(scores), np.array([not sample.is_normal for sample in test]))
        metrics.update(image_auroc=image["image_auroc"], image_ap=image["image_ap"])
    ranked = [(m.name, m.pixel_auroc) for m in per_image]
    return metrics, ranked, (whole_labels[tissue], whole_scores[tissue])


def run_benchmark(
    config: BenchmarkConfig, out_dir: str | Path, progress: Callable[[str], None] | None = None
) -> BenchmarkResult:
    """Fit, score and evaluate every method (listed ones, then the references), then PICARD's M sweep and
    ablations.

    Writes only the fitted methods and cached maps under ``out_dir``; ``picard_ad.report.html.write_benchmark_report``
    writes the report.

    progress: called with a short line at each step (e.g. ``click.echo``); None is silent.
    """
    out_dir = Path(out_dir)
    say = progress or (lambda line: None)
    train, test = split_dataset(load_dataset(config.data, config.seed), config.data, config.seed)
    say(f"{len(train)} normal training images, {len(test)} test images "
        f"({sum(not s.is_normal for s in test)} abnormal)")
    loaded = [sample.load() for sample in test]
    results, pooled, fitted = [], {}, {}
    for entry in config.all_methods():
        method_dir = out_dir / "methods" / entry.name
        method, fit_seconds, reused = fitted_method(entry, train, method_dir)
        fitted[entry.name] = method
        if not reused:  # maps cached from an earlier fit (its folder since removed) are stale
            variants = [f"{entry.name}-M*", *(f"{entry.name}-{setting}-*" for setting in ABLATION_SETTINGS)]
            for maps_dir in [out_dir / "maps" / entry.name, *(path for pattern in variants
                                                              for path in (out_dir / "maps").glob(pattern))]:
                (maps_dir / TIMINGS_FILE).unlink(missing_ok=True)
        say(f"{entry.name}: {'reused the saved fit' if reused else f'fitted in {fit_seconds:.1f} s'}")
        maps, seconds, computed = score_maps(method.score_map, test, out_dir / "maps" / entry.name)
        say(f"{entry.name}: {computed} score maps computed, {len(test) - computed} read from the cache")
        metrics, per_image, pooled[entry.name] = evaluate_maps(method, loaded, test, maps)
        metrics.update(fit_seconds=fit_seconds, score_seconds_per_image=float(np.mean(seconds)))
        results.append(MethodResult(entry.name, _plain(to_dict(method.config)), metrics, per_image, reused, computed))
    best = flag_methods(results)
    sweep = [picard_m_point(config, out_dir, m, test, loaded) for m in config.picard_m_sweep]
    for point in sweep:
        say(f"picard with M = {point['n_completions']}: tissue pixel AUROC {point['tissue_pixel_auroc']:.3f}")
    reference = next(result for result in results if result.name == best)
    ablations = (score_picard_ablations(config, out_dir, fitted["picard"], test, loaded, reference.metrics)
                 if config.picard_ablations.variants() else [])
    for row in ablations:
        say(f"{row.name}: {row.maps_computed} score maps computed, {len(test) - row.maps_computed} read from the "
            f"cache; tissue pixel AUROC {row.metrics['tissue_pixel_auroc']:.3f}")
    summary = {
        "kind": config.data.kind,
        "n_train": len(train),
        "n_test": len(test),
        "n_test_abnormal": sum(not s.is_normal for s in test),
        "n_test_normal": sum(s.is_normal for s in test),
        "image_shapes": sorted({f"{s.image.shape[0]}x{s.image.shape[1]}" for s in loaded}),
        "train_patients": len({s.patient_id for s in train}),
        "test_patients": len({s.patient_id for s in test}),
        "test_images": [s.name for s in test],
    }
    return BenchmarkResult(config, summary, results, best, sweep, test, pooled, ablations)


def picard_m_point(
    config: BenchmarkConfig, out_dir: Path, n_completions: int, test: Sequence[Sample], loaded: Sequence[LoadedSample]
) -> dict[str, Any]:
    """Pooled pixel AUROC of the fitted PICARD (``out_dir/methods/picard``) scoring with M = ``n_completions``."""
    settings = config.picard_settings()
    picard = picard_variant(config, out_dir, n_completions=n_completions)
    # the benchmark's own M already has its maps
    folder = "picard" if n_completions == settings.n_completions else f"picard-M{n_completions}"
    maps, seconds, _ = score_maps(lambda image: picard.heatmap(image).array, test, out_dir / "maps" / folder)
    scores = np.concatenate([m.ravel() for m in maps])
    labels = np.concatenate([s.lesion_mask.ravel() for s in loaded])
    tissue = np.concatenate([s.tissue_mask.ravel() for s in loaded])
    return {"n_completions": n_completions, "pixel_auroc": roc_auc(labels, scores),
            "tissue_pixel_auroc": roc_auc(labels[tissue], scores[tissue]),
            "score_seconds_per_image": float(np.mean(seconds))}


def picard_variant(config: BenchmarkConfig, out_dir: Path, **overrides: Any) -> Picard:
    """The fitted PICARD of the benchmark (``out_dir/methods/picard``) with its settings, ``overrides`` replacing
    some (``PicardSettings`` fields)."""
    return Picard.load(out_dir / "methods" / "picard" / "checkpoint", config.picard_settings(), **overrides)


def score_picard_ablations(
    config: BenchmarkConfig,
    out_dir: Path,
    method: AnomalyMethod,
    test: Sequence[Sample],
    loaded: Sequence[LoadedSample],
    reference_metrics: dict[str, Any],
) -> list[AblationResult]:
    """Score, evaluate and flag every variant of ``config.picard_ablations`` with the fitted PICARD.

    method: the fitted 'picard' method (its image score is used); reference_metrics: the best reference's metrics.
    A variant's maps are cached in ``out_dir/maps/picard-SETTING-VALUE``, or are the benchmark's own PICARD maps
    (``out_dir/maps/picard``) when the value is its setting.
    """
    settings = config.picard_settings()
    rows = []

    def folder(setting: str, value: str) -> Path:
        return out_dir / "maps" / ("picard" if getattr(settings, setting) == value else f"picard-{setting}-{value}")

    def evaluate(setting: str, value: str, maps: list[np.ndarray], seconds: list[float], computed: int) -> None:
        metrics, per_image, _ = evaluate_maps(method, loaded, test, maps)
        metrics["score_seconds_per_image"] = float(np.mean(seconds))
        rows.append(AblationResult(setting, value, metrics, per_image, computed, _beats(metrics, reference_metrics)))

    scores = config.picard_ablations.scores
    if scores:
        picard = picard_variant(config, out_dir)
        maps, seconds, computed = score_map_sets(
            lambda image, names: {name: heatmap.array for name, heatmap in picard.heatmaps(image, names).items()},
            test, {name: folder("score", name) for name in scores})
        for name in scores:
            evaluate("score", name, maps[name], seconds[name], computed[name])
    for setting, value in config.picard_ablations.variants():
        if setting != "score":
            variant = picard_variant(config, out_dir, **{setting: value})
            evaluate(setting, value, *score_maps(lambda image, picard=variant: picard.heatmap(image).array, test,
                                                 folder(setting, value)))
    return rows


def flag_methods(results: Sequence[MethodResult]) -> str:
    """Set ``beats_references`` of every non-reference method; returns the best reference's name.

    A method beats the references when its pooled tissue pixel AUROC is above the best reference's (NaN or None
    counts as the lowest value).
    """
    references = [r for r in results if r.name in REFERENCE_METHODS]
    if not references:
        raise ValueError("flag_methods needs the results of the reference methods")
    best = max(references, key=lambda r: _or_minus_inf(r.metrics["tissue_pixel_auroc"]))
    for result in results:
        if result.name not in REFERENCE_METHODS:
            result.beats_references = _beats(result.metrics, best.metrics)
    return best.name


def _beats(metrics: dict[str, Any], reference_metrics: dict[str, Any]) -> bool:
    return _or_minus_inf(metrics["tissue_pixel_auroc"]) > _or_minus_inf(reference_metrics["tissue_pixel_auroc"])


def _or_minus_inf(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value
