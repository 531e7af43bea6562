"""What the tests of every method share: the command line, phantoms as PNG folders, and a run killed mid-way and
resumed that must equal an uninterrupted one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from picard_ad.cli import main
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.io.writers import write_mask_png, write_png
from picard_ad.training import Trainer


def assert_resume_is_exact(make_trainer: Callable[..., Trainer], networks: Sequence[str], tmp_path: Path) -> None:
    """Train ``make_trainer(folder)`` whole, and again killed in iteration 3 and resumed
    (``make_trainer(folder, resume=True)``); the ``networks``' last checkpoints must be equal bit for bit."""
    make_trainer(tmp_path / "whole").train()
    killed = make_trainer(tmp_path / "killed")
    step = killed.task.step

    def dies_in_iteration_three(iteration):
        if iteration == 3:
            raise RuntimeError("killed")
        return step(iteration)

    killed.task.step = dies_in_iteration_three
    with pytest.raises(RuntimeError, match="killed"):
        killed.train()
    make_trainer(tmp_path / "killed", resume=True).train()
    for network in networks:
        whole = load_file(tmp_path / "whole" / "last" / f"{network}.safetensors")
        resumed = load_file(tmp_path / "killed" / "last" / f"{network}.safetensors")
        assert whole.keys() == resumed.keys(), network
        assert all(torch.equal(whole[key], resumed[key]) for key in whole), network


def picard_ad(*args) -> str:
    """Run the command line with ``args`` (paths and numbers as strings); it must succeed; its output."""
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def write_phantom_pngs(root: Path, normals: Sequence[Sample], abnormals: Sequence[LoadedSample]) -> Path:
    """Phantoms as PNGs under ``root``: ``normal/``, ``abnormal/`` and their lesion masks in ``masks/``."""
    for sample in normals:
        write_png(root / "normal" / f"{sample.name}.png", sample.load_image())
    for index, loaded in enumerate(abnormals):
        write_png(root / "abnormal" / f"abnormal_{index:04d}.png", loaded.image)
        write_mask_png(root / "masks" / f"abnormal_{index:04d}.png", loaded.lesion_mask)
    return root
