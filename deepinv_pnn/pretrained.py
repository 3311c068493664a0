"""Shipped pretrained weights: one loader behind every ``pretrained=`` argument.

Weights are safetensors files in ``deepinv_pnn/weights/``, each described by one line
of ``deepinv_pnn/weights/MANIFEST`` (file, component, training command, data, seed,
validation metric). ``pretrained=True`` loads the shipped file of a component, a path
loads the user's file (``.safetensors``, or a ``.pt``/``.pth`` state dict read with
``torch.load(weights_only=True)``). Nothing is downloaded and no arbitrary object is
unpickled.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_FIELDS = ("file", "component", "command", "data", "seed", "metric")


def read_manifest(path: str | os.PathLike | None = None) -> list[dict]:
    """Entries of the weights manifest, one dict per shipped file.

    The manifest is a tab-separated file whose columns are :data:`MANIFEST_FIELDS`;
    lines starting with ``#`` are comments.
    """
    path = Path(path) if path is not None else WEIGHTS_DIR / "MANIFEST"
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != len(MANIFEST_FIELDS):
            raise ValueError(
                f"{path}:{number}: expected {len(MANIFEST_FIELDS)} tab-separated fields "
                f"{MANIFEST_FIELDS}, got {len(cells)}"
            )
        entries.append(dict(zip(MANIFEST_FIELDS, cells)))
    return entries


def shipped_path(filename: str) -> Path:
    """Path of a shipped weights file, checked against the manifest.

    :raises FileNotFoundError: if the file is not shipped (the shipped ones are listed).
    """
    path = WEIGHTS_DIR / filename
    if not path.is_file():
        shipped = sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))
        raise FileNotFoundError(
            f"no shipped weights {filename!r} in {WEIGHTS_DIR}; shipped: {', '.join(shipped) or 'none'}"
        )
    return path


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a state dict from a safetensors file or a plain ``torch.save`` state dict.

    ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)``, which refuses
    arbitrary pickled objects (:class:`pickle.UnpicklingError`).

    :raises ValueError: if the file is a folder or not a readable weights file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"weights path {str(path)!r} is a folder; give a .safetensors, .pt or .pth file")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    unreadable = f"{str(path)!r} is not a readable weights file (safetensors or a torch.save state dict)"
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except SafetensorError as err:
            raise ValueError(f"{unreadable}: {err}") from err
    with open(path, "rb") as f:
        # torch.save writes a zip archive (or, in the legacy format, a pickle: protocol byte 0x80)
        is_zip = zipfile.is_zipfile(f)
        f.seek(0)
        legacy = f.read(1) == b"\x80"
    if not (is_zip or legacy):
        raise ValueError(unreadable)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{unreadable}: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def weights_path(
    pretrained: bool | str | os.PathLike | None, default_file: str | None = None, owner: str = "this component"
) -> Path | None:
    """The weights file a ``pretrained=`` argument names, or ``None`` for no weights.

    :param pretrained: ``False``/``None``, ``True`` (the shipped ``default_file``) or a path.
    :param str default_file: name of the shipped file in ``deepinv_pnn/weights``.
    :param str owner: the component's name, for the error message.
    :raises ValueError: ``pretrained=True`` without a shipped file.
    :raises TypeError: ``pretrained`` is neither a bool nor a path.
    """
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        if default_file is None:
            raise ValueError(f"{owner} has no shipped weights for this configuration")
        return shipped_path(default_file)
    if isinstance(pretrained, (str, os.PathLike)):
        return Path(pretrained)
    raise TypeError(f"pretrained must be a bool or a path, got {type(pretrained).__name__}")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata in a safetensors file's header (``{}`` for other formats or none).

    :class:`deepinv_pnn.optim.PatchNR`, for instance, stores its architecture there so that a
    file rebuilds the network it was saved from.
    """
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except SafetensorError as err:
        raise ValueError(f"{str(path)!r} is not a readable weights file (safetensors): {err}") from err


def load_pretrained(
    module: torch.nn.Module,
    pretrained: bool | str | os.PathLike | None,
    default_file: str | None = None,
    strict: bool = True,
) -> torch.nn.Module:
    r"""Load weights into ``module`` according to a ``pretrained=`` argument.

    :param torch.nn.Module module: the freshly built module.
    :param pretrained: ``False``/``None`` (keep the initialisation), ``True`` (the shipped
        file ``default_file``) or the path of a user's weights file.
    :param str default_file: name of the shipped file in ``deepinv_pnn/weights``.
    :param bool strict: passed to :meth:`torch.nn.Module.load_state_dict`.
    :return: ``module``, with the weights loaded onto its device and dtype.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    path = weights_path(pretrained, default_file, owner=type(module).__name__)
    if path is None:
        return module
    state = load_state_dict(path)
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ValueError(f"weights in {path} do not fit {type(module).__name__}: {err}") from err
    return module


def save_weights(
    module_or_state: torch.nn.Module | dict,
    path: str | os.PathLike,
    metadata: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save a state dict as safetensors, atomically (written to a temporary file, then renamed).

    :param module_or_state: a module or a state dict.
    :param path: the ``.safetensors`` destination.
    :param dict metadata: string metadata stored in the file header.
    :param torch.dtype dtype: store the floating-point tensors in this dtype (e.g.
        ``torch.float16`` halves a float32 file); :func:`load_pretrained` casts them back to
        the module's dtype. ``None`` keeps them as they are.
    """
    from safetensors.torch import save_file

    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)
    return path
