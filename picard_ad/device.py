"""Choosing the torch device from a ``device`` setting, the same way for training and heatmapping."""

from __future__ import annotations

import torch

from picard_ad.errors import ConfigError


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device of a setting: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".

    local_rank: in a distributed run, plain "cuda" means this process's GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
        if device.index is None:
            return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    return device
