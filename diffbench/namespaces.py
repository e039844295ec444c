"""The array namespaces ``xp`` a case is evaluated with.

Every namespace offers the same names (``FUNCTIONS``), taken from the Python array API
standard. Asking any namespace for a name it lacks raises
:class:`UnsupportedFunction`, which names the function and the namespace, so a case
that uses e.g. ``xp.erfcx`` fails with a message a person can act on.

- :func:`sympy_namespace`: elementwise SymPy over NumPy object arrays (symbols in, expressions out).
- :func:`symengine_namespace`: the smooth part of the SymPy namespace in SymEngine (names it lacks raise).
- :func:`mpmath_namespace`: the same over ``mpmath.mpf`` values (50-digit evaluation).
- :func:`numpy_namespace`: NumPy, with complex-step-safe ``abs``/``sign``/comparisons.
- :func:`tensorflow_namespace`: ``tensorflow.experimental.numpy`` under array-API names.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import operator
from typing import Any, Callable, Iterator

import numpy as np

from .errors import UnsupportedFunction

#: Names every namespace provides (besides the constants ``pi``, ``e`` and ``inf``).
UNARY = ("exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "square", "abs", "sign", "sin", "cos",
         "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "floor", "ceil",
         "round", "negative", "erf", "erfc", "sigmoid")
BINARY = ("maximum", "minimum", "pow", "atan2", "logaddexp", "add", "subtract", "multiply", "divide")
REDUCTIONS = ("sum", "prod", "mean", "max", "min")
OTHER = ("where", "clip", "matmul", "vecdot", "tensordot", "reshape", "stack", "concat", "asarray",
         "zeros", "ones", "zeros_like", "ones_like", "argmax", "argmin", "arange", "cumulative_sum",
         "cumulative_prod", "cumsum", "cumprod", "einsum", "logsumexp", "softmax", "linalg")
#: ``xp.linalg.<name>``
LINALG = ("norm", "det", "solve", "inv")
FUNCTIONS = UNARY + BINARY + REDUCTIONS + OTHER


#: array-API names -> the NumPy-style names some modules use instead
ARRAY_API_ALIASES = {"pow": "power", "concat": "concatenate", "asin": "arcsin", "acos": "arccos", "atan": "arctan",
                     "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "atan2": "arctan2"}


def unsupported_message(name: str) -> str:
    """What to say about ``xp.<name>``: that diffbench lacks it, and the nearest names it has."""
    import difflib

    known = list(FUNCTIONS) + [f"linalg.{n}" for n in LINALG]
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; the nearest names are {', '.join('xp.' + n for n in near)}" if near else ""
    return (f"xp.{name} is not one of diffbench's array functions{hint}. The full list is "
            "diffbench.namespaces.FUNCTIONS; or give the case a native TensorFlow implementation with "
            "@<case>.tensorflow (the xp function remains the truth it is checked against)")


class _Namespace:
    """Base: attribute look-up that fails with a clear, named message."""

    label = "array"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise UnsupportedFunction(unsupported_message(name))

    def __repr__(self) -> str:
        return f"<diffbench {self.label} namespace>"


# --------------------------------------------------------------------------- object arrays
class ObjectArray(np.ndarray):
    """An object array whose comparisons are evaluated element by element.

    NumPy turns the result of ``<`` on object arrays into booleans, which fails for a
    SymPy relation; here each comparison keeps the element's own result.
    """

    def _compare(self, other: Any, op: Callable[[Any, Any], Any]) -> "ObjectArray":
        return _obj(np.frompyfunc(op, 2, 1)(self, other))

    def __lt__(self, other):  # type: ignore[override]
        return self._compare(other, operator.lt)

    def __le__(self, other):  # type: ignore[override]
        return self._compare(other, operator.le)

    def __gt__(self, other):  # type: ignore[override]
        return self._compare(other, operator.gt)

    def __ge__(self, other):  # type: ignore[override]
        return self._compare(other, operator.ge)

    def __matmul__(self, other):  # type: ignore[override]
        return _matmul(self, other)

    def __rmatmul__(self, other):  # type: ignore[override]
        return _matmul(other, self)


def _matmul(a: Any, b: Any) -> "ObjectArray":
    """``@`` on object arrays. Values that bring a product of their own (``tape_matmul``: the reference's
    tape, one node per element of the product) compute it; anything else multiplies element by element."""
    left, right = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    for value in (*left.ravel(), *right.ravel()):
        product = getattr(type(value), "tape_matmul", None)
        if product is not None:
            return product(left, right)
    return _obj(np.matmul(left, right))


def _obj(value: Any) -> ObjectArray:
    array = np.empty((), dtype=object) if np.ndim(value) == 0 else None
    if array is not None:
        array[()] = value.item() if isinstance(value, np.ndarray) else value
        return array.view(ObjectArray)
    return np.asarray(value, dtype=object).view(ObjectArray)


def _lift(fn: Callable[..., Any], nargs: int) -> Callable[..., ObjectArray]:
    ufunc = np.frompyfunc(fn, nargs, 1)

    @functools.wraps(fn)
    def apply(*args: Any) -> ObjectArray:
        return _obj(ufunc(*[_obj(a) if not isinstance(a, ObjectArray) else a for a in args]))

    return apply


def _reducer(combine: Callable[[list[Any]], Any]) -> Callable[..., ObjectArray]:
    def reduce(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> ObjectArray:
        array = np.asarray(x, dtype=object)
        axes = tuple(range(array.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        axes = tuple(a % max(array.ndim, 1) for a in axes) if array.ndim else ()
        kept = [a for a in range(array.ndim) if a not in axes]
        moved = np.transpose(array, kept + list(axes)) if array.ndim else array
        lead = [array.shape[a] for a in kept]
        flat = moved.reshape(int(np.prod(lead, dtype=int)), -1) if array.ndim else moved.reshape(1, 1)
        out = np.empty(flat.shape[0], dtype=object)
        for i, row in enumerate(flat):
            out[i] = combine(list(row))
        out = out.reshape(lead)
        if keepdims:
            out = np.expand_dims(out, axes)
        return _obj(out)

    return reduce


#: the point a symbolic trace is taken at (symbol -> value), where pivots are chosen by value (``tracing_at``)
_TRACE_POINT: "contextvars.ContextVar[dict[Any, Any] | None]" = contextvars.ContextVar("diffbench_trace_point",
                                                                                     default=None)


@contextlib.contextmanager
def tracing_at(point: dict[Any, Any]) -> Iterator[None]:
    """While tracing a case with symbols, let ``xp.linalg`` choose its pivots by the symbols' values at ``point``
    (symbol -> number): the traced formula is then valid around the point even where a structural pivot is 0."""
    token = _TRACE_POINT.set(point)
    try:
        yield
    finally:
        _TRACE_POINT.reset(token)


def _note_op(name: str) -> None:
    """Record ``name`` among the operations of the reference tape that is running, if one is (its ``ops``: the
    diagnoses look built-in gradient formulas up by it). The tape module imports this one, so it is looked up
    among the loaded modules rather than imported."""
    import sys

    tape = sys.modules.get(__name__.rpartition(".")[0] + ".mptape")
    active = getattr(tape, "_active", None)
    if active:
        active[-1].ops.add(name)


class _ObjectNamespace(_Namespace):
    """Shared machinery of the SymPy and mpmath namespaces."""

    def __init__(self, label: str, unary: dict[str, Callable[[Any], Any]], binary: dict[str, Callable[[Any, Any], Any]],
                 add_all: Callable[[list[Any]], Any], mul_all: Callable[[list[Any]], Any],
                 max_all: Callable[[list[Any]], Any], min_all: Callable[[list[Any]], Any],
                 select: Callable[[Any, Any, Any], Any], constants: dict[str, Any]) -> None:
        self.label = label
        for name, fn in unary.items():
            setattr(self, name, _lift(fn, 1))
        for name, fn in binary.items():
            setattr(self, name, _lift(fn, 2))
        self.sum = _reducer(add_all)
        self.prod = _reducer(mul_all)
        self.max = _reducer(max_all)
        self.min = _reducer(min_all)
        self.where = _lift(select, 3)
        for name, value in constants.items():
            setattr(self, name, value)
        self.float64 = self.float32 = None

    def mean(self, x: Any, axis: Any = None, keepdims: bool = False) -> ObjectArray:
        array = np.asarray(x, dtype=object)
        total = self.sum(array, axis=axis, keepdims=keepdims)
        count = array.size // max(np.asarray(total).size, 1) if axis is not None else array.size
        return _obj(total / count)

    def asarray(self, x: Any, dtype: Any = None) -> ObjectArray:
        return _obj(x)

    def clip(self, x: Any, min: Any = None, max: Any = None) -> ObjectArray:  # noqa: A002 - array API names
        out = _obj(x)
        if min is not None:
            out = self.maximum(out, min)
        if max is not None:
            out = self.minimum(out, max)
        return out

    def matmul(self, a: Any, b: Any) -> ObjectArray:
        return _obj(np.matmul(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))

    def vecdot(self, a: Any, b: Any, axis: int = -1) -> ObjectArray:
        return self.sum(_obj(a) * _obj(b), axis=axis)

    def tensordot(self, a: Any, b: Any, axes: Any = 2) -> ObjectArray:
        return _obj(np.tensordot(np.asarray(a, dtype=object), np.asarray(b, dtype=object), axes=axes))

    def reshape(self, x: Any, shape: Any) -> ObjectArray:
        return _obj(np.reshape(np.asarray(x, dtype=object), shape))

    def stack(self, arrays: Any, axis: int = 0) -> ObjectArray:
        return _obj(np.stack([np.asarray(a, dtype=object) for a in arrays], axis=axis))

    def concat(self, arrays: Any, axis: int = 0) -> ObjectArray:
        return _obj(np.concatenate([np.atleast_1d(np.asarray(a, dtype=object)) for a in arrays], axis=axis))

    def zeros(self, shape: Any, dtype: Any = None) -> ObjectArray:
        return _obj(np.zeros(shape, dtype=int).astype(object))

    def ones(self, shape: Any, dtype: Any = None) -> ObjectArray:
        return _obj(np.ones(shape, dtype=int).astype(object))

    def zeros_like(self, x: Any, dtype: Any = None) -> ObjectArray:
        return self.zeros(np.shape(x))

    def ones_like(self, x: Any, dtype: Any = None) -> ObjectArray:
        return self.ones(np.shape(x))

    def arange(self, *args: Any, dtype: Any = None) -> ObjectArray:
        return _obj(np.arange(*args).astype(object))

    def argmax(self, x: Any, axis: Any = None) -> Any:
        raise UnsupportedFunction(f"xp.argmax has no derivative to follow in the {self.label} namespace: the "
                                  "result is an integer index, so the function is piecewise constant in it")

    argmin = argmax

    def cumulative_sum(self, x: Any, axis: int | None = None) -> ObjectArray:
        array = np.asarray(x, dtype=object)
        return _obj(np.cumsum(array, axis=0 if axis is None and array.ndim == 1 else axis))

    def cumulative_prod(self, x: Any, axis: int | None = None) -> ObjectArray:
        _note_op("cumulative_prod")
        array = np.asarray(x, dtype=object)
        return _obj(np.cumprod(array, axis=0 if axis is None and array.ndim == 1 else axis))

    cumsum = cumulative_sum
    cumprod = cumulative_prod

    def einsum(self, subscripts: str, *operands: Any) -> ObjectArray:
        return _obj(np.einsum(subscripts, *[np.asarray(o, dtype=object) for o in operands], optimize=False))

    def logsumexp(self, x: Any, axis: Any = None, keepdims: bool = False) -> ObjectArray:
        # exact arithmetic (SymPy) and arbitrary-precision numbers do not overflow: no max shift needed,
        # and none is wanted (max would put a switch where the function is smooth)
        return self.log(self.sum(self.exp(_obj(x)), axis=axis, keepdims=keepdims))

    def softmax(self, x: Any, axis: int = -1) -> ObjectArray:
        return self.exp(_obj(x) - self.logsumexp(x, axis=axis, keepdims=True))

    @property
    def linalg(self) -> "_ObjectLinalg":
        return _ObjectLinalg(self)


class _ObjectLinalg:
    """``xp.linalg`` over object arrays: Gaussian elimination with partial pivoting on the numbers' sizes
    (SymPy: its exact Matrix methods)."""

    def __init__(self, namespace: _ObjectNamespace) -> None:
        self._ns = namespace

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise UnsupportedFunction(unsupported_message(f"linalg.{name}"))

    def norm(self, x: Any, axis: Any = None, keepdims: bool = False, ord: Any = None) -> ObjectArray:  # noqa: A002
        if ord not in (None, 2, "fro"):
            raise UnsupportedFunction(f"xp.linalg.norm(ord={ord!r}): diffbench offers the 2-norm (Frobenius for "
                                      "matrices); write other norms with xp.sum and xp.abs")
        array = _obj(x)
        return self._ns.sqrt(self._ns.sum(array * array, axis=axis, keepdims=keepdims))

    def _size(self, value: Any) -> float:
        # a value on the reference's tape (it brings its own product) holds its number in ``value``
        raw = value.value if getattr(type(value), "tape_matmul", None) is not None else value
        try:
            return abs(float(raw))
        except TypeError:
            return 1.0  # a symbol: any nonzero pivot will do

    def _symbolic(self) -> bool:
        return self._ns.label == "SymPy"

    def _values(self, matrix: np.ndarray) -> np.ndarray | None:
        """The matrix's numbers at the point: the tape's values, numbers, or symbolic entries evaluated at the
        point being traced (``tracing_at``); None where a symbolic entry has no point to be evaluated at."""
        point = _TRACE_POINT.get()
        out = np.empty(matrix.shape)
        for index, value in np.ndenumerate(matrix):
            raw = value.value if getattr(type(value), "tape_matmul", None) is not None else value
            try:
                out[index] = float(raw)
            except TypeError:
                if point is None:
                    return None
                try:
                    out[index] = float(raw.xreplace(point))
                except (TypeError, AttributeError):
                    return None
        return out

    def det(self, a: Any) -> ObjectArray:
        matrix = np.asarray(a, dtype=object)
        if self._symbolic():
            import sympy as sp

            return _obj(sp.Matrix(matrix.tolist()).det(method="berkowitz"))
        rows = [list(r) for r in matrix]
        n, sign, out = len(rows), 1, 1
        for k in range(n):
            pivot = max(range(k, n), key=lambda i: self._size(rows[i][k]))
            if self._size(rows[pivot][k]) == 0:
                return _obj(_cofactor_det([list(r) for r in matrix]))  # singular: expand exactly
            if pivot != k:
                rows[k], rows[pivot], sign = rows[pivot], rows[k], -sign
            out = out * rows[k][k]
            for i in range(k + 1, n):
                factor = rows[i][k] / rows[k][k]
                rows[i] = [rows[i][j] - factor * rows[k][j] if j > k else 0 for j in range(n)]
        return _obj(out * sign)

    def solve(self, a: Any, b: Any) -> ObjectArray:
        matrix, rhs = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
        values = self._values(matrix) if self._symbolic() else None
        if self._symbolic() and values is None:
            import sympy as sp

            column = rhs.reshape(len(rhs), -1)
            out = np.asarray(sp.Matrix(matrix.tolist()).LUsolve(sp.Matrix(column.tolist())).tolist(), dtype=object)
            return _obj(out.reshape(rhs.shape))
        n = len(matrix)
        column = rhs.reshape(n, -1)
        rows = [list(matrix[i]) + list(column[i]) for i in range(n)]
        width = len(rows[0])
        # the pivots are chosen by the entries' values at the point (a symbolic matrix is eliminated on its numbers
        # alongside): the formula is then valid around the point, where a pivot chosen by the symbols' form may be
        # 0 at it (SymPy's LUsolve on [[a, b], [c, d]] divides by a, whatever a is here)
        numbers = None if values is None else [list(values[i]) for i in range(n)]
        for k in range(n):
            if numbers is None:
                pivot = max(range(k, n), key=lambda i: self._size(rows[i][k]))
                singular = self._size(rows[pivot][k]) == 0
            else:
                pivot = max(range(k, n), key=lambda i: abs(numbers[i][k]))
                singular = numbers[pivot][k] == 0
            if singular:
                raise ValueError("xp.linalg.solve: the matrix is singular at this point")
            rows[k], rows[pivot] = rows[pivot], rows[k]
            if numbers is not None:
                numbers[k], numbers[pivot] = numbers[pivot], numbers[k]
            for i in range(k + 1, n):
                factor = rows[i][k] / rows[k][k]
                rows[i] = [rows[i][j] - factor * rows[k][j] if j > k else 0 for j in range(width)]
                if numbers is not None:
                    ratio = numbers[i][k] / numbers[k][k]
                    numbers[i] = [numbers[i][j] - ratio * numbers[k][j] if k < j < n else 0.0 for j in range(n)]
        solution: list[list[Any]] = [[0] * (width - n) for _ in range(n)]
        for i in reversed(range(n)):
            for c in range(width - n):
                acc = rows[i][n + c]
                for j in range(i + 1, n):
                    acc = acc - rows[i][j] * solution[j][c]
                solution[i][c] = acc / rows[i][i]
        return _obj(np.asarray(solution, dtype=object).reshape(rhs.shape))

    def inv(self, a: Any) -> ObjectArray:
        matrix = np.asarray(a, dtype=object)
        if self._symbolic() and self._values(matrix) is None:
            import sympy as sp

            return _obj(np.asarray(sp.Matrix(matrix.tolist()).inv().tolist(), dtype=object))
        n = len(matrix)
        identity = np.zeros((n, n), dtype=int).astype(object)
        for i in range(n):
            identity[i, i] = 1
        return self.solve(matrix, identity)


def _cofactor_det(rows: list[list[Any]]) -> Any:
    """The determinant by cofactor expansion (exact derivatives at singular matrices; small n only)."""
    n = len(rows)
    if n > 6:
        raise ValueError("xp.linalg.det: the matrix is singular at this point and too large to expand by cofactors")
    if n == 1:
        return rows[0][0]
    total: Any = 0
    for j in range(n):
        minor = [r[:j] + r[j + 1:] for r in rows[1:]]
        term = rows[0][j] * _cofactor_det(minor)
        total = total + term if j % 2 == 0 else total - term
    return total


@functools.lru_cache(maxsize=1)
def sympy_namespace() -> _ObjectNamespace:
    """The SymPy namespace: elementwise SymPy functions over object arrays of real symbols."""
    import sympy as sp
    from sympy.codegen.cfunctions import expm1, log1p, log2, log10

    def logaddexp(a: Any, b: Any) -> Any:
        return sp.log(sp.exp(a) + sp.exp(b))

    def select(cond: Any, a: Any, b: Any) -> Any:
        if cond is sp.true or cond is True:
            return a
        if cond is sp.false or cond is False:
            return b
        return sp.Piecewise((a, cond), (b, True))

    unary = {"exp": sp.exp, "expm1": expm1, "log": sp.log, "log1p": log1p, "log2": log2, "log10": log10,
             "sqrt": sp.sqrt, "square": lambda a: a**2, "abs": sp.Abs, "sign": sp.sign, "sin": sp.sin,
             "cos": sp.cos, "tan": sp.tan, "asin": sp.asin, "acos": sp.acos, "atan": sp.atan, "sinh": sp.sinh,
             "cosh": sp.cosh, "tanh": sp.tanh, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
             "floor": sp.floor, "ceil": sp.ceiling, "round": lambda a: sp.floor(a + sp.Rational(1, 2)),
             "negative": operator.neg, "erf": sp.erf, "erfc": sp.erfc, "sigmoid": lambda a: 1 / (1 + sp.exp(-a))}
    # unevaluated Max/Min: evaluating them makes SymPy prove orderings numerically (slow, no gain)
    binary = {"maximum": lambda a, b: sp.Max(a, b, evaluate=False), "minimum": lambda a, b: sp.Min(a, b, evaluate=False),
              "pow": operator.pow, "atan2": sp.atan2,
              "logaddexp": logaddexp, "add": operator.add, "subtract": operator.sub,
              "multiply": operator.mul, "divide": operator.truediv}
    return _ObjectNamespace("SymPy", unary, binary, lambda v: sp.Add(*v), lambda v: sp.Mul(*v),
                            lambda v: sp.Max(*v, evaluate=False), lambda v: sp.Min(*v, evaluate=False), select,
                            {"pi": sp.pi, "e": sp.E, "inf": sp.oo})


class _SymEngineNamespace(_ObjectNamespace):
    """The SymEngine namespace; names without a faithful SymEngine form raise UnsupportedFunction."""

    #: names SymEngine leaves undifferentiated (abs, sign, max/min, floor...), evaluates less accurately than
    #: NumPy's dedicated function (expm1, log1p), or that need exact matrix algebra (linalg)
    LACKING = ("abs", "sign", "maximum", "minimum", "floor", "ceil", "round", "clip", "max", "min", "expm1",
               "log1p", "linalg")

    def __getattr__(self, name: str) -> Any:
        if name in _SymEngineNamespace.LACKING:
            raise UnsupportedFunction(_symengine_lacks(name))
        return super().__getattr__(name)

    def clip(self, x: Any, min: Any = None, max: Any = None) -> ObjectArray:  # noqa: A002
        raise UnsupportedFunction(_symengine_lacks("clip"))

    @property
    def linalg(self) -> "_ObjectLinalg":
        raise UnsupportedFunction(_symengine_lacks("linalg"))


def _symengine_lacks(name: str) -> str:
    return f"xp.{name} has no SymEngine form that diffbench differentiates exactly like SymPy"


@functools.lru_cache(maxsize=1)
def symengine_namespace() -> _ObjectNamespace:
    """The SymEngine namespace: elementwise SymEngine functions over object arrays of symbols.

    It covers the smooth functions (SymEngine differentiates them to closed form) and ``where``
    (a Piecewise). Every other name raises :class:`UnsupportedFunction` (see
    ``_SymEngineNamespace.LACKING``): the symbolic engine then traces the case with SymPy instead.
    """
    import symengine as se
    from symengine.lib.symengine_wrapper import BooleanAtom

    def logaddexp(a: Any, b: Any) -> Any:
        return se.log(se.exp(a) + se.exp(b))

    def select(cond: Any, a: Any, b: Any) -> Any:
        if isinstance(cond, (bool, np.bool_, BooleanAtom)):
            return a if bool(cond) else b
        return se.Piecewise((a, cond), (b, True))

    unary = {"exp": se.exp, "log": se.log, "log2": lambda a: se.log(a) / se.log(2),
             "log10": lambda a: se.log(a) / se.log(10), "sqrt": se.sqrt, "square": lambda a: a**2, "sin": se.sin,
             "cos": se.cos, "tan": se.tan, "asin": se.asin, "acos": se.acos, "atan": se.atan, "sinh": se.sinh,
             "cosh": se.cosh, "tanh": se.tanh, "asinh": se.asinh, "acosh": se.acosh, "atanh": se.atanh,
             "negative": operator.neg, "erf": se.erf, "erfc": se.erfc, "sigmoid": lambda a: 1 / (1 + se.exp(-a))}
    binary = {"pow": operator.pow, "atan2": se.atan2, "logaddexp": logaddexp, "add": operator.add,
              "subtract": operator.sub, "multiply": operator.mul, "divide": operator.truediv}

    def lacking(values: list[Any]) -> Any:
        raise UnsupportedFunction(_symengine_lacks("max/min"))

    namespace = _SymEngineNamespace("SymEngine", unary, binary, lambda v: se.Add(*v), lambda v: se.Mul(*v),
                                    lacking, lacking, select, {"pi": se.pi, "e": se.E, "inf": se.oo})
    return namespace


@functools.lru_cache(maxsize=1)
def mpmath_namespace() -> _ObjectNamespace:
    """The mpmath namespace: elementwise mpmath functions over object arrays of ``mpf``.

    Precision is whatever ``mpmath.mp.dps`` is when the case is evaluated.
    """
    import mpmath as mp

    def real_only(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def apply(a: Any) -> Any:
            out = fn(a)
            # outside the real domain (log of a negative, sqrt below 0) the real function is undefined
            return out if not isinstance(out, mp.mpc) else mp.nan
        return apply

    def sign(a: Any) -> Any:
        return mp.mpf(int(a > 0) - int(a < 0))

    unary = {"exp": mp.exp, "expm1": mp.expm1, "log": real_only(mp.log), "log1p": real_only(mp.log1p),
             "log2": real_only(lambda a: mp.log(a, 2)), "log10": real_only(mp.log10),
             "sqrt": real_only(mp.sqrt), "square": lambda a: a * a, "abs": abs, "sign": sign, "sin": mp.sin,
             "cos": mp.cos, "tan": mp.tan, "asin": real_only(mp.asin), "acos": real_only(mp.acos),
             "atan": mp.atan, "sinh": mp.sinh, "cosh": mp.cosh, "tanh": mp.tanh, "asinh": mp.asinh,
             "acosh": real_only(mp.acosh), "atanh": real_only(mp.atanh), "floor": mp.floor, "ceil": mp.ceil,
             "round": lambda a: mp.floor(a + mp.mpf(0.5)), "negative": operator.neg, "erf": mp.erf,
             "erfc": mp.erfc, "sigmoid": lambda a: 1 / (1 + mp.exp(-a))}
    binary = {"maximum": lambda a, b: a if a >= b else b, "minimum": lambda a, b: a if a <= b else b,
              "pow": real_only(lambda a, b: mp.power(a, b)), "atan2": mp.atan2,
              "logaddexp": lambda a, b: mp.log(mp.exp(a) + mp.exp(b)), "add": operator.add,
              "subtract": operator.sub, "multiply": operator.mul, "divide": operator.truediv}
    namespace = _ObjectNamespace("mpmath", unary, binary, lambda v: mp.fsum(v), lambda v: mp.fprod(v), max, min,
                                 lambda c, a, b: a if c else b, {"pi": mp.pi, "e": mp.e, "inf": mp.inf})
    # numbers can be compared, so the index of the largest element is well defined here
    namespace.argmax = lambda x, axis=None: np.argmax(np.asarray(x, dtype=object), axis=axis)  # type: ignore[method-assign]
    namespace.argmin = lambda x, axis=None: np.argmin(np.asarray(x, dtype=object), axis=axis)  # type: ignore[method-assign]
    return namespace


# --------------------------------------------------------------------------- numpy
class _NumpyNamespace(_Namespace):
    """NumPy under array-API names; safe for complex-step differentiation.

    With complex inputs ``x + ih`` the complex step needs every function to be the
    analytic continuation of its real version: ``abs`` and ``sign`` follow the sign of
    the real part, and comparisons and ``maximum``/``minimum`` compare real parts.
    """

    label = "NumPy"

    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = np.dtype(dtype)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        array = np.asarray(x)
        if dtype is None and array.dtype.kind in "fiu":
            return array.astype(self.dtype)
        return array if dtype is None else array.astype(dtype)

    def zeros(self, shape: Any, dtype: Any = None) -> Any:
        return np.zeros(shape, dtype=dtype or self.dtype)

    def ones(self, shape: Any, dtype: Any = None) -> Any:
        return np.ones(shape, dtype=dtype or self.dtype)

    _aliases = ARRAY_API_ALIASES
    pi, e, inf = math.pi, math.e, math.inf

    def __getattr__(self, name: str) -> Any:
        if name in FUNCTIONS or name in ("float32", "float64"):
            return getattr(np, self._aliases.get(name, name))
        return super().__getattr__(name)

    @staticmethod
    def abs(x: Any) -> Any:
        x = np.asarray(x)
        return np.where(x.real < 0, -x, x) if np.iscomplexobj(x) else np.abs(x)

    @staticmethod
    def sign(x: Any) -> Any:
        return np.sign(np.real(x))

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        if np.iscomplexobj(a) or np.iscomplexobj(b):
            return np.where(np.real(a) >= np.real(b), a, b)
        return np.maximum(a, b)

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        if np.iscomplexobj(a) or np.iscomplexobj(b):
            return np.where(np.real(a) <= np.real(b), a, b)
        return np.minimum(a, b)

    def clip(self, x: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002
        out = x
        if min is not None:
            out = self.maximum(out, min)
        if max is not None:
            out = self.minimum(out, max)
        return out

    @staticmethod
    def vecdot(a: Any, b: Any, axis: int = -1) -> Any:
        return np.sum(a * b, axis=axis)

    @staticmethod
    def logaddexp(a: Any, b: Any) -> Any:
        if np.iscomplexobj(a) or np.iscomplexobj(b):
            big = np.where(np.real(a) >= np.real(b), a, b)
            return big + np.log(np.exp(a - big) + np.exp(b - big))
        return np.logaddexp(a, b)

    @staticmethod
    def erf(x: Any) -> Any:
        return _real_only(math.erf, "erf")(x)

    @staticmethod
    def erfc(x: Any) -> Any:
        return _real_only(math.erfc, "erfc")(x)

    @staticmethod
    def sigmoid(x: Any) -> Any:
        x = np.asarray(x)
        if np.iscomplexobj(x):
            return 1 / (1 + np.exp(-x))
        # exp of a negative argument only: no overflow on either side
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def cumulative_sum(x: Any, axis: int | None = None) -> Any:
        x = np.asarray(x)
        return np.cumsum(x, axis=0 if axis is None and x.ndim == 1 else axis)

    @staticmethod
    def cumulative_prod(x: Any, axis: int | None = None) -> Any:
        x = np.asarray(x)
        return np.cumprod(x, axis=0 if axis is None and x.ndim == 1 else axis)

    cumsum = cumulative_sum
    cumprod = cumulative_prod

    @staticmethod
    def einsum(subscripts: str, *operands: Any) -> Any:
        return np.einsum(subscripts, *operands)

    def logsumexp(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = np.asarray(x)
        big = self.max(x, axis=axis, keepdims=True)
        out = big + np.log(np.sum(np.exp(x - big), axis=axis, keepdims=True))
        return out if keepdims else (np.squeeze(out, axis=axis) if axis is not None else out.reshape(()))

    def softmax(self, x: Any, axis: int = -1) -> Any:
        return np.exp(np.asarray(x) - self.logsumexp(x, axis=axis, keepdims=True))

    class _Linalg:
        """``xp.linalg``: NumPy's, with the 2-norm as the only norm."""

        @staticmethod
        def norm(x: Any, axis: Any = None, keepdims: bool = False, ord: Any = None) -> Any:  # noqa: A002
            x = np.asarray(x)
            # sqrt(Σ x²) rather than np.linalg.norm, which takes |x| and so drops a complex step's imaginary part
            return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))

        det = staticmethod(np.linalg.det)
        solve = staticmethod(lambda a, b: np.linalg.solve(a, b))
        inv = staticmethod(np.linalg.inv)

    linalg = _Linalg()

    @staticmethod
    def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        if np.iscomplexobj(x):
            index = np.argmax(np.real(x), axis=axis, keepdims=True) if axis is not None else np.argmax(np.real(x))
            return (np.take_along_axis(x, index, axis) if axis is not None else np.ravel(x)[index]) \
                if keepdims or axis is None else np.squeeze(np.take_along_axis(x, index, axis), axis)
        return np.max(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        if np.iscomplexobj(x):
            return -_NumpyNamespace.max(-x, axis=axis, keepdims=keepdims)
        return np.min(x, axis=axis, keepdims=keepdims)


def _real_only(fn: Callable[[float], float], name: str) -> Callable[[Any], Any]:
    """A real function of Python's math module applied elementwise in the array's dtype (NumPy has no
    erf); complex arguments (the complex step) are refused, so that variant is skipped."""
    def apply(x: Any) -> Any:
        array = np.asarray(x)
        if np.iscomplexobj(array):
            raise TypeError(f"{name} of a complex argument is not available in NumPy")
        return np.vectorize(fn, otypes=[array.dtype if array.dtype.kind == "f" else float])(array)
    return apply


@functools.lru_cache(maxsize=None)
def numpy_namespace(dtype: str = "float64") -> _NumpyNamespace:
    """NumPy under the array-API names; ``asarray``/``zeros``/``ones`` make ``dtype`` arrays."""
    return _NumpyNamespace(dtype)


class ComplexSafeArray(np.ndarray):
    """A complex array whose comparisons look at real parts (for the complex step)."""

    def __lt__(self, other):  # type: ignore[override]
        return np.real(np.asarray(self)) < np.real(other)

    def __le__(self, other):  # type: ignore[override]
        return np.real(np.asarray(self)) <= np.real(other)

    def __gt__(self, other):  # type: ignore[override]
        return np.real(np.asarray(self)) > np.real(other)

    def __ge__(self, other):  # type: ignore[override]
        return np.real(np.asarray(self)) >= np.real(other)


# --------------------------------------------------------------------------- other array libraries
class _ArrayApiNamespace(_Namespace):
    """An array-API library (jax.numpy, array_api_compat.torch) under diffbench's names."""

    _aliases = ARRAY_API_ALIASES

    def __init__(self, module: Any, label: str, dtype: Any, extras: dict[str, Any] | None = None) -> None:
        self._module, self.label, self._dtype = module, label, dtype
        self.pi, self.e, self.inf = math.pi, math.e, math.inf
        self._extras = extras or {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._extras:
            found = self._extras[name]
            return self._arrays_in(found) if name in UNARY else found
        if name in FUNCTIONS or name in ("float32", "float64"):
            found = getattr(self._module, name, None)
            if found is None and name in self._aliases:
                found = getattr(self._module, self._aliases[name], None)
            if found is not None:
                if name in UNARY or name in BINARY:
                    return self._arrays_in(found)
                return found
        return super().__getattr__(name)

    def _arrays_in(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # the array API takes arrays: a Python number (xp.sqrt(2.0)) becomes one in the run's dtype
        def call(*args: Any, **kw: Any) -> Any:
            return fn(*[a if hasattr(a, "dtype") else self.asarray(a) for a in args], **kw)

        return call

    def asarray(self, x: Any, dtype: Any = None, **kw: Any) -> Any:
        if dtype is None and not hasattr(x, "dtype") and np.asarray(x).dtype.kind in "fiu":
            dtype = self._dtype  # plain numbers and lists take the run's dtype
        elif dtype is None and isinstance(x, np.ndarray) and x.dtype.kind == "f":
            dtype = self._dtype
        return self._module.asarray(x, dtype=dtype, **kw)

    def zeros(self, shape: Any, dtype: Any = None, **kw: Any) -> Any:
        return self._module.zeros(shape, dtype=dtype or self._dtype, **kw)

    def ones(self, shape: Any, dtype: Any = None, **kw: Any) -> Any:
        return self._module.ones(shape, dtype=dtype or self._dtype, **kw)

    def vecdot(self, a: Any, b: Any, axis: int = -1) -> Any:
        return self._module.sum(a * b, axis=axis)

    def clip(self, x: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002
        out = x
        if min is not None:
            out = self._module.maximum(out, self.asarray(min))
        if max is not None:
            out = self._module.minimum(out, self.asarray(max))
        return out

    def logaddexp(self, a: Any, b: Any) -> Any:
        a, b = (v if hasattr(v, "dtype") else self.asarray(v) for v in (a, b))
        return self._module.logaddexp(a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        a, b = (v if hasattr(v, "dtype") else self.asarray(v) for v in (a, b))
        return self._module.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        a, b = (v if hasattr(v, "dtype") else self.asarray(v) for v in (a, b))
        return self._module.minimum(a, b)


class _Functions:
    """A plain attribute bag (``xp.linalg``) whose missing names fail with diffbench's message."""

    def __init__(self, prefix: str, **functions: Any) -> None:
        self._prefix = prefix
        self.__dict__.update(functions)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise UnsupportedFunction(unsupported_message(f"{self._prefix}.{name}"))


def _two_norm(sqrt: Callable[[Any], Any], total: Callable[..., Any]) -> Callable[..., Any]:
    def norm(x: Any, axis: Any = None, keepdims: bool = False, ord: Any = None) -> Any:  # noqa: A002
        if ord not in (None, 2, "fro"):
            raise UnsupportedFunction(f"xp.linalg.norm(ord={ord!r}): diffbench offers the 2-norm (Frobenius for "
                                      "matrices); write other norms with xp.sum and xp.abs")
        return sqrt(total(x * x, axis=axis, keepdims=keepdims))
    return norm


def _jax_extras() -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import jax.scipy.special as special

    return {"erf": special.erf, "erfc": special.erfc, "sigmoid": jax.nn.sigmoid,
            "cumulative_sum": lambda x, axis=None: jnp.cumsum(x, axis=0 if axis is None else axis),
            "cumulative_prod": lambda x, axis=None: jnp.cumprod(x, axis=0 if axis is None else axis),
            "cumsum": jnp.cumsum, "cumprod": jnp.cumprod, "einsum": jnp.einsum,
            "logsumexp": lambda x, axis=None, keepdims=False: special.logsumexp(x, axis=axis, keepdims=keepdims),
            "softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
            "linalg": _Functions("linalg", norm=_two_norm(jnp.sqrt, jnp.sum), det=jnp.linalg.det,
                                 solve=jnp.linalg.solve, inv=jnp.linalg.inv)}


def _torch_extras() -> dict[str, Any]:
    import torch

    def total(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return torch.sum(x, dim=axis, keepdim=keepdims) if axis is not None else torch.sum(x)

    def solve(a: Any, b: Any) -> Any:
        return torch.linalg.solve(a, b)

    return {"erf": torch.special.erf, "erfc": torch.special.erfc, "sigmoid": torch.sigmoid,
            "cumulative_sum": lambda x, axis=None: torch.cumsum(x, dim=0 if axis is None else axis),
            "cumulative_prod": lambda x, axis=None: torch.cumprod(x, dim=0 if axis is None else axis),
            "cumsum": lambda x, axis=0: torch.cumsum(x, dim=axis),
            "cumprod": lambda x, axis=0: torch.cumprod(x, dim=axis), "einsum": torch.einsum,
            "logsumexp": lambda x, axis=None, keepdims=False: (
                torch.logsumexp(x, dim=axis, keepdim=keepdims) if axis is not None
                else torch.logsumexp(x.reshape(-1), dim=0)),
            "softmax": lambda x, axis=-1: torch.softmax(x, dim=axis),
            "linalg": _Functions("linalg", norm=_two_norm(torch.sqrt, total), det=torch.linalg.det, solve=solve,
                                 inv=torch.linalg.inv)}


def array_api_namespace(module: Any, label: str, dtype: Any) -> _ArrayApiNamespace:
    """Wrap an array-API module (``jax.numpy``, ``array_api_compat.torch``) as a diffbench namespace."""
    name = getattr(module, "__name__", "")
    extras = _jax_extras() if name.startswith("jax") else _torch_extras() if "torch" in name else {}
    return _ArrayApiNamespace(module, label, dtype, extras)


# --------------------------------------------------------------------------- TensorFlow
@functools.lru_cache(maxsize=None)
def tensorflow_namespace(dtype: str = "float64") -> _ArrayApiNamespace:
    """``tensorflow.experimental.numpy`` with NumPy behaviour enabled (imports TensorFlow);
    ``asarray``/``zeros``/``ones`` make ``dtype`` tensors."""
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    tnp.experimental_enable_numpy_behavior(prefer_float32=False)

    def axis_or_first(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda x, axis=None: fn(x, axis=0 if axis is None else axis)

    def solve(a: Any, b: Any) -> Any:
        b = tf.convert_to_tensor(b)
        out = tf.linalg.solve(a, b[:, None] if b.shape.rank == 1 else b)
        return out[:, 0] if b.shape.rank == 1 else out

    def total(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    extras = {"erf": tf.math.erf, "erfc": tf.math.erfc, "sigmoid": tf.math.sigmoid,
              "cumulative_sum": axis_or_first(tnp.cumsum), "cumulative_prod": axis_or_first(tnp.cumprod),
              "cumsum": tnp.cumsum, "cumprod": tnp.cumprod, "einsum": tf.einsum,
              "logsumexp": lambda x, axis=None, keepdims=False: tf.reduce_logsumexp(x, axis=axis, keepdims=keepdims),
              "softmax": lambda x, axis=-1: tf.nn.softmax(x, axis=axis),
              "linalg": _Functions("linalg", norm=_two_norm(tf.sqrt, total), det=tf.linalg.det, solve=solve,
                                   inv=tf.linalg.inv)}
    return _ArrayApiNamespace(tnp, "TensorFlow (tensorflow.experimental.numpy)", dtype, extras)
