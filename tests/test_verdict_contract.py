"""The verdict contract: ``ok`` means the gradient is accurate, whatever the path-sum scales say;
those scales decide the *cause* of an inaccurate exact row (the function's, or the method's).

Every truth is derived by hand in the comment next to it and evaluated here with mpmath at 100
digits, independently of diffbench's reference.
"""

from __future__ import annotations

import dataclasses

import mpmath
import numpy as np
import pytest

from diffbench import case
from diffbench.diagnose import judge
from diffbench.harness import make_config, measure_case
from diffbench.metrics import classify
from diffbench.reference import reference
from diffbench.results import Cause

EXACT_VARIANTS = {"symbolic": ["numpy", "symengine"], "tape": ["eager", "function", "xla", "forward"],
                  "finite": ["complex_step", "central", "richardson"]}


def rows_of(one, methods, dtypes, variants):
    config = make_config(list(methods), list(dtypes), variants, order2=False, timing=False, devices=("CPU",),
                         sweep=False)
    config = dataclasses.replace(config, keep_gradients=True)
    out = []
    measure_case(one, config, out.append)
    return [r for r in out if r["order"] == 1]


def flat_gradient(row):
    return np.concatenate([np.ravel(v) for v in row["gradient"].values()]).astype(np.float64)


def is_exact(row):
    return row["method"] in ("symbolic", "tape") or row["variant"] == "complex_step"


# --------------------------------------------------------------------------- 1. sin(x)/x at 1e-9
@case(inputs={"x": 1e-9})
def sinc_1e9(x, xp):
    return xp.sin(x) / x


def test_sinc_near_zero_exact_rows_are_inaccurate_by_the_formula():
    x = mpmath.mpf(1e-9)
    with mpmath.workdps(100):
        # f′(x) = cos(x)/x − sin(x)/x² = (x·cos x − sin x)/x²; the series x·cos x − sin x = −x³/3 + x⁵/30 − …
        # gives f′ = −x/3 + x³/30 − … ≈ −3.333e-10
        truth = (x * mpmath.cos(x) - mpmath.sin(x)) / x**2
        assert abs(truth - (-x / 3 + x**3 / 30)) < 1e-40
        # the two terms of the formula each have size 1/x = 1e9: an exact method rounds at eps·(their sum)
        terms = abs(mpmath.cos(x) / x) + abs(mpmath.sin(x) / x**2)
    truth, terms = float(truth), float(terms)
    assert truth == pytest.approx(-3.3333333333333335e-10, rel=1e-12)
    eps = float(np.finfo(np.float64).eps)
    rows = rows_of(sinc_1e9, ["symbolic", "tape", "finite"], ["float64"], EXACT_VARIANTS)
    exact = [r for r in rows if is_exact(r)]
    assert len(exact) == 7
    for r in exact:
        g = flat_gradient(r)[0]
        # independently of diffbench's verdict: the gradient is far from the truth (0, or −1.2e-7)
        assert abs(g - truth) > 1e-3 * abs(truth), (r["method"], r["variant"], g)
        assert r["status"] == "inaccurate", (r["method"], r["variant"], r["diagnosis"])
        assert r["cause"] == Cause.FORMULA_CANCELLATION, (r["method"], r["variant"], r["diagnosis"])
        # the text names the cancelling terms and a rewrite (the series, or a library sinc)
        assert "cos(x)/x" in r["diagnosis"] and "sin(x)/x**2" in r["diagnosis"]
        assert "x**2/6" in r["diagnosis"] and "sinc" in r["diagnosis"]
        # what an exact method following the formula attains: eps·(|cos x/x| + |sin x/x²|)/|f′| ≈ 1.3e3
        assert r["attainable_error"] == pytest.approx(eps * terms / abs(truth), rel=1e-6)
    for r in rows:
        # the column is the formula's attainable error, the same on every judged row of the case and dtype
        assert r["attainable_error"] == pytest.approx(eps * terms / abs(truth), rel=1e-6)
        if r["variant"] in ("central", "richardson"):
            # finite differences get what their own normwise tolerance says: 100·eps^(2/3), 100·eps^(4/5)
            tol = 100 * eps ** (2 / 3) if r["variant"] == "central" else 100 * eps ** 0.8
            rel = abs(flat_gradient(r)[0] - truth) / abs(truth)
            assert r["status"] == ("ok" if rel <= tol else "inaccurate")
            assert r["cause"] != Cause.FORMULA_CANCELLATION


# --------------------------------------------------------------------------- 2. the logistic map
STEPS = 40


@case(inputs={"x": 0.3})
def logistic_40(x, xp):
    for _ in range(STEPS):
        x = 3.9 * x * (1 - x)
    return x


def logistic_truth(x0: float, c: float) -> tuple[float, float]:
    """(f′(x₀), Π c·(|1 − xₖ| + |xₖ|)) at 100 digits: f′ = Π_k c·(1 − 2xₖ) by the chain rule, since
    d/dx [c·x·(1 − x)] = c·(1 − 2x); the second is the path sum, c·x·(1 − x) adding the paths through x
    (partial c·(1 − x)) and through 1 − x (partial −c·x), which equals c^40 for xₖ in [0, 1]."""
    with mpmath.workdps(100):
        x, c = mpmath.mpf(x0), mpmath.mpf(c)
        d, s = mpmath.mpf(1), mpmath.mpf(1)
        for _ in range(STEPS):
            d *= c * (1 - 2 * x)
            s *= c * (abs(1 - x) + abs(x))
            x = c * x * (1 - x)
        return float(d), float(s)


def test_logistic_map_exact_rows_are_inaccurate_by_conditioning():
    truths = {
        # the float64 rows at the point 0.3 and the constant 3.9 as float64 holds them
        "float64": logistic_truth(0.3, 3.9),
        # the float32 rows at the float32 point, with the constant as a float32 program holds it
        "float32": logistic_truth(float(np.float32(0.3)), float(np.float32(3.9))),
    }
    for dtype, (truth, path_sum) in truths.items():
        assert abs(truth) > 1e9 and path_sum == pytest.approx(float(np.float64(3.9 if dtype == "float64" else
                                                                                 np.float32(3.9))) ** STEPS)
    variants = {"tape": ["eager", "function", "forward"], "finite": ["complex_step"]}
    rows = rows_of(logistic_40, ["tape", "finite"], ["float32", "float64"], variants)
    assert len(rows) == 8
    for r in rows:
        truth, path_sum = truths[r["dtype"]]
        g = flat_gradient(r)[0]
        # float64 loses about 1e-7 of it (the trajectory's sensitivity, e^(0.5·40) ≈ 5e8 times eps); float32 all
        assert abs(g - truth) > (1e-9 if r["dtype"] == "float64" else 1e-2) * abs(truth), (r["variant"], g)
        assert r["status"] == "inaccurate", (r["variant"], r["dtype"], r["diagnosis"])
        assert r["cause"] == Cause.CONDITIONING, (r["variant"], r["dtype"], r["diagnosis"])
        # the amplification: the path sums reach 3.9⁴⁰ ≈ 4.3e23, 3.9⁴⁰/|f′| times the truth
        assert f"{path_sum:.3g}" in r["diagnosis"] and f"{path_sum / abs(truth):.2g}" in r["diagnosis"]


# --------------------------------------------------------------------------- 3. a zero truth
@case(inputs={"x": 0.7})
def pythagoras_1e8(x, xp):
    return 1e8 * (xp.sin(x) ** 2 + xp.cos(x) ** 2)


def test_zero_truth_is_judged_at_the_functions_rounding_scale():
    # f = 1e8·(sin²x + cos²x) = 1e8: f′ = 1e8·(2 sin x cos x − 2 cos x sin x) = 0 exactly, and a float
    # evaluation leaves rounding of size eps·1e8·2|sin 2x| (each term is 1e8·|sin 2x| ≈ 9.9e7 at 0.7)
    variants = {"symbolic": ["numpy", "symengine"], "tape": ["eager", "function", "forward"],
                "finite": ["complex_step"]}
    rows = rows_of(pythagoras_1e8, ["symbolic", "tape", "finite"], ["float32", "float64"], variants)
    assert len(rows) == 12
    nonzero = 0
    for r in rows:
        g = flat_gradient(r)[0]
        eps = float(np.finfo(r["dtype"]).eps)
        assert abs(g) <= 1e3 * eps * 2e8  # rounding at f's size, no more
        nonzero += g != 0
        assert r["status"] == "ok", (r["method"], r["variant"], r["dtype"], g, r["diagnosis"])
    assert nonzero  # some method does round: the rule is exercised, not a zero compared with a zero


# --------------------------------------------------------------------------- 4. the hard rule
@case(inputs={"x": 1.0, "y": 1.0})
def weighted_sum(x, y, xp):
    return x + 0.011 * y


@pytest.mark.parametrize("method,variant,dtype", [("finite", "forward", "float32"), ("finite", "central", "float32"),
                                                  ("tape", "eager", "float64"), ("finite", "forward", "float64")])
def test_wrong_sign_in_a_one_percent_component_is_never_ok(method, variant, dtype):
    # ∇(x + 0.011·y) = (1, 0.011): the second component holds 0.011/‖(1, 0.011)‖ = 1.1% of the norm
    truth = np.array([1.0, 0.011])
    ref = reference(weighted_sum, dtype)
    wrong_sign = np.array([1.0, -0.011])
    # normwise the error is 0.022, within float32 forward differences' 100·eps^(1/2) = 3.5e-2
    assert np.linalg.norm(wrong_sign - truth) / np.linalg.norm(truth) < 100 * np.finfo(np.float32).eps ** 0.5
    assert judge(weighted_sum, method, variant, dtype, wrong_sign, ref).status == "inaccurate"
    # not even with path-sum scales a million times the truth
    assert classify(wrong_sign, truth, method, variant, dtype, scale=np.array([1e6, 1e6]))[0] == "inaccurate"


def test_relative_error_beyond_the_hard_limit_in_a_component_of_weight():
    # float32 forward differences, normwise tolerance 3.5e-2; the 1.5%-component off by half its size
    truth = np.array([1.0, 0.015])
    assert classify(np.array([1.0, 0.015 * 1.5]), truth, "finite", "forward", "float32")[0] == "inaccurate"
    # ... and by 0.5% of its size (below float32's hard limit of 1e-2): ok
    assert classify(np.array([1.0, 0.015 * 1.005]), truth, "finite", "forward", "float32")[0] == "ok"
    # order 2: H = [[1, 0.016], [0.016, 1]]; the off-diagonals hold 0.016/‖H‖_F = 1.1% of the norm
    hess = np.array([[1.0, 0.016], [0.016, 1.0]])
    flipped = np.array([[1.0, -0.016], [-0.016, 1.0]])
    # normwise: ‖flipped − H‖_F / ‖H‖_F = 0.032·√2 / (√2·1.000128) ≈ 0.032, within 100·eps32^(1/2) = 3.5e-2
    assert np.linalg.norm(flipped - hess) / np.linalg.norm(hess) < 100 * np.finfo(np.float32).eps ** 0.5
    assert classify(flipped, hess, "finite", "central", "float32", order=2)[0] == "inaccurate"
    assert classify(hess * (1 + 1e-4), hess, "finite", "central", "float32", order=2)[0] == "ok"


def test_a_small_component_is_judged_against_the_norm():
    # (1, 1e-18): the second component is rounding of the gradient as a whole; its sign cannot be asked
    # of a float64 method. An error of 2e-18 is 2e-18 of the norm, within 1000·eps·0.01 = 2.2e-15
    truth = np.array([1.0, 1e-18])
    assert classify(np.array([1.0, -1e-18]), truth, "tape", "eager", "float64")[0] == "ok"
    # ... while an error of 1e-13 of the norm in that component is beyond it
    assert classify(np.array([1.0, 1e-13]), truth, "tape", "eager", "float64")[0] == "inaccurate"
    # and a 2%-component is judged at its own size: 1e-12 relative is beyond 1000·eps = 2.2e-13
    truth = np.array([1.0, 0.02])
    assert classify(np.array([1.0, 0.02 * (1 + 1e-12)]), truth, "tape", "eager", "float64")[0] == "inaccurate"
    assert classify(np.array([1.0, 0.02 * (1 + 1e-14)]), truth, "tape", "eager", "float64")[0] == "ok"


# --------------------------------------------------------------------------- 5. scale invariance
def _family(func, x0, k):
    """f, 3·f, and u ↦ f(u/2^k) at u = 2^k·x₀ (the inputs scaled by a power of two)."""
    base = case(inputs={"x": x0}, name=f"{func.__name__}_base")(lambda x, xp: func(x, xp))
    times3 = case(inputs={"x": x0}, name=f"{func.__name__}_times3")(lambda x, xp: 3 * func(x, xp))
    scaled = case(inputs={"x": np.asarray(x0) * 2.0**k}, name=f"{func.__name__}_scaled")(
        lambda x, xp: func(x * 2.0**-k, xp))
    return base, times3, scaled


def _sinc(x, xp):
    return xp.sin(x) / x


def _pythagoras(x, xp):
    return 1e8 * (xp.sin(x) ** 2 + xp.cos(x) ** 2)


def _small_component(x, xp):
    # ∇ = (cos x₀, 0.005·x₁ ... ): a component well below 1% of the norm next to one of weight
    return xp.sin(x[0]) + 0.0025 * x[1] ** 2 + xp.exp(x[2])


def _himmelblau(x, xp):
    # float32 forward differences are inaccurate here by the hard rule alone (cases/classic.py himmelblau),
    # every other row is ok: a family with both statuses
    return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2


@pytest.mark.parametrize("func,x0,k", [(_sinc, 1e-9, 5), (_pythagoras, 0.7, -3), (_small_component, [0.4, 0.3, -1.0], 4),
                                       (_himmelblau, [-0.27, 0.92], 4)])
def test_statuses_do_not_depend_on_the_functions_scale(func, x0, k):
    variants = {"symbolic": ["numpy"], "tape": ["eager", "forward"], "finite": ["complex_step", "central", "forward"]}
    statuses = []
    for one in _family(func, x0, k):
        rows = rows_of(one, ["symbolic", "tape", "finite"], ["float32", "float64"], variants)
        statuses.append({(r["method"], r["variant"], r["dtype"]): r["status"] for r in rows})
    assert len(statuses[0]) == 12
    assert statuses[0] == statuses[1] == statuses[2]
    if func is _himmelblau:
        assert statuses[0][("finite", "forward", "float32")] == "inaccurate"
        assert sum(s == "ok" for s in statuses[0].values()) == 11
