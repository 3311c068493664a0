"""One registry of components: name -> factory with default arguments.

The registry feeds the command-line interface, the contract test-suite and the
benchmarks: a component is tested, listed and benchmarked by being registered.
Each component family registers its entries in its own module under
:mod:`deepinv_pnn.registrations`, which is imported on first use.

:Examples:

>>> from deepinv_pnn.registry import available, build
>>> "tv-denoiser" in available("denoiser")
True
>>> model = build("tv-denoiser")
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("denoiser", "prior", "reconstructor", "sampler")
PROBLEMS = ("denoise", "deblur", "sr", "inpaint")


@dataclass(frozen=True)
class Component:
    r"""A registered component.

    :param str name: unique name, e.g. ``"convpnn"``.
    :param str kind: one of ``denoiser``, ``prior``, ``reconstructor``, ``sampler``.
    :param Callable factory: builds the component; called with ``defaults`` updated by
        the caller's keyword arguments.
    :param str description: one line for ``deepinv-pnn list``.
    :param dict defaults: default keyword arguments of the factory.
    :param tuple problems: the problems of :mod:`deepinv_pnn.problems` the component can
        solve (``denoise``, ``deblur``, ``sr``, ``inpaint``); empty for samplers.
    :param tuple channels: the channel counts the component accepts.
    :param dict solver: how to use it in a variational / plug-and-play solver: keys
        ``algorithm`` (``"PGD"``, ``"HQS"``, ...), ``lambda_reg``, ``stepsize``,
        ``g_param``, ``max_iter``; a prior's ``g_param`` for the contract tests.
    :param dict contract: tolerances and switches for the contract tests, e.g.
        ``prox_tol`` (optimality residual), ``pnp_max_iter``, ``pnp_algorithms``,
        ``any_channels`` (the component accepts any channel count), ``slow`` (``True``
        marks the component's heavy contract checks as slow).
    :param bool in_demo: run by ``deepinv-pnn demo`` when no methods are named; ``False`` for
        components whose reconstruction takes minutes on a CPU (they still run when named).
    """

    name: str
    kind: str
    factory: Callable[..., Any]
    description: str = ""
    defaults: dict = field(default_factory=dict)
    problems: tuple = ()
    channels: tuple = (1, 3)
    solver: dict = field(default_factory=dict)
    contract: dict = field(default_factory=dict)
    in_demo: bool = True

    def build(self, **overrides: Any) -> Any:
        """Build the component with its defaults updated by ``overrides``."""
        kwargs = {**self.defaults, **overrides}
        return self.factory(**kwargs)


_REGISTRY: dict[str, Component] = {}
_LOADED = False


def register(component: Component) -> Component:
    """Add a component to the registry.

    :param Component component: the entry to add.
    :return: the same entry.
    :raises ValueError: on an unknown kind or a name that is already taken.
    """
    if component.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {component.kind!r}")
    unknown = set(component.problems) - set(PROBLEMS)
    if unknown:
        raise ValueError(f"problems must be among {PROBLEMS}, got {sorted(unknown)}")
    if component.name in _REGISTRY and _REGISTRY[component.name] is not component:
        raise ValueError(f"a component named {component.name!r} is already registered")
    _REGISTRY[component.name] = component
    return component


def _load() -> None:
    """Import every module of :mod:`deepinv_pnn.registrations` once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    package = importlib.import_module("deepinv_pnn.registrations")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


def components(kind: str | None = None) -> list[Component]:
    """All registered components, optionally of one kind, sorted by name.

    :param str kind: ``denoiser``, ``prior``, ``reconstructor``, ``sampler`` or ``None``.
    """
    _load()
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    return sorted(
        (c for c in _REGISTRY.values() if kind is None or c.kind == kind), key=lambda c: c.name
    )


def available(kind: str | None = None) -> list[str]:
    """Names of the registered components, optionally of one kind."""
    return [c.name for c in components(kind)]


def get(name: str) -> Component:
    """The registered entry called ``name``.

    :raises KeyError: listing the valid names when ``name`` is unknown.
    """
    _load()
    if name not in _REGISTRY:
        raise KeyError(f"unknown component {name!r}; registered: {', '.join(available())}")
    return _REGISTRY[name]


def build(name: str, **overrides: Any) -> Any:
    """Build the registered component ``name`` with its defaults updated by ``overrides``."""
    return get(name).build(**overrides)
