"""Single-process or torchrun data parallelism, and the device a process trains on.

Under torchrun (WORLD_SIZE > 1) every process trains on its own shard of each epoch's batches
(`genrec_ml.data.batching.shard`) and DDP averages gradients, so all ranks hold the same weights.
Logged losses are averaged over the ranks too. Validation runs the same beam search on every
rank, so all ranks reach the same early-stopping decision without communicating; only rank 0
writes checkpoints and calls the callback, and `train` returns on no rank before rank 0's
checkpoints are on disk. last.pt keeps every rank's RNG streams, so a resumed run (with the same
number of processes) follows the uninterrupted one.
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


def start_processes(device: str = "auto") -> Processes:
    """Join torchrun's process group when launched by it; a single process otherwise.

    `device` is the run's device setting: NCCL when it trains on GPUs, gloo on the CPU (also
    on a machine that has GPUs, where NCCL would refuse the CPU tensors).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    owns_group = not dist.is_initialized()
    if owns_group:
        on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns_group)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a single process; also after `train` has left the group."""
    return int(os.environ.get("RANK", "0")) == 0


def stop_processes(processes: Processes) -> None:
    if processes.owns_group:
        dist.destroy_process_group()


def wait_for_all(processes: Processes) -> None:
    """Every rank waits here until all have arrived (a no-op for one process)."""
    if processes.distributed:
        dist.barrier()


def mean_over_processes(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """`values` averaged element-wise over the ranks (every rank must call it with the same shape)."""
    if not processes.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / processes.world_size


def gather_objects(value, processes: Processes) -> list:
    """`[value of rank 0, value of rank 1, ...]` on every rank."""
    if not processes.distributed:
        return [value]
    values = [None] * processes.world_size
    dist.all_gather_object(values, value)
    return values


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
