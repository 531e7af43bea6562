"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, NCCL on GPU).

Every rank holds a full copy of the three networks, draws its own patches, and averages gradients with one
all-reduce per network before each optimizer step, so all ranks apply the same update and stay identical. This is
what ``DistributedDataParallel`` does, done by hand (as StyleGAN2-ADA does) because the WGAN-GP step needs
several critic forwards and a double backward per update, and the generator's adversarial loss runs through
critics whose gradients must stay untouched; DDP's bucket hooks are not built for either.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from picard_ad.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_torchrun(device: torch.device) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    Args:
        device: this rank's device; CUDA selects NCCL (and ``cuda:LOCAL_RANK``), anything else gloo.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing); "
            'start the run with: torchrun --nproc-per-node=N "$(command -v picard-ad)" train --distributed ...'
        )
    rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=30))
    return DistributedContext(rank, world_size, local_rank)


def broadcast_parameters(module: nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not context.enabled:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module, context: DistributedContext) -> None:
    """Replace each parameter's gradient by its mean over ranks (one flattened all-reduce)."""
    if not context.enabled:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    grads = [p.grad for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= context.world_size
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)


def average_scalar(value: float, context: DistributedContext, device: torch.device) -> float:
    """Mean of a Python number over ranks (for logging)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def gather_json(obj: Any, context: DistributedContext, device: torch.device) -> list[Any]:
    """Every rank's JSON-serialisable ``obj``, in rank order (each rank gets the list).

    Sent as UTF-8 JSON bytes rather than with ``all_gather_object``, so nothing is ever unpickled.
    """
    if not context.enabled:
        return [obj]
    payload = torch.frombuffer(bytearray(json.dumps(obj).encode("utf-8")), dtype=torch.uint8).to(device)
    length = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(context.world_size)]
    dist.all_gather(lengths, length)
    longest = int(max(n.item() for n in lengths))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    buffers = [torch.zeros_like(padded) for _ in range(context.world_size)]
    dist.all_gather(buffers, padded)
    return [
        json.loads(buffer[: int(n.item())].cpu().numpy().tobytes().decode("utf-8"))
        for buffer, n in zip(buffers, lengths)
    ]


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    """Leave the process group (no-op when not distributed)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
