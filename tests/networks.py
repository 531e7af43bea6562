"""Untrained networks that behave enough like trained ones for tests (importable: pytest puts tests/ on the path)."""

import torch

from picard_ad.methods.picard import InpaintingGenerator


def he_initialised(network: torch.nn.Module) -> torch.nn.Module:
    """Variance-preserving conv weights: with PyTorch's default init the signal fades over the 17 layers of a
    stage, so completions would barely depend on their context or on dropout, unlike a trained network's."""
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    return network


def lively_generator(cnum: int = 4, seed: int = 0) -> InpaintingGenerator:
    """A small untrained generator (eval mode) whose completions depend on context and dropout."""
    torch.manual_seed(seed)
    return he_initialised(InpaintingGenerator(in_channels=1, cnum=cnum)).eval()
