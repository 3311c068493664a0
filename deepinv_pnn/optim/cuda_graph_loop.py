r"""Iterative solvers as replays of a CUDA graph.

A solver on small images is bound on a GPU by the host, which launches some thirty to sixty
small kernels per iteration, not by the device. :func:`replay_in_blocks` records one block of
iterations once as a CUDA graph and replays it, so the host issues one launch per block and
tests the stopping rule (one synchronisation) once per block, as the eager loops do with
``check_every``. :func:`run_iterations` is the loop of
:func:`~deepinv_pnn.optim.accelerated_gradient.accelerated_gradient` and
:func:`~deepinv_pnn.optim.conjugate_gradient.conjugate_gradient`: graphed blocks with
``cuda_graph=True``, then (or else) eager iterations.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from deepinv_pnn.validation import check_count


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


def run_iterations(
    iterate: Callable[[tuple, bool], tuple[tuple, torch.Tensor | None]],
    state: tuple[torch.Tensor, ...],
    max_iter: int,
    check_every: int | None = None,
    cuda_graph: bool = False,
) -> tuple[tuple[torch.Tensor, ...], int]:
    r"""Iterate until ``iterate`` says stop (tested every ``check_every`` iterations and at
    ``max_iter``) or ``max_iter`` iterations.

    :param iterate: ``(state, check) -> (state, done)`` as in :func:`replay_in_blocks`.
    :param tuple state: the initial state (tensors; the first one fixes the device).
    :param int max_iter: maximum number of iterations (:math:`\ge 1`).
    :param int check_every: iterations between two tests of the stopping rule; default 10 on a
        GPU (each test waits for the device), else 1.
    :param bool cuda_graph: on a CUDA state, run whole blocks as replays of a CUDA graph
        (:func:`replay_in_blocks`), the rest eagerly; the same iterates. Ignored on the CPU.
    :return: the final state and the number of iterations done.
    :raises ValueError: unless ``max_iter >= 1`` and ``check_every >= 1``.
    """
    max_iter = check_count(max_iter, "max_iter")
    if check_every is None:
        check_every = 10 if state[0].is_cuda else 1
    check_every = check_count(check_every, "check_every")
    done_before = 0
    blocks = max_iter // check_every
    if cuda_graph and state[0].is_cuda and blocks >= 2:
        ran = replay_in_blocks(iterate, state, check_every, blocks)
        if ran is not None:
            done_before, stopped = ran
            if stopped:
                return state, done_before
    it = done_before
    for it in range(done_before + 1, max_iter + 1):
        state, done = iterate(state, it % check_every == 0 or it == max_iter)
        if done is not None and bool(done):
            break
    return state, it
