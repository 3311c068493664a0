"""The command that reproduces a recipe run, written into its weights' metadata.

:Examples:

>>> import argparse
>>> from deepinv_pnn.training.command_line import command_line
>>> args = argparse.Namespace(sigma_min=0.0, resume=False, init=None, cuda_graph=True, tune_sigmas=[5.0, 15.0])
>>> command_line("deepinv_pnn.training.train_wcrr", args)
'python -m deepinv_pnn.training.train_wcrr --sigma-min 0.0 --cuda-graph --tune-sigmas 5.0 15.0'
"""

from __future__ import annotations

import argparse
import shlex


def command_line(module: str, args: argparse.Namespace) -> str:
    """``python -m module`` with every option of ``args`` spelled so that the recipe's parser
    reads the same values back: ``store_true`` flags bare when set and left out when not, unset
    (``None``) options left out, lists as separate values, and zeros kept (a zero is a value,
    e.g. ``--sigma-min 0``, not an unset option).

    :param str module: the recipe's module, e.g. ``deepinv_pnn.training.train_crr``.
    :param argparse.Namespace args: the parsed options.
    :return: the command, quoted for a POSIX shell.
    """
    parts = ["python", "-m", module]
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            if value:
                parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
