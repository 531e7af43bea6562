import json
import re

import yaml
from click.testing import CliRunner

from picard_ad.cli import main
from picard_ad.config import to_dict
from picard_ad.methods import load_method


def command_runner(name):
    runner = CliRunner()
    return lambda args: runner.invoke(main, [name, *map(str, args)])


def test_train_resume_and_refusal_from_the_command_line(tiny_config, phantom_folder, tmp_path, one_torch_thread):
    settings = to_dict(tiny_config)
    settings.pop("steps")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    run = tmp_path / "run"
    train = command_runner("train")
    args = ["--data", phantom_folder, "--out", run, "--config", config_file, "--quiet"]

    first = train([*args, "--steps", "3", "--seed", "9"])
    assert first.exit_code == 0, first.output
    assert f"fitted picard on {phantom_folder}; run folder {run}" in first.output
    assert re.search(r"trained to iteration 3 in \d+ s; best held-out val_l1 0\.\d+ at iteration [1-3]", first.output)
    described = json.loads((run / "last" / "config.json").read_text())
    assert described["step"] == 3 and described["train_config"]["seed"] == 9  # flag over YAML
    assert described["train_config"]["cnum"] == 4  # YAML over the paper preset
    assert load_method(run).train_config.seed == 9

    again = train([*args, "--steps", "3"])
    assert again.exit_code == 2 and "--resume" in again.output

    resumed = train(["--data", phantom_folder, "--out", run, "--resume", "--steps", "6", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "last" / "config.json").read_text())["step"] == 6

    changed = train([*args, "--resume", "--steps", "9", "--batch-size", "2"])
    assert changed.exit_code == 2 and "batch_size: 4 -> 2" in changed.output


def test_fit_takes_any_method_its_preset_its_settings_and_checks_them(phantom_folder, tmp_path, one_torch_thread):
    fit = command_runner("fit")
    assert "--cnum INTEGER" in fit(["--method", "picard", "--help"]).output
    assert "[16]" in fit(["--method", "picard", "--preset", "small", "--help"]).output.split("--cnum")[1][:120]
    (tmp_path / "picard.yaml").write_text("steps: 2\nsettings:\n  stride: 8\n  n_completions: 3\n")
    result = fit(["--method", "picard", "--preset", "tiny", "--data", phantom_folder, "--out", tmp_path / "p",
                  "--config", tmp_path / "picard.yaml", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    picard = load_method(tmp_path / "p")
    assert (picard.train_config.steps, picard.train_config.cnum) == (2, 4)  # YAML over the tiny preset
    assert (picard.settings.stride, picard.settings.n_completions) == (8, 3)  # recorded scoring defaults

    brightness = fit(["--method", "brightness", "--data", phantom_folder, "--out", tmp_path / "b"])
    assert brightness.exit_code == 0, brightness.output
    assert load_method(tmp_path / "b").name == "brightness"
    twice = fit(["--method", "brightness", "--data", phantom_folder, "--out", tmp_path / "b"])
    assert twice.exit_code == 2 and "already holds a fitted method" in twice.output

    for args, message in (
        (["--method", "picardd"], "unknown method 'picardd'; registered methods: alpha-gan, bigan, brightness, "),
        (["--method", "toy-meen"], "unknown method 'toy-meen'; registered methods: alpha-gan"),
        (["--method", "picard", "--preset", "huge"], "no training preset 'huge'; its presets: paper, small, tiny"),
        (["--method", "picard", "--lr", "nan"], "not a finite number"),
        (["--method", "picard", "--steps", "0"], "steps must be >= 1"),
        (["--method", "brightness", "--cnum", "4"], "No such option '--cnum'"),
    ):
        result = fit([*args, "--data", phantom_folder, "--out", tmp_path / "never"])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "never").exists()
