"""The anomaly-method interface, and the registry that builds methods by name.

A method is fitted on normal images, then gives each image one heatmap per score (higher = more anomalous) and one
image score. It declares two frozen dataclasses: ``train_config_class`` (how it learns; ``NoTraining`` when it
learns nothing) and ``settings_class`` (how it scores, derived from ``MethodSettings``), whose fields are the YAML
keys and the command-line flags. Subclasses implement ``learn`` and ``compute_heatmaps`` (or the simpler
``compute_score_maps``), plus ``write_state`` / ``read_state`` when fitting leaves something to keep. The base
class checks inputs and outputs, tracks whether the method is fitted, and saves the name, training config and
settings as JSON (``RUN_DIR/method.json``, written last: a folder with it holds a finished fit). Nothing is ever
pickled.

Methods register with ``@register_method("name")``; ``create_method(name, train=..., settings=...)`` builds one
from mappings of field values, ``load_method(run_dir, **settings)`` restores a fitted one, and
``list_methods("pattern*")`` lists them.
"""

from __future__ import annotations

import fnmatch
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import numpy as np

from picard_ad.config import check_settings, from_dict, setting, setting_fields, to_dict
from picard_ad.data.normal_images import NormalImages
from picard_ad.data.samples import Sample
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError, CorruptFileError, InputError, PicardError
from picard_ad.io.base import ScanImage, SliceOrigin
from picard_ad.io.records import read_record
from picard_ad.io.writers import atomic_write_text, dumps_json
from picard_ad.localize.heatmap import Heatmap
from picard_ad.metrics.localization import IMAGE_SCORE_QUANTILE

if TYPE_CHECKING:
    from picard_ad.training.distributed import DistributedContext

METHOD_FILE = "method.json"
FORMAT = "picard-ad/method"
FORMAT_VERSION = 2

M = TypeVar("M", bound="AnomalyMethod")


class NotFittedError(PicardError):
    """A method was asked to score or save before it was fitted or loaded."""


@dataclass(frozen=True)
class MethodSettings:
    """Base of every method's scoring settings. ``score`` names the heatmap the method gives by default; each
    method redeclares it with its own default and choices (its ``score_names``)."""

    score: str = setting("", "the score a heatmap shows")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class NoTraining:
    """The training config of a method that learns nothing from normal images."""


class AnomalyMethod(ABC):
    """Fit on normal images; then heatmaps (H, W) per score and an image score per image; save and load.

    Class attributes (``name`` is set by ``register_method``):
        settings_class: frozen dataclass of the scoring settings, derived from ``MethodSettings``.
        train_config_class: frozen dataclass of the training config (``NoTraining`` by default).
        score_names: every score the method computes; ``settings.score`` is one of them.
        presets: named training configs (e.g. "small", "paper"); ``default_preset`` is the one used when no
            training config is given (None: the class defaults).
        needs_training: False for methods that learn nothing and can score right away.

    Args:
        train: the training config (None: the default preset, else the class defaults).
        settings: the scoring settings (None: the class defaults).
    """

    name: ClassVar[str] = ""
    settings_class: ClassVar[type[MethodSettings]]
    train_config_class: ClassVar[type] = NoTraining
    score_names: ClassVar[tuple[str, ...]]
    presets: ClassVar[Mapping[str, Any]] = {}
    default_preset: ClassVar[str | None] = None
    needs_training: ClassVar[bool] = True

    def __init__(self, train: Any = None, settings: MethodSettings | None = None):
        self.train_config = self.preset() if train is None else train
        self.settings = self.settings_class() if settings is None else settings
        for value, expected in ((self.train_config, self.train_config_class), (self.settings, self.settings_class)):
            if not isinstance(value, expected):
                raise ConfigError(f"method '{self.name}' takes a {expected.__name__}, got {type(value).__name__}")
        self.check_scores((self.settings.score,))
        self.fitted = not self.needs_training
        self.run_dir: Path | None = None  # the folder its fitted state was saved to or loaded from
        self.fit_report: list[str] = []  # lines the last fit has to say (a training run's summary, images left out)

    @classmethod
    def preset(cls, name: str | None = None) -> Any:
        """The named training preset (None: ``default_preset``, or the class defaults without one)."""
        name = name or cls.default_preset
        if name is None:
            return cls.train_config_class()
        if name not in cls.presets:
            valid = ", ".join(cls.presets) or "(none)"
            raise ConfigError(f"method '{cls.name}' has no training preset '{name}'; its presets: {valid}")
        return cls.presets[name]

    @classmethod
    def check_scores(cls, scores: Iterable[str]) -> tuple[str, ...]:
        """``scores`` as a tuple without duplicates (order kept); ConfigError names an unknown one."""
        names = (scores,) if isinstance(scores, str) else tuple(scores)
        unknown = [name for name in names if name not in cls.score_names]
        if unknown or not names:
            problem = f"unknown score {unknown[0]!r}" if unknown else "no score requested"
            raise ConfigError(f"method '{cls.name}': {problem}; its scores: {', '.join(cls.score_names)}")
        return tuple(dict.fromkeys(names))

    # -- fitting ----------------------------------------------------------------------------------------------------

    def fit(
        self,
        normal_images: str | Path | Iterable[Sample | np.ndarray],
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = False,
        context: DistributedContext | None = None,
    ) -> Self:
        """Learn normal appearance; returns self.

        Args:
            normal_images: a folder of images (searched recursively), a ``.txt`` list of image paths or one image
                file, or normal Samples or (H, W) float32 images in [0, 1].
            run_dir: the run folder: methods that train write checkpoints and logs there, and every method saves
                its fit there (``method.json`` last). Methods that train a network need it.
            resume: continue the training run in ``run_dir`` where its last checkpoint stopped.
            progress: show progress bars.
            context: the process group of a data-parallel (torchrun) training run; None trains in one process.
        """
        images = NormalImages.of(normal_images)
        directory = None if run_dir is None else Path(run_dir)
        self.learn(images, directory, resume=resume, progress=progress, context=context)
        self.fitted = True
        if directory is not None and (context is None or context.is_main):
            self.save(directory)
        return self

    # -- scoring ----------------------------------------------------------------------------------------------------

    def heatmaps(
        self,
        image: np.ndarray | ScanImage,
        scores: Iterable[str] | None = None,
        *,
        progress: bool = False,
        origin: SliceOrigin | None = None,
    ) -> dict[str, Heatmap]:
        """Heatmaps of several scores from one pass over the image (what the scores share is computed once).

        image: (H, W) float array in [0, 1] with a dark background, or a ``ScanImage`` from the readers; the
            heatmaps are in the orientation of the pixels given (``meta.orientation.undo`` maps them back).
        scores: names from ``score_names``; None means ``(settings.score,)``.
        origin: the file slice the image was read from, for methods that normalise by the whole volume (the VAE
            family's per-patient z-score); None: the image stands alone.
        """
        self._require_fitted("score an image")
        names = self.check_scores(scores if scores is not None else (self.settings.score,))
        path = image.meta.path if isinstance(image, ScanImage) else None if origin is None else origin.path
        pixels = check_image(image.pixels if isinstance(image, ScanImage) else image, f"method '{self.name}'")
        heatmaps = self.compute_heatmaps(pixels, names, progress=progress, path=path, origin=origin)
        for name in names:
            array = heatmaps[name].array
            if array.shape != pixels.shape or array.dtype != np.float32:
                raise RuntimeError(f"method '{self.name}' returned a {array.dtype} {array.shape} map for a "
                                   f"{pixels.shape} image")  # fmt: skip
        return {name: heatmaps[name] for name in names}

    def heatmap(self, image: np.ndarray | ScanImage, score: str | None = None, *, progress: bool = False,
                origin: SliceOrigin | None = None) -> Heatmap:  # fmt: skip
        """The heatmap of ``score`` (default ``settings.score``) of one image; see ``heatmaps``."""
        name = score or self.settings.score
        return self.heatmaps(image, (name,), progress=progress, origin=origin)[name]

    def score_map(self, image: np.ndarray, score: str | None = None, origin: SliceOrigin | None = None) -> np.ndarray:
        """Per-pixel anomaly scores: image (H, W) float in [0, 1] -> (H, W) float32, higher = more anomalous;
        ``origin`` as in ``heatmaps``."""
        return self.heatmap(image, score, origin=origin).array

    def image_score(
        self,
        image: np.ndarray,
        score_map: np.ndarray | None = None,
        tissue: np.ndarray | None = None,
        origin: SliceOrigin | None = None,
    ) -> float:
        """One score per image: the 0.99 quantile of the score map over tissue (the whole map if none).

        score_map: this method's map of ``image`` when already computed; tissue: (H, W) bool, None derives it
        with ``picard_ad.data.tissue.tissue_mask``; origin: as in ``heatmaps``.
        """
        scores = self.score_map(image, origin=origin) if score_map is None else np.asarray(score_map)
        tissue = tissue_mask(check_image(image, f"method '{self.name}'")) if tissue is None else np.asarray(tissue)
        if tissue.shape != scores.shape:
            raise ValueError(f"tissue mask is {tissue.shape} but the score map is {scores.shape}")
        return float(np.quantile(scores[tissue] if tissue.any() else scores, IMAGE_SCORE_QUANTILE))

    def sample_score_name(self) -> str | None:
        """The name of the method's own image score (e.g. "kl+rec", a VAE's negative ELBO), which ``image_score``
        computes from the image itself; None (the default) when ``image_score`` is a quantile of the score map.
        ``picard-ad mood --task sample`` takes the maximum over a volume's slices of an own image score, and of the
        slice maps' quantiles otherwise."""
        return None

    # -- saving and loading -----------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the fitted method to ``directory``: its state, then ``method.json`` last."""
        self._require_fitted("be saved")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.write_state(directory)
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "train": to_dict(self.train_config),
            "settings": to_dict(self.settings),
        }
        atomic_write_text(directory / METHOD_FILE, dumps_json(record, indent=1) + "\n")
        self.run_dir = directory
        return directory

    @classmethod
    def load(cls, directory: str | Path, **settings: Any) -> AnomalyMethod:
        """A fitted method from its folder; ``AnomalyMethod.load`` builds whichever method the folder holds.

        settings: scoring settings replacing the saved ones (field names of ``settings_class``).
        """
        directory = Path(directory)
        name, train, saved = read_method_record(directory)
        target = method_class(name)
        if cls is not AnomalyMethod and target is not cls:
            raise InputError(directory, f"holds method '{name}', not '{cls.name}'")
        where = str(directory / METHOD_FILE)
        method = target(
            from_dict(target.train_config_class, train, where=f"{where}: train"),
            from_dict(target.settings_class, {**saved, **settings}, where=f"{where}: settings"),
        )
        method.read_state(directory)
        method.fitted = True
        method.run_dir = directory
        return method

    def identity(self) -> dict[str, Any]:
        """What a result of this fitted method depends on, for resume keys and calibrations: name, training
        config, the settings that change results (not ``execution`` ones) and a SHA-256 of the state files
        (their names and contents; paths left out, so a moved run keeps its identity)."""
        execution = {field.name for field in setting_fields(self.settings_class, "execution")}
        digest = hashlib.sha256()
        for path in self.state_files():
            with path.open("rb") as stream:
                digest.update(path.name.encode() + b"\0" + hashlib.file_digest(stream, "sha256").digest())
        return {
            "name": self.name,
            "train": to_dict(self.train_config),
            "settings": {k: v for k, v in to_dict(self.settings).items() if k not in execution},
            "state_sha256": digest.hexdigest(),
        }

    # -- what a method implements -----------------------------------------------------------------------------------

    @abstractmethod
    def learn(
        self,
        images: NormalImages,
        run_dir: Path | None,
        *,
        resume: bool,
        progress: bool,
        context: DistributedContext | None,
    ) -> None:
        """Fit to normal images (at least one, all normal): ``images.samples()`` or ``images.files(folder)``."""

    def compute_heatmaps(
        self, image: np.ndarray, scores: tuple[str, ...], *, progress: bool, path: Path | None,
        origin: SliceOrigin | None,
    ) -> dict[str, Heatmap]:  # fmt: skip
        """Heatmaps of the checked image (H, W) float32 in [0, 1] for the checked score names.

        The default wraps ``compute_score_maps``; sliding-window and whole-image methods override this to return
        their typed heatmaps (``sliding_window_heatmap``, ``resized_heatmap``). path: the image's file, for errors;
        origin: the file slice it was read from, if known (``heatmaps``).
        """
        maps = self.compute_score_maps(image, scores)
        settings = to_dict(self.settings)
        return {
            name: Heatmap(array=np.asarray(maps[name], dtype=np.float32), score_name=name, settings=settings)
            for name in scores
        }

    def compute_score_maps(self, image: np.ndarray, scores: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Score maps (H, W) of a checked image (H, W) float32 in [0, 1]; implement this or ``compute_heatmaps``."""
        raise TypeError(f"method '{self.name}' implements neither compute_heatmaps nor compute_score_maps")

    @classmethod
    def describe_architecture(cls, train: Any) -> list[str]:
        """Lines describing the networks a training config builds (``picard-ad describe``): layers, parameters,
        FLOPs. The default says there is none."""
        return [f"method '{cls.name}' trains no network"]

    def write_state(self, directory: Path) -> None:
        """Write what fitting learnt into ``directory`` (safetensors or JSON, never pickle); nothing by default."""

    def read_state(self, directory: Path) -> None:
        """Restore what ``write_state`` (or training into the run folder) left in ``directory``; nothing by default."""

    def state_files(self) -> list[Path]:
        """The files of the fitted state that results depend on (for ``identity``); none by default."""
        return []

    def read_checkpoint(self, directory: Path, which: str = "last") -> tuple[Path, dict[str, Any], Any]:
        """(checkpoint folder, its description, its training config) of the run's ``which`` ("last" or "best")
        checkpoint, for a network method's ``read_state``; a checkpoint of another method is refused."""
        from picard_ad.training.checkpoint import INFO_FILE, checkpoint_dir, config_from_info, read_checkpoint_info

        checkpoint = checkpoint_dir(directory, which)
        info = read_checkpoint_info(checkpoint)
        if info["method"] != self.name:
            raise InputError(checkpoint, f"holds a checkpoint of method '{info['method']}', not '{self.name}'")
        return checkpoint, info, config_from_info(info, self.train_config_class, checkpoint / INFO_FILE)

    def model_record(self) -> dict[str, Any]:
        """Facts about the fitted state for result sidecars (run folder; a network method adds its checkpoint)."""
        return {"run_dir": None if self.run_dir is None else str(self.run_dir.resolve())}

    def _require_fitted(self, action: str) -> None:
        if not self.fitted:
            raise NotFittedError(f"method '{self.name}' must be fitted (fit) or loaded (load) before it can {action}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train={self.train_config!r}, settings={self.settings!r}, fitted={self.fitted})"


def check_image(image: np.ndarray, owner: str) -> np.ndarray:
    """The image as C-contiguous float32 (H, W); raises ValueError unless it is 2-D, finite and in [0, 1]."""
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"{owner}: expected a non-empty (H, W) image, got shape {pixels.shape}")
    low, high = float(pixels.min()), float(pixels.max())
    if not (0.0 <= low and high <= 1.0):  # also false for NaN
        raise ValueError(f"{owner}: image values must be finite and in [0, 1], got [{low}, {high}]")
    return pixels


# --- method records ---------------------------------------------------------------------------------------------


def _training_run_record(directory: Path) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(method, training config, no settings) of a training run without ``method.json`` (still training, or
    written by an earlier picard-ad), from its newest checkpoint; None when it holds none."""
    from picard_ad.training.checkpoint import INFO_FILE, checkpoint_dir, read_checkpoint_info

    for which in ("last", "best"):
        try:
            directory_of_checkpoint = checkpoint_dir(directory, which)
        except InputError:
            continue
        info = read_checkpoint_info(directory_of_checkpoint)
        train = info.get("train_config")
        if not isinstance(train, dict):
            raise CorruptFileError(directory_of_checkpoint / INFO_FILE, "has no train_config")
        return info["method"], train, {}
    return None


def read_method_record(directory: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(method name, training config, settings) of a fitted method's folder, as plain mappings.

    A training run that has no ``method.json`` yet (still training, or from an earlier picard-ad) is read from its
    checkpoint, with default settings.
    """
    path = directory / METHOD_FILE
    if not directory.is_dir():
        raise InputError(directory, "no such run folder")
    if not path.is_file():
        found = _training_run_record(directory)
        if found is None:
            raise InputError(directory, f"holds no fitted method ({METHOD_FILE} not found; fit one with picard-ad fit)")
        return found
    record = read_record(path, FORMAT, FORMAT_VERSION, "method description")
    name, train, settings = record.get("name"), record.get("train"), record.get("settings")
    if not isinstance(name, str) or not isinstance(train, dict) or not isinstance(settings, dict):
        raise CorruptFileError(path, "needs a method 'name' and 'train' and 'settings' mappings")
    return name, train, settings


def saved_settings(directory: str | Path) -> MethodSettings:
    """The scoring settings saved with the fitted method in ``directory`` (checked; nothing else is loaded)."""
    directory = Path(directory)
    name, _, settings = read_method_record(directory)
    cls = method_class(name).settings_class
    return from_dict(cls, settings, where=f"{directory / METHOD_FILE}: settings")


def load_method(directory: str | Path, **settings: Any) -> AnomalyMethod:
    """The fitted method in ``directory`` (any registered method), ``settings`` replacing saved scoring settings."""
    return AnomalyMethod.load(directory, **settings)


# --- registry -------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[AnomalyMethod]] = {}


def register_method(name: str) -> Callable[[type[M]], type[M]]:
    """Class decorator registering an AnomalyMethod under ``name`` (also set as its ``name``)."""

    def register(cls: type[M]) -> type[M]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name '{name}' is already taken by {_REGISTRY[name].__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, AnomalyMethod)):
            raise TypeError(f"register_method('{name}') decorates AnomalyMethod subclasses, got {cls!r}")
        if cls.settings_class().score not in cls.score_names:
            raise TypeError(f"method '{name}': its default score is not one of its score_names {cls.score_names}")
        if (cls.compute_heatmaps, cls.compute_score_maps) == (AnomalyMethod.compute_heatmaps,
                                                               AnomalyMethod.compute_score_maps):  # fmt: skip
            raise TypeError(f"method '{name}' must implement compute_heatmaps or compute_score_maps")
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


def create_method(
    name: str,
    *,
    preset: str | None = None,
    train: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> AnomalyMethod:
    """A new, unfitted method from field values (YAML keys); unknown keys raise ConfigError.

    preset: the training preset the ``train`` values start from (None: the method's default preset).
    """
    cls = method_class(name)
    base = to_dict(cls.preset(preset))
    where = f"method '{name}'"
    return cls(
        from_dict(cls.train_config_class, {**base, **dict(train or {})}, where=f"{where}: train"),
        from_dict(cls.settings_class, dict(settings or {}), where=f"{where}: settings"),
    )


def describe_methods(names: Sequence[str] | None = None) -> list[str]:
    """One line per registered method: name, the first line of its docstring and its score names."""
    lines = []
    for name in names or list_methods():
        cls = method_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        default = cls.settings_class().score
        scores = ", ".join(f"{score}*" if score == default else score for score in cls.score_names)
        lines.append(f"{name:<16} {summary}  scores: {scores}")
    return lines
