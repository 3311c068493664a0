"""Input checks shared by every component.

Every public entry point of the package validates what it is given and raises a
:class:`TypeError` or :class:`ValueError` whose message names the argument, what was
given and what was expected, instead of failing later (or silently) inside a solver.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def check_image(
    x: object,
    name: str = "x",
    channels: int | tuple[int, ...] | None = None,
    ndim: int = 4,
    allow_complex: bool = False,
    nonempty: bool = False,
) -> torch.Tensor:
    r"""Check that ``x`` is a finite floating-point tensor of shape ``[B, C, H, W]``.

    :param x: the object to check.
    :param str name: the argument's name, used in error messages.
    :param int | tuple channels: the accepted channel count(s); ``None`` accepts any.
    :param int ndim: the expected number of dimensions.
    :param bool allow_complex: accept complex dtypes too.
    :param bool nonempty: refuse an empty batch (``B = 0``).
    :return: ``x`` unchanged.
    :raises TypeError: if ``x`` is not a floating-point tensor.
    :raises ValueError: on a wrong rank, channel count, or non-finite entries.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.validation import check_image
    >>> check_image(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 1, 8, 8])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, C, H, W], got {type(x).__name__}")
    if not (x.is_floating_point() or (allow_complex and x.is_complex())):
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions ([B, C, H, W]), got shape {tuple(x.shape)}"
        )
    if channels is not None:
        accepted = (channels,) if isinstance(channels, int) else tuple(channels)
        if x.shape[1] not in accepted:
            expected = " or ".join(str(c) for c in accepted)
            raise ValueError(
                f"{name} must have {expected} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
            )
    if nonempty and x.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (shape {tuple(x.shape)}): B >= 1 is needed")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def check_sigma(sigma: object, name: str = "sigma") -> object:
    r"""Check that a noise level is finite and non-negative.

    Accepts what :meth:`deepinv.models.Denoiser.forward` accepts: a float, an int, a
    0-d or 1-d tensor, or a (nested) list of numbers.

    :param sigma: the noise level(s).
    :param str name: the argument's name, used in error messages.
    :return: ``sigma`` unchanged.
    :raises TypeError: if ``sigma`` is not a number, tensor or list of numbers.
    :raises ValueError: if any value is negative, NaN or Inf.
    """
    if isinstance(sigma, bool):
        raise TypeError(f"{name} must be a number or a tensor, got bool")
    if isinstance(sigma, numbers.Real):
        values = torch.tensor([float(sigma)])
    elif isinstance(sigma, torch.Tensor):
        values = sigma.detach()
        if values.is_complex():
            raise TypeError(f"{name} must be real, got dtype {values.dtype}")
    elif isinstance(sigma, (list, tuple)):
        try:
            values = torch.as_tensor(sigma, dtype=torch.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a number, a tensor or a list of numbers") from err
    else:
        raise TypeError(
            f"{name} must be a float, a 0-d or [B] tensor or a list, got {type(sigma).__name__}"
        )
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got {sigma}")
    if (values < 0).any():
        raise ValueError(f"{name} must be non-negative, got {sigma}")
    return sigma


def check_positive(value: object, name: str, allow_zero: bool = False) -> float:
    """Check that a scalar hyper-parameter is a finite positive number and return it as float.

    :param value: the value to check.
    :param str name: the argument's name, used in error messages.
    :param bool allow_zero: accept 0 as well.
    :return: ``float(value)``.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """Check that an iteration count or size is an integer ``>= minimum`` and return it as int.

    Integral floats (``3.0``) are accepted; ``2.5``, booleans, NaN and non-numbers are not.

    :param value: the value to check.
    :param str name: the argument's name, used in error messages.
    :param int minimum: the smallest accepted value.
    :return: ``int(value)``.

    :Examples:

    >>> from deepinv_pnn.validation import check_count
    >>> check_count(3.0, "max_iter")
    3
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_img_shape(img_shape: object, name: str = "img_shape") -> tuple[int, int, int]:
    """Check that an image shape is ``(C, H, W)`` with positive integer entries; return it as ints.

    :Examples:

    >>> from deepinv_pnn.validation import check_img_shape
    >>> check_img_shape([1, 28.0, 28])
    (1, 28, 28)
    """
    if not isinstance(img_shape, (tuple, list, torch.Size)) or len(img_shape) != 3:
        raise ValueError(f"{name} must be (C, H, W), got {img_shape!r}")
    return tuple(check_count(v, f"{name} entries") for v in img_shape)


def check_bounds(lower: object, upper: object, lower_name: str, upper_name: str) -> None:
    """Check two optional bounds: each ``None`` or a finite number, and ``lower <= upper``.

    :param lower: the lower bound (``None``: none).
    :param upper: the upper bound (``None``: none).
    :param str lower_name: the lower bound's name, used in error messages.
    :param str upper_name: the upper bound's name, used in error messages.
    """
    for name, value in ((lower_name, lower), (upper_name, upper)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value)):
            raise ValueError(f"{name} must be None or a finite number, got {value!r}")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"{lower_name} must be <= {upper_name}, got {lower} > {upper}")


def check_batch_values(value: object, batch: int, name: str) -> object:
    """Check that a per-sample parameter (noise level, step size, weight) is a number or a
    tensor with one value, or one value per sample (``[B]``, or ``[B, 1, ..., 1]``).

    :param value: the parameter.
    :param int batch: the batch size ``B`` of the image it applies to.
    :param str name: the argument's name, used in error messages.
    :return: ``value`` unchanged.
    """
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        per_sample = value.shape[0] == batch and value.numel() == batch
        if not per_sample:
            raise ValueError(
                f"{name} must be a number, a 0-d tensor or one value per sample ([B] = [{batch}]), "
                f"got shape {tuple(value.shape)}"
            )
    return value


def check_dtype_matches(module: torch.nn.Module, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Check that ``x`` has the floating-point dtype of ``module``'s parameters.

    :param torch.nn.Module module: the network (its first floating-point parameter decides).
    :param torch.Tensor x: the input.
    :param str name: the argument's name, used in error messages.
    :return: ``x`` unchanged.
    :raises TypeError: naming both dtypes and the remedy.
    """
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but {type(module).__name__}'s parameters are {dtype}: "
            f"pass {dtype} inputs or convert the model with .to({x.dtype})"
        )
    return x


@contextmanager
def physics_must_fit(y: torch.Tensor, owner: str, name: str = "physics") -> Iterator[None]:
    """Turn a shape error of deepinv's operator, on the first application of ``physics`` to the
    observation, into a :class:`ValueError` that names the shapes.

    :param torch.Tensor y: the observation.
    :param str owner: the component, used in error messages.
    :param str name: the argument's name, used in error messages.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_pnn.validation import physics_must_fit
    >>> physics = dinv.physics.Inpainting(img_size=(1, 16, 16), mask=0.5)
    >>> y = torch.rand(1, 1, 8, 8)
    >>> with physics_must_fit(y, "my solver"):
    ...     physics.A_adjoint(y)
    Traceback (most recent call last):
    ...
    ValueError: my solver: physics does not fit the observation of shape (1, 1, 8, 8) ...
    """
    try:
        yield
    except RuntimeError as err:
        if isinstance(err, torch.OutOfMemoryError):
            raise
        raise ValueError(
            f"{owner}: {name} does not fit the observation of shape {tuple(y.shape)} "
            f"(built for another image size?): {err}"
        ) from err


def check_image_fits(y: torch.Tensor, physics, x: torch.Tensor, owner: str, name: str = "physics") -> torch.Tensor:
    """Check, before a solver iterates, that ``physics.A(x)`` has the shape of ``y``.

    A mismatch would otherwise surface as a RuntimeError deep inside the iterations, or, where
    the shapes broadcast, not at all.

    :param torch.Tensor y: the observation.
    :param physics: the forward operator (anything with ``A``).
    :param torch.Tensor x: the solver's starting image.
    :param str owner: the component, used in error messages.
    :param str name: what to blame: ``"physics"`` or the name of the starting-image argument.
    :return: ``x`` unchanged.
    :raises ValueError: if ``A`` cannot be applied to ``x`` or maps it to another shape than ``y``'s.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_pnn.validation import check_image_fits
    >>> y = torch.rand(1, 1, 16, 16)
    >>> check_image_fits(y, dinv.physics.Denoising(), torch.rand(1, 1, 1, 16), "my solver", "x_init")
    Traceback (most recent call last):
    ...
    ValueError: my solver: x_init does not fit the observation of shape (1, 1, 16, 16): A maps the image of shape (1, 1, 1, 16) to (1, 1, 1, 16)
    """
    with torch.no_grad(), physics_must_fit(y, owner, name):
        shape = physics.A(x).shape
    if shape != y.shape:
        raise ValueError(
            f"{owner}: {name} does not fit the observation of shape {tuple(y.shape)}: "
            f"A maps the image of shape {tuple(x.shape)} to {tuple(shape)}"
        )
    return x
