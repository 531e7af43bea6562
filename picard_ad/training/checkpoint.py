"""Checkpoints of any method's networks: safetensors weights plus JSON, written atomically, never unpickled.

A checkpoint is a folder (``RUN_DIR/last`` or ``RUN_DIR/best``) holding:

- ``NAME.safetensors`` per network (e.g. PICARD's ``generator``, ``local_critic``, ``global_critic``): its state
  dict (no ``module.`` prefix);
- ``config.json``: the method's name, ``step``, the held-out metric, data fingerprint, package and torch versions,
  the full training config, and what the method's training step adds (architecture, input geometry, ...);
- for resumable checkpoints, ``optimizers.safetensors`` + ``trainer_state.json``: optimizer moments as tensors,
  their scalars and param groups, RNG states (python, numpy, torch) and each rank's data state as JSON.

The folder is written under a temporary name and renamed into place, so a killed run leaves either the previous
checkpoint or the new one, never a mixture.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from picard_ad.config import from_dict
from picard_ad.errors import ConfigError, CorruptFileError, InputError
from picard_ad.io.records import read_json_object

C = TypeVar("C")

FORMAT = "picard-ad/checkpoint"
FORMAT_VERSION = 1
LEGACY_FORMATS = {"picard-ad/inpainter": "picard"}
"""Checkpoint formats of earlier picard-ad versions that stay loadable, and the method they hold."""
OPTIMIZER_FILE = "optimizers.safetensors"
STATE_FILE = "trainer_state.json"
INFO_FILE = "config.json"


# -- writing -----------------------------------------------------------------------------------------------------


def _cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def optimizer_to_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state dict into named tensors and a JSON description that points at them."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        entry = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                key = f"{prefix}.{index}.{name}"
                tensors[key] = value
                entry[name] = {"tensor": key}
            else:
                entry[name] = {"value": _jsonable(value)}
        described[str(index)] = entry
    return _cpu_tensors(tensors), {"state": described, "param_groups": _jsonable(state["param_groups"])}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], described: dict, source: Path
) -> None:
    """Load what ``optimizer_to_tensors`` wrote into ``optimizer`` (its tensors move to the params' device)."""
    try:
        state = {}
        for index, entry in described["state"].items():
            state[int(index)] = {
                name: tensors[item["tensor"]] if "tensor" in item else item["value"] for name, item in entry.items()
            }
        groups = []
        for group in described["param_groups"]:
            group = dict(group)
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
            groups.append(group)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(source, f"optimizer state does not match the networks ({exc})") from None


def rng_states() -> dict[str, Any]:
    """Python, numpy (global) and torch (CPU and CUDA) RNG states as JSON."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
    }
    if torch.cuda.is_available():
        states["torch_cuda"] = [
            base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()
        ]
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))

    def as_tensor(text: str) -> torch.Tensor:
        return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())

    torch.set_rng_state(as_tensor(states["torch"]))
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([as_tensor(s) for s in states["torch_cuda"]])


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def network_file(name: str) -> str:
    """The file of network ``name`` in a checkpoint."""
    return f"{name}.safetensors"


def copy_checkpoint(checkpoint: Path, target: Path) -> None:
    """Copy a checkpoint folder to ``target`` (a method's state written into another run folder); nothing when it
    is ``target`` already."""
    if checkpoint.resolve() != target.resolve():
        shutil.copytree(checkpoint, target, dirs_exist_ok=True)


def write_checkpoint(
    directory: str | Path,
    networks: Mapping[str, nn.Module],
    info: dict[str, Any],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temporary sibling, then rename) and return its path.

    Args:
        directory: the final folder, e.g. ``RUN_DIR/last``; an existing one is replaced.
        networks: name -> network, written as ``NAME.safetensors``.
        info: contents of ``config.json`` (``picard_ad.training.loop.checkpoint_info`` builds it).
        optimizers: name -> optimizer, stored for resuming; omit for inference-only checkpoints.
        trainer_state: JSON-serialisable step, RNG and sampler states, stored for resuming.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".part", dir=directory.parent))
    try:
        for name, module in networks.items():
            save_file(_cpu_tensors(module.state_dict()), staging / network_file(name), metadata={"format": FORMAT})
        if optimizers:
            tensors: dict[str, torch.Tensor] = {}
            described = {}
            for name, optimizer in optimizers.items():
                opt_tensors, described[name] = optimizer_to_tensors(optimizer, name)
                tensors.update(opt_tensors)
            save_file(tensors, staging / OPTIMIZER_FILE, metadata={"format": FORMAT})
            _write_json(staging / STATE_FILE, {"optimizers": described, **(trainer_state or {})})
        _write_json(staging / INFO_FILE, info)
        for path in staging.iterdir():
            _fsync_file(path)
        _replace_directory(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _replace_directory(staging: Path, directory: Path) -> None:
    previous = directory.with_name(f".{directory.name}.previous")
    if previous.exists():
        shutil.rmtree(previous)
    if directory.exists():
        os.replace(directory, previous)
    os.replace(staging, directory)
    shutil.rmtree(previous, ignore_errors=True)


# -- reading -----------------------------------------------------------------------------------------------------


def checkpoint_dir(path: str | Path, which: Literal["last", "best"] = "last") -> Path:
    """The checkpoint folder of a run folder (``RUN_DIR/which``) or ``path`` itself if it is a checkpoint.

    A run killed between the two renames of ``write_checkpoint`` leaves its previous checkpoint under
    ``.which.previous``; it is used then.
    """
    path = Path(path)
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    if not path.is_dir():
        raise InputError(path, "no such run folder or checkpoint")
    for candidate in (path / which, path / f".{which}.previous"):
        if (candidate / INFO_FILE).is_file():
            return candidate
    if (path / INFO_FILE).is_file() and any(path.glob("*.safetensors")):
        return path
    raise InputError(path, f"holds no '{which}' checkpoint (expected {path / which / INFO_FILE})")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(path, "missing from the checkpoint")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise CorruptFileError(path, f"not a readable safetensors file ({exc})") from None


def read_checkpoint_info(path: str | Path, which: Literal["last", "best"] = "last") -> dict[str, Any]:
    """The checked ``config.json`` of a checkpoint, with its ``method``; legacy formats are read as their method's."""
    info_path = checkpoint_dir(path, which) / INFO_FILE
    info = read_json_object(info_path)
    kind, version = info.get("format"), info.get("format_version")
    if kind in LEGACY_FORMATS and version == 1:
        return {**info, "method": LEGACY_FORMATS[kind]}
    if kind != FORMAT:
        raise CorruptFileError(info_path, f"not a picard-ad checkpoint description (format {kind!r})")
    if version != FORMAT_VERSION:
        raise CorruptFileError(info_path, f"checkpoint format version {version} is not supported (this picard-ad "
                               f"reads version {FORMAT_VERSION}); use the picard-ad that wrote it")  # fmt: skip
    if not isinstance(info.get("method"), str):
        raise CorruptFileError(info_path, "names no method")
    return info


def check_resumed_preprocessing(run_dir: str | Path, chain: dict[str, Any],
                                unrecorded: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Refuse to resume a run whose images went through another preprocessing chain than ``chain`` (the
    ``to_dict`` of the method's ``PreprocessingSettings``), as its last checkpoint records it under
    "preprocessing". unrecorded: the chain of a checkpoint that records none (a method's runs from before it had
    the chain); None: no chain.

    Raises ConfigError naming both chains.
    """
    trained = read_checkpoint_info(run_dir).get("preprocessing", unrecorded)
    if trained != chain:
        raise ConfigError(
            f"{run_dir}: the run was trained on images prepared with {trained}, not {chain}; resume with the "
            "preprocessing settings it started with, or start a new run"
        )


def config_from_info(info: dict[str, Any], cls: type[C], source: Path) -> C:
    """The training config (dataclass ``cls``) stored in a checkpoint's ``config.json``."""
    try:
        return from_dict(cls, info["train_config"], where=f"{source}: train_config")
    except KeyError:
        raise CorruptFileError(source, "has no train_config") from None
    except ConfigError as exc:
        raise CorruptFileError(source, str(exc)) from None


def load_network_weights(module: nn.Module, path: Path) -> None:
    """Load a safetensors state dict into ``module``; mismatched keys or shapes raise CorruptFileError."""
    tensors = _read_tensors(path)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise CorruptFileError(path, f"weights do not fit the network ({first_line} ...)") from None


def load_training_state(
    directory: Path, networks: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]
) -> dict[str, Any]:
    """Load weights and optimizer states of a resumable checkpoint in place; return its trainer state JSON."""
    for name, module in networks.items():
        load_network_weights(module, directory / network_file(name))
    state = read_json_object(directory / STATE_FILE, "missing from the checkpoint")
    tensors = _read_tensors(directory / OPTIMIZER_FILE)
    described = state.get("optimizers", {})
    for name, optimizer in optimizers.items():
        if name not in described:
            raise CorruptFileError(directory / STATE_FILE, f"has no state for the optimizer '{name}'")
        optimizer_from_tensors(optimizer, tensors, described[name], directory / OPTIMIZER_FILE)
    return state
