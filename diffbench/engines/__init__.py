"""Differentiation engines: one module per method, one small interface.

An engine turns a case into a :class:`Prepared` gradient (``prepare``, timed once as
``prepare_s``) that can then be evaluated many times. Adding a method is one module
here plus one line in ``REGISTRY``. Engines know nothing about reports.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from ..case import Case
from ..errors import NoGradient, Skip  # noqa: F401 - the engines and their callers import them from here

#: method name -> "module:class" (imported only when the method is used)
REGISTRY: dict[str, str] = {
    "symbolic": "diffbench.engines.symbolic:SymbolicEngine",
    "tape": "diffbench.engines.tape:TapeEngine",
    "finite": "diffbench.engines.finite:FiniteEngine",
    "jax": "diffbench.engines.jax_engine:JaxEngine",
    "torch": "diffbench.engines.torch_engine:TorchEngine",
}

#: the methods a plain ``run`` uses
DEFAULT_METHODS = ("symbolic", "tape", "finite")


@dataclass
class Prepared:
    """A gradient ready to evaluate at the case's point.

    ``gradient()`` returns name -> array (in the run's dtype). ``timed()`` does one
    gradient evaluation and forces its completion (device sync). ``f_timed`` evaluates
    the function alone the same way (for the cheap-gradient ratio). ``info`` carries
    method-specific columns (step size, error estimate, expression size, ...).
    """

    gradient: Callable[[], dict[str, np.ndarray]]
    timed: Callable[[], Any]
    f_timed: Callable[[], Any] | None = None
    prepare_s: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)
    check_stable: Callable[[], str | None] | None = None
    #: variants of one method whose ``f_timed`` is the same computation share a key (timed once)
    f_key: str | None = None


class Engine(Protocol):
    """What every engine provides."""

    name: str

    def variants(self) -> tuple[str, ...]:
        """All variant names, in report order."""

    def devices(self) -> list[str]:
        """Device labels this engine can run on here (``CPU`` and/or ``GPU:<name>``)."""

    def prepare(self, case: Case, variant: str, dtype: str, device: str) -> Prepared:
        """Prepare the gradient of ``case``; raises Skip, NoGradient, or the case's own error."""

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        """The (N, N) Hessian of ``case`` flattened in parameter order; raises Skip if unsupported."""


_instances: dict[str, Engine] = {}


def get_engine(method: str) -> Engine:
    """Return the engine registered as ``method``; raises KeyError naming the known methods,
    or ImportError when the engine's framework is not installed."""
    if method not in REGISTRY:
        raise KeyError(f"unknown method {method!r}; known methods: {', '.join(REGISTRY)}")
    if method not in _instances:
        module_name, class_name = REGISTRY[method].split(":")
        _instances[method] = getattr(importlib.import_module(module_name), class_name)()
    return _instances[method]


def flatten(values: dict[str, np.ndarray], order: list[str]) -> np.ndarray:
    """Concatenate arrays in parameter order into one flat float64 vector."""
    return np.concatenate([np.ravel(np.asarray(values[name], dtype=np.float64)) for name in order]) \
        if order else np.zeros(0)


def unflatten(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split a flat vector back into arrays shaped like ``like``."""
    out, start = {}, 0
    for name, array in like.items():
        out[name] = np.asarray(flat[start:start + array.size]).reshape(array.shape)
        start += array.size
    return out


def check_scalar(case: Case, value: Any, where: str) -> None:
    """Raise ValueError naming the case when its function returned a non-scalar."""
    shape = tuple(np.shape(value))
    if int(np.prod(shape, dtype=int)) != 1:
        raise ValueError(f"case {case.name!r} returned a value of shape {shape} in the {where}; a case must "
                         "return a scalar (reduce with xp.sum or xp.mean)")
