"""Training of the PICARD completion network (WGAN-GP), resumable, with safetensors checkpoints."""

from picard_ad.training.checkpoint import (
    checkpoint_dir,
    load_generator,
    load_local_critic,
    load_networks,
    read_checkpoint_info,
)
from picard_ad.training.config import (
    PRESETS,
    TrainConfig,
    preset_config,
    resolve_config,
)
from picard_ad.training.trainer import Trainer, TrainResult, stored_run_config, train

__all__ = [
    "PRESETS",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "checkpoint_dir",
    "load_generator",
    "load_local_critic",
    "load_networks",
    "preset_config",
    "read_checkpoint_info",
    "resolve_config",
    "stored_run_config",
    "train",
]
