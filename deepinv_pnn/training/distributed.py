r"""Data-parallel and checkpoint helpers shared by the training recipes.

The recipes are reproducible under data parallelism: the *global* batch of step :math:`k`
depends only on ``(seed, k)``; under ``torchrun --nproc_per_node=P`` rank :math:`r` takes
its slice (:func:`rank_slice`) and the gradients are averaged with
``torch.distributed.all_reduce`` (:func:`average_gradients`; gloo on CPU, NCCL on CUDA), so
1 and P processes follow the same loss curve to rounding. Without ``torchrun`` every helper
is a no-op on one process.

:Examples:

>>> import torch
>>> from deepinv_pnn.training.distributed import world, rank_slice, global_mean
>>> world()
(0, 1)
>>> rank_slice(torch.arange(4)).tolist(), global_mean(torch.tensor(2.5))
([0, 1, 2, 3], 2.5)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from deepinv_pnn.data import load_image


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str | torch.device) -> None:
    """Initialise torch.distributed when launched by torchrun (gloo on CPU, NCCL on CUDA).

    :param device: the training device (``"cuda..."`` selects NCCL).
    """
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")


def rank_slice(x: torch.Tensor) -> torch.Tensor:
    """This process's share of a global batch (the whole batch on one process).

    :param torch.Tensor x: the global batch ``[B, ...]``.
    """
    rank, size = world()
    return x.chunk(size)[rank] if size > 1 else x


def average_gradients(model: torch.nn.Module) -> None:
    """Average the gradients over the processes (no-op on one process).

    :param torch.nn.Module model: the model whose ``.grad`` fields are averaged in place.
    """
    _, size = world()
    if size == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(size)


def global_mean(value: torch.Tensor) -> float:
    """The mean of a scalar over the processes, as a float.

    :param torch.Tensor value: this process's value.
    """
    _, size = world()
    if size > 1:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / size
    return float(value)


def save_checkpoint(path: str | os.PathLike, model, optimizer, step: int, extra: dict | None = None) -> None:
    """Write ``{"model", "optimizer", "step", **extra}`` atomically (a temporary file, then
    a rename), so an interrupted run never leaves a truncated checkpoint.

    :param path: the checkpoint file, read back with ``torch.load(path, weights_only=True)``.
    :param model: the model; ``optimizer``: its optimiser; ``step``: the steps done.
    :param dict extra: further entries (tensors, numbers, lists).
    """
    tmp = Path(str(path) + ".tmp")
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    torch.save({**state, **(extra or {})}, tmp)
    os.replace(tmp, path)


def load_stack(files, device) -> list[torch.Tensor]:
    """Decode grayscale images to ``[1, H, W]`` tensors on ``device``.

    :param files: image paths; ``device``: where the tensors go.
    """
    return [load_image(f, grayscale=True)[0].to(device) for f in files]
