import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from picard_ad.config import check_settings, load_config, range_text, save_config, setting, split_flat_config
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
    example, inner = split_flat_config(cfg_file, {"mode": "exact", "steps": None}, Example, Inner)
    assert example == {"steps": 4, "mode": "exact"} and inner == {"sigma": 3}  # only what was given
    with pytest.raises(ConfigError, match="unknown key 'sigmma' \\(did you mean 'sigma'\\?\\)"):
        split_flat_config(None, {"sigmma": 1}, Example, Inner)
    with pytest.raises(ConfigError, match="unknown key 'zzz'; valid keys: .*sigma"):
        split_flat_config(None, {"zzz": 1}, Example, Inner)


@dataclass(frozen=True)
class Declared:
    rate: float = setting(0.5, "a rate", ge=0.0, lt=1.0)
    count: int | None = setting(None, "a count", gt=0)
    kind: Literal["a", "b"] = setting("a", "a kind")
    size: int | Literal["auto"] = setting("auto", "a size", ge=1)
    name: str = setting("x", "a name", choices=("x", "y"))
    pair: tuple[float, float] = setting((0.1, 0.2), "two numbers", ge=0.0)

    def __post_init__(self) -> None:
        check_settings(self)


def test_declared_bounds_choices_and_finiteness_are_enforced():
    assert Declared(rate=0.0, count=3, kind="b", size=4, name="y") == Declared(0.0, 3, "b", 4, "y")
    for bad, message in (
        ({"rate": 1.0}, "rate must be in [0.0, 1.0), got 1.0"),
        ({"rate": float("nan")}, "rate must be a finite number"),
        ({"count": 0}, "count must be > 0, got 0"),
        ({"kind": "c"}, "kind must be one of a, b, got 'c'"),
        ({"size": 0}, "size must be one of auto, or a number >= 1, got 0"),
        ({"size": "big"}, "size must be one of auto, or a number >= 1, got 'big'"),
        ({"name": "z"}, "name must be one of x, y, got 'z'"),
        ({"pair": (0.1, -1.0)}, "pair must be >= 0.0, got (0.1, -1.0)"),
    ):
        with pytest.raises(ConfigError) as error:
            Declared(**bad)
        assert message in str(error.value)
    fields = {field.name: field for field in dataclasses.fields(Declared)}
    assert range_text(Declared, fields["rate"]) == "in [0.0, 1.0)"
    assert range_text(Declared, fields["name"]) == "one of x, y"
    with pytest.raises(ConfigError, match="expected a finite number"):
        load_config(Declared, None, {"rate": float("inf")})


def test_yaml_syntax_errors_are_one_line_with_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nsize: [1, 2\nmode: fast\n")
    with pytest.raises(ConfigError) as error:
        load_config(Example, bad)
    assert str(error.value) == (
        f"{bad}: not valid YAML at line 3, column 5: expected ',' or ']', but got ':' (while parsing a flow "
        "sequence)"
    )


def test_duplicate_yaml_keys_are_refused_naming_the_key_and_lines(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("steps: 3\nmode: fast\nsteps: 30\n")
    with pytest.raises(ConfigError) as error:
        load_config(Example, twice)
    assert str(error.value) == (
        f"{twice}: not valid YAML at line 3, column 1: duplicate key 'steps' (first given on line 1)"
    )
    nested = tmp_path / "nested.yaml"
    nested.write_text("inner:\n  sigma: 1\n  sigma: 2\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: duplicate key 'sigma' \(first given on line 2\)"):
        load_config(Example, nested)
    merged = tmp_path / "merged.yaml"  # a key merged in with << may be overridden: that is no duplicate
    merged.write_text("base: &base {sigma: 1}\ninner:\n  <<: *base\n  sigma: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        load_config(Example, merged)
    merged.write_text("inner:\n  <<: {sigma: 1}\n  sigma: 3\n")
    assert load_config(Example, merged).inner.sigma == 3


def test_non_finite_training_numbers_in_yaml_are_refused(tmp_path):
    from picard_ad.methods.picard import PicardTrainConfig
    from picard_ad.training.config import resolve_config

    config = tmp_path / "train.yaml"
    config.write_text("lr: .nan\n")
    with pytest.raises(ConfigError) as error:
        resolve_config(PicardTrainConfig(), config)
    assert str(error.value) == f"{config}.lr: expected a finite number, got nan"
    config.write_text("lr: .inf\n")
    with pytest.raises(ConfigError, match="expected a finite number, got inf"):
        resolve_config(PicardTrainConfig(), config)
