"""The fit job behind ``picard-ad fit``: any registered method fitted on normal images into a run folder.

A method's training config comes from a preset (its default one unless named; on resume, the run's stored
config), then a YAML file, then flags. The YAML file holds training-config keys at the top level and, optionally,
a ``settings:`` mapping of scoring settings that the run records as its defaults (``picard-ad heatmap`` starts
from them). Unknown keys are rejected with the valid ones named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from picard_ad.config import from_dict, read_yaml_fields
from picard_ad.errors import ConfigError
from picard_ad.methods.base import METHOD_FILE, AnomalyMethod, method_class
from picard_ad.training.config import resolve_config
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.loop import stored_run_config

SETTINGS_KEY = "settings"


def resolve_method(
    name: str,
    run_dir: Path,
    *,
    preset: str | None = None,
    config_path: Path | None = None,
    flags: dict[str, Any] | None = None,
    resume: bool = False,
) -> AnomalyMethod:
    """The unfitted method ``name`` with its training config and default settings resolved.

    Args:
        preset: the training preset to start from (None: the method's default; on resume, the run's config).
        config_path: YAML file of training-config keys, with an optional ``settings:`` mapping.
        flags: training-config values given on the command line (None = not given).
        resume: the run in ``run_dir`` is continued, so its stored config is the base unless a preset is named.
    """
    cls = method_class(name)
    if resume and preset is None and cls.needs_training:
        base = stored_run_config(run_dir, cls.train_config_class)
    else:
        base = cls.preset(preset)
    fields = dict(read_yaml_fields(config_path)) if config_path is not None else {}
    settings = fields.pop(SETTINGS_KEY, None) or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{config_path}: '{SETTINGS_KEY}' must be a mapping of {cls.settings_class.__name__} keys")
    train = resolve_config(base, None, {**fields, **(flags or {})})
    where = str(config_path) if config_path is not None else f"method '{name}'"
    return cls(train, from_dict(cls.settings_class, settings, where=f"{where}: {SETTINGS_KEY}"))


def fit_method(
    method: AnomalyMethod,
    data: str | Path,
    run_dir: Path,
    *,
    resume: bool = False,
    context: DistributedContext | None = None,
    progress: bool = True,
) -> AnomalyMethod:
    """Fit ``method`` on the normal images of ``data`` (folder, ``.txt`` list or one file) into ``run_dir``.

    A folder that already holds a finished fit is refused unless ``resume`` (which continues a network's training
    and refits anything else).
    """
    if (run_dir / METHOD_FILE).is_file() and not resume:
        raise ConfigError(f"{run_dir}: already holds a fitted method; pass --resume to continue it, or choose "
                          "another --out")  # fmt: skip
    return method.fit(data, run_dir=run_dir, resume=resume and method.needs_training, progress=progress,
                      context=context)  # fmt: skip

