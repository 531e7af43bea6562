"""What a benchmark keeps under its output folder so that a rerun recomputes nothing it finished: fitted methods
(``OUT/methods/NAME``, reused when their config is unchanged) and score maps with their timings
(``OUT/maps/NAME``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from picard_ad.benchmark.config import MethodEntry
from picard_ad.config import from_dict, to_dict
from picard_ad.data.samples import Sample
from picard_ad.errors import ConfigError, PicardError
from picard_ad.io.base import SliceOrigin
from picard_ad.io.writers import atomic_path, atomic_write_text, dumps_json
from picard_ad.methods import AnomalyMethod, load_method
from picard_ad.methods.base import METHOD_FILE, read_method_record
from picard_ad.training import run_holds_training

FIT_RECORD = "fit.json"
TIMINGS_FILE = "timings.json"


def plain_json(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists), as a saved record reads back."""
    return json.loads(json.dumps(value))


def _resolved(cls: type, values: dict[str, Any], where: str) -> Any:
    """Saved values as the current dataclass reads them, so that a fit saved before a setting existed (its record
    lacks the key) still matches; values this class does not take cannot match."""
    try:
        return plain_json(to_dict(from_dict(cls, values, where=where)))
    except ConfigError:
        return values


def fitted_method(entry: MethodEntry, train: Sequence[Sample], method_dir: Path) -> tuple[AnomalyMethod, float, bool]:
    """(method, fit seconds, reused): the saved method in ``method_dir`` when its configs and training images
    match, else a new fit into ``method_dir`` (a network's interrupted training resumes)."""
    method = entry.create()
    train_images = [sample.name for sample in train]
    if (method_dir / METHOD_FILE).is_file() and (method_dir / FIT_RECORD).is_file():
        name, saved_train, saved_settings = read_method_record(method_dir)
        where = str(method_dir / METHOD_FILE)
        same = name == entry.name and (
            _resolved(type(method.train_config), saved_train, where) == plain_json(to_dict(method.train_config))
            and _resolved(type(method.settings), saved_settings, where) == plain_json(to_dict(method.settings))
        )
        if not same:
            raise ConfigError(f"{method_dir}: holds '{name}' fitted with another config; remove the folder or choose "
                              "another --out")  # fmt: skip
        fit = json.loads((method_dir / FIT_RECORD).read_text())
        # A fit on other images (e.g. before synthetic_validation held some out) may have seen the validation bases.
        if fit["train_images"] != train_images:
            raise ConfigError(
                f"{method_dir}: '{name}' was fitted on other training images "
                f"({len(fit['train_images'])} then, {len(train_images)} now); remove the folder or choose another --out"
            )
        return load_method(method_dir), fit["fit_seconds"], True
    start = time.perf_counter()
    method.fit(train, run_dir=method_dir, resume=run_holds_training(method_dir))
    seconds = time.perf_counter() - start
    # fit.json, written after fit's method.json, marks a finished fit here: a run killed between the two fits again
    # (a network's training resumes at its end).
    atomic_write_text(method_dir / FIT_RECORD, dumps_json({"fit_seconds": seconds, "train_images": train_images},
                                                          indent=1))  # fmt: skip
    return method, seconds, False


def map_file(maps_dir: Path, sample: Sample) -> Path:
    """Where the score map of ``sample`` is cached (folders in its name flattened)."""
    return maps_dir / (sample.name.replace("/", "__") + ".npy")


class MapScorer:
    """Score maps of one fitted method (its run folder, scoring settings replaced by ``settings``): (image (H, W)
    float32 in [0, 1], names of the variants still missing, the file slice it was read from or None) -> variant
    name -> score map (H, W).

    scores: variant name -> score name, for variants that are scores of one pass over the image (PICARD's scores
    together); None: one variant, the method's own score map. ``method``: the method already loaded, if any. It is
    pickled without the method, so a Ray worker loads it once from the run folder.
    """

    def __init__(self, run_dir: Path, settings: dict[str, Any] | None = None, scores: dict[str, str] | None = None,
                 method: AnomalyMethod | None = None):  # fmt: skip
        self.run_dir, self.settings, self.scores, self.method = Path(run_dir), dict(settings or {}), scores, method

    def __call__(self, image: np.ndarray, names: tuple[str, ...], origin: SliceOrigin | None) -> dict[str, np.ndarray]:
        if self.method is None:
            self.method = load_method(self.run_dir, **self.settings)
        if self.scores is None:
            return dict.fromkeys(names, self.method.score_map(image, origin=origin))
        heatmaps = self.method.heatmaps(image, [self.scores[name] for name in names], origin=origin)
        return {name: heatmaps[self.scores[name]].array for name in names}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "method": None}


class ScoreTask:
    """A Ray worker's task (``picard_ad.jobs.ray_cluster``): the maps of one sample and the seconds they took."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def run(self, item: tuple[Sample, tuple[str, ...]]) -> tuple[dict[str, np.ndarray], float]:
        sample, names = item
        image = sample.load_image()
        start = time.perf_counter()
        maps = self.scorer(image, names, sample.origin)
        return maps, time.perf_counter() - start


Scorer = Callable[[np.ndarray, tuple[str, ...], SliceOrigin | None], dict[str, np.ndarray]]
"""(image, names of the variants missing, its file slice) -> variant name -> score map: a ``MapScorer``, which Ray
workers can run."""

PoolFactory = Callable[[Scorer], Any]
"""Makes a worker pool (``RayPool`` of ``ScoreTask``s) for a scorer; None in ``score_map_sets`` scores here."""


def score_maps(scorer: Scorer, test: Sequence[Sample], maps_dir: Path,
               make_pool: PoolFactory | None = None) -> tuple[list[np.ndarray], list[float], int]:  # fmt: skip
    """(score maps, seconds per map, maps computed now) of the test samples; cached maps are read back."""
    maps, seconds, computed = score_map_sets(scorer, test, {"": maps_dir}, make_pool)
    return maps[""], seconds[""], computed[""]


def score_map_sets(
    scorer: Scorer,
    test: Sequence[Sample],
    maps_dirs: dict[str, Path],
    make_pool: PoolFactory | None = None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[float]], dict[str, int]]:
    """Score maps of several variants that one call computes together (PICARD's scores from one pass over the
    windows), each cached in its own folder as ``score_maps`` caches one.

    maps_dirs: variant name -> its cache folder. make_pool: where the missing maps are computed (a Ray pool made
    for the scorer), None: here, one sample after another.
    Returns, by variant name: the score maps of the test samples, the seconds of the call that computed each map
    (shared by the variants computed in that call) and how many maps were computed now.
    """
    timings = {name: _timings(folder) for name, folder in maps_dirs.items()}
    computed = dict.fromkeys(maps_dirs, 0)
    fresh: dict[str, dict[str, np.ndarray]] = {}  # sample name -> variant -> map computed now
    missing = []
    for sample in test:
        names = tuple(name for name, folder in maps_dirs.items()
                      if not (map_file(folder, sample).is_file() and sample.name in timings[name]))  # fmt: skip
        if names:
            missing.append((sample, names))

    def keep(sample: Sample, maps: dict[str, np.ndarray], seconds: float) -> None:
        fresh[sample.name] = {}
        for name, score_map in maps.items():
            fresh[sample.name][name] = np.asarray(score_map, dtype=np.float32)
            with atomic_path(map_file(maps_dirs[name], sample)) as tmp:
                np.save(tmp, fresh[sample.name][name])
            timings[name][sample.name] = seconds
            atomic_write_text(maps_dirs[name] / TIMINGS_FILE, dumps_json(timings[name], indent=1))
            computed[name] += 1

    if make_pool is None:
        for sample, names in missing:
            keep(sample, *ScoreTask(scorer).run((sample, names)))
    elif missing:
        pool = make_pool(scorer)
        try:
            for (sample, _), result, error in pool.imap(missing):
                if error is not None:
                    raise PicardError(error)
                keep(sample, *result)
        finally:
            pool.close()
    maps = {name: [fresh.get(sample.name, {}).get(name) for sample in test] for name in maps_dirs}
    for name, folder in maps_dirs.items():
        maps[name] = [np.load(map_file(folder, sample)) if found is None else found
                      for sample, found in zip(test, maps[name])]  # fmt: skip
    seconds_per_map = {name: [timings[name][sample.name] for sample in test] for name in maps_dirs}
    return maps, seconds_per_map, computed


def _timings(maps_dir: Path) -> dict[str, float]:
    path = maps_dir / TIMINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
