r"""Iterative solvers as replays of a CUDA graph.

A solver on small images is bound on a GPU by the host, which launches some thirty to sixty
small kernels per iteration, not by the device. :func:`replay_in_blocks` records one block of
iterations once as a CUDA graph and replays it, so the host issues one launch per block and
tests the stopping rule (one synchronisation) once per block, as the eager loops do with
``check_every``. :func:`~deepinv_pnn.optim.accelerated_gradient.accelerated_gradient` and
:func:`~deepinv_pnn.optim.conjugate_gradient.conjugate_gradient` use it with ``cuda_graph=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


def replay_in_blocks(
    iterate: Callable[[tuple, bool], tuple[tuple, torch.Tensor | None]],
    state: tuple[torch.Tensor, ...],
    block: int,
    blocks: int,
) -> tuple[int, bool] | None:
    r"""Run up to ``blocks`` blocks of ``block`` iterations of ``iterate`` as replays of one
    CUDA graph, updating the CUDA tensors of ``state`` in place.

    ``iterate(state, check)`` returns the next state (a tuple of tensors of the same shapes) and,
    when ``check`` is true (the last iteration of a block), a 0-d boolean tensor that says
    whether to stop. It must not synchronise with the host nor copy from it; every tensor it
    reads besides ``state`` must stay alive and unchanged during the replays.

    The capture calls ``capture_begin``/``capture_end`` on a side stream as
    :class:`torch.cuda.graph` does, without its ``synchronize`` and ``empty_cache``: a training
    step captures one graph per solve, and emptying the allocator's cache each time would make
    the rest of the step allocate from the driver.

    :return: ``(iterations done, stopped)``, or ``None`` with ``state`` untouched when the
        iteration cannot be captured (a warning says why; the caller then runs eagerly).
    """
    try:
        main = torch.cuda.current_stream(state[0].device)
        side = torch.cuda.Stream(device=state[0].device)
        side.wait_stream(main)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(side):
            # warm-up on copies: library handles and kernel choices are made outside the capture
            iterate(tuple(s.clone() for s in state), True)
            graph.capture_begin()
            try:
                current = state
                for i in range(block):
                    current, done = iterate(current, i == block - 1)
                for static, new in zip(state, current):
                    static.copy_(new)
            finally:
                graph.capture_end()
        main.wait_stream(side)
    except RuntimeError as err:  # an operation of the iteration that a graph cannot record
        warnings.warn(f"CUDA graph capture failed ({err}); running eagerly", stacklevel=3)
        return None
    for b in range(1, blocks + 1):
        graph.replay()
        if bool(done):
            return b * block, True
    return blocks * block, False
