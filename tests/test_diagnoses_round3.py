"""Diagnoses state only what the certified reference shows; finite differences and symbolic formulas survive
singular stencils and pivots; budgets go by predicted cost; a diagnosis costs a few reference gradients.

Every truth here is derived by hand in the comment next to it.
"""

import math

import numpy as np
import pytest

from diffbench import case
from diffbench.harness import make_config, measure_case, measure_one
from diffbench.results import Cause


def _rows(one, methods, variants, dtype="float64", order2=False):
    config = make_config(list(methods), [dtype], variants, order2=order2, timeout=300, timing=False,
                         devices=("CPU",), sweep=False)
    out = []
    measure_case(one, config, out.append)
    return out


# --------------------------------------------------------------------------- wrong advice: a None Hessian
def _cube_with_cut_backward():
    @case(inputs={"x": [1.5, -0.5]})
    def cube_sum_cut(x, xp):
        return xp.sum(x ** 3)

    @cube_sum_cut.tensorflow
    def _(x):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a):
            return tf.reduce_sum(a ** 3), lambda dy: dy * 3.0 * tf.stop_gradient(a) ** 2

        return f(x)

    return cube_sum_cut


def test_none_hessian_states_the_certified_second_derivatives_not_zero():
    pytest.importorskip("tensorflow")
    # f = Σ x³: ∂²f/∂xᵢ∂xⱼ = 6xᵢ·δᵢⱼ, so at (1.5, −0.5) the Hessian is diag(9, −3). The backward pass
    # 3·stop_gradient(x)² cuts the second-order path, so the tape returns None; zero would be wrong advice.
    rows = _rows(_cube_with_cut_backward(), ["tape"], {"tape": ["eager"]}, order2=True)
    second = next(r for r in rows if r["order"] == 2)
    assert second["status"] == "none"
    text = second["diagnosis"]
    assert "diag(9, -3)" in text and "not 0" in text and "stop_gradient" in text
    assert "true second derivative is 0" not in text


def test_none_hessian_says_zero_where_the_reference_shows_zero():
    pytest.importorskip("tensorflow")

    # f = Σ x·c with a backward pass dy·c that cuts nothing that matters: f is linear, so its Hessian is 0
    # and UnconnectedGradients.ZERO is then the right advice.
    @case(inputs={"x": [1.5, -0.5]})
    def linear_cut(x, xp):
        return xp.sum(2.0 * x)

    @linear_cut.tensorflow
    def _(x):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a):
            return tf.reduce_sum(2.0 * a), lambda dy: dy * 2.0 * tf.ones_like(tf.stop_gradient(a))

        return f(x)

    second = next(r for r in _rows(linear_cut, ["tape"], {"tape": ["eager"]}, order2=True) if r["order"] == 2)
    assert second["status"] == "none"
    assert "are 0 here" in second["diagnosis"] and "UnconnectedGradients.ZERO" in second["diagnosis"]


def test_assert_gradients_none_does_not_advise_zero_when_the_truth_is_not_zero():
    tf = pytest.importorskip("tensorflow")
    from diffbench import assert_gradients

    # f(x, y) = x² + y where the y path is cut by stop_gradient: the true ∂f/∂y is 1, not 0.
    def cut(x, y):
        return tf.reduce_sum(x ** 2) + tf.stop_gradient(y)

    with pytest.raises(AssertionError) as raised:
        assert_gradients(cut, {"x": np.array([1.0]), "y": np.array(2.0)})
    assert "not 0" in str(raised.value) and "y = 1" in str(raised.value)


# --------------------------------------------------------------------------- underflow in the diagnosis itself
def _erfc_at(x0):
    @case(inputs={"x": x0}, name=f"erfc_at_{x0:g}")
    def erfc_far(x, xp):
        return xp.erfc(x)

    return erfc_far


def test_truncation_text_quotes_the_exact_error_even_for_tiny_gradients():
    import re

    # erfc'(x) = −2/√π·e^(−x²) ≈ −4e-295 at x = 26: its square underflows, so a plain 2-norm of it is 0.
    # Central differences err by f‴h²/(6f′) = (4x² − 2)h²/6 relative (f‴ = f′·(4x² − 2)), h = c·26.
    row = measure_one(_erfc_at(26.0), "finite", "central", "float64")
    assert row["status"] == "inaccurate" and row["cause"] == Cause.FD_ERROR
    h = row["step"] * 26.0
    truncation = (4 * 26.0**2 - 2) * h**2 / 6
    assert row["rel_error"] == pytest.approx(truncation, rel=0.05)
    quoted = float(re.search(r"in exact arithmetic the same differences err by ([0-9.e+-]+)", row["diagnosis"])[1])
    assert quoted == pytest.approx(truncation, rel=0.05)
    assert "(error 0)" not in row["diagnosis"]


def test_subnormal_derivative_flushed_to_zero_is_named():
    tf = pytest.importorskip("tensorflow")
    # erfc'(27) = −2/√π·e^(−729) = −2.83e-317 (mpmath: -2.8299e-317), below float64's smallest normal 2.2e-308.
    if float((tf.constant(2.8e-317, tf.float64) * 1.0).numpy()) != 0.0:
        pytest.skip("this CPU keeps subnormals in TensorFlow")
    row = measure_one(_erfc_at(27.0), "tape", "eager", "float64")
    assert row["status"] != "ok" and row["cause"] == Cause.FLUSH_TO_ZERO
    assert "-2.83e-317" in row["diagnosis"]


# --------------------------------------------------------------------------- a built-in op TensorFlow gets wrong
def test_cumprod_gradient_at_a_zero_is_a_known_tensorflow_formula():
    pytest.importorskip("tensorflow")

    # Σ cumprod(x) = x₀ + x₀x₁, so ∇ = (1 + x₁, x₀) = (1, 2) at (2, 0). TensorFlow's cumprod gradient
    # divides by x with div_no_nan and returns 0 for ∂/∂x₁.
    @case(inputs={"x": [2.0, 0.0]})
    def cumprod_through_zero(x, xp):
        return xp.sum(xp.cumulative_prod(x))

    row = measure_one(cumprod_through_zero, "tape", "eager", "float64")
    assert row["status"] == "inaccurate" and row["cause"] == Cause.TF_FORMULA
    assert "true 2, got 0" in row["diagnosis"] and "cumprod" in row["diagnosis"]


# --------------------------------------------------------------------------- singular stencil points
def test_richardson_shrinks_its_step_where_a_stencil_point_is_singular():
    # f(a) = 1/a for the 1×1 inverse: f'(0.25) = −1/a² = −16. Richardson's first step from 0.25 reaches
    # a = 0, where NumPy raises LinAlgError: that point counts as not finite, the step shrinks.
    @case(inputs={"a": [[0.25]]})
    def inverse_1x1(a, xp):
        return xp.sum(xp.linalg.inv(a))

    row = measure_one(inverse_1x1, "finite", "richardson", "float64")
    assert row["status"] == "ok"
    assert "shrunk" in row["diagnosis"]


@pytest.mark.parametrize("op", ["inv", "solve"])
def test_richardson_on_a_3x3_whose_stencil_crosses_a_singular_matrix(op):
    from diffbench.engines import finite

    # A = [[1.25, 1, 0], [1, 1, 0], [0, 0, 1]] has det 0.25; A₀₀ − 0.25 gives [[1, 1, 0], [1, 1, 0], …],
    # singular. f = Σ A⁻¹ (= Σ A⁻¹·1 for solve with b = 1): ∂f/∂Aᵢⱼ = −(1ᵀA⁻¹)ᵢ(A⁻¹1)ⱼ. By hand
    # A⁻¹ = [[4, −4, 0], [−4, 5, 0], [0, 0, 1]], its column and row sums are both (0, 1, 1), so
    # ∇f = −[[0, 0, 0], [0, 1, 1], [0, 1, 1]].
    a = np.array([[1.25, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    if op == "inv":
        def f(v):
            return np.sum(np.linalg.inv(v.reshape(3, 3)))
    else:
        def f(v):
            return np.sum(np.linalg.solve(v.reshape(3, 3), np.ones(3)))
    result = finite.differentiate(f, a.ravel(), "richardson")
    want = -np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]], dtype=float).ravel()
    np.testing.assert_allclose(result.value, want, atol=1e-9)
    assert any("shrunk" in note for note in result.notes)


def test_a_case_that_raises_at_the_point_itself_stays_an_error():
    from diffbench.engines import finite

    def always_singular(v):
        return np.sum(np.linalg.inv(np.zeros((1, 1)) * v[0]))

    with pytest.raises(np.linalg.LinAlgError):
        finite.differentiate(always_singular, np.array([0.25]), "richardson")


def test_pole_search_survives_a_singular_matrix():
    # solve([[a]], [1]) = 1/a, a pole at 0; at a = 1e-7 the central stencil (h ≈ 6e-6) straddles it.
    @case(inputs={"a": 1e-7})
    def solve_near_pole(a, xp):
        return xp.sum(xp.linalg.solve(xp.reshape(a, (1, 1)), xp.asarray([1.0])))

    row = measure_one(solve_near_pole, "finite", "central", "float64")
    assert row["status"] == "inaccurate" and row["cause"] == Cause.FD_ERROR
    assert "a pole in reach" in row["diagnosis"]


def test_richardson_on_a_chaotic_float32_map_claims_no_domain():
    # 40 steps of x ← 3.9x(1 − x) from 0.3 stay in (0, 1): f is finite everywhere near the point, so no
    # text may say that f is not finite or that x is outside its domain.
    @case(inputs={"x": 0.3})
    def logistic_40(x, xp):
        for _ in range(40):
            x = 3.9 * x * (1 - x)
        return x

    row = measure_one(logistic_40, "finite", "richardson", "float32")
    assert row["status"] != "nan"
    assert "outside its domain" not in row["diagnosis"] and "not finite" not in row["diagnosis"]


# --------------------------------------------------------------------------- a diagnosis costs a few gradients
def _kinked(n, where):
    x = np.linspace(0.5, 1.5, n)
    x[where] = 1e-7

    @case(inputs={"x": x}, name=f"kink_among_{n}")
    def kink_among(x, xp):
        return xp.sum(x * x) + xp.abs(x[where])

    return kink_among


@pytest.mark.parametrize("n", [5, 40])
def test_the_kink_in_reach_is_named_by_its_input(n):
    # |x₇| at x₇ = 1e-7: central differences with h ≈ 6e-6 see (|x + h| − |x − h|)/2h = x/h ≈ 0.016
    # instead of the true slope 1 (∂/∂x₇ = 2x₇ + 1); the stencil crosses the kink along x[7] and no other.
    where = min(7, n - 1)
    row = measure_one(_kinked(n, where), "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert f"a kink in reach: the stencil crosses a kink along x[{where}]" in row["diagnosis"]


def test_an_inaccurate_finite_difference_row_of_1000_inputs_is_diagnosed_quickly():
    import time

    from diffbench.diagnose import judge
    from diffbench.engines import flatten, get_engine
    from diffbench.reference import reference

    # log-sum-exp of 1000 values near 100: ∇ = softmax(x) ≈ 1/1000 each, ‖∇‖ ≈ 1/√1000. Forward differences
    # (h = 1.5e-8·100) round f ≈ 107 to eps·107 ≈ 2.4e-14, so each component errs by up to 2.4e-14/1.5e-6
    # ≈ 1.6e-8: in norm up to √1000·1.6e-8 / (1/√1000) ≈ 1.6e-5 relative (random rounding gives a part of
    # it), beyond forward's 100·√eps = 1.5e-6 → inaccurate.
    rng = np.random.default_rng(0)

    @case(inputs={"x": 100 + 0.1 * rng.standard_normal(1000)})
    def logsumexp_1000(x, xp):
        m = xp.max(x)
        return m + xp.log(xp.sum(xp.exp(x - m)))

    ref = reference(logsumexp_1000, "float64")
    prepared = get_engine("finite").prepare(logsumexp_1000, "forward", "float64")
    flat = flatten(prepared.gradient(), ["x"])
    start = time.perf_counter()
    verdict = judge(logsumexp_1000, "finite", "forward", "float64", flat, ref, step=prepared.info.get("step"))
    elapsed = time.perf_counter() - start
    assert verdict.status == "inaccurate" and verdict.cause == Cause.FD_ERROR
    # the target is 2 s (benchmarks/diagnosis_cost.py); this bound only catches a return of the n² loop
    # (about 60 s at n = 1000 on a loaded 2-core machine)
    assert elapsed < 20


# --------------------------------------------------------------------------- SymEngine rows
def test_a_symengine_rows_diagnosis_does_not_run_sympy(monkeypatch):
    pytest.importorskip("symengine")
    from diffbench import diagnose
    from diffbench.engines import symbolic

    @case(inputs={"x": [0.5, 1.5]})
    def smooth_pair(x, xp):
        return xp.sum(xp.exp(x) * xp.sin(x))

    calls = []
    original = symbolic.trace
    monkeypatch.setattr(symbolic, "trace", lambda c: calls.append(c) or original(c))
    x = np.array([0.5, 1.5])
    # exp(x)·(sin x + cos x) is finite at both points: no overflow to report, and SymPy never traced
    assert diagnose._symbolic_overflow(smooth_pair, "symengine", "float64", x) is None
    assert calls == []
    assert diagnose._symbolic_overflow(smooth_pair, "numpy", "float64", x) is None
    assert calls == [smooth_pair]


def test_symengine_skip_says_it_fell_back_to_sympy_and_why(monkeypatch):
    pytest.importorskip("symengine")
    from diffbench.engines import symbolic

    # xp.max has no SymEngine form (namespaces._SymEngineNamespace.LACKING): the row falls back to SymPy,
    # whose operation budget (lowered here to 3) then refuses the expression max(x) + Σ x² (5+ operations)
    monkeypatch.setattr(symbolic, "MAX_OPS", 3)

    @case(inputs={"x": [0.5, 1.5, 2.5]})
    def max_plus_squares(x, xp):
        return xp.max(x) + xp.sum(x * x)

    row = measure_one(max_plus_squares, "symbolic", "symengine", "float64")
    assert row["status"] == "skipped"
    assert "fell back to SymPy" in row["diagnosis"] and "xp.max" in row["diagnosis"]


# --------------------------------------------------------------------------- symbolic solve at a zero pivot
@pytest.mark.parametrize("variant", ["numpy", "symengine"])
def test_symbolic_solve_where_the_structural_pivot_is_zero(variant):
    if variant == "symengine":
        pytest.importorskip("symengine")

    # A = [[0, 1], [1, 0]] (det −1, A⁻¹ = A), b = (1, 2): x = A⁻¹b = (2, 1), f = Σx.
    # ∂f/∂b = A⁻ᵀ·1 = (1, 1); ∂f/∂A = −(A⁻ᵀ·1)·xᵀ = −[[2, 1], [2, 1]].
    @case(inputs={"a": [[0.0, 1.0], [1.0, 0.0]], "b": [1.0, 2.0]}, name=f"solve_swap_{variant}")
    def solve_swap(a, b, xp):
        return xp.sum(xp.linalg.solve(a, b))

    from diffbench.engines import get_engine

    got = get_engine("symbolic").prepare(solve_swap, variant, "float64").gradient()
    np.testing.assert_allclose(got["a"], [[-2.0, -1.0], [-2.0, -1.0]], rtol=1e-15)
    np.testing.assert_allclose(got["b"], [1.0, 1.0], rtol=1e-15)


# --------------------------------------------------------------------------- the Taylor test's reach
def test_taylor_order_is_not_measurable_where_curvature_hides_a_357x_error():
    from diffbench import metrics
    from diffbench.reference import reference

    # sin(x)/x at x = 1e-9: f′ = (x·cos x − sin x)/x² ≈ −x/3 = −3.33e-10 and f″ ≈ −1/3, so at the test's
    # smallest step h = 2⁻⁹ the true remainder is ≈ h²/6 = 6.4e-7, while a gradient 357× off adds only
    # h·357·3.33e-10 ≈ 2.3e-10: every step reads order 2. The steps resolve directional-derivative errors
    # only down to ≈ h/6 ≈ 3e-4, a million times the derivative: not measurable.
    @case(inputs={"x": 1e-9})
    def sinc_near_zero(x, xp):
        return xp.sin(x) / x

    ref = reference(sinc_near_zero, "float64")
    truth = np.array([-1e-9 / 3])
    for gradient in (truth, 357 * truth):
        order, why = metrics.taylor_test(sinc_near_zero, gradient, ref)
        assert math.isnan(order) and "derivative" in why


def test_taylor_order_is_not_measurable_where_the_steps_cross_a_singular_matrix():
    from diffbench import metrics
    from diffbench.reference import reference

    # A = [[1, 2], [1, 2 + δ]], δ = 1e-9, b = (9, 1): A⁻¹ = [[2 + δ, −2], [−1, 1]]/δ, so
    # Σ A⁻¹b = ((2 + δ)·9 − 2 − 9 + 1)/δ = 8/δ + 9: a pole 1e-9 away, while the steps are at least
    # s·2⁻⁹ = 9·2⁻⁹ (s = max|input| = 9). The true gradient's own remainder does not shrink like h².
    @case(inputs={"a": [[1.0, 2.0], [1.0, 2.0 + 1e-9]], "b": [9.0, 1.0]})
    def solve_by_a_pole(a, b, xp):
        return xp.sum(xp.linalg.solve(a, b))

    ref = reference(solve_by_a_pole, "float64")
    order, why = metrics.taylor_test(solve_by_a_pole, ref.flat, ref)
    assert math.isnan(order) and "pole" in why


def test_taylor_text_says_not_measurable_instead_of_a_number():
    pytest.importorskip("tensorflow")

    # the native gradient of sin(x)/x at 1e-9 is 357× the truth −3.33e-10 (see above): inaccurate, and the
    # Taylor test cannot see it, so the text gives no order
    @case(inputs={"x": 1e-9})
    def sinc_native(x, xp):
        return xp.sin(x) / x

    @sinc_native.tensorflow
    def _(x):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a):
            return tf.sin(a) / a, lambda dy: dy * 357.0 * (-a / 3.0)

        return f(x)

    row = measure_one(sinc_native, "tape", "eager", "float64")
    assert row["status"] == "inaccurate" and math.isnan(row["taylor_order"])
    assert "Taylor test is not measurable" in row["diagnosis"] and "order is" not in row["diagnosis"]


# --------------------------------------------------------------------------- budgets by predicted cost
def _rosenbrock(n):
    @case(inputs={"x": np.linspace(-1.2, 1.3, n)}, name=f"rosenbrock_{n}")
    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    return rosenbrock


def _rosenbrock_hessian(x):
    """By hand: f = Σ 100(xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)². ∂²f/∂xᵢ² = 1200xᵢ² − 400xᵢ₊₁ + 2 (i < n−1) plus 200
    (i > 0); ∂²f/∂xᵢ∂xᵢ₊₁ = −400xᵢ."""
    n = x.size
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] = h[i + 1, i] = -400 * x[i]
    return h


def test_sympy_hessian_of_rosenbrock_20_is_within_its_budget():
    import diffbench

    one = _rosenbrock(20)
    got = diffbench.hessian(one, method="symbolic/numpy")
    np.testing.assert_allclose(got, _rosenbrock_hessian(np.linspace(-1.2, 1.3, 20)), rtol=1e-13, atol=1e-10)


def test_plain_symbolic_hessian_falls_back_to_symengine_over_sympys_budget(monkeypatch):
    pytest.importorskip("symengine")
    import diffbench
    from diffbench.engines import symbolic
    from diffbench.errors import BudgetFallback, OverBudget

    monkeypatch.setattr(symbolic, "MAX_HESSIAN_COST", 10)
    one = _rosenbrock(6)
    with pytest.raises(OverBudget, match="MAX_HESSIAN_COST"):
        diffbench.hessian(one, method="symbolic/numpy")
    with pytest.warns(BudgetFallback, match="symbolic/symengine"):
        got = diffbench.hessian(one, method="symbolic")
    np.testing.assert_allclose(got, _rosenbrock_hessian(np.linspace(-1.2, 1.3, 6)), rtol=1e-13, atol=1e-10)


def _logistic(steps):
    @case(inputs={"x": 0.3}, name=f"logistic_{steps}_steps")
    def logistic(x, xp):
        for _ in range(steps):
            x = 3.9 * x * (1 - x)
        return x

    return logistic


def test_symbolic_budget_is_checked_before_walking_a_doubling_tree():
    import time

    from diffbench.engines import symbolic
    from diffbench.errors import OverBudget

    # x ← 3.9x(1 − x) uses x twice: after 40 steps the expression tree has about 2⁴⁰ leaves (SymPy shares
    # them, so tracing is quick), far over the 40,000-operation budget. Counting each shared node once
    # decides that at once; walking the tree (count_ops, free_symbols) would not end within the timeout.
    start = time.perf_counter()
    with pytest.raises(OverBudget, match="MAX_OPS"):
        symbolic.trace(_logistic(40))
    assert time.perf_counter() - start < 30  # about 0.2 s; the tree walk never ends
    row = measure_one(_logistic(40), "symbolic", "numpy", "float64", timeout=60)
    assert row["status"] == "skipped" and row["cause"] == Cause.NOT_APPLICABLE


def test_tree_ops_counts_shared_subexpressions_as_the_tree_repeats_them():
    import sympy as sp

    from diffbench.engines.symbolic import tree_ops

    # e₀ = x, eₖ = eₖ₋₁·eₖ₋₁ + 1 (kept unevaluated as a product of two equal factors by Mul(…, evaluate=False)):
    # ops(eₖ) = 2·ops(eₖ₋₁) + 2 (one × and one +), so ops(e₁₀) = 2¹¹ − 2 = 2046
    x = sp.Symbol("x")
    e = x
    for _ in range(10):
        e = sp.Add(sp.Mul(e, e, evaluate=False), 1, evaluate=False)
    assert tree_ops(e, 10**6) == 2046
    assert tree_ops(e, 100) == 101  # stops at the limit


def test_a_sympy_trace_that_runs_too_long_is_stopped(monkeypatch):
    import time

    from diffbench.engines import symbolic
    from diffbench.errors import OverBudget

    monkeypatch.setattr(symbolic, "MAX_TRACE_S", 1.0)

    @case(inputs={"x": 0.3})
    def slow_to_trace(x, xp):
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.01)
        return x

    start = time.perf_counter()
    with pytest.raises(OverBudget, match="MAX_TRACE_S"):
        symbolic.trace(slow_to_trace)
    assert time.perf_counter() - start < 30  # stopped about 1 s in, not after the loop's 60 s


def test_plain_symbolic_gradient_falls_back_to_symengine_over_sympys_budget(monkeypatch):
    pytest.importorskip("symengine")
    import diffbench
    from diffbench.engines import symbolic
    from diffbench.errors import BudgetFallback

    # Rosenbrock n = 4 has more than 3 operations; with SymPy's budget lowered to 3 the plain method name uses
    # SymEngine. ∇ by hand: ∂f/∂xᵢ = −400xᵢ(xᵢ₊₁ − xᵢ²) − 2(1 − xᵢ) + 200(xᵢ − xᵢ₋₁²) (terms that exist).
    monkeypatch.setattr(symbolic, "MAX_OPS", 3)
    x = np.linspace(-1.2, 1.3, 4)
    want = np.zeros(4)
    for i in range(3):
        want[i] += -400 * x[i] * (x[i + 1] - x[i] ** 2) - 2 * (1 - x[i])
        want[i + 1] += 200 * (x[i + 1] - x[i] ** 2)
    with pytest.warns(BudgetFallback, match="symbolic/symengine"):
        got = diffbench.gradient(_rosenbrock(4), "symbolic")
    np.testing.assert_allclose(got["x"], want, rtol=1e-13)
