"""Symbolic differentiation: trace the case with SymPy symbols, ``sympy.diff``, ``lambdify``.

The trace (the function as one SymPy expression of real symbols, one per input
element) is shared with the 50-digit reference. Symbolic cost grows fast, so two
budgets apply before any differentiation: the number of scalar inputs
(``MAX_INPUTS``) and the size of the function's expression (``MAX_OPS``, SymPy's
``count_ops``). Past either the method is ``skipped`` with the reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..case import Case, per_case
from . import EngineInfo, Prepared, Skip, check_scalar, unflatten

#: largest number of scalar inputs the symbolic method differentiates
MAX_INPUTS = 2000
#: largest expression (sympy.count_ops of the function) the symbolic method differentiates
MAX_OPS = 40000
#: Hessians are formed symbolically only up to this many inputs (N² second derivatives)
MAX_HESSIAN_INPUTS = 40


@dataclass
class SymbolicTrace:
    """The case as a SymPy expression, and (lazily) its gradient."""

    case: Case
    symbols: list[Any]
    f: Any
    trace_s: float
    f_ops: int
    _gradient: list[Any] | None = None
    diff_s: float = 0.0
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def gradient(self) -> list[Any]:
        """d f / d symbol for every input element, in flattened parameter order."""
        if self._gradient is None:
            import sympy as sp

            start = time.perf_counter()
            self._gradient = [sanitize(sp.diff(self.f, s)) for s in self.symbols]
            self.diff_s = time.perf_counter() - start
        return self._gradient

    def hessian(self) -> Any:
        """The (N, N) SymPy matrix of second derivatives."""
        if "hessian" not in self._cache:
            import sympy as sp

            grads = self.gradient
            self._cache["hessian"] = sp.Matrix([[sanitize(sp.diff(g, s)) for s in self.symbols] for g in grads])
        return self._cache["hessian"]


def sanitize(expr: Any) -> Any:
    """Give SymPy's unevaluated derivatives of step functions their almost-everywhere value 0.

    d floor(u)/dx and the DiracDelta from d sign(u)/dx are 0 wherever the function is
    differentiable; at the jump itself the reference's kink check reports ``undefined``.
    """
    import sympy as sp

    def is_step_derivative(e: Any) -> bool:
        return isinstance(e, sp.Derivative) and isinstance(e.expr, (sp.floor, sp.ceiling))

    def step(e: Any) -> Any:
        # Heaviside (from d Max/dx) as a plain Piecewise: printers otherwise rewrite it through
        # SymPy's simplifier, which costs seconds per expression
        at_zero = e.args[1] if len(e.args) > 1 else sp.Rational(1, 2)
        return sp.Piecewise((sp.Float(1.0), e.args[0] > 0), (sp.Float(0.0), e.args[0] < 0), (sp.Float(at_zero), True))

    # d floor(u(x))/dx comes as Subs(Derivative(floor(ξ), ξ), ξ, u(x))·u'(x): the Subs is 0 as well
    expr = expr.replace(lambda e: isinstance(e, sp.Subs) and is_step_derivative(e.expr), lambda e: sp.Integer(0))
    expr = expr.replace(is_step_derivative, lambda e: sp.Integer(0))
    expr = expr.replace(lambda e: isinstance(e, sp.Heaviside), step)
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.Integer(0))


@per_case
def trace(case: Case) -> SymbolicTrace:
    """Trace ``case`` with SymPy (cached per case); raises Skip past the budgets, or the case's error."""
    return _trace(case)


def _trace(case: Case) -> SymbolicTrace:
    import sympy as sp

    from ..namespaces import ObjectArray, sympy_namespace

    if case.size > MAX_INPUTS:
        raise Skip(f"{case.size} scalar inputs exceed the symbolic budget of {MAX_INPUTS} "
                   "(diffbench.engines.symbolic.MAX_INPUTS): one derivative per input gets too costly")
    start = time.perf_counter()
    symbols, args = [], []
    for name, value in case.inputs.items():
        flat = [sp.Symbol(f"{name}_{i}" if value.size > 1 else name, real=True) for i in range(value.size)]
        symbols.extend(flat)
        array = np.empty(value.shape, dtype=object)
        array.reshape(-1)[:] = flat
        args.append(array.view(ObjectArray))
    out = case.func(*args, xp=sympy_namespace())
    check_scalar(case, out, "SymPy namespace")
    value = np.asarray(out, dtype=object).reshape(-1)[0]
    try:
        f = sp.sympify(value, strict=True)
    except (sp.SympifyError, TypeError):
        f = None
    if not isinstance(f, sp.Expr) or (f.free_symbols - set(symbols)):
        raise TypeError(f"case {case.name!r} returned {value!r} ({type(value).__name__}), not a number")
    ops = sp.count_ops(f)
    if ops > MAX_OPS:
        raise Skip(f"the function's expression has {ops} operations, over the symbolic budget of {MAX_OPS} "
                   "(diffbench.engines.symbolic.MAX_OPS): expression swell")
    return SymbolicTrace(case, symbols, f, time.perf_counter() - start, int(ops))


class SymbolicEngine:
    """SymPy ``diff`` then ``lambdify``; variants differ in what the derivative is compiled to."""

    name = "symbolic"
    info = EngineInfo(variants=("numpy", "numpy-nocse", "tensorflow"), default_variant="numpy",
                      order2_variant="numpy", scaling_variants=("numpy", "numpy-nocse"),
                      run_scaling_variants=("numpy",), max_hessian_inputs=MAX_HESSIAN_INPUTS, default=True)

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        return ["CPU"]

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        import sympy as sp

        tr = trace(case)
        grads = tr.gradient
        start = time.perf_counter()
        if variant in ("numpy", "numpy-nocse"):
            # the generated code does not depend on the dtype: compile once per case and variant
            key = f"lambdify-{variant}"
            if key not in tr._cache:
                tr._cache[key] = (sp.lambdify([tr.symbols], grads, modules="numpy", cse=(variant == "numpy")),
                                  sp.lambdify([tr.symbols], tr.f, modules="numpy"))
            fn, f_fn = tr._cache[key]
            point = list(np.concatenate([v.ravel() for v in case.inputs.values()]).astype(dtype))
            np_dtype = np.dtype(dtype)

            def gradient() -> dict[str, np.ndarray]:
                return unflatten(_real(fn(point), np_dtype), case.inputs)

            timed: Callable[[], Any] = lambda: fn(point)  # noqa: E731
            f_timed: Callable[[], Any] = lambda: f_fn(point)  # noqa: E731
        elif variant == "tensorflow":
            gradient, timed, f_timed = _tensorflow_variant(case, tr, grads, dtype)
        else:
            raise ValueError(f"unknown symbolic variant {variant!r}; known: {self.variants()}")
        lambdify_s = time.perf_counter() - start
        info = {"expr_ops": tr.f_ops, "grad_ops": _count_ops(tr, grads, cse=(variant != "numpy-nocse"))}
        return Prepared(gradient=gradient, timed=timed, f_timed=f_timed,
                        prepare_s=tr.trace_s + tr.diff_s + lambdify_s, info=info,
                        f_key="numpy" if variant.startswith("numpy") else None)

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        import sympy as sp

        if case.size > MAX_HESSIAN_INPUTS:
            raise Skip(f"{case.size} inputs exceed the symbolic Hessian budget of {MAX_HESSIAN_INPUTS}")
        tr = trace(case)
        if "lambdify-hessian" not in tr._cache:
            tr._cache["lambdify-hessian"] = sp.lambdify([tr.symbols], tr.hessian(), modules="numpy", cse=True)
        fn = tr._cache["lambdify-hessian"]
        point = list(np.concatenate([v.ravel() for v in case.inputs.values()]).astype(dtype))
        return _real(fn(point), np.dtype(dtype))


def _real(values: Any, dtype: np.dtype) -> np.ndarray:
    """Evaluated derivatives as real numbers; where SymPy left the real domain (the square root
    of a negative number is imaginary in SymPy, NaN in NumPy and TensorFlow), NaN."""
    array = np.asarray(values, dtype=complex if any(isinstance(v, complex) for v in np.ravel(np.asarray(values, dtype=object)))
                       else None)
    if np.iscomplexobj(array):
        array = np.where(array.imag == 0, array.real, np.nan)
    return array.astype(dtype)


def _count_ops(tr: SymbolicTrace, grads: list[Any], cse: bool) -> int:
    """Expression size of the gradient, after common-subexpression elimination when ``cse``."""
    import sympy as sp

    key = f"ops-{cse}"
    if key not in tr._cache:
        if cse:
            replacements, reduced = sp.cse(grads)
            tr._cache[key] = int(sum(sp.count_ops(e) for _, e in replacements) + sum(sp.count_ops(e) for e in reduced))
        else:
            tr._cache[key] = int(sum(sp.count_ops(g) for g in grads))
    return tr._cache[key]


def _tensorflow_variant(case: Case, tr: SymbolicTrace, grads: list[Any], dtype: str):
    """The symbolic gradient compiled to a TensorFlow graph (so it runs where TensorFlow runs)."""
    import sympy as sp
    from sympy.printing.tensorflow import TensorflowPrinter

    from ..namespaces import tensorflow_namespace
    from ..quiet import import_tensorflow

    tf = import_tensorflow()  # its start-up lines are silenced unless --verbose

    tensorflow_namespace(dtype)  # NumPy behaviour: Python constants in the printed code take the inputs' dtype
    tf_dtype = tf.as_dtype(dtype)

    # SymPy's TensorFlow printer prints expm1, log1p, log2 and log10 only by name when not
    # strict: bind those names here (Heaviside is already a Piecewise, see sanitize)
    extra = {"expm1": tf.math.expm1, "log1p": tf.math.log1p, "erf": tf.math.erf, "erfc": tf.math.erfc,
             "log2": lambda x: tf.math.log(x) / math.log(2.0), "log10": lambda x: tf.math.log(x) / math.log(10.0)}
    def typed_where(condition: Any, a: Any, b: Any) -> Any:
        # tf.where makes Python constants float32; the branches must be in the run's dtype
        return tf.where(condition, tf.cast(a, tf_dtype), tf.cast(b, tf_dtype))

    extra["_typed_where"] = typed_where

    class Printer(TensorflowPrinter):
        def _module_format(self, fqn: str, register: bool = True) -> str:
            if fqn in ("tensorflow.where", "tensorflow.math.where"):
                return "_typed_where"
            return super()._module_format(fqn, register)

    printer = Printer({"strict": False})
    key = f"lambdify-tensorflow-{dtype}"
    if key not in tr._cache:
        # exact constants (sqrt(pi), log(2)) as decimal literals: TensorFlow would make float32 tensors of
        # the Python numbers a printed sqrt(math.pi) produces, and lose half the digits in a float64 run
        numeric = [g.evalf(20) for g in grads]
        tr._cache[key] = (
            sp.lambdify([tr.symbols], numeric, modules=[extra, "tensorflow"], cse=True, printer=printer),
            sp.lambdify([tr.symbols], tr.f.evalf(20), modules=[extra, "tensorflow"], printer=printer))
    fn, f_fn = tr._cache[key]
    flat = np.concatenate([v.ravel() for v in case.inputs.values()])
    point = [tf.constant(v, dtype=tf_dtype) for v in flat]

    # eager: a traced graph of one op per scalar costs ~1 s per case to build, more than it saves
    def grad_ops() -> Any:
        return tf.stack([tf.cast(tf.convert_to_tensor(g), tf_dtype) for g in fn(point)])

    def f_ops() -> Any:
        return tf.cast(tf.convert_to_tensor(f_fn(point)), tf_dtype)

    grad_ops()
    f_ops()

    def gradient() -> dict[str, np.ndarray]:
        return unflatten(grad_ops().numpy(), case.inputs)

    return gradient, grad_ops, f_ops
