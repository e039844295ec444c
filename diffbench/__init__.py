"""diffbench: symbolic, automatic and finite-difference derivatives of one function, compared.

Public API (everything else is internal):

- :func:`case`, :class:`Case`, :func:`load_cases`, :func:`uniform`: define and discover cases.
- :func:`gradient`, :func:`hessian`: one method's derivative of one case.
- :func:`jacobian`, :func:`reference_jacobian`: the derivative of a case that returns an array (one method's,
  and the certified one).
- :func:`run`: measure cases, get the tidy results table.
- :func:`assert_gradients`: check a TensorFlow function's gradient in a test.
- :func:`keras_case`: a case from a Keras model and a loss, differentiated with respect to its weights.
- :func:`read_results`: a run's results.csv (or results.parquet) as a typed pandas DataFrame.
- :class:`DiffbenchError`: the base class of every error diffbench raises on purpose (see :mod:`diffbench.errors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import quiet
from .case import Case, case, load_cases, uniform
from .errors import CaseError, DiffbenchError
from .harness import run
from .keras_cases import keras_case
from .results import read_results

# TensorFlow's start-up lines (absl, CUDA probing) are noise wherever it is first imported: a case file, Keras,
# the gate, a worker (none of the imports above imports it). They are replayed if its import fails; --verbose
# (DIFFBENCH_VERBOSE=1) shows them.
quiet.install()

__all__ = ["case", "Case", "CaseError", "DiffbenchError", "load_cases", "uniform", "gradient", "jacobian", "reference_jacobian",
           "hessian", "run",
           "assert_gradients", "keras_case", "read_results", "__version__"]
__version__ = "0.1.0"


def _method(method: str) -> tuple[str, str | None]:
    name, _, variant = method.partition("/")
    return name, variant or None


def gradient(case: Case, method: str = "tape", dtype: str = "float64") -> dict[str, np.ndarray]:
    """The gradient of ``case`` at its inputs with respect to each named input.

    ``method`` is ``symbolic``, ``tape``, ``finite``, ``reference`` (the certified
    reference rounded to float64), or ``method/variant`` (e.g. ``tape/xla``,
    ``finite/richardson``). Returns name -> array shaped like that input. For a case that returns an
    array of shape S, the derivative is its Jacobian: name -> array of shape S + the input's shape
    (:func:`jacobian`). Raises CaseError for a case that cannot run (naming the problem),
    ``diffbench.engines.NoGradient`` when TensorFlow returns None, and
    ``diffbench.engines.Skip`` when the method does not apply.
    """
    from .engines import get_engine

    if case.problem:
        raise CaseError(case.problem)
    name, variant = _method(method)
    if name == "reference":
        return reference_jacobian(case)  # at the float64 point, as for every case
    engine = get_engine(name)
    prepared = _within_budget(engine, name, variant,
                              lambda chosen: engine.prepare(case, chosen, dtype, "CPU"))
    return prepared.gradient()


def jacobian(case: Case, method: str = "tape", variant: str | None = None, dtype: str = "float64"
             ) -> dict[str, np.ndarray]:
    """The Jacobian of ``case`` at its inputs: for a case returning an array of shape S, name -> array of shape
    S + that input's shape (``J[k..., i...] = ∂out[k...]/∂in[i...]``); for a scalar case exactly its gradient.

    ``method`` as for :func:`gradient` (``method/variant`` accepted), or ``variant`` given apart
    (``jacobian(case, "finite", "richardson")``). Raises as :func:`gradient` does.
    """
    return gradient(case, f"{method}/{variant}" if variant else method, dtype)


def reference_jacobian(case: Case, dtype: str = "float64") -> dict[str, np.ndarray]:
    """The certified reference Jacobian of ``case`` (rounded to float64), at its point as ``dtype`` holds it:
    name -> array of shape S + that input's shape; for a scalar case its reference gradient. Each output
    component's row is certified like a gradient (:func:`diffbench.reference.reference_jacobian` gives the
    per-row :class:`~diffbench.reference.Reference` objects). Raises CaseError for a case that cannot run,
    ``diffbench.errors.ReferenceUnavailable`` past the reference's output budget, the case's own error otherwise.
    """
    from .engines import output_shape
    from .reference import reference, reference_jacobian as certified

    if case.problem:
        raise CaseError(case.problem)
    if not output_shape(case):
        return {k: v.copy() for k, v in reference(case, dtype).values.items()}
    return {k: v.copy() for k, v in certified(case, dtype).values.items()}


def hessian(case: Case, method: str = "tape", dtype: str = "float64") -> np.ndarray:
    """The (N, N) Hessian of ``case``, N the total input size, flattened in parameter order.

    ``method`` is ``symbolic``, ``tape`` (nested tapes), ``finite`` (second-order central
    differences) or ``reference`` (certified, rounded to float64). With a plain method name, where
    its default variant is over budget for the case and the engine names a cheaper variant
    (``symbolic``: SymPy's Hessian past its predicted-cost budget is formed with SymEngine), that
    variant is used and a ``diffbench.errors.BudgetFallback`` warning says so. Raises as
    :func:`gradient` does.
    """
    from .engines import get_engine

    if case.problem:
        raise CaseError(case.problem)
    name, variant = _method(method)
    if name == "reference":
        from .reference import reference_hessian

        return reference_hessian(case)
    engine = get_engine(name)
    return _within_budget(engine, name, variant, lambda chosen: engine.hessian(case, chosen, dtype))


def _within_budget(engine: Any, name: str, variant: str | None, compute: Any) -> Any:
    """``compute(variant)``; with a plain method name, where the default variant's budget refuses the case and
    the engine declares a fallback for it (``EngineInfo.budget_fallback``), the fallback's result, with a
    :class:`diffbench.errors.BudgetFallback` warning that says so."""
    import warnings

    from .errors import BudgetFallback, OverBudget

    chosen = variant or engine.info.default_variant
    try:
        return compute(chosen)
    except OverBudget as exc:
        fallback = engine.info.budget_fallback.get(chosen) if variant is None else None
        if fallback is None:
            raise
        warnings.warn(f"{name}/{chosen} is over its budget ({exc}); computed with {name}/{fallback} instead",
                      BudgetFallback, stacklevel=3)
        return compute(fallback)


def assert_gradients(fn: Any, inputs: dict[str, Any], *, reference: Any = None, rtol: float | None = None,
                     atol: float | None = None) -> None:
    """Check the TensorFlow gradient of ``fn(**inputs)``; raise AssertionError if it is wrong.

    See :func:`diffbench.testing.assert_gradients` for the full contract.
    """
    from .testing import assert_gradients as check

    check(fn, inputs, reference=reference, rtol=rtol, atol=atol)
