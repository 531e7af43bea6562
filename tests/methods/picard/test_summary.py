"""Parameter tables, analytic FLOP counts (checked against torch's counter) and ``picard-ad describe``."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from picard_ad.methods.picard import (
    GlobalCritic,
    InpaintingGenerator,
    LocalCritic,
    Picard,
    PicardTrainConfig,
    build_networks,
)
from picard_ad.methods.picard.summary import critic_flops, generator_flops, parameter_table


def _measured_flops(module, *inputs) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()


def test_parameter_table_of_the_generator_and_critics():
    assert parameter_table(InpaintingGenerator()) == {
        "coarse_generator": 1_446_337,
        "fine_generator": 2_149_825,
        "fine_generator.conv_branch": 878_880,
        "fine_generator.attention_branch": 694_368,
        "fine_generator.merge": 576_577,
        "total": 3_596_162,
    }
    assert parameter_table(LocalCritic()) == {"dis_conv_module": 666_752, "linear": 8_193, "total": 674_945}
    assert parameter_table(GlobalCritic())["total"] == 699_521


def test_paper_configuration_costs_about_51_gflop_per_completion():
    flops = generator_flops(cnum=32, in_channels=1, height=256, width=256)
    assert flops.total == 50_876_907_520
    attention = flops.per_layer["fine_generator.contextual_attention.matching"]
    attention += flops.per_layer["fine_generator.contextual_attention.reconstruction"]
    assert attention == 6_710_886_400  # 13 % of the total; the convolutions are the other 87 %
    assert sum(flops.groups.values()) == flops.total
    assert flops.groups["coarse_generator"] == 19_056_820_224  # summed by hand from the layer table


@pytest.mark.parametrize("cnum, in_channels, height, width", [(8, 1, 64, 64), (4, 3, 32, 48)])
def test_analytic_generator_flops_match_torch_counter(cnum, in_channels, height, width):
    generator = InpaintingGenerator(in_channels=in_channels, cnum=cnum)
    images = torch.zeros(1, in_channels, height, width)
    masks = torch.zeros(1, 1, height, width)
    analytic = generator_flops(cnum, in_channels, height, width).total
    measured = _measured_flops(generator, images, masks)
    assert abs(analytic - measured) <= 0.02 * measured


def test_analytic_critic_flops_match_torch_counter():
    critic = LocalCritic(cnum=8, input_size=64)
    assert critic_flops(8, 1, 64).total == _measured_flops(critic, torch.zeros(1, 1, 64, 64))
    assert critic_flops(32, 1, 128).total == 268_713_984


def test_flops_scale_with_batch_free_definition():
    """Per completion: four times the pixels, four times the conv FLOPs, sixteen times the attention."""
    small, large = generator_flops(8, 1, 64, 64), generator_flops(8, 1, 128, 128)
    key = "fine_generator.contextual_attention.matching"
    assert large.per_layer[key] == 16 * small.per_layer[key]
    assert large.per_layer["coarse_generator.conv3"] == 4 * small.per_layer["coarse_generator.conv3"]
    with pytest.raises(ValueError, match="multiples of 8"):
        generator_flops(8, 1, 60, 64)


def _describe(*args):
    from picard_ad.cli import main

    return CliRunner().invoke(main, ["describe", *map(str, args)])


def test_describe_prints_counts_and_flops():
    result = _describe()
    assert result.exit_code == 0, result.output
    assert "3,596,162 params" in result.output and "50.88 GFLOP per completion" in result.output
    assert "1,446,337" in result.output and "694,368" in result.output
    assert "input 128 x 128, 674,945 params" in result.output
    assert "fine_generator.pmconv6" not in result.output and "pmconv6" in result.output


def test_describe_reads_the_run_config_and_flags_override_it(tmp_path):
    config = PicardTrainConfig(cnum=16, patch_size=64, hole_size=32, hole_max_shrink=4)
    Picard.from_networks(build_networks(config), config).save(tmp_path)
    result = _describe(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"Method picard; settings from {tmp_path}\n" in result.output
    assert f"{parameter_table(InpaintingGenerator(cnum=16))['total']:,} params" in result.output
    assert "patch 64 x 64" in result.output and "input 32 x 32" in result.output
    overridden = _describe(tmp_path, "--cnum", "8")
    assert overridden.exit_code == 0 and "cnum 8," in overridden.output and "and flags" in overridden.output
    assert "trains no network" in _describe("--method", "brightness").output


def test_describe_explains_a_missing_or_bad_config(tmp_path):
    result = _describe(tmp_path)
    assert result.exit_code == 2 and "holds no fitted method" in result.output
    (tmp_path / "method.json").write_text(json.dumps({"format": "picard-ad/method", "format_version": 2,
                                                      "name": "picard", "train": {"cnum": "wide"}, "settings": {}}))
    result = _describe(tmp_path)
    assert result.exit_code == 2 and "cnum: expected an integer" in result.output
    odd = _describe("--patch-size", "72")
    assert odd.exit_code == 2 and "multiple of 16" in odd.output
