"""Finite differences: error estimates that bound the true error, and each kind of diagnosis on a
case where it really happens.

True errors here come from derivatives derived by hand (or SciPy's ``rosen_der``), never from
diffbench's reference. Each diagnosis test says in a comment why the cause is what it is.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import rosen_der

from diffbench import case, run
from diffbench.engines import get_engine
from diffbench.engines.finite import noise_level
from diffbench.harness import measure_one

VARIANTS = ["forward", "central", "richardson", "complex_step"]
DTYPES = ["float64", "float32"]


def _point(one_case, dtype):
    """The inputs as a run in ``dtype`` holds them, in float64 (the point every row is judged at)."""
    return np.concatenate([np.ravel(v) for v in one_case.inputs.values()]).astype(dtype).astype(np.float64)


def _ackley_gradient(x):
    # f = −20 exp(−0.2 r) − exp(m) + 20 + e, r = sqrt(Σx²/n), m = Σcos(2πx)/n:
    # ∂f/∂xᵢ = 4 exp(−0.2 r) xᵢ/(n r) + exp(m)·2π sin(2πxᵢ)/n
    n, r = x.size, math.sqrt(float(np.mean(x**2)))
    first = 4 * np.exp(-0.2 * r) * x / (n * r)
    return first + np.exp(np.mean(np.cos(2 * np.pi * x))) * 2 * np.pi * np.sin(2 * np.pi * x) / n


HAND_GRADIENTS = {
    "rosenbrock": rosen_der,
    "ackley": _ackley_gradient,
    # 1e5 + x²: 2x. f is 5e4 times the gradient, so rounding at |f| dominates every fixed step
    "large_offset": lambda x: 2 * x,
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(HAND_GRADIENTS))
def test_error_estimate_bounds_the_true_error(library, name, variant, dtype):
    one = library[name]
    want = HAND_GRADIENTS[name](_point(one, dtype))
    prepared = get_engine("finite").prepare(one, variant, dtype)
    got = np.concatenate([np.ravel(v) for v in prepared.gradient().values()]).astype(np.float64)
    true_error = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    assert prepared.info["error_estimate"] >= true_error


def test_noise_level_of_a_line_is_zero_and_of_alternating_errors_is_their_size():
    # a line's fourth difference is 0; errors ±σ alternating give Δ⁴ = σ(1 + 4 + 6 + 4 + 1) = 16σ,
    # and the bound is 2·16σ/√70
    assert noise_level([1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0
    sigma = 1e-3
    assert noise_level([sigma * (-1) ** k for k in range(5)]) == pytest.approx(2 * 16 * sigma / math.sqrt(70))
    assert math.isnan(noise_level([1.0, math.nan, 1.0, 1.0, 1.0]))


@case(inputs={"x": 2.2e-14})
def cos_tiny(x, xp):
    return xp.cos(x)


def test_rounding_is_named_and_rescaling_is_not_advised_for_cos_near_zero():
    # f = cos x ≈ 1, f' = −sin x ≈ −2.2e-14. Central differences at h = eps^(1/3) ≈ 6.1e-6 round f at 1:
    # eps/h ≈ 3.7e-11, 1700 times |f'|; truncation h²/6 ≈ 6e-12 relative is nothing. Rescaling x to order 1
    # does not help (f stays ≈ 1 while f' shrinks with x); the complex step, −sin x·sinh h / h, is exact.
    row = measure_one(cos_tiny, "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    text = row["diagnosis"]
    assert "dominated by rounding" in text
    assert "rescale" not in text
    assert "complex_step (error 0" in text


@case(inputs={"x": 3.0})
def sin_fast(x, xp):
    return xp.sin(50 * x)


def test_truncation_is_named_with_a_step_that_does_better():
    # f''' = −125000 cos(150); central truncation h²·|f'''|/6 with h = 3·eps^(1/3) ≈ 1.8e-5 is ≈ 1.4e-7 of
    # |f'| = 50|cos 150|, beyond central's 3.7e-9; rounding eps/h ≈ 1e-11 is not the cause
    row = measure_one(sin_fast, "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "dominated by truncation" in row["diagnosis"]
    assert "would do" in row["diagnosis"]


def test_the_steps_scale_is_named_where_rescaling_does_better(library):
    # Σ expm1(x)² at x ~ 1e-9: f' = 2 expm1(x)eˣ ≈ 2x, f''' ≈ 6. Central's h = 6.1e-6 (c·max(|x|, 1)) is 6000
    # times |x|: truncation h²·6/6 ≈ 3.7e-11 against 2x ≈ 2e-9 is ~1e-2. With x rescaled to order 1, the steps
    # are c·|x| and truncation falls to ~c² ≈ 4e-11
    row = measure_one(library["expm1_stable"], "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "dominated by the step's scale" in row["diagnosis"] and "rescale the inputs" in row["diagnosis"]


@case(inputs={"x": 0.0})
def near_kink(x, xp):
    return xp.abs(x - 1e-3)


def test_a_kink_within_the_stencil(library):
    # f'(0) = −1; float32 central steps h ≈ 4.9e-3 reach past the kink at 1e-3: (|h − 1e-3| − |−h − 1e-3|)/2h
    # = −1e-3/h ≈ −0.2. Any step below 1e-3 gives exactly −1
    row = measure_one(near_kink, "finite", "central", "float32")
    assert row["status"] == "inaccurate"
    assert "crosses a kink" in row["diagnosis"] and "would do" in row["diagnosis"]


@case(inputs={"x": 6e-6})
def inverse(x, xp):
    return 1.0 / x


def test_a_pole_within_the_stencil():
    # f' = −1/x² ≈ −2.8e10; central's h = 6.06e-6 > x puts x − h = −6e-8 on the pole's far side, where
    # 1/(x − h) ≈ −1.6e7: the difference has the wrong sign. Richardson shrinks its start to the pole's scale
    row = measure_one(inverse, "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "crosses a pole" in row["diagnosis"] and "richardson (error" in row["diagnosis"]


@case(inputs={"x": 1e-6})
def sqrt_small(x, xp):
    return xp.sqrt(x)


def test_a_stencil_outside_the_domain():
    # sqrt at 1e-6: central's h = 6.06e-6 reaches x − h < 0, where sqrt is NaN; the step is halved down to
    # 7.6e-7, comparable to x, where truncation h²·f'''/6 = h²·(3/8)x^(−5/2)/6 against f' = 1/(2√x) is ~0.04
    row = measure_one(sqrt_small, "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "domain" in row["diagnosis"] and "shrunk" in row["diagnosis"]


def test_values_that_underflow():
    @case(inputs={"x": 100.0})
    def subnormal_exp(x, xp):
        return xp.exp(-x)

    # exp(−100) = 3.7e-44 is a float32 subnormal (26 times the smallest, 1.4e-45): f keeps about 5 bits, so
    # forward differences of it are off by ~10 %; the true derivative −3.7e-44 is representable (as a
    # subnormal). In float64 the same differences are fine
    row = measure_one(subnormal_exp, "finite", "forward", "float32")
    assert row["status"] == "inaccurate"
    assert "underflow" in row["diagnosis"] and "in float64" in row["diagnosis"]


def test_complex_step_whose_imaginary_part_underflows(library):
    # Σx² at x = (1e-30, 2e-30) in float32: Im (x + ih)² = 2xh = 2.8e-44 with h = eps² ≈ 1.4e-14, below float32's
    # smallest normal 1.2e-38, so it keeps only a few bits; the float64 complex step is exact
    row = measure_one(library["tiny_magnitude"], "finite", "complex_step", "float32")
    assert row["status"] == "inaccurate"
    assert "underflow of the imaginary part" in row["diagnosis"]
    assert "complex_step in float64 (error 0" in row["diagnosis"]


def _hessian_row(one, dtype):
    df = run([one], methods=["finite"], dtypes=[dtype], variants={"finite": ["central"]}, timing=False)
    rows = df[df.order == 2]
    assert len(rows) == 1
    return rows.iloc[0]


def test_second_differences_lost_to_rounding(library):
    # 1e5 + x²: f'' = 2. In float32 (eps = 1.2e-7) f is rounded at 1e5·eps ≈ 0.012; second differences divide
    # that by h² ≈ 0.016, an error of order 1 against 2. In float64 the same differences are exact enough
    row = _hessian_row(library["large_offset"], "float32")
    assert row["status"] == "inaccurate"
    text = row["diagnosis"]
    assert "second differences" in text and "dominated by rounding" in text and "float64" in text
    assert "cancellation" not in text


def test_second_differences_of_a_fast_oscillation_are_not_aliased():
    # f'' = −2500 sin 150 ≈ 1786. A table from h = 0.5 (0.25·|x| as a power of two) meets sin(50x) at 25, 12.5
    # and 6.25 radians, each just short of a multiple of 2π: the three levels alias and look asymptotic (ratio
    # 4). The check at h/√2 (17.7 radians) is off their fit, so the step shrinks and the Hessian is right
    row = _hessian_row(sin_fast, "float64")
    assert row["status"] == "ok"


def _benchmark():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import fd_vs_numdifftools
    import numdifftools_cases

    return fd_vs_numdifftools, numdifftools_cases


def test_benchmark_against_numdifftools_runs_on_a_few_functions():
    pytest.importorskip("numdifftools")
    bench, cases = _benchmark()
    by_name = {c.name: c for c in cases.GRADIENT}
    chosen = [by_name["nd_exp_half"], cases.nd_sum_of_squares, cases.nd_rosen_2_3]
    gradient = pd.DataFrame(bench.gradient_rows(chosen))
    assert list(gradient["case"]) == ["nd_exp_half", "nd_sum_of_squares", "nd_rosen_2_3"]
    # both tools reach ~1e-14 on these (RESULTS.md); a benchmark that passed the wrong point or function to
    # either would be off by O(1). The reference it measures against is checked by hand here:
    # exp at 0.5 → e^0.5; Σx² at (1, 2, 3) → 2x; Rosenbrock at (2, 3) → SciPy's rosen_der
    from diffbench.engines import flatten
    from diffbench.reference import reference

    for one, want in zip(chosen, [[math.exp(0.5)], [2.0, 4.0, 6.0], rosen_der(np.array([2.0, 3.0]))]):
        got = flatten(reference(one).values, list(one.inputs))
        assert np.allclose(got, want, rtol=1e-15, atol=0)
    assert (gradient["diffbench"] <= 1e-12).all() and (gradient["numdifftools"] <= 1e-12).all()
    # fewer calls of f than the peer's defaults (31 per element for a scalar)
    assert (gradient["evals_diffbench"] < gradient["evals_numdifftools"]).all()
    hessian = pd.DataFrame(bench.hessian_rows([cases.nd_sum_of_squares]))
    assert hessian["diffbench"].iloc[0] <= 1e-12  # Σx²: H = 2I, exact for second differences
    summary = bench.summary(gradient, "gradient")
    assert summary["cases"] == 3 and summary["diffbench at least as accurate"].endswith("%")


def test_coverage_table_counts_by_hand():
    bench, _ = _benchmark()
    rows = pd.DataFrame({"variant": ["central"] * 4,
                         "error_estimate": [1e-8, 1e-9, math.inf, 4e-6],
                         "rel_error": [1e-9, 1e-8, 0.5, 1e-6]})
    table = bench.coverage(rows)
    # covered: 1e-8 ≥ 1e-9, inf ≥ 0.5, 4e-6 ≥ 1e-6 — 3 of 4; one infinite; 2 of the 3 finite ones;
    # ratios of the finite ones 10, 0.1, 4: median 4
    assert table.loc["central", "coverage"] == 0.75
    assert table.loc["central", "no bound (inf)"] == 1
    assert table.loc["central", "coverage of finite estimates"] == pytest.approx(2 / 3)
    assert table.loc["central", "median estimate/true"] == pytest.approx(4.0)


_LSE_X = np.random.default_rng(7).uniform(0.0, 1.0, 2500)


@case(inputs={"x": _LSE_X})
def lse_wide(x, xp):
    return xp.log(xp.sum(xp.exp(x)))


def test_rounding_over_many_inputs_is_named_not_truncation():
    # f = log Σ exp(xᵢ) over 2500 inputs in [0, 1): f ≈ log 2500 + 0.5 ≈ 8.3, gᵢ = softmaxᵢ ≈ 4e-4, ‖g‖ ≈ 0.02.
    # Forward differences at h = eps^(1/2)·max(|xᵢ|, 1) ≈ 1.5e-8: each component rounds f by eps·8.3/h ≈ 1.2e-7,
    # independently, so the normwise rounding error is ≈ √2500·1.2e-7 / 0.02 ≈ 3e-4 of ‖g‖; truncation is
    # h/2·gᵢ(1 − gᵢ) ≈ 3e-12 per component, nothing. Rounding must be named (a per-component model without the
    # √n would put rounding at 6e-6 and wrongly blame truncation).
    row = measure_one(lse_wide, "finite", "forward", "float64")
    assert row["status"] == "inaccurate"
    assert 1e-5 < row["rel_error"] < 1e-2
    assert "dominated by rounding" in row["diagnosis"]
