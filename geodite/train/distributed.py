"""The process group of a distributed run (torchrun: NCCL on GPU, gloo on CPU) as the trainer sees it; a
single process is rank 0 of a world of one."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


def is_initialised() -> bool:
    """Whether this process is one rank of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialised() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_initialised() else 1


def setup_distributed(device_pref: str = "auto") -> torch.device:
    """Initialise the process group from torchrun's environment (WORLD_SIZE > 1); choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if world > 1 and not is_initialised():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if device_pref not in ("auto", "cuda"):
        return torch.device(device_pref)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if is_initialised():
        dist.barrier()


def sum_over_ranks(values: Tensor, device: torch.device) -> Tensor:
    """``values`` summed over the ranks, on the CPU (``values`` itself without a process group). The sum runs
    on ``device`` when it is a GPU (NCCL reduces only there), else on the CPU."""
    if not is_initialised():
        return values
    reduced = values.to(device if device.type == "cuda" else torch.device("cpu"))
    dist.all_reduce(reduced)
    return reduced.cpu()


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed (which broadcasts rank 0's initial weights, so
    every rank starts identical), else ``model`` itself."""
    if world_size() == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=True)
