"""Differentiation engines: one module per method, one small interface.

An engine turns a case into a :class:`Prepared` gradient (``prepare``, timed once as
``prepare_s``) that can then be evaluated many times. Each engine class *declares*, in
its ``info`` attribute (an :class:`EngineInfo`), everything the rest of diffbench needs
to know about it: its variants, whether it is exact, which variant carries second-order
rows, which variants the scaling study times, its input budgets and its devices. Adding
a method is one module here plus one line in ``REGISTRY`` (tests/test_engines.py
registers a toy engine that way). Engines know nothing about reports.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from ..case import Case
from ..errors import NoGradient, OverBudget, Skip, UnitTimeout  # noqa: F401 - the engines and their callers import them from here

#: method name -> "module:class" (imported only when the method is used)
REGISTRY: dict[str, str] = {
    "symbolic": "diffbench.engines.symbolic:SymbolicEngine",
    "tape": "diffbench.engines.tape:TapeEngine",
    "finite": "diffbench.engines.finite:FiniteEngine",
    "jax": "diffbench.engines.jax_engine:JaxEngine",
    "torch": "diffbench.engines.torch_engine:TorchEngine",
}



@dataclass(frozen=True)
class EngineInfo:
    """What an engine declares about itself.

    ``exact``: the engine evaluates an exact formula, so its only error is rounding and it is
    judged componentwise at 1000·eps of each component's scale; ``exact_variants`` names the
    variants of an approximate engine that are exact all the same (the complex step).
    ``error_exponents``: for an approximate engine, variant -> p in its tolerance 100·eps^p
    (``order2_exponent`` for its Hessians). ``default_variant``: what ``gradient(case, method)``
    uses. ``order2_variants``: the variants whose rows carry second derivatives (none: no
    Hessians). ``scaling_variants``: the variants ``scale`` times by default;
    ``run_scaling_variants``: those in the default run's small scaling section.
    ``max_hessian_inputs``: the largest case (scalar inputs) the engine forms Hessians for (a variant
    may have a smaller budget of its own, and says so with ``Skip``).
    ``default``: part of a plain ``run``. ``extra``: the pip extra that installs it. ``gpu``: it
    runs on a GPU where its framework sees one (``devices()`` says where, here and now).
    ``options``: settings a run may choose (``--engine-option METHOD.NAME=VALUE``), name -> the
    allowed values, the default first; the engine has an attribute of that name.
    ``jacobian_variants``: variants (listed in ``variants`` too) that apply to vector-output cases only: Jacobian
    formulations (tape ``loop``/``batch``, ``jacfwd``) and the products ``jvp``/``vjp`` (:mod:`diffbench.products`).
    """

    variants: tuple[str, ...]
    default_variant: str
    exact: bool = True
    exact_variants: tuple[str, ...] = ()
    error_exponents: dict[str, float] = field(default_factory=dict)
    order2_exponent: float = 0.5
    order2_variants: tuple[str, ...] = ()
    scaling_variants: tuple[str, ...] = ()
    run_scaling_variants: tuple[str, ...] = ()
    max_hessian_inputs: int | None = None
    #: variant -> the variant ``gradient``/``hessian`` use instead when called with the plain method name and the
    #: first variant's budget refuses the case (``OverBudget``): a cheaper formulation of the same derivative
    budget_fallback: dict[str, str] = field(default_factory=dict)
    #: variants that only make sense for a case that returns an array (a Jacobian formed another way, a JVP or
    #: VJP product): ``harness.plan`` leaves them out for scalar cases, which keep exactly their other rows
    jacobian_variants: tuple[str, ...] = ()
    #: variant -> the case tag it needs (tape ``batch`` needs a case tagged ``batch``): ``harness.plan`` plans it
    #: only for cases with that tag (called directly on another case, the engine raises Skip saying why)
    tag_variants: dict[str, str] = field(default_factory=dict)
    default: bool = False
    extra: str | None = None
    gpu: bool = False
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def is_exact(self, variant: str) -> bool:
        """Whether ``variant`` evaluates an exact formula (its only error is rounding)."""
        return self.exact or variant in self.exact_variants


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
    info: EngineInfo

    def variants(self) -> tuple[str, ...]:
        """All variant names, in report order."""

    def devices(self) -> list[str]:
        """Device labels this engine can run on here (``CPU`` and/or ``GPU:<name>``)."""

    def prepare(self, case: Case, variant: str, dtype: str, device: str) -> Prepared:
        """Prepare the gradient of ``case``; raises Skip, NoGradient, or the case's own error."""

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        """The (N, N) Hessian of ``case`` flattened in parameter order; raises Skip if unsupported."""


_instances: dict[str, Engine] = {}


def engine_class(method: str) -> Any:
    """The class registered as ``method`` (its module is imported; its framework is not)."""
    if method not in REGISTRY:
        raise KeyError(f"unknown method {method!r}; known methods: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[method].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def engine_info(method: str) -> EngineInfo:
    """What the engine registered as ``method`` declares (cheap: nothing heavy is imported)."""
    return engine_class(method).info


def known_info(method: str) -> EngineInfo | None:
    """``engine_info`` for a registered method, None for any other name (rows of unknown origin)."""
    return engine_info(method) if method in REGISTRY else None


def run_scaling_variants(methods: tuple[str, ...] | list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(method, variants) for the default run's small scaling section, as each engine declares."""
    out = []
    for method in methods:
        info = known_info(method)
        if info is not None:
            out.append((method, info.run_scaling_variants or info.scaling_variants))
    return tuple(out)


def configure(method: str, chosen: dict[str, str]) -> None:
    """Set every option the engine declares to ``chosen``'s value, or to its default (the first
    allowed value), so that a setting never outlives the run that chose it."""
    engine = get_engine(method)
    for name, allowed in engine.info.options.items():
        setattr(engine, name, chosen.get(name, allowed[0]))


def default_methods() -> tuple[str, ...]:
    """The methods a plain ``run`` uses, in registry order."""
    return tuple(m for m in REGISTRY if engine_info(m).default)


def get_engine(method: str) -> Engine:
    """Return the engine registered as ``method``; raises KeyError naming the known methods,
    or ImportError when the engine's framework is not installed."""
    if method not in REGISTRY:
        raise KeyError(f"unknown method {method!r}; known methods: {', '.join(REGISTRY)}")
    if method not in _instances:
        _instances[method] = engine_class(method)()
    return _instances[method]


def flatten(values: dict[str, np.ndarray], order: list[str]) -> np.ndarray:
    """Concatenate arrays in parameter order into one flat float64 vector."""
    return np.concatenate([np.ravel(np.asarray(values[name], dtype=np.float64)) for name in order]) \
        if order else np.zeros(0)


def split(flat: Any, shapes: list[tuple[int, ...]], reshape: Callable[[Any, tuple[int, ...]], Any] | None = None
          ) -> list[Any]:
    """Cut a flat vector (NumPy, mpmath objects, a framework's tensor) into consecutive pieces of
    ``shapes``, in parameter order; ``reshape(piece, shape)`` defaults to ``piece.reshape(shape)``.
    The one place where flat vectors become named arrays (``flatten`` is the other way)."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=int))
        piece = flat[start:start + size]
        out.append(piece.reshape(shape) if reshape is None else reshape(piece, shape))
        start += size
    return out


def unflatten(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split a flat vector back into arrays shaped like ``like``."""
    pieces = split(np.asarray(flat), [np.shape(a) for a in like.values()])
    return dict(zip(like, pieces))


#: a case tagged ``batch`` declares axis 0 of its first input and of its output a batch axis: output row b depends
#: only on input row b (per-example gradients), so its Jacobian is block-diagonal and ``batch_jacobian`` applies
BATCH_TAG = "batch"


def output_shape(case: Case) -> tuple[int, ...]:
    """The shape of what ``case`` returns, evaluated once in NumPy float64 at its point (cached on the case).

    A result of one element (shape ``()``, ``(1,)``, ...) is a scalar: ``()`` is returned and the case's
    derivative is its gradient, exactly as for any scalar case. Any other shape ``S`` makes the derivative a
    Jacobian: each engine's ``Prepared.gradient()`` then returns, per input of shape ``I``, an array of shape
    ``S + I`` (``J[k..., i...] = ∂out[k...]/∂in[i...]``). A case whose function raises here, or returns a tuple,
    list or dict, is treated as scalar (its own error surfaces in every engine, as before).
    """
    cached = case.__dict__.get("_output_shape")
    if cached is not None:
        return cached
    shape: tuple[int, ...] = ()
    if case.func is not None:
        from ..namespaces import numpy_namespace

        try:
            with np.errstate(all="ignore"):
                args = [np.array(v, dtype=np.int64 if k in case.integer_inputs else np.float64)
                        for k, v in case.inputs.items()]
                out = case.func(*args, xp=numpy_namespace("float64"))
            found = tuple(int(d) for d in np.shape(out))
            # a tuple, list or dict is not one array (several outputs): left to every engine's check as before
            if out is not None and not isinstance(out, (tuple, list, dict)) and int(np.prod(found, dtype=int)) > 1:
                shape = found
        except UnitTimeout:
            raise  # the caller's time budget ran out: not a fact about the case's output
        except (Exception, SystemExit):  # noqa: BLE001 - the case's own error is every engine's row, not this helper's
            shape = ()
    case.__dict__["_output_shape"] = shape
    return shape


def output_size(case: Case) -> int:
    """Number of output components: 1 for a scalar case, the Jacobian's row count otherwise."""
    return int(np.prod(output_shape(case), dtype=int)) if output_shape(case) else 1


def flatten_jacobian(values: dict[str, np.ndarray], order: list[str], outputs: int) -> np.ndarray:
    """The (outputs, N) float64 Jacobian from per-input arrays of shape ``output_shape + input_shape``,
    inputs concatenated in parameter order (the columns follow ``flatten``'s order)."""
    if not order:
        return np.zeros((outputs, 0))
    return np.concatenate([np.asarray(values[name], dtype=np.float64).reshape(outputs, -1) for name in order], axis=1)


def check_output(case: Case, value: Any, where: str) -> None:
    """Raise ValueError naming the case when its function returned something that is not an array of the
    shape it returns in NumPy (``output_shape``): a scalar case must stay scalar in every namespace, and a
    vector case must return the same shape everywhere."""
    expected = output_shape(case)
    shape = tuple(np.shape(value))
    if not expected:
        check_scalar(case, value, where)
        return
    if shape != expected:
        raise ValueError(f"case {case.name!r} returned a value of shape {shape} in the {where}, but shape "
                         f"{expected} in NumPy; a case must return the same shape in every namespace: compute it with xp's "
                         "functions alone, without a Python branch on which namespace xp is")


def check_scalar(case: Case, value: Any, where: str) -> None:
    """Raise ValueError naming the case when its function returned a non-scalar."""
    shape = tuple(np.shape(value))
    if int(np.prod(shape, dtype=int)) != 1:
        raise ValueError(f"case {case.name!r} returned a value of shape {shape} in the {where}; a case must "
                         "return a scalar (reduce with xp.sum or xp.mean)")
