"""``picard-ad heatmap --config``: every flag is a key of the YAML file, ``model`` and ``out`` included; bad values
are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from picard_runs import write_tiny_run

from picard_ad.cli import main
from picard_ad.io.writers import write_png
from picard_ad.methods import create_method


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = tmp_path_factory.mktemp("brightness")
    create_method("brightness", settings={"sigma": 2.0}).save(run)
    return run


@pytest.fixture
def image(tmp_path):
    pixels = np.zeros((40, 32))
    pixels[8:30, 4:20] = 0.7
    write_png(tmp_path / "scan.png", pixels, bit_depth=8)
    return tmp_path / "scan.png"


def heatmap(*args):
    return CliRunner().invoke(main, ["heatmap", *[str(a) for a in args], "--quiet"], catch_exceptions=False)


def test_model_and_out_are_config_keys(model, image, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {model}\nout: {out}\nsigma: 4.0\n")
    result = heatmap(image, "--config", config)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "scan.json").read_text())
    assert sidecar["method"] == "brightness" and sidecar["settings"]["sigma"] == 4.0
    shown = CliRunner().invoke(main, ["heatmap", "--config", str(config), "--help"]).output
    assert "--sigma NUMBER" in shown  # the method's options come from the run the file names
    flags_win = heatmap(image, "--config", config, "--out", tmp_path / "elsewhere")
    assert flags_win.exit_code == 0 and (tmp_path / "elsewhere" / "scan.json").is_file()


def test_missing_model_and_out_are_one_line_errors(model, image, tmp_path):
    result = heatmap(image, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == "picard-ad: error: give --model, or the key 'model' in the file given with --config"
    no_out = heatmap(image, "--model", model)
    assert no_out.exit_code == 2 and "give --out, or the key 'out'" in no_out.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("model: [1, 2]\n")
    bad = heatmap(image, "--config", config, "--out", tmp_path / "out")
    assert bad.exit_code == 2 and bad.stderr.strip() == f"picard-ad: error: {config}.model: expected a path, got [1, 2]"


@pytest.fixture(scope="module")
def picard_model(tmp_path_factory):
    """An untrained cnum-4 PICARD run: only its settings (tissue_threshold among them) matter here."""


    run = tmp_path_factory.mktemp("picard")
    write_tiny_run(run, step=1)
    return run


def test_non_finite_tissue_threshold_is_refused_as_flag_and_as_key(picard_model, image, tmp_path):
    model = picard_model
    flag = heatmap(image, "--model", model, "--out", tmp_path / "out", "--tissue-threshold", "nan")
    assert flag.exit_code == 2 and "'nan' is not a finite number" in flag.stderr
    config = tmp_path / "nan.yaml"
    config.write_text("tissue_threshold: .nan\n")
    key = heatmap(image, "--model", model, "--out", tmp_path / "out", "--config", config)
    assert key.exit_code == 2
    (line,) = key.stderr.splitlines()
    assert line == f"picard-ad: error: {config}: tissue_threshold: expected a finite number, got nan"
    assert not (tmp_path / "out").exists()


def test_duplicate_keys_in_the_heatmap_config_are_refused(model, image, tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text(f"model: {model}\nsigma: 1.0\nsigma: 8.0\n")
    result = heatmap(image, "--config", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"picard-ad: error: {config}: not valid YAML at line 3, column 1: duplicate key 'sigma' (first given on "
        "line 2)"
    )
