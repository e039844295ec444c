"""``xp.grad``: a gradient inside a case, honoured by every namespace.

``xp.grad(f, argnums=0)`` returns a function of the same arguments as ``f`` that returns the gradient
of ``f`` (a scalar function written like a case: ``f(*arrays, xp)``) with respect to argument
``argnums`` (an int: one array shaped like that argument; a tuple: a tuple of them), as ``jax.grad``
does. Every namespace computes it so that the case's own derivative differentiates *through* it:

- SymPy / SymEngine: ``f`` is traced on fresh symbols, differentiated symbolically, and the
  arguments substituted back: the outer derivative is again exact.
- the reference's tape (and the plain mpmath namespace): the tape records first derivatives as
  numbers, so it cannot differentiate its own backward pass. The inner gradient is taken
  symbolically instead (``f`` traced by SymPy at the point, comparisons decided there) and its formula
  evaluated on the tape, operation by operation, so the outer reverse sweep (and its balls) go through
  it. An inner formula with an operation the tape lacks raises ``TypeError`` naming it.
- TensorFlow: a nested ``tf.GradientTape`` inside the outer one (which records the inner gradient's
  operations); JAX: ``jax.grad``; PyTorch: ``torch.autograd.grad(create_graph=True)``.
- NumPy (finite differences): NumPy has no derivatives, so the inner gradient is a complex step of
  ``f`` (exact to rounding where ``f`` is complex-analytic, as the complex-step variant requires); the
  outer differences then differentiate it. On complex inputs (the outer complex step) it raises
  ``TypeError``: a complex step of a complex step needs multicomplex numbers.

``f`` should take every traced value it depends on as an argument: the reference traces ``f`` on
symbols of its own, and a value of the case that ``f`` reads from an enclosing scope is not one (the
reference then raises ``ReferenceUnavailable``, so the case's rows say that no truth exists; the other
methods follow the closure). The namespaces call in here; of diffbench this module imports only
:mod:`diffbench.errors` and :mod:`diffbench.branching`.

"""

from __future__ import annotations

import itertools
import operator
from typing import Any, Callable

import numpy as np

#: ``argnums`` of xp.grad: one argument (an int) or several (a tuple)
ArgNums = "int | tuple[int, ...]"

#: SymPy function classes -> the namespace's name for them (evaluated on the tape one by one)
_FUNCTIONS = {name: name for name in ("sin", "cos", "tan", "exp", "log", "asin", "acos", "atan", "sinh", "cosh",
                                      "tanh", "asinh", "acosh", "atanh", "erf", "erfc", "floor", "expm1", "log1p",
                                      "log2", "log10", "atan2", "sign")}
_FUNCTIONS.update({"Abs": "abs", "ceiling": "ceil", "Max": "maximum", "Min": "minimum"})
_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
            "!=": operator.ne}
_names = itertools.count()
#: how many nested TensorFlow tapes ``xp.grad`` has opened in this process (the tape engine reads it around the
#: eager gradient: a case with a tape inside its tape costs more to trace and compile)
TAPE_CALLS = [0]


def _argnums(argnums: Any) -> tuple[tuple[int, ...], bool]:
    if isinstance(argnums, (int, np.integer)):
        return (int(argnums),), True
    nums = tuple(int(a) for a in argnums)
    if not nums:
        raise ValueError("xp.grad: argnums names no argument")
    return nums, False


def _result(grads: list[Any], single: bool) -> Any:
    return grads[0] if single else tuple(grads)


def _check_args(nums: tuple[int, ...], count: int) -> None:
    if any(i < 0 or i >= count for i in nums):
        raise ValueError(f"xp.grad: argnums {nums} out of range for a function of {count} arguments")


# --------------------------------------------------------------------------- symbolic namespaces
def object_grad(ns: Any, f: Callable[..., Any], argnums: Any, sympy_ns: Callable[[], Any]) -> Callable[..., Any]:
    """``xp.grad`` of an object-array namespace: symbolic for SymPy and SymEngine, the symbolic formula evaluated
    in ``ns`` for the others (the reference's tape, mpmath). ``sympy_ns`` gives the SymPy namespace."""
    nums, single = _argnums(argnums)

    def gradient(*args: Any) -> Any:
        _check_args(nums, len(args))
        arrays = [np.asarray(a, dtype=object) for a in args]
        if ns.label == "SymPy":
            grads = _sympy_grad(ns, f, nums, arrays)
        elif ns.label.startswith("SymEngine"):
            grads = _symengine_grad(ns, f, nums, arrays)
        else:
            grads = _formula_grad(ns, f, nums, arrays, sympy_ns())
        return _result([ns.asarray(g) for g in grads], single)

    return gradient


def _dummies(arrays: list[np.ndarray], make: Callable[[str], Any]) -> list[np.ndarray]:
    out = []
    for k, array in enumerate(arrays):
        d = np.empty(array.shape, dtype=object)
        tag = next(_names)
        d.reshape(-1)[:] = [make(f"g{tag}_{k}_{i}") for i in range(array.size)]
        out.append(d)
    return out


def _sympy_grad(ns: Any, f: Callable[..., Any], nums: tuple[int, ...], arrays: list[np.ndarray]) -> list[Any]:
    import sympy as sp

    from .branching import extend_point, point_value

    dummies = _dummies(arrays, lambda name: sp.Dummy(name, real=True))
    mapping = {d: sp.sympify(v) for ds, vs in zip(dummies, arrays) for d, v in zip(ds.ravel(), vs.ravel())}
    values = {d: point_value(v) for d, v in mapping.items()}
    extend_point({d: v for d, v in values.items() if v is not None})  # the inner code's branches are decided too
    out = sp.sympify(np.asarray(f(*[ns.asarray(d) for d in dummies], xp=ns), dtype=object).reshape(-1)[0])
    grads = []
    for i in nums:
        g = np.empty(arrays[i].shape, dtype=object)
        g.reshape(-1)[:] = [sp.diff(out, d).xreplace(mapping) for d in dummies[i].ravel()]
        grads.append(g)
    return grads


def _symengine_grad(ns: Any, f: Callable[..., Any], nums: tuple[int, ...], arrays: list[np.ndarray]) -> list[Any]:
    import symengine as se

    dummies = _dummies(arrays, lambda name: se.Symbol(f"_{name}"))
    mapping = {d: se.sympify(v) for ds, vs in zip(dummies, arrays) for d, v in zip(ds.ravel(), vs.ravel())}
    out = se.sympify(np.asarray(f(*[ns.asarray(d) for d in dummies], xp=ns), dtype=object).reshape(-1)[0])
    grads = []
    for i in nums:
        g = np.empty(arrays[i].shape, dtype=object)
        g.reshape(-1)[:] = [se.diff(out, d).subs(mapping) for d in dummies[i].ravel()]
        grads.append(g)
    return grads


def _exact(value: Any) -> Any:
    """A number of the tape or mpmath as an exact SymPy number (a ball's midpoint)."""
    import sympy as sp

    raw = getattr(value, "value", value)  # a tape node holds its ball in ``value``
    if hasattr(raw, "mid"):
        man, exp = raw.mid().man_exp()
        return sp.Integer(int(man)) * sp.Integer(2) ** int(exp)
    if hasattr(raw, "man_exp"):
        man, exp = raw.man_exp
        return sp.Integer(int(man)) * sp.Integer(2) ** int(exp)
    if isinstance(raw, (int, np.integer)):
        return sp.Integer(int(raw))
    return sp.Rational(float(raw))


def _traced_value(value: Any) -> bool:
    """Whether a value is one of an object namespace's traced values: an object array (the namespaces' arrays)
    or a tape node (its type brings its own matrix product)."""
    if isinstance(value, np.ndarray):
        return value.dtype == object
    if isinstance(value, (list, tuple)):
        return any(_traced_value(v) for v in value)
    return getattr(type(value), "tape_matmul", None) is not None


def _closes_over_traced(f: Callable[..., Any]) -> bool:
    """Whether ``f`` reads a traced value from an enclosing scope or a default argument."""
    cells = [c.cell_contents for c in (getattr(f, "__closure__", None) or ()) if _filled(c)]
    defaults = list(getattr(f, "__defaults__", None) or ()) + list((getattr(f, "__kwdefaults__", None) or {}).values())
    return any(_traced_value(v) for v in cells + defaults)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a cell not assigned yet
        return False
    return True


def _formula_grad(ns: Any, f: Callable[..., Any], nums: tuple[int, ...], arrays: list[np.ndarray],
                  sympy_ns: Any) -> list[Any]:
    """The inner gradient's SymPy formula, evaluated in ``ns`` with the arguments' values."""
    import sympy as sp

    from .branching import deciding_at

    if _closes_over_traced(f):
        from .errors import ReferenceUnavailable

        raise ReferenceUnavailable(
            f"xp.grad's inner function {getattr(f, '__name__', f)!r} reads a traced value of the case from an "
            "enclosing scope; the reference takes the inner gradient's formula symbolically, on symbols for its "
            "arguments only, so it cannot follow that value: pass it as an argument (and choose the one to "
            "differentiate with argnums)")
    dummies = _dummies(arrays, lambda name: sp.Dummy(name, real=True))
    env = {d: v for ds, vs in zip(dummies, arrays) for d, v in zip(ds.ravel(), vs.ravel())}
    try:
        point = {d: _exact(v) for d, v in env.items()}
    except (TypeError, ValueError) as exc:
        raise TypeError(f"xp.grad in the {ns.label} namespace takes numbers as arguments ({exc})") from None
    with deciding_at(point) as guards:
        out = f(*[sympy_ns.asarray(d) for d in dummies], xp=sympy_ns)
    ties = [g for g in guards if g.tie]
    if ties:
        raise ValueError(f"xp.grad: the inner function's guard at {ties[0].where} sits exactly at its switch at this "
                         f"point; the {ns.label} namespace evaluates one side's derivative formula only away from it")
    scalar = np.asarray(out, dtype=object).reshape(-1)[0]
    try:
        scalar = sp.sympify(scalar, strict=True)
    except (sp.SympifyError, TypeError):
        raise TypeError("xp.grad: the inner function reads a traced value of the case that is not one of its "
                        "arguments; pass it as an argument (and choose the one to differentiate with argnums)") from None
    grads = []
    memo: dict[Any, Any] = {}
    for i in nums:
        g = np.empty(arrays[i].shape, dtype=object)
        g.reshape(-1)[:] = [evaluate_formula(sp.diff(scalar, d), env, ns, memo) for d in dummies[i].ravel()]
        grads.append(g)
    return grads


def evaluate_formula(expr: Any, env: dict[Any, Any], ns: Any, memo: dict[Any, Any] | None = None) -> Any:
    """A SymPy expression evaluated in the object namespace ``ns`` (its scalar functions and arithmetic), each
    symbol taking its value from ``env``; shared subexpressions once (``memo``). Raises TypeError for a function
    the namespace has no name for."""
    import sympy as sp

    memo = {} if memo is None else memo
    number = type(ns.pi)

    def scalar(name: str, *values: Any) -> Any:
        return np.asarray(getattr(ns, name)(*values), dtype=object).reshape(-1)[0]

    def holds(cond: Any) -> bool:
        if cond is sp.true:
            return True
        if cond is sp.false:
            return False
        if isinstance(cond, sp.And):
            return all(holds(c) for c in cond.args)
        if isinstance(cond, sp.Or):
            return any(holds(c) for c in cond.args)
        if getattr(cond, "rel_op", None) in _COMPARE:
            return bool(_COMPARE[cond.rel_op](ev(cond.lhs), ev(cond.rhs)))
        raise TypeError(f"xp.grad: the inner derivative has a condition {cond} the {ns.label} namespace cannot decide")

    def ev(e: Any) -> Any:
        if e in env:
            return env[e]
        if e in memo:
            return memo[e]
        if e.is_Integer:
            value = int(e)
        elif e.is_Rational:
            value = number(int(e.p)) / number(int(e.q))
        elif e.is_Float:
            value = float(e) if e._prec <= 53 else number(str(e))
        elif e is sp.pi:
            value = ns.pi
        elif e is sp.E:
            value = ns.e
        elif e.is_Add or e.is_Mul:
            combine = operator.add if e.is_Add else operator.mul
            value = ev(e.args[0])
            for a in e.args[1:]:
                value = combine(value, ev(a))
        elif e.is_Pow:
            base, exponent = ev(e.base), e.exp
            if exponent.is_Integer:
                value = base ** int(exponent)
            elif exponent == sp.Rational(1, 2):
                value = scalar("sqrt", base)
            elif exponent == sp.Rational(-1, 2):
                value = 1 / scalar("sqrt", base)
            else:
                value = scalar("pow", base, ev(exponent))
        elif isinstance(e, sp.Piecewise):
            value = next((ev(piece) for piece, cond in e.args if holds(cond)), None)
            if value is None:
                raise TypeError(f"xp.grad: no piece of {e} holds here")
        elif isinstance(e, sp.Heaviside):
            u = ev(e.args[0])
            value = 1 if u > 0 else 0 if u < 0 else ev(e.args[1] if len(e.args) > 1 else sp.Rational(1, 2))
        elif e.func.__name__ in _FUNCTIONS:
            name = _FUNCTIONS[e.func.__name__]
            values = [ev(a) for a in e.args]
            value = values[0]
            if name in ("maximum", "minimum"):
                for v in values[1:]:
                    value = scalar(name, value, v)
            else:
                value = scalar(name, *values)
        else:
            raise TypeError(f"xp.grad: the inner derivative contains {e.func.__name__}, which the {ns.label} "
                            "namespace cannot evaluate")
        memo[e] = value
        return value

    return ev(sp.sympify(expr))


# --------------------------------------------------------------------------- array libraries
def array_api_grad(ns: Any, f: Callable[..., Any], argnums: Any) -> Callable[..., Any]:
    """``xp.grad`` for TensorFlow (a nested GradientTape), JAX (``jax.grad``) and PyTorch (``autograd.grad``
    with ``create_graph=True``): each differentiable again by the outer derivative."""
    nums, single = _argnums(argnums)
    library = getattr(ns._module, "__name__", "")

    def arrays(args: tuple[Any, ...]) -> list[Any]:
        return [a if hasattr(a, "dtype") else ns.asarray(a) for a in args]

    if library.startswith("jax"):
        import jax
        import jax.numpy as jnp

        def scalar_f(*a: Any) -> Any:
            return jnp.reshape(f(*a, xp=ns), ())

        def jax_gradient(*args: Any) -> Any:
            _check_args(nums, len(args))
            return jax.grad(scalar_f, argnums=nums[0] if single else nums)(*arrays(args))

        return jax_gradient
    if "torch" in library:
        import torch

        def torch_gradient(*args: Any) -> Any:
            _check_args(nums, len(args))
            with torch.enable_grad():  # also where the function alone is timed under no_grad
                ins = arrays(args)
                for i in nums:
                    # a new node: paths to the argument through anything else the function reads do not count
                    ins[i] = ins[i].view_as(ins[i]) if ins[i].requires_grad else ins[i].detach().requires_grad_(True)
                out = f(*ins, xp=ns)
                out = (out if isinstance(out, torch.Tensor) else ns.asarray(out)).reshape(())
                # an output that depends on none of the arguments (a constant) has no graph: its gradient is 0
                found = torch.autograd.grad(out, [ins[i] for i in nums], create_graph=True, allow_unused=True) \
                    if out.requires_grad else [None] * len(nums)
            return _result([g if g is not None else torch.zeros_like(ins[i]) for g, i in zip(found, nums)], single)

        return torch_gradient
    import tensorflow as tf

    def tf_gradient(*args: Any) -> Any:
        _check_args(nums, len(args))
        TAPE_CALLS[0] += 1
        ins = arrays(args)
        for i in nums:
            ins[i] = tf.identity(ins[i])  # a node of its own, recorded by the outer tape
        with tf.GradientTape() as tape:
            for i in nums:
                tape.watch(ins[i])
            out = f(*ins, xp=ns)
        found = tape.gradient(out, [ins[i] for i in nums], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return _result(list(found), single)

    return tf_gradient


# --------------------------------------------------------------------------- NumPy
#: the complex step's size relative to max(|x|, 1): its truncation error is (h·f'''/f')² ≈ 2⁻⁸⁰, far below
#: float32's and float64's rounding, and h·f' stays far above float32's smallest normal number
COMPLEX_STEP = 2.0 ** -40


def complex_step_grad(ns: Any, f: Callable[..., Any], argnums: Any, complex_array: type) -> Callable[..., Any]:
    """``xp.grad`` for NumPy: a complex step of ``f`` per component (``complex_array`` is the complex array type
    whose comparisons look at real parts). Raises TypeError on complex arguments."""
    nums, single = _argnums(argnums)

    def gradient(*args: Any) -> Any:
        _check_args(nums, len(args))
        arrays = [ns.asarray(a) for a in args]
        if any(np.iscomplexobj(a) for a in arrays):
            raise TypeError("xp.grad in the NumPy namespace is a complex step of the inner function, and its "
                            "arguments are complex already (a complex step of a complex step needs multicomplex "
                            "numbers)")
        grads = []
        for i in nums:
            base = arrays[i]
            step_type = np.result_type(base.dtype, np.complex64)
            g = np.empty(base.shape, dtype=base.dtype)
            for k in np.ndindex(base.shape):
                h = COMPLEX_STEP * max(abs(float(base[k])), 1.0)
                shifted = base.astype(step_type)
                shifted[k] += 1j * h
                call = list(arrays)
                call[i] = shifted.view(complex_array)
                g[k] = np.imag(np.asarray(f(*call, xp=ns)).reshape(())) / h
            grads.append(g)
        return _result(grads, single)

    return gradient
