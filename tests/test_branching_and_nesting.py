"""Cases that branch on values (``if``/``while`` on a traced value) and cases with ``xp.grad`` inside.

Truths are derived by hand in the comments next to them; none is diffbench's own output.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import sympy as sp

from diffbench import case, gradient
from diffbench.branching import deciding_at, jit_branch_skip
from diffbench.harness import make_config, measure_case
from diffbench.results import Cause

# --------------------------------------------------------------------------- value branches


@case(inputs={"a": 2.0})
def newton_sqrt(a, xp):
    """√a by Newton's iteration, run until its step is below 1e-12: the loop's length depends on a's value."""
    x = a
    step = 1.0
    while abs(step) > 1e-12:
        step = (x * x - a) / (2 * x)
        x = x - step
    return x


# d√a/da = 1/(2√a). The program's result is Newton's last iterate x_K, not √a itself, but its error is below
# the last step's square (quadratic convergence: |x_K − √a| ≈ step²/(2√a) < 1e-24), and its derivative in a
# converges as fast, so x_K' equals 1/(2√a) far below float64's resolution.
NEWTON_TRUTH = 1 / (2 * math.sqrt(2.0))


@case(inputs={"x": [0.7, -0.3, 1.9]})
def piecewise_sum(x, xp):
    """Σ sin(v)·v for v > 0, v³ otherwise, chosen per element by a Python ``if``."""
    total = 0.0
    for v in x:
        if v > 0:
            total = total + xp.sin(v) * v
        else:
            total = total + v ** 3
    return total


def piecewise_truth(x):
    # d/dv (sin v · v) = cos v · v + sin v for v > 0; d/dv v³ = 3v² for v ≤ 0
    return np.array([math.cos(v) * v + math.sin(v) if v > 0 else 3 * v * v for v in x])


@case(inputs={"x": 0.0})
def kink_at_guard(x, xp):
    """2x for x > 0, −x otherwise: at x = 0 the guard sits at its switch, and the slopes are 2 and −1 (a kink)."""
    if x > 0:
        return 2 * x
    return -x


def rows(one, methods, variants, dtypes=("float64",)):
    config = make_config(list(methods), list(dtypes), variants, order2=False, timing=False, devices=("CPU",),
                         sweep=False)
    out = []
    measure_case(one, config, out.append)
    return {(r["method"], r["variant"], r["dtype"]): r for r in out}


def test_newton_while_loop_symbolic_rows_ok():
    assert gradient(newton_sqrt, "symbolic")["a"] == pytest.approx(NEWTON_TRUTH, rel=1e-14)
    assert gradient(newton_sqrt, "symbolic/symengine")["a"] == pytest.approx(NEWTON_TRUTH, rel=1e-14)
    found = rows(newton_sqrt, ["symbolic"], {"symbolic": ["numpy", "symengine"]})
    for variant in ("numpy", "symengine"):
        row = found[("symbolic", variant, "float64")]
        assert row["status"] == "ok", row["diagnosis"]
        # the guards are named by the case's own line, with how often each way was taken (2 → 1.5 → 1.4167 →
        # 1.41422 → 1.414213562 → √2: five steps above 1e-12, then one below)
        assert "while abs(step) > 1e-12:" in row["diagnosis"]
        assert "true ×5, false ×1" in row["diagnosis"]
    # SymEngine's relations have no truth value; its row says that it used the SymPy trace instead
    assert "SymPy" in found[("symbolic", "symengine", "float64")]["diagnosis"]


def test_newton_while_loop_on_the_tape():
    # eager TensorFlow follows Python's loop; tf.function's autograph cannot convert a loop whose condition starts
    # as a Python number (step = 1.0) and becomes a tensor: that variant is skipped with the reason, not an error
    found = rows(newton_sqrt, ["tape"], {"tape": ["eager", "function"]})
    assert found[("tape", "eager", "float64")]["status"] == "ok"
    traced = found[("tape", "function", "float64")]
    assert traced["status"] == "skipped" and traced["cause"] == Cause.NOT_APPLICABLE
    assert "autograph" in traced["diagnosis"] and "eager" in traced["diagnosis"]


@case(inputs={"x": [0.5, 0.7]})
def growing_sum(x, xp):
    # s = 1.2, 1.8, 2.7 < 3 (three steps), then 4.05: f = 1.2² + 1.8² + 2.7² = 1.2²·(1 + 1.5² + 1.5⁴)
    total = 0  # a Python int that becomes a float tensor: autograph's tf.while_loop cannot carry it
    s = xp.sum(x)
    while s < 3.0:
        total = total + s * s
        s = s * 1.5
    return total


@case(inputs={"x": [0.5, 0.7]})
def own_mistake(x, xp):
    s = xp.sum(x)
    while s < 3.0:
        s = s * 1.5
    return s + int("not a number")


def test_a_loop_variable_changing_dtype_is_a_skip_of_the_traced_variants_not_an_error():
    # ∂f/∂xᵢ = 2·1.2·(1 + 1.5² + 1.5⁴) = 2.4·(1 + 2.25 + 5.0625) = 19.95 for both inputs (f depends on Σx)
    found = rows(growing_sum, ["tape"], {"tape": ["eager", "function", "xla", "forward"]})
    eager = found[("tape", "eager", "float64")]
    assert eager["status"] == "ok", eager["diagnosis"]
    np.testing.assert_allclose(gradient(growing_sum, "tape")["x"], [19.95, 19.95], rtol=1e-13)
    for variant in ("function", "xla", "forward"):
        row = found[("tape", variant, "float64")]
        assert row["status"] == "skipped" and row["cause"] == Cause.NOT_APPLICABLE, row["diagnosis"]
        assert "'total' has dtype int32 before the loop" in row["diagnosis"]
    # a mistake of the case's own fails eager too: an error in every variant, never a skip
    found = rows(own_mistake, ["tape"], {"tape": ["eager", "function"]})
    assert {r["status"] for r in found.values()} == {"error"}


def test_if_on_each_element_symbolic_ok():
    truth = piecewise_truth([0.7, -0.3, 1.9])
    np.testing.assert_allclose(gradient(piecewise_sum, "symbolic")["x"], truth, rtol=1e-14)
    found = rows(piecewise_sum, ["symbolic", "tape"], {"symbolic": ["numpy"], "tape": ["eager"]})
    assert found[("symbolic", "numpy", "float64")]["status"] == "ok"
    assert found[("tape", "eager", "float64")]["status"] == "ok"


def test_guard_at_its_switch_is_undefined_naming_the_guard():
    found = rows(kink_at_guard, ["symbolic"], {"symbolic": ["numpy"]})
    row = found[("symbolic", "numpy", "float64")]
    assert row["status"] == "undefined"
    assert row["cause"] == Cause.NO_DERIVATIVE
    assert "if x > 0:" in row["diagnosis"] and "sits exactly at its switch" in row["diagnosis"]


@case(inputs={"x": 0.1 + 1e-12})
def guard_between_roundings(x, xp):
    """A guard that is false at the point, 0.1 + 1e-12, and true at the point's float32 rounding,
    0.100000001490116…"""
    if x > 0.10000000149:
        return 3 * x
    return x * x


def test_guard_decided_otherwise_at_the_float32_point_is_skipped():
    # float64 point 0.1 + 1e-12 < 0.10000000149: the guard is false there (formula x², derivative 2x); the float32
    # rounding of the point is 0.100000001490116… > 0.10000000149: true there (formula 3x). The float32 row must
    # not evaluate x²'s derivative at that point.
    assert float(np.float32(0.1 + 1e-12)) > 0.10000000149 > 0.1 + 1e-12
    found = rows(guard_between_roundings, ["symbolic"], {"symbolic": ["numpy"]}, dtypes=("float64", "float32"))
    assert found[("symbolic", "numpy", "float64")]["status"] == "ok"
    row = found[("symbolic", "numpy", "float32")]
    assert row["status"] == "skipped" and "float32 rounding of the point" in row["diagnosis"]


def test_guards_decided_by_value_and_sympy_unchanged_outside():
    x = sp.Symbol("x", real=True)
    with deciding_at({x: sp.Rational(1, 3)}) as guards:
        assert bool(x > 0) is True
        assert bool(x ** 2 > sp.Rational(1, 9)) is False  # (1/3)² = 1/9 exactly: a tie, decided false
    assert [g.taken for g in guards] == [True, False]
    assert [g.tie for g in guards] == [False, True]
    assert "test_branching_and_nesting.py" in guards[0].where
    with pytest.raises(TypeError):
        bool(x > 0)  # SymPy's own behaviour where no point is given


# --------------------------------------------------------------------------- xp.grad inside a case
X = [0.3, -1.2, 0.8, 2.0]


def chain(y, xp):
    """g(y) = Σᵢ sin(yᵢ)·yᵢ₊₁."""
    return xp.sum(xp.sin(y[:-1]) * y[1:])


@case(inputs={"x": X})
def gradient_norm(x, xp):
    """F(x) = ‖∇g(x)‖² with g = Σ sin(xᵢ)xᵢ₊₁, the inner gradient by xp.grad."""
    d = xp.grad(chain)(x)
    return xp.sum(d * d)


def gradient_norm_truth(x):
    # ∂g/∂x_j = cos(x_j)·x_{j+1} (j < n−1) + sin(x_{j−1}) (j > 0) =: d_j. F = Σ d_j², so ∇F = 2·H·d with H
    # g's Hessian: H_jj = −sin(x_j)·x_{j+1} (j < n−1), H_{j,j+1} = H_{j+1,j} = cos(x_j), all else 0.
    x = np.asarray(x)
    n = len(x)
    d = np.zeros(n)
    d[:-1] += np.cos(x[:-1]) * x[1:]
    d[1:] += np.sin(x[:-1])
    hessian = np.zeros((n, n))
    for j in range(n - 1):
        hessian[j, j] -= math.sin(x[j]) * x[j + 1]
        hessian[j, j + 1] = hessian[j + 1, j] = math.cos(x[j])
    return 2 * hessian @ d


def saddle_value(x, y, xp):
    """h(x, y) = Σ xᵢyᵢ − ½Σ yᵢ²."""
    return xp.sum(x * y) - 0.5 * xp.sum(y * y)


@case(inputs={"x": [1.5, -0.5, 2.0]})
def one_ascent_step(x, xp):
    """Min-max style: one gradient-ascent step in y from 0, then h at (x, y₁)."""
    y0 = xp.zeros_like(x)
    y1 = y0 + 0.5 * xp.grad(saddle_value, argnums=1)(x, y0)
    return saddle_value(x, y1, xp)


def one_ascent_step_truth(x):
    # ∇_y h = x − y, so from y₀ = 0 with step η = ½: y₁ = x/2. F(x) = h(x, x/2) = ½Σx² − ⅛Σx² = ⅜Σx²,
    # ∇F = ¾x (y₁ depends on x, and F through it).
    return 0.75 * np.asarray(x)


@pytest.mark.parametrize("one, truth", [(gradient_norm, gradient_norm_truth(X)),
                                        (one_ascent_step, one_ascent_step_truth([1.5, -0.5, 2.0]))],
                         ids=["gradient_norm", "one_ascent_step"])
def test_xp_grad_inside_a_case_every_engine(one, truth):
    name = next(iter(one.inputs))
    for method in ("reference", "symbolic", "symbolic/symengine", "tape", "finite/richardson"):
        np.testing.assert_allclose(gradient(one, method)[name], truth, rtol=1e-9 if "finite" in method else 1e-14,
                                   err_msg=method)
    found = rows(one, ["symbolic", "tape", "finite"],
                 {"symbolic": ["numpy", "symengine"], "tape": ["eager", "function", "forward"],
                  "finite": ["central", "complex_step"]})
    for key in [("symbolic", "numpy"), ("symbolic", "symengine"), ("tape", "eager"), ("tape", "function"),
                ("tape", "forward"), ("finite", "central")]:
        row = found[(*key, "float64")]
        assert row["status"] == "ok", (key, row["diagnosis"])
        assert row["reference"].startswith("arb-")  # the reference is certified by balls, through the inner grad
    # a complex step of a function whose inner gradient is itself a complex step: skipped, with the reason
    skipped = found[("finite", "complex_step", "float64")]
    assert skipped["status"] == "skipped" and "complex step" in skipped["diagnosis"]


@case(inputs={"x": [0.5, -1.5]})
def closure_over_x(x, xp):
    """xp.grad of a function that reads x from the enclosing scope as well as through its argument."""
    def inner(y, xp):
        return xp.sum(x * y * y)
    return xp.sum(xp.grad(inner)(x))


def test_xp_grad_closing_over_a_traced_value():
    # ∂inner/∂y = 2xy, at y = x: F = Σ 2xᵢ², ∇F = 4x (the symbolic method and the tapes follow the closure too)
    np.testing.assert_allclose(gradient(closure_over_x, "symbolic")["x"], [2.0, -6.0], rtol=1e-15)
    np.testing.assert_allclose(gradient(closure_over_x, "tape")["x"], [2.0, -6.0], rtol=1e-15)
    # the reference cannot follow a value its symbolic inner trace does not see: no truth, said as such
    row = rows(closure_over_x, ["symbolic"], {"symbolic": ["numpy"]})[("symbolic", "numpy", "float64")]
    assert row["status"] == "skipped" and row["cause"] == Cause.NO_REFERENCE
    assert "enclosing scope" in row["diagnosis"] and "argnums" in row["diagnosis"]


def potential(x, w, xp):
    """p(x; w) = 1/‖x − (10, 10 − w)‖ + 1/‖x − (10, 0)‖ (gradbench's particle field)."""
    first = (x[0] - 10.0) ** 2 + (x[1] - (10.0 - w[0])) ** 2
    second = (x[0] - 10.0) ** 2 + x[1] ** 2
    return 1 / xp.sqrt(first) + 1 / xp.sqrt(second)


@case(inputs={"w": [0.0]})
def particle_four_steps(w, xp):
    """Four Euler steps of dt = 0.5 from (0, 8) at velocity (0.75, 0) under the acceleration −∇ₓp, taken with
    xp.grad at every step; the function is the final x-coordinate squared."""
    x = xp.asarray([0.0, 8.0])
    v = xp.asarray([0.75, 0.0])
    for _ in range(4):
        acceleration = -xp.grad(potential)(x, w)
        x, v = x + 0.5 * v, v + 0.5 * acceleration
    return x[0] * x[0]


def particle_truth() -> float:
    # an independent truth: the same four steps in plain mpmath, with the field's gradient derived by hand,
    # −∇ₓ 1/‖x − c‖ = (x − c)/‖x − c‖³, and the derivative in w by a central difference at 60 digits with
    # h = 1e-25 (its error is h²·f''' ≈ 1e-50, its rounding 1e-60/h = 1e-35)
    import mpmath

    def final(w):
        x, v = [mpmath.mpf(0), mpmath.mpf(8)], [mpmath.mpf("0.75"), mpmath.mpf(0)]
        for _ in range(4):
            a = [mpmath.mpf(0), mpmath.mpf(0)]
            for c in ((10, 10 - w), (10, 0)):
                d = [x[0] - c[0], x[1] - c[1]]
                r3 = mpmath.sqrt(d[0] ** 2 + d[1] ** 2) ** 3
                a = [a[0] + d[0] / r3, a[1] + d[1] / r3]
            x, v = [x[0] + v[0] / 2, x[1] + v[1] / 2], [v[0] + a[0] / 2, v[1] + a[1] / 2]
        return x[0] ** 2

    with mpmath.workdps(60):
        h = mpmath.mpf("1e-25")
        return float((final(h) - final(-h)) / (2 * h))


def test_xp_grad_at_every_step_of_a_particle():
    truth = particle_truth()
    for method in ("reference", "symbolic", "symbolic/symengine", "tape"):
        assert gradient(particle_four_steps, method)["w"][0] == pytest.approx(truth, rel=1e-13), method
    found = rows(particle_four_steps, ["symbolic", "tape"], {"symbolic": ["numpy"], "tape": ["eager"]})
    assert found[("symbolic", "numpy", "float64")]["status"] == "ok"
    assert found[("tape", "eager", "float64")]["status"] == "ok"


def test_xp_grad_argnums_tuple_and_namespaces():
    from diffbench.namespaces import numpy_namespace, sympy_namespace

    def product(a, b, xp):
        return xp.sum(a * b * b)

    # ∂/∂a Σ a·b² = b², ∂/∂b = 2ab
    a, b = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    da, db = numpy_namespace().grad(product, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(da, b * b, rtol=1e-15)
    np.testing.assert_allclose(db, 2 * a * b, rtol=1e-15)
    s, t = sp.symbols("s t", real=True)
    ns = sympy_namespace()
    ds, = ns.grad(product, argnums=(0,))(ns.asarray([s]), ns.asarray([t]))
    assert sp.simplify(ds[0] - t ** 2) == 0
    with pytest.raises(ValueError, match="argnums"):
        numpy_namespace().grad(product, argnums=2)(a, b)


# --------------------------------------------------------------------------- jax.jit and value branches
class FakeConcretization(Exception):
    """Stands in for jax.errors.ConcretizationTypeError (JAX is not needed for this test)."""


class FakeTracerBool(FakeConcretization):
    """Stands in for jax.errors.TracerBoolConversionError, its subclass."""


# a tracer's __bool__ as JAX defines it, in a file whose path is a library's (frames there are JAX's, not the case's)
_TRACER_SOURCE = "class Tracer:\n    def __gt__(self, other):\n        return self\n" \
                 "    def __bool__(self):\n        raise ERROR('Attempted boolean conversion of traced array')\n"
_tracer_module: dict = {"ERROR": FakeTracerBool}
exec(compile(_TRACER_SOURCE, "/opt/site-packages/jax/_src/core.py", "exec"), _tracer_module)


def branchy_case(x):
    if x > 0:
        return x
    return -x


def test_jit_branch_skip_names_the_line():
    with pytest.raises(FakeTracerBool) as info:
        branchy_case(_tracer_module["Tracer"]())
    text = jit_branch_skip(info.value, (FakeConcretization,), "jit")
    assert text is not None
    assert "test_branching_and_nesting.py" in text and "`if x > 0:`" in text
    assert "eager" in text and "xp.where" in text
    assert jit_branch_skip(ValueError("other"), (FakeConcretization,), "jit") is None


def test_jax_engine_maps_concretization_errors_to_skip():
    from diffbench.engines import Skip
    from diffbench.engines.jax_engine import _branches_skip, concretization_errors

    fake_jax = types.SimpleNamespace(errors=types.SimpleNamespace(ConcretizationTypeError=FakeConcretization,
                                                                  TracerBoolConversionError=FakeTracerBool))
    assert set(concretization_errors(fake_jax)) == {FakeConcretization, FakeTracerBool}
    with pytest.raises(Skip, match="data-dependent branch"):
        with _branches_skip(fake_jax, "jit"):
            branchy_case(_tracer_module["Tracer"]())
    with pytest.raises(ZeroDivisionError):
        with _branches_skip(fake_jax, "jit"):
            1 / 0


# --------------------------------------------------------------------------- the trace's own time limit
def test_trace_limit_applies_inside_a_longer_outer_budget(monkeypatch):
    """Inside the in-process API's per-measurement budget (an outer timer of 120 s here), a SymPy trace is still
    stopped at MAX_TRACE_S, as a skip, and the outer timer is armed again afterwards with what is left of it."""
    import signal
    import time

    from diffbench.engines import symbolic
    from diffbench.errors import OverBudget
    from diffbench.harness import budget

    monkeypatch.setattr(symbolic, "MAX_TRACE_S", 1.0)

    @case(inputs={"x": 0.3})
    def slow_to_trace(x, xp):
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.01)
        return x

    start = time.perf_counter()
    with budget(120.0):
        with pytest.raises(OverBudget, match="MAX_TRACE_S"):
            symbolic.trace(slow_to_trace)
        left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert time.perf_counter() - start < 30  # stopped about 1 s in, not after the loop's 60 s
    assert 60 < left < 120  # the outer budget runs on, less the time the trace took
