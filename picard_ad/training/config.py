"""What every training run has, whatever the method: schedule, held-out validation, execution and logging.

A method's training config derives from ``RunSettings`` and adds its networks, data and loss settings, so every
method's YAML file and ``picard-ad fit`` flags share these keys. Fields declared ``run_control`` may change when a
run is resumed: they steer the run, not what is learnt (bf16 and channels_last change rounding only; a resumed run
then no longer matches an uninterrupted one bit for bit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from picard_ad.config import check_settings, from_dict, read_yaml_fields, setting, setting_fields, to_dict

C = TypeVar("C")


@dataclass(frozen=True)
class RunSettings:
    """The generic part of a training config. ``steps`` counts iterations of the method's training step."""

    steps: int = setting(10_000, "training iterations", ge=1, run_control=True)
    batch_size: int = setting(16, "samples per iteration and process", ge=1)
    val_images: int = setting(
        0, "images held out for validation (0: validate on training images)", ge=0
    )
    validate_every: int = setting(1000, "iterations between validations (lowest kept in RUN_DIR/best)", ge=1,
                                  run_control=True)  # fmt: skip
    seed: int = setting(1337, "seed of weights, data order and augmentation", ge=0)
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "where to train (auto: CUDA when available)",
                                                     run_control=True)  # fmt: skip
    bf16: bool = setting(False, "bfloat16 autocast (GPU, or CPUs with AMX/AVX512-BF16)", run_control=True)
    channels_last: bool = setting(False, "NHWC memory layout for the convolutions", run_control=True)
    num_workers: int = setting(2, "threads decoding images ahead (no effect on the results)", ge=0, run_control=True)
    adaptive_threads: bool = setting(False, "on the CPU, run as many threads as the cores other processes leave free, "
                                     "measured every 2 s: several times faster beside other jobs, but results then "
                                     "depend on the load (picard_ad.training.threads)", run_control=True)  # fmt: skip
    checkpoint_every: int = setting(5000, "iterations between checkpoints (RUN_DIR/last)", ge=1, run_control=True)
    log_every: int = setting(100, "iterations averaged per row of train_log.csv", ge=1, run_control=True)
    sample_every: int = setting(1000, "iterations between sample grids (RUN_DIR/samples)", ge=1, run_control=True)
    tensorboard: bool = setting(True, "also write TensorBoard event files", run_control=True)

    def __post_init__(self) -> None:
        check_settings(self)


def resolve_config(base: C, yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """``base`` (a preset or a stored run's config), then a YAML file's fields, then flags (None = not given)."""
    cls = type(base)
    data = to_dict(base)
    where = "config"
    if yaml_path is not None:
        fields = read_yaml_fields(yaml_path)
        from_dict(cls, {**data, **fields}, where=str(yaml_path))  # reports bad keys against the file
        data.update(fields)
        where = str(yaml_path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, data, where=where)


def config_differences(stored: Any, new: Any) -> list[str]:
    """``"name: old -> new"`` of the fields that differ and may not change on resume (not ``run_control``)."""
    control = {field.name for field in setting_fields(type(new), "run_control")}
    lines = []
    for field in dataclasses.fields(new):
        if field.name in control:
            continue
        old, value = getattr(stored, field.name), getattr(new, field.name)
        if old != value:
            lines.append(f"{field.name}: {old!r} -> {value!r}")
    return lines
