import csv
import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from picard_ad.config import load_config
from picard_ad.errors import ConfigError, InputError, PicardError
from picard_ad.methods import load_method
from picard_ad.methods.picard import PicardTrainConfig, PicardTraining
from picard_ad.training import Trainer, frozen


def picard_trainer(config, data, run_dir, **options) -> Trainer:
    return Trainer("picard", config, PicardTraining, data, run_dir, progress=False, **options)


def train(config, data, run_dir, **options):
    return picard_trainer(config, data, run_dir, **options).train()


def _tensors(directory):
    return {
        f"{path.stem}/{key}": value
        for path in sorted(directory.glob("*.safetensors"))
        for key, value in load_file(path).items()
    }


def _loss_rows(run_dir):
    with (run_dir / "train_log.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k not in ("samples_per_s", "elapsed_s")} for row in csv.DictReader(handle)
        ]


def test_a_run_writes_checkpoints_logs_samples_and_curves(tiny_config, phantom_folder, tmp_path):
    result = train(tiny_config, phantom_folder, tmp_path / "run")
    run = tmp_path / "run"
    assert result.steps == 6 and [step for step, _ in result.validation] == [3, 6]
    assert result.validation_name == "val_l1"
    assert result.best_validation == min(value for _, value in result.validation)
    assert 0.0 < result.best_validation < 1.0
    for path in ("last/generator.safetensors", "best/generator.safetensors", "samples/step_00000003.png",
                 "samples/step_00000006.png", "loss_curve.png", "validation.csv"):  # fmt: skip
        assert (run / path).is_file(), path
    assert [row["step"] for row in _loss_rows(run)] == ["2", "4", "6"]
    assert load_config(PicardTrainConfig, run / "config.yaml") == tiny_config
    described = json.loads((run / "config.json").read_text())
    assert (described["cnum"], described["in_channels"], described["patch_size"], described["step"]) == (4, 1, 32, 6)
    assert described["method"] == "picard" and described["val_l1"] == result.validation[-1][1]
    best = json.loads((run / "best" / "config.json").read_text())
    assert best["step"] == result.best_step and best["val_l1"] == result.best_validation
    picard = load_method(run, checkpoint="best", device="cpu")  # a run without method.json is read from its checkpoint
    assert picard.train_config == tiny_config and picard.model["step"] == result.best_step
    assert not picard.networks["generator"].training


def test_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tiny_config, phantom_folder, tmp_path):
    train(tiny_config, phantom_folder, tmp_path / "whole")

    killed = picard_trainer(tiny_config, phantom_folder, tmp_path / "killed")
    step = killed.task.step

    def dies_in_iteration_five(iteration):
        if iteration == 5:
            raise RuntimeError("killed")
        return step(iteration)

    killed.task.step = dies_in_iteration_five
    with pytest.raises(RuntimeError, match="killed"):
        killed.train()
    assert json.loads((tmp_path / "killed" / "last" / "config.json").read_text())["step"] == 3  # lost one step

    result = picard_trainer(tiny_config, phantom_folder, tmp_path / "killed", resume=True).train()
    assert result.steps == 6
    whole, resumed = _tensors(tmp_path / "whole" / "last"), _tensors(tmp_path / "killed" / "last")
    assert whole.keys() == resumed.keys() and len(whole) > 50
    different = [key for key in whole if not torch.equal(whole[key], resumed[key])]
    assert different == []
    assert _loss_rows(tmp_path / "whole") == _loss_rows(tmp_path / "killed")
    state = json.loads((tmp_path / "killed" / "last" / "trainer_state.json").read_text())
    assert state["ranks"] == json.loads((tmp_path / "whole" / "last" / "trainer_state.json").read_text())["ranks"]


def test_the_generators_adversarial_loss_does_not_reach_the_critics(tiny_config, phantom_folder, tmp_path):
    results = {}
    for weight in (0.0, 1000.0):
        config = dataclasses.replace(tiny_config, gan_loss_alpha=weight)
        trainer = picard_trainer(config, phantom_folder, tmp_path / f"alpha{weight}")
        trainer.task.step(config.n_critic)  # an iteration with a generator step
        results[weight] = trainer.task.networks
    quiet, loud = results[0.0], results[1000.0]
    for name in ("local_critic", "global_critic"):
        a, b = quiet[name].state_dict(), loud[name].state_dict()
        assert all(torch.equal(a[key], b[key]) for key in a), name
    a, b = quiet["generator"].state_dict(), loud["generator"].state_dict()
    assert any(not torch.equal(a[key], b[key]) for key in a)  # the term does act on the generator


def test_frozen_restores_requires_grad():
    module = torch.nn.Linear(2, 2)
    module.bias.requires_grad_(False)
    with frozen(module):
        assert not any(p.requires_grad for p in module.parameters())
    assert module.weight.requires_grad and not module.bias.requires_grad


def test_a_tiny_generator_overfits_one_batch(tiny_config, phantom_folder, tmp_path):
    config = dataclasses.replace(tiny_config, cnum=8, n_critic=1, lr=1e-3)
    trainer = picard_trainer(config, phantom_folder, tmp_path / "run")
    batch = trainer.task.batch()
    trainer.task.batch = lambda: batch
    truth, mask, _ = batch

    def hole_l1():
        with torch.no_grad():
            _, stage2 = trainer.task.networks["generator"](truth, mask)
        return float(((stage2 - truth).abs() * mask).sum() / mask.sum())

    before = hole_l1()
    for iteration in range(1, 31):
        trainer.task.step(iteration)
    assert hole_l1() < 0.5 * before


def test_run_folder_and_resume_mistakes_are_refused(tiny_config, phantom_folder, tmp_path):
    with pytest.raises(InputError, match="no 'last' checkpoint"):
        picard_trainer(tiny_config, phantom_folder, tmp_path, resume=True)
    short = dataclasses.replace(tiny_config, steps=3)
    train(short, phantom_folder, tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        picard_trainer(short, phantom_folder, tmp_path / "run")
    with pytest.raises(ConfigError, match="cnum: 4 -> 8"):
        picard_trainer(dataclasses.replace(short, cnum=8), phantom_folder, tmp_path / "run", resume=True)
    other_data = tmp_path / "other"
    other_data.mkdir()
    for path in sorted(phantom_folder.glob("*.png"))[:4]:
        (other_data / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match="differ from those the run was trained on"):
        picard_trainer(short, other_data, tmp_path / "run", resume=True)
    with pytest.raises(InputError, match="too few to hold out"):
        picard_trainer(dataclasses.replace(short, val_images=6), phantom_folder, tmp_path / "fresh")


def test_diverging_losses_stop_the_run_with_advice(tiny_config, phantom_folder, tmp_path):
    trainer = picard_trainer(tiny_config, phantom_folder, tmp_path / "run")
    step = trainer.task.step

    def nan_critic(iteration):
        losses = step(iteration)
        return {**losses, "d_loss": torch.tensor(float("nan"))}

    trainer.task.step = nan_critic
    with pytest.raises(PicardError, match="diverged by iteration 2 \\(d_loss not finite\\)"):
        trainer.train()


def test_bf16_channels_last_steps_give_finite_losses(tiny_config, phantom_folder, tmp_path):
    config = dataclasses.replace(tiny_config, bf16=True, channels_last=True)
    trainer = picard_trainer(config, phantom_folder, tmp_path / "run")
    generator = trainer.task.networks["generator"]
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    losses = {**trainer.task.step(1), **trainer.task.step(2)}  # n_critic 2: the second has a generator step
    assert set(losses) == set(PicardTraining.loss_names)
    assert all(torch.isfinite(value) and value.dtype == torch.float32 for value in losses.values())
    after = generator.state_dict()
    assert any(not torch.equal(before[key], after[key]) for key in before)
    assert generator.coarse_generator.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
