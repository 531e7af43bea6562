from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from picard_ad.config import load_config, load_flat_configs, save_config
from picard_ad.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    sigma: float = 1.0


@dataclass(frozen=True)
class Example:
    steps: int = 10
    size: tuple[int, int] = (64, 48)
    mode: Literal["fast", "exact"] = "fast"
    out: Path | None = None
    inner: Inner = field(default_factory=Inner)
    layers: tuple[str, ...] = ()


def test_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("steps: 20\nsize: [32, 16]\ninner: {sigma: 2}\nlayers: [a, b]\n")
    cfg = load_config(Example, cfg_file, {"steps": 5, "mode": None})
    assert cfg == Example(steps=5, size=(32, 16), inner=Inner(sigma=2.0), layers=("a", "b"))
    assert isinstance(cfg.inner.sigma, float)


def test_unknown_key_suggests_the_closest(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("stpes: 3\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: unknown key 'stpes' \(did you mean 'steps'\?\)"):
        load_config(Example, cfg_file)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"steps": "ten"}, "steps: expected an integer"),
        ({"steps": True}, "steps: expected an integer"),
        ({"size": [1, 2, 3]}, "size: expected 2 values"),
        ({"mode": "slow"}, "mode: 'slow' is not one of"),
        ({"inner": {"sigmaa": 1}}, "inner: unknown key 'sigmaa'"),
    ],
)
def test_wrong_values_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Example, None, overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Example, tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Example, bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(Example, bad)


def test_saved_config_loads_back_identically(tmp_path):
    cfg = Example(steps=3, size=(8, 4), mode="exact", out=tmp_path / "x", inner=Inner(0.5), layers=("c",))
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Example, tmp_path / "resolved.yaml") == cfg


def test_flat_configs_split_one_file_between_classes(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("steps: 4\nsigma: 3\n")
    example, inner = load_flat_configs(cfg_file, {"mode": "exact", "steps": None}, Example, Inner)
    assert example == Example(steps=4, mode="exact") and inner == Inner(sigma=3.0)
    with pytest.raises(ConfigError, match="unknown key 'sigmma'; valid keys: .*sigma"):
        load_flat_configs(None, {"sigmma": 1}, Example, Inner)
