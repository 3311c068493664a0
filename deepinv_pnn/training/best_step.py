"""Keeping the best validated weights of a training run (the WPPNet and WPPFlow recipes)."""

from __future__ import annotations

import math

import torch


class BestValidated:
    """The weights, step and validation results of the best validation so far (higher is better).

    :Examples:

    >>> import torch
    >>> net = torch.nn.Linear(1, 1)
    >>> best = BestValidated()
    >>> best.offer(1.0, net, step=10, results=["a"])
    >>> best.offer(0.5, net, step=20, results=["b"])
    >>> best.value, best.step
    (1.0, 10)
    """

    def __init__(self):
        self.value, self.state, self.step, self.results = -math.inf, None, 0, []

    def offer(self, value: float, module: torch.nn.Module, step: int, results: list) -> None:
        """Copy ``module``'s weights if ``value`` beats the best so far."""
        if value > self.value:
            self.value, self.step, self.results = value, step, results
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def keep(self, module: torch.nn.Module, final_value: float, final_results: list, final_step: int) -> tuple[list, int]:
        """Load the best weights into ``module`` if they beat the final ones; return the kept results and step."""
        if self.state is not None and self.value > final_value:
            module.load_state_dict(self.state)
            return self.results, self.step
        return final_results, final_step
