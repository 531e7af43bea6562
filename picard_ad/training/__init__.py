"""The generic training loop: any method's networks trained resumably, with safetensors checkpoints and logs.

A method declares its training config (derived from ``RunSettings``) and a ``TrainingStep`` (networks,
optimizers, data, one iteration); ``Trainer`` runs it in a run folder (see ``picard_ad.training.loop``).
"""

from picard_ad.training.checkpoint import (
    checkpoint_dir,
    config_from_info,
    load_network_weights,
    network_file,
    read_checkpoint_info,
)
from picard_ad.training.config import RunSettings, config_differences, resolve_config
from picard_ad.training.loop import Trainer, TrainResult, run_holds_training, stored_run_config
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep, frozen

__all__ = [
    "CurvePanel",
    "RunSettings",
    "SampleGrid",
    "TrainResult",
    "Trainer",
    "TrainingStep",
    "checkpoint_dir",
    "config_differences",
    "config_from_info",
    "frozen",
    "load_network_weights",
    "network_file",
    "read_checkpoint_info",
    "resolve_config",
    "run_holds_training",
    "stored_run_config",
]
