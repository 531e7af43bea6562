"""The anomaly-method interface, and the registry that builds methods by name.

A method is fitted on normal images, then maps an image to a per-pixel score map (higher = more anomalous) and to
one image score. Subclasses implement ``learn`` and ``compute_score_map`` (plus ``write_state`` / ``read_state``
when fitting leaves something to keep) and declare a frozen config dataclass; the base class checks inputs and
outputs, tracks whether the method is fitted, and saves the name and config as JSON. Nothing is ever pickled.

Methods register with ``@register_method("name")``; ``create_method(name, **config)`` builds one with the
config's field names as keyword arguments (the YAML keys), and ``list_methods("pattern*")`` lists them.
"""

from __future__ import annotations

import fnmatch
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from picard_ad.config import from_dict, to_dict
from picard_ad.data.samples import Sample
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError, CorruptFileError, InputError, PicardError
from picard_ad.io.records import read_record
from picard_ad.io.writers import atomic_write_text

METHOD_FILE = "method.json"
FORMAT = "picard-ad/method"
FORMAT_VERSION = 1
IMAGE_SCORE_QUANTILE = 0.99  # the default image score: this quantile of the score map over tissue

M = TypeVar("M", bound="AnomalyMethod")


class NotFittedError(PicardError):
    """A method was asked to score or save before it was fitted or loaded."""


class AnomalyMethod(ABC):
    """Fit on normal images; then a score map per image (H, W) and an image score; save and load.

    Class attributes: ``name`` (set by ``register_method``) and ``config_class`` (a frozen dataclass).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    needs_training: ClassVar[bool] = True  # False: the method learns nothing and can score right away

    def __init__(self, config: Any = None):
        self.config = self.config_class() if config is None else config
        if not isinstance(self.config, self.config_class):
            raise ConfigError(f"method '{self.name}' takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.fitted = not self.needs_training

    def fit(self, normal_images: Iterable[Sample | np.ndarray], *, work_dir: str | Path | None = None) -> Self:
        """Learn normal appearance from normal samples or (H, W) float32 images in [0, 1]; returns self.

        work_dir: where a method may write training outputs (checkpoints, logs); None if it needs none.
        """
        samples = [_as_sample(item, position) for position, item in enumerate(normal_images)]
        if not samples:
            raise ValueError(f"method '{self.name}': fit needs at least one normal image")
        abnormal = [sample.name for sample in samples if not sample.is_normal]
        if abnormal:
            listed = ", ".join(abnormal[:3])
            raise ValueError(f"method '{self.name}' is fitted on normal images only; abnormal: {listed}")
        self.learn(samples, None if work_dir is None else Path(work_dir))
        self.fitted = True
        return self

    def score_map(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel anomaly scores: image (H, W) float in [0, 1] -> (H, W) float32, higher = more anomalous."""
        self._require_fitted("score an image")
        pixels = check_image(image, f"method '{self.name}'")
        scores = np.asarray(self.compute_score_map(pixels), dtype=np.float32)
        if scores.shape != pixels.shape:
            raise RuntimeError(f"method '{self.name}' returned a {scores.shape} map for a {pixels.shape} image")
        return scores

    def image_score(
        self, image: np.ndarray, score_map: np.ndarray | None = None, tissue: np.ndarray | None = None
    ) -> float:
        """One score per image: the 0.99 quantile of the score map over tissue (the whole map if none).

        score_map: this method's map of ``image`` when already computed; tissue: (H, W) bool, None derives it
        with ``picard_ad.data.tissue.tissue_mask``.
        """
        scores = self.score_map(image) if score_map is None else np.asarray(score_map)
        tissue = tissue_mask(check_image(image, f"method '{self.name}'")) if tissue is None else np.asarray(tissue)
        if tissue.shape != scores.shape:
            raise ValueError(f"tissue mask is {tissue.shape} but the score map is {scores.shape}")
        return float(np.quantile(scores[tissue] if tissue.any() else scores, IMAGE_SCORE_QUANTILE))

    def save(self, directory: str | Path) -> Path:
        """Write the fitted method to ``directory``: its state, then ``method.json`` (name and config) last."""
        self._require_fitted("be saved")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.write_state(directory)
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name, "config": to_dict(self.config)}
        atomic_write_text(directory / METHOD_FILE, json.dumps(record, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> AnomalyMethod:
        """A saved method; ``AnomalyMethod.load`` builds whichever registered method the folder holds."""
        directory = Path(directory)
        record = read_method_record(directory)
        target = method_class(record["name"])
        if cls is AnomalyMethod:
            return target.load(directory)
        if target is not cls:
            raise InputError(directory, f"holds method '{record['name']}', not '{cls.name}'")
        method = cls(from_dict(cls.config_class, record["config"], where=str(directory / METHOD_FILE)))
        method.read_state(directory)
        method.fitted = True
        return method

    # -- what a method implements -------------------------------------------------------------------------------

    @abstractmethod
    def learn(self, normal_samples: Sequence[Sample], work_dir: Path | None) -> None:
        """Fit to normal samples (checked: at least one, all normal); load their arrays with ``sample.load()``."""

    @abstractmethod
    def compute_score_map(self, image: np.ndarray) -> np.ndarray:
        """Score map (H, W) of a checked image (H, W) float32 in [0, 1]."""

    def write_state(self, directory: Path) -> None:
        """Write what fitting learnt into ``directory`` (safetensors or JSON, never pickle); nothing by default."""

    def read_state(self, directory: Path) -> None:
        """Restore what ``write_state`` wrote; nothing by default."""

    def _require_fitted(self, action: str) -> None:
        if not self.fitted:
            raise NotFittedError(f"method '{self.name}' must be fitted (fit) or loaded (load) before it can {action}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r}, fitted={self.fitted})"


def check_image(image: np.ndarray, owner: str) -> np.ndarray:
    """The image as C-contiguous float32 (H, W); raises ValueError unless it is 2-D, finite and in [0, 1]."""
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"{owner}: expected a non-empty (H, W) image, got shape {pixels.shape}")
    low, high = float(pixels.min()), float(pixels.max())
    if not (0.0 <= low and high <= 1.0):  # also false for NaN
        raise ValueError(f"{owner}: image values must be finite and in [0, 1], got [{low}, {high}]")
    return pixels


def _as_sample(item: Sample | np.ndarray, position: int) -> Sample:
    if isinstance(item, Sample):
        return item
    if isinstance(item, np.ndarray):
        return Sample(name=f"image_{position:04d}", patient_id=f"image_{position:04d}", label="normal", image=item)
    raise TypeError(f"fit takes Samples or numpy images, got {type(item).__name__} at position {position}")


def read_method_record(directory: Path) -> dict[str, Any]:
    """The checked contents of a saved method's ``method.json``."""
    path = directory / METHOD_FILE
    if not path.is_file():
        raise InputError(directory, f"no saved method here ({METHOD_FILE} not found)")
    record = read_record(path, FORMAT, FORMAT_VERSION, "method description")
    if not isinstance(record.get("name"), str) or not isinstance(record.get("config"), dict):
        raise CorruptFileError(path, "needs a method 'name' and a 'config' mapping")
    return record


# --- registry -------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[AnomalyMethod]] = {}


def register_method(name: str) -> Callable[[type[M]], type[M]]:
    """Class decorator registering an AnomalyMethod under ``name`` (also set as its ``name``)."""

    def register(cls: type[M]) -> type[M]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name '{name}' is already taken by {_REGISTRY[name].__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, AnomalyMethod)):
            raise TypeError(f"register_method('{name}') decorates AnomalyMethod subclasses, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def list_methods(pattern: str = "*") -> list[str]:
    """Sorted names of the registered methods matching a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def method_class(name: str) -> type[AnomalyMethod]:
    """The registered class of ``name``; an unknown name raises ConfigError listing the valid ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method '{name}'; registered methods: {', '.join(list_methods()) or '(none)'}")
    return _REGISTRY[name]


def create_method(name: str, **config: Any) -> AnomalyMethod:
    """A new, unfitted method; keyword arguments are its config fields (unknown ones raise ConfigError)."""
    cls = method_class(name)
    return cls(from_dict(cls.config_class, config, where=f"method '{name}'"))
