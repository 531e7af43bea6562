import json

import yaml
from click.testing import CliRunner

from picard_ad.cli.train import command
from picard_ad.config import to_dict
from picard_ad.errors import ConfigError


def test_train_resume_and_refusal_from_the_command_line(tiny_config, phantom_folder, tmp_path):
    settings = to_dict(tiny_config)
    settings.pop("steps")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["--data", str(phantom_folder), "--out", str(run), "--config", str(config_file), "--quiet"]

    first = runner.invoke(command, [*args, "--steps", "3", "--seed", "9"])
    assert first.exit_code == 0, first.output
    assert "trained to iteration 3" in first.output
    described = json.loads((run / "last" / "config.json").read_text())
    assert described["step"] == 3 and described["train_config"]["seed"] == 9  # flag over YAML
    assert described["train_config"]["cnum"] == 4  # YAML over the paper preset

    again = runner.invoke(command, [*args, "--steps", "3"])
    assert isinstance(again.exception, ConfigError) and "--resume" in str(again.exception)

    resumed = runner.invoke(command, ["--data", str(phantom_folder), "--out", str(run), "--resume", "--steps", "6",
                                      "--quiet"])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "last" / "config.json").read_text())["step"] == 6

    changed = runner.invoke(command, [*args, "--resume", "--steps", "9", "--batch-size", "2"])
    assert isinstance(changed.exception, ConfigError) and "batch_size: 4 -> 2" in str(changed.exception)
