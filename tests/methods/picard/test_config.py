import dataclasses

import pytest

from picard_ad.config import load_config
from picard_ad.errors import ConfigError
from picard_ad.methods.picard import PRESETS, Picard
from picard_ad.methods.picard import PicardTrainConfig as TrainConfig
from picard_ad.training import config_differences, resolve_config

preset_config = Picard.preset


def test_defaults_are_the_papers_settings():
    paper = preset_config("paper")
    assert (paper.patch_size, paper.hole_size, paper.hole_max_shrink, paper.cnum, paper.batch_size) == (
        256, 128, 16, 32, 55,
    )  # fmt: skip
    assert (paper.n_critic, paper.lr, paper.betas, paper.wgan_gp_lambda) == (5, 1e-4, (0.5, 0.9), 10.0)
    assert (paper.coarse_l1_alpha, paper.l1_loss_alpha, paper.ae_loss_alpha) == (1.2, 1.2, 1.2)
    assert (paper.global_wgan_loss_alpha, paper.gan_loss_alpha, paper.spatial_discount_gamma) == (1.0, 0.001, 0.9)
    assert paper == TrainConfig()


def test_small_preset_scales_the_geometry():
    small = PRESETS["small"]
    assert (small.patch_size, small.hole_size, small.hole_max_shrink) == (64, 32, 4)
    with pytest.raises(ConfigError, match="no training preset 'huge'; its presets: paper, small"):
        preset_config("huge")
    assert preset_config() == PRESETS["paper"]  # the default preset


def test_yaml_overrides_the_preset_and_flags_override_yaml(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("batch_size: 7\nsteps: 100\nbetas: [0.0, 0.99]\n")
    config = resolve_config(preset_config("small"), path, {"steps": 50, "seed": None})
    assert (config.batch_size, config.steps, config.betas) == (7, 50, (0.0, 0.99))
    assert config.patch_size == 64 and config.seed == preset_config("small").seed
    assert load_config(TrainConfig, path).batch_size == 7  # the generic loader reads the same file


def test_unknown_keys_and_impossible_values_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batchsize: 7\n")
    with pytest.raises(ConfigError, match="did you mean 'batch_size'") as info:
        resolve_config(preset_config("small"), path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="multiple of 16"):
        TrainConfig(patch_size=72)
    with pytest.raises(ConfigError, match="less than half"):
        TrainConfig(hole_size=32, hole_max_shrink=16)
    with pytest.raises(ConfigError, match="smaller than patch_size"):
        TrainConfig(patch_size=64, hole_size=64)
    with pytest.raises(ConfigError, match="device"):
        resolve_config(preset_config("paper"), None, {"device": "tpu"})
    with pytest.raises(ConfigError, match="lr must be > 0.0"):
        TrainConfig(lr=0.0)
    with pytest.raises(ConfigError, match="finite"):
        resolve_config(preset_config("paper"), None, {"lr": float("nan")})
    with pytest.raises(ConfigError, match=r"betas must be in \[0.0, 1.0\)"):
        TrainConfig(betas=(0.5, 1.0))


def test_config_differences_ignore_run_control_fields():
    base = preset_config("small")
    assert config_differences(base, dataclasses.replace(base, steps=10, device="cpu", log_every=1)) == []
    assert config_differences(base, dataclasses.replace(base, cnum=8, lr=1.0)) == [
        "cnum: 16 -> 8",
        "lr: 0.0005 -> 1.0",
    ]
