"""Load the reference implementation's released checkpoints (gen_*.pt, dis_*.pt) as our networks' state_dicts.

Only ``torch.load(..., weights_only=True)`` is used: a checkpoint that needs arbitrary Python objects to
unpickle is refused rather than executed.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from picard_ad.errors import CorruptFileError, InputError
from picard_ad.methods.picard.critics import DOWNSAMPLING, GlobalCritic, LocalCritic
from picard_ad.methods.picard.generator import InpaintingGenerator

_DATA_PARALLEL_PREFIX = "module."
_CRITIC_KEYS = {"localD": "local_critic", "globalD": "global_critic"}
_MODEL_CLASSES = {
    "generator": InpaintingGenerator,
    "local_critic": LocalCritic,
    "global_critic": GlobalCritic,
}


def _load(path: Path) -> object:
    if not path.is_file():
        raise InputError(path, "no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise InputError(
                path, "refused: the checkpoint holds Python objects other than tensors and plain containers"
            ) from exc
        raise CorruptFileError(path, f"not a PyTorch checkpoint ({exc})") from exc
    except Exception as exc:  # torch reports damaged files as RuntimeError, KeyError, EOFError, ...
        raise CorruptFileError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _plain_state_dict(path: Path, what: str, loaded: object) -> dict[str, torch.Tensor]:
    """The state_dict with any DataParallel ``module.`` prefix removed; every value must be a tensor."""
    if not isinstance(loaded, Mapping):
        raise InputError(
            path, f"{what}: expected a state_dict (a mapping of names to tensors), got {type(loaded).__name__}"
        )
    state = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InputError(path, f"{what}: entry {key!r} is not a named tensor")
        state[key.removeprefix(_DATA_PARALLEL_PREFIX)] = value
    return state


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state or state[key].ndim != ndim:
        raise KeyError(key)
    return tuple(state[key].shape)


def model_kwargs(name: str, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Constructor arguments of network ``name`` ("generator", "local_critic", "global_critic") that fit
    the tensor shapes of ``state``. Raises KeyError naming a key that is missing or of the wrong rank and
    ValueError if the linear layer's width is not a square feature map."""
    if name == "generator":
        cnum, inputs = _shape(state, "coarse_generator.conv1.conv.weight", 4)[:2]
        return {"in_channels": inputs - 2, "cnum": cnum}
    cnum, in_channels = _shape(state, "dis_conv_module.conv1.conv.weight", 4)[:2]
    features = _shape(state, "linear.weight", 2)[1]
    side = math.isqrt(features // max(4 * cnum, 1))
    if 4 * cnum * side * side != features:
        raise ValueError(f"linear.weight takes {features} features, not 4 x {cnum} x a square feature map")
    return {"in_channels": in_channels, "cnum": cnum, "input_size": side * DOWNSAMPLING}


def _validated(path: Path, what: str, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` if its keys and shapes are exactly those of our model ``name``; InputError otherwise."""
    try:
        kwargs = model_kwargs(name, state)
    except KeyError as exc:
        raise InputError(path, f"{what}: missing key {exc.args[0]!r} (or wrong rank); not a {name} state_dict") from exc
    except ValueError as exc:
        raise InputError(path, f"{what}: {exc}") from exc
    with torch.device("meta"):
        expected = _MODEL_CLASSES[name](**kwargs).state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise InputError(path, f"{what}: missing key {key!r}")
        if state[key].shape != tensor.shape:
            raise InputError(
                path, f"{what}: key {key!r} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected:
            raise InputError(path, f"{what}: unexpected key {key!r}")
    return state


def convert_reference_checkpoint(
    gen_path: str | Path, dis_path: str | Path | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """Read the reference's checkpoints and return state_dicts that load into our models.

    gen_path: ``gen_%08d.pt``, the generator's state_dict (keys possibly prefixed ``module.``).
    dis_path: ``dis_%08d.pt``, ``{'localD': state_dict, 'globalD': state_dict}``; optional.
    Returns {"generator": ..., and with dis_path "local_critic": ..., "global_critic": ...}, keyed by the names of
    PICARD's checkpoint files; ``model_kwargs(name, state)`` gives each network's constructor arguments
    (``picard_ad.methods.picard.Picard.from_networks`` then makes a run of them).
    Raises InputError naming the file and the first missing, unexpected or mis-shaped key.
    """
    gen_path = Path(gen_path)
    generator = _plain_state_dict(gen_path, "generator", _load(gen_path))
    converted = {"generator": _validated(gen_path, "generator", "generator", generator)}
    if dis_path is not None:
        dis_path = Path(dis_path)
        critics = _load(dis_path)
        if not isinstance(critics, Mapping) or set(critics) != set(_CRITIC_KEYS):
            found = sorted(map(str, critics)) if isinstance(critics, Mapping) else type(critics).__name__
            raise InputError(dis_path, f"expected a mapping with keys 'localD' and 'globalD', found {found}")
        for key, name in _CRITIC_KEYS.items():
            state = _plain_state_dict(dis_path, key, critics[key])
            converted[name] = _validated(dis_path, key, name, state)
    return converted
