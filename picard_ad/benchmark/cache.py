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
from picard_ad.errors import ConfigError
from picard_ad.io.writers import atomic_path, atomic_write_text
from picard_ad.methods import AnomalyMethod, create_method
from picard_ad.methods.base import METHOD_FILE, read_method_record

FIT_RECORD = "fit.json"
TIMINGS_FILE = "timings.json"


def plain_json(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists), as a saved record reads back."""
    return json.loads(json.dumps(value))


def _resolved(method: AnomalyMethod, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return plain_json(to_dict(from_dict(type(method.config), config, where=f"saved method '{method.name}'")))
    except ConfigError:
        return config  # not a config this method takes: it cannot match


def fitted_method(entry: MethodEntry, train: Sequence[Sample], method_dir: Path) -> tuple[AnomalyMethod, float, bool]:
    """(method, fit seconds, reused): the saved method in ``method_dir`` when its config and training images match,
    else a new fit."""
    method = create_method(entry.name, **entry.config)
    train_images = [sample.name for sample in train]
    if (method_dir / METHOD_FILE).is_file():
        record = read_method_record(method_dir)
        # Resolved, so that a method saved before a setting existed (its record lacks the key) still matches.
        if record["name"] != entry.name or _resolved(method, record["config"]) != plain_json(to_dict(method.config)):
            raise ConfigError(
                f"{method_dir}: holds '{record['name']}' fitted with another config; remove the "
                "folder or choose another --out"
            )
        fit = json.loads((method_dir / FIT_RECORD).read_text())
        # A fit on other images (e.g. before synthetic_validation held some out) may have seen the validation bases.
        if fit.get("train_images", train_images) != train_images:  # records written before this check lack the key
            raise ConfigError(
                f"{method_dir}: '{record['name']}' was fitted on other training images "
                f"({len(fit['train_images'])} then, {len(train_images)} now); remove the folder or choose another --out"
            )
        return AnomalyMethod.load(method_dir), fit["fit_seconds"], True
    start = time.perf_counter()
    method.fit(train, work_dir=method_dir / "work")
    seconds = time.perf_counter() - start
    fit = {"fit_seconds": seconds, "train_images": train_images}
    atomic_write_text(method_dir / FIT_RECORD, json.dumps(fit, indent=1))  # before method.json, which
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
        missing = tuple(
            name
            for name, folder in maps_dirs.items()
            if not (map_file(folder, sample).is_file() and sample.name in timings[name])
        )
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
