"""PICARD's networks as pure nn.Modules (no training logic, no I/O), built by name with ``create_model``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from picard_ad.errors import ConfigError
from picard_ad.models.contextual_attention import ContextualAttention
from picard_ad.models.critics import Critic, GlobalCritic, LocalCritic
from picard_ad.models.generator import (
    DROPOUT_LAYER_NAMES,
    DROPOUT_PRESETS,
    InpaintingGenerator,
    resolve_dropout_layers,
)
from picard_ad.models.layers import ChannelDropout, ConvBlock

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "picard_generator": InpaintingGenerator,
    "local_critic": LocalCritic,
    "global_critic": GlobalCritic,
}


def list_models() -> list[str]:
    """Names accepted by ``create_model``, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered network by name; keyword arguments go to its constructor (in_channels, cnum, ...)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


__all__ = [
    "DROPOUT_LAYER_NAMES",
    "DROPOUT_PRESETS",
    "ChannelDropout",
    "ContextualAttention",
    "ConvBlock",
    "Critic",
    "GlobalCritic",
    "InpaintingGenerator",
    "LocalCritic",
    "create_model",
    "list_models",
    "resolve_dropout_layers",
]
