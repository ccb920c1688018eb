"""Multi-process training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc-per-node N -m audioar_cli fit ...`` starts N processes with the usual
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
:func:`init_from_env` joins them into one process group (NCCL on GPUs, gloo on CPUs) and
:func:`audioar.pipeline.train.fit` then trains one model on all of them: every process takes its
share of every batch, gradients are averaged, the validation log-likelihood is summed over
all processes so that every one takes the same early-stopping decision, and only rank 0
writes checkpoints, the run directory and the report. Outside ``torchrun`` every function
here is a cheap no-op (one process, rank 0).
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "init_from_env",
    "shutdown",
    "active",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "all_reduce_sum",
    "broadcast_state",
    "local_device",
]

logger = logging.getLogger(__name__)


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.

    Returns:
        Whether this process now trains together with others.
    """
    if active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    logger.info("process %d of %d joined (%s)", rank(), world_size(), backend)
    return True


def shutdown() -> None:
    """Leave the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Processes training together (1 outside a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if active():
        dist.barrier()


def local_device() -> torch.device | None:
    """The GPU of this process under NCCL (``cuda:LOCAL_RANK``), else None."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def all_reduce_sum(*values: float) -> list[float]:
    """The sums over every process of ``values`` (the values themselves outside a group)."""
    if not active():
        return list(values)
    device = local_device() or torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_state(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers (batch-norm statistics) to every process."""
    if not active():
        return
    with torch.no_grad():
        tensors: list[Tensor] = [*module.parameters(), *module.buffers()]
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)
