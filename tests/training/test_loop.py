"""The generic training loop with a toy training step: what any method's training gets from it."""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from picard_ad.config import load_config, setting
from picard_ad.errors import ConfigError, PicardError
from picard_ad.training import CurvePanel, RunSettings, SampleGrid, Trainer, TrainingStep


@dataclass(frozen=True)
class ToyConfig(RunSettings):
    width: int = setting(8, "vector length", ge=1)
    lr: float = setting(0.05, "SGD learning rate", gt=0.0)


class ToyStep(TrainingStep):
    """A linear map learning to copy noisy vectors; the noise comes from a generator saved with the run."""

    loss_names = ("mse",)
    validation_name = "val_mse"
    curve_panels = (CurvePanel("loss", (("mse", "training MSE"),), log_scale=True, with_validation=True),)

    def __init__(self, config: ToyConfig, device: torch.device, context) -> None:
        super().__init__(config, device, context)
        self.networks = {"copier": torch.nn.Linear(config.width, config.width)}
        self.optimizers = {"copier": torch.optim.SGD(self.networks["copier"].parameters(), lr=config.lr)}

    def prepare_data(self, train_images, val_images, source) -> None:
        self.n_images = len(train_images)
        self.rng = np.random.default_rng((self.config.seed, self.context.rank))
        self.validation = torch.from_numpy(np.random.default_rng(7).normal(size=(16, self.config.width))).float()

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        target = torch.from_numpy(self.rng.normal(size=(self.config.batch_size, self.config.width))).float()
        noisy = target + 0.1 * torch.randn_like(target)  # the trainer's torch RNG
        loss = torch.nn.functional.mse_loss(self.networks["copier"](noisy), target)
        self.optimizers["copier"].zero_grad()
        loss.backward()
        self.optimizers["copier"].step()
        return {"mse": loss.detach()}

    def validate(self) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(self.networks["copier"](self.validation), self.validation))

    def sample_grid(self) -> SampleGrid:
        weight = self.networks["copier"].weight.detach().numpy()
        return SampleGrid((weight - weight.min()) / np.ptp(weight), ("weights",))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def describe(self) -> dict[str, Any]:
        return {"architecture": "linear copier", "width": self.config.width}


CONFIG = ToyConfig(steps=8, batch_size=4, checkpoint_every=3, validate_every=2, log_every=2, sample_every=4,
                   tensorboard=False, device="cpu", num_workers=0, seed=3)  # fmt: skip


def toy_trainer(data, run_dir, config=CONFIG, **options) -> Trainer:
    return Trainer("toy", config, ToyStep, data, run_dir, progress=False, **options)


def _rows(path):
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in row.items() if k not in ("samples_per_s", "elapsed_s")} for row in rows]


def test_a_run_keeps_checkpoints_logs_validation_samples_and_curves(phantom_folder, tmp_path):
    result = toy_trainer(phantom_folder, tmp_path / "run").train()
    run = tmp_path / "run"
    assert result.steps == 8 and [step for step, _ in result.validation] == [2, 4, 6, 8]
    assert result.best_validation == min(value for _, value in result.validation)
    assert result.validation[-1][1] < result.validation[0][1]  # it learns
    last = json.loads((run / "last" / "config.json").read_text())
    assert (last["method"], last["step"], last["width"], last["val_mse"]) == ("toy", 8, 8, result.validation[-1][1])
    best = json.loads((run / "best" / "config.json").read_text())
    assert (best["step"], best["val_mse"]) == (result.best_step, result.best_validation)
    assert {path.name for path in (run / "last").iterdir()} == {
        "config.json", "copier.safetensors", "optimizers.safetensors", "trainer_state.json",
    }  # fmt: skip
    assert [row["step"] for row in _rows(run / "train_log.csv")] == ["2", "4", "6", "8"]
    with (run / "train_log.csv").open() as handle:
        assert next(csv.reader(handle)) == ["step", "mse", "samples_per_s", "elapsed_s"]
    assert [row["step"] for row in _rows(run / "validation.csv")] == ["2", "4", "6", "8"]
    assert sorted(path.name for path in (run / "samples").iterdir()) == ["step_00000004.png", "step_00000008.png"]
    assert (run / "loss_curve.png").stat().st_size > 1000
    assert load_config(ToyConfig, run / "config.yaml") == CONFIG


def test_a_killed_run_resumes_bit_for_bit(phantom_folder, tmp_path):
    toy_trainer(phantom_folder, tmp_path / "whole").train()
    killed = toy_trainer(phantom_folder, tmp_path / "killed")
    step = killed.task.step

    def dies_in_iteration_five(iteration):
        if iteration == 5:
            raise RuntimeError("killed")
        return step(iteration)

    killed.task.step = dies_in_iteration_five
    with pytest.raises(RuntimeError, match="killed"):
        killed.train()
    assert json.loads((tmp_path / "killed" / "last" / "config.json").read_text())["step"] == 3
    toy_trainer(phantom_folder, tmp_path / "killed", resume=True).train()
    whole, resumed = (load_file(tmp_path / name / "last" / "copier.safetensors") for name in ("whole", "killed"))
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert _rows(tmp_path / "whole" / "train_log.csv") == _rows(tmp_path / "killed" / "train_log.csv")
    assert _rows(tmp_path / "whole" / "validation.csv") == _rows(tmp_path / "killed" / "validation.csv")


def test_resume_mistakes_and_divergence_are_refused_with_advice(phantom_folder, tmp_path):
    toy_trainer(phantom_folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=3)).train()
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        toy_trainer(phantom_folder, tmp_path / "run")
    with pytest.raises(ConfigError, match="width: 8 -> 9"):
        toy_trainer(phantom_folder, tmp_path / "run", dataclasses.replace(CONFIG, width=9), resume=True)
    with pytest.raises(ConfigError, match="holds a run of method 'toy', not 'other'"):
        Trainer("other", CONFIG, ToyStep, phantom_folder, tmp_path / "run", resume=True, progress=False)
    longer = toy_trainer(phantom_folder, tmp_path / "run", dataclasses.replace(CONFIG, steps=5), resume=True)
    assert longer.step == 3 and longer.train().steps == 5  # steps is run control: it may change on resume

    diverging = toy_trainer(phantom_folder, tmp_path / "diverging")
    diverging.task.step = lambda iteration: {"mse": torch.tensor(float("inf"))}
    with pytest.raises(PicardError, match="diverged by iteration 2 \\(mse not finite\\)"):
        diverging.train()
