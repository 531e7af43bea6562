"""Every YAML file in configs/ loads and validates as ``picard-ad benchmark`` reads it, so a typo fails CI."""

from pathlib import Path

import pytest

from picard_ad.benchmark import BenchmarkConfig
from picard_ad.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.y*ml"))


def test_configs_are_found():
    assert {"bench-phantoms.yaml", "bench-brats.yaml", "bench-bcs-dbt.yaml", "bench-synthetic.yaml"} <= {
        path.name for path in CONFIGS
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_shipped_config_loads_and_validates(path):
    config = load_config(BenchmarkConfig, path)  # as the benchmark command does: unknown keys and bad values raise
    methods = [entry.create() for entry in config.all_methods()]  # their keys are checked when built
    assert [method.name for method in methods][-2:] == ["brightness", "local-contrast"]  # the references come last


def test_bcs_dbt_example_has_paper_settings():
    config = load_config(BenchmarkConfig, next(path for path in CONFIGS if path.name == "bench-bcs-dbt.yaml"))
    assert config.data.kind == "bcs-dbt" and config.data.normal_list is not None
    picard = config.methods[0].create()
    assert (picard.train_config.cnum, picard.train_config.patch_size, picard.train_config.hole_size) == (32, 256, 128)
    settings = picard.settings
    assert (settings.patch_size, settings.mask_size, settings.stride, settings.n_completions) == (256, 128, 32, 10)
    cutpaste, patchsvdd = (entry.create() for entry in config.methods[1:])  # the paper's comparators, its windows
    assert (cutpaste.name, cutpaste.train_config.patch_size, cutpaste.settings.stride) == ("cutpaste", 256, 32)
    assert cutpaste.train_config.width == 64 and cutpaste.settings.gde == "shared"  # ResNet-18; slices not aligned
    train = patchsvdd.train_config
    assert (patchsvdd.name, train.patch_size, train.bank_stride, train.svdd_lambda) == ("patchsvdd", 256, 32, 1.0)


def test_synthetic_example_uses_both_synthetic_sets():
    config = load_config(BenchmarkConfig, next(path for path in CONFIGS if path.name == "bench-synthetic.yaml"))
    data = config.data
    assert data.synthetic_test > 0 and data.synthetic_validation > 0 and data.synthetic_validation_patients >= 1
    assert not config.ablations  # kept short: about 15 min on 2 cores


def test_radiograph_example_trains_each_model_per_preprocessing():
    """The paper's Table 1 layout: every model with a preprocessing chain fitted once per chain, under its label."""
    config = load_config(BenchmarkConfig, next(path for path in CONFIGS if path.name == "bench-radiographs.yaml"))
    chains = {entry.label: entry.create().settings.preprocessing for entry in config.methods}
    expected = {f"{name}-{chain}": chain for name in ("cae", "vae", "dcgan", "bigan", "alpha-gan")
                for chain in ("raw", "crop", "full")}  # fmt: skip
    assert chains == expected
    assert {ablation.method for ablation in config.ablations} == {"cae-full", "vae-full", "dcgan-full", "bigan-full",
                                                                  "alpha-gan-full"}  # fmt: skip
    assert config.data.max_side == 512 and config.data.synthetic_test > 0


def test_radiograph_example_splits_its_data_by_patient():
    """Needs ../data/radiographs (docs/benchmark-radiographs.md); skipped without it."""
    from picard_ad.benchmark import load_dataset, split_dataset

    config = load_config(BenchmarkConfig, next(path for path in CONFIGS if path.name == "bench-radiographs.yaml"))
    if not config.data.images_dir.is_dir():
        pytest.skip(f"{config.data.images_dir} is absent (docs/benchmark-radiographs.md builds it)")
    split = split_dataset(load_dataset(config.data, config.seed), config.data, config.seed)
    assert {sample.patient_id for sample in split.train} == {"P_00173", "RG1"}
    assert {sample.patient_id for sample in split.test} == {"P_00820", "RG3"}
    assert len(split.train) == 5 and len(split.test) == 5 + config.data.synthetic_test
    assert max(split.test[0].load_image().shape) == 512
