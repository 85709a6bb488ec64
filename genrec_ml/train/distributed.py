"""Single-process or torchrun data parallelism, and the device a process trains on.

Under torchrun (WORLD_SIZE > 1) every process trains on its own shard of each epoch
(`DistributedSampler`) and DDP averages gradients. Validation runs the same beam search on
every rank, so all ranks reach the same early-stopping decision without communicating; only
rank 0 writes checkpoints and calls the callback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genrec_ml.errors import GenrecConfigError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module started the process group, so it also ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start_processes() -> Processes:
    """Join torchrun's process group when launched by it; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns_group)


def stop_processes(processes: Processes) -> None:
    if processes.owns_group:
        dist.destroy_process_group()


def resolve_device(name: str, processes: Processes) -> torch.device:
    """'auto' -> this process's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GenrecConfigError("device", f"{name!r} asked for but CUDA is not available; use 'auto' or 'cpu'")
        if processes.distributed:
            device = torch.device("cuda", processes.local_rank)  # one GPU per torchrun process
        if device.index is not None:
            torch.cuda.set_device(device)
    return device


def wrap(model: nn.Module, processes: Processes, device: torch.device) -> nn.Module:
    if not processes.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model
