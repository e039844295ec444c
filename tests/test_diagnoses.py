"""Statuses and diagnoses, each on a case where the thing really happens."""

import math

import pytest

from diffbench import case, run
from diffbench.harness import measure_one


def rows(one, methods=("symbolic", "tape", "finite"), dtypes=("float64",), **kw):
    return run([one], methods=list(methods), dtypes=list(dtypes), timing=False, **kw)


def only(df, method, variant, dtype="float64", order=1):
    sel = df[(df.method == method) & (df.variant == variant) & (df.dtype == dtype) & (df.order == order)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_function_outside_the_real_domain_is_undefined():
    @case(inputs={"x": 1.0})
    def log_of_negative(x, xp):
        return xp.log(x - 2.0)

    row = measure_one(log_of_negative, "tape", "eager", "float64")
    assert row["status"] == "undefined"  # the truth itself is not real: log of −1
    assert "not real" in row["diagnosis"]


def test_forced_nan_from_the_unused_branch_of_where(library):
    # where(x > 0, sqrt(x), 0) at x = −1: the function is 0 nearby, so the true derivative is 0;
    # the tape multiplies the unused branch's derivative 1/(2·sqrt(−1)) = NaN by 0 and gets NaN
    df = rows(library["where_nan_trap"])
    tape = only(df, "tape", "xla")  # TensorFlow 2.21's eager gradient masks the NaN; XLA does not
    assert tape["status"] == "nan"
    assert only(df, "tape", "eager", order=2)["status"] == "nan"
    assert "both branches" in tape["diagnosis"] and "where(x > 0, xp.sqrt(xp.where(x > 0, x, 1.0)), 0.0)" in \
        tape["diagnosis"].replace("`", "")
    assert only(df, "symbolic", "numpy")["status"] == "ok"
    assert only(df, "finite", "central")["status"] == "ok"


def test_nan_from_overflow_names_the_operation_and_the_stable_form(library):
    df = rows(library["softplus_naive"], dtypes=("float32",))
    tape = only(df, "tape", "eager", "float32")
    assert tape["status"] == "nan"
    assert "overflow in exp" in tape["diagnosis"]
    assert "x = [100" in tape["diagnosis"]
    assert "logaddexp" in tape["diagnosis"] and "softplus" in tape["diagnosis"]
    assert "ml.py" in tape["diagnosis"]  # where in the case's source


def test_none_gradient_names_the_input_and_the_fix(library):
    row = measure_one(library["unused_input"], "tape", "eager", "float64")
    assert row["status"] == "none"
    assert "None for y" in row["diagnosis"]
    assert "UnconnectedGradients.ZERO" in row["diagnosis"]
    assert "y: 0" in row["diagnosis"]  # the true gradient


def test_integer_input_is_diagnosed(library):
    row = measure_one(library["integer_input"], "tape", "eager", "float64")
    assert row["status"] == "none"
    assert "integer tensors are not differentiable" in row["diagnosis"]
    assert measure_one(library["integer_input"], "symbolic", "numpy", "float64")["status"] == "ok"


def test_kink_gives_both_one_sided_derivatives_and_the_pick(library):
    df = rows(library["abs_at_zero"])
    for _, row in df[df.order == 1].iterrows():
        assert row["status"] == "undefined"
        assert "left derivative -1" in row["diagnosis"] and "right derivative 1" in row["diagnosis"]
    assert "tape/eager gave 0" in only(df, "tape", "eager")["diagnosis"]
    assert "finite/forward gave 1" in only(df, "finite", "forward")["diagnosis"]


def test_where_branch_kink(library):
    row = measure_one(library["where_branch"], "tape", "eager", "float64")
    assert row["status"] == "undefined"
    assert "left derivative 1" in row["diagnosis"] and "right derivative 2" in row["diagnosis"]


def test_singularity_is_undefined(library):
    row = measure_one(library["sqrt_at_zero"], "symbolic", "numpy", "float64")
    assert row["status"] == "undefined" and "singularity" in row["diagnosis"]


def test_wrong_custom_gradient_is_inaccurate_with_a_diagnosis(library):
    df = rows(library["custom_gradient_wrong"])
    tape = only(df, "tape", "eager")
    assert tape["status"] == "inaccurate"
    assert "custom_gradient" in tape["diagnosis"]
    assert tape["taylor_order"] == pytest.approx(1.0, abs=0.2)
    assert only(df, "symbolic", "numpy")["status"] == "ok"
    assert only(df, "symbolic", "numpy")["taylor_order"] == pytest.approx(2.0, abs=0.2)


def test_right_custom_gradient_is_ok(library):
    assert measure_one(library["custom_gradient_right"], "tape", "function", "float64")["status"] == "ok"


def test_finite_differences_lost_to_rounding_name_a_better_step(library):
    # 1e5 + x²: eps·|f|/h with h ≈ 6e-6 is ~1e-6 of the gradient 2x; a quadratic has no truncation error,
    # so a larger step is better
    row = measure_one(library["large_offset"], "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "dominated by rounding" in row["diagnosis"] and "would do" in row["diagnosis"]


def test_finite_differences_with_a_step_far_larger_than_x(library):
    row = measure_one(library["tiny_magnitude"], "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "dominated by the step's scale" in row["diagnosis"] and "rescale the inputs" in row["diagnosis"]


def test_finite_differences_dominated_by_truncation(library):
    # log-sum-exp at x ≈ 90: the step scales with |x| = 90, far coarser than the curvature scale 1
    row = measure_one(library["logsumexp_stable"], "finite", "central", "float64")
    assert row["status"] == "inaccurate"
    assert "dominated by truncation" in row["diagnosis"] and "would do" in row["diagnosis"]


def test_cancellation_diagnosis(library):
    row = measure_one(library["one_minus_cos_naive"], "tape", "eager", "float64")
    assert row["status"] == "inaccurate"
    assert "cancellation" in row["diagnosis"]


def test_case_that_raises_is_an_error_row():
    @case(inputs={"x": 1.0})
    def broken(x, xp):
        raise RuntimeError("boom")

    df = rows(broken)
    assert set(df.status) == {"error"}
    assert "RuntimeError: boom" in df.iloc[0]["diagnosis"]


def test_unknown_namespace_function_is_named():
    @case(inputs={"x": 1.0})
    def uses_erfcx(x, xp):
        return xp.erfcx(x)

    df = rows(uses_erfcx)
    # one row for the case, not one per method: the name is missing everywhere alike
    assert len(df) == 1 and df.iloc[0]["status"] == "error"
    text = df.iloc[0]["diagnosis"]
    assert "xp.erfcx is not one of diffbench's array functions" in text and "xp.erfc" in text


def test_several_outputs_are_an_error():
    # one array is a vector output (tests/test_jacobian_core.py); a tuple of outputs is not a case's value
    @case(inputs={"x": [1.0, 2.0]})
    def vector_out(x, xp):
        return x[0] ** 2, x[1] ** 2

    df = rows(vector_out)
    assert set(df.status) == {"error"}
    assert all("must return a scalar" in t for t in df.diagnosis)


def test_non_number_output_is_an_error():
    @case(inputs={"x": 1.0})
    def text_out(x, xp):
        return "hello"

    df = rows(text_out)
    assert set(df.status) == {"error"}


def test_taylor_order_is_two_for_a_right_gradient(library):
    row = measure_one(library["rosenbrock"], "tape", "eager", "float64")
    assert row["taylor_order"] == pytest.approx(2.0, abs=0.1)


def test_taylor_order_is_nan_for_a_linear_function():
    @case(inputs={"x": [1.0, 2.0]})
    def linear(x, xp):
        return xp.sum(3.0 * x)

    assert math.isnan(measure_one(linear, "tape", "eager", "float64")["taylor_order"])


def test_forward_mode_and_complex_step(library):
    df = rows(library["beale"])
    assert only(df, "tape", "forward")["status"] == "ok"
    assert only(df, "finite", "complex_step")["status"] == "ok"
    assert only(df, "finite", "complex_step")["rel_error"] < 1e-14


def test_complex_step_is_skipped_where_it_cannot_apply():
    @case(inputs={"x": 2.5})
    def floor_times_x(x, xp):
        return xp.floor(x) * x

    row = measure_one(floor_times_x, "finite", "complex_step", "float64")
    assert row["status"] == "skipped" and "complex" in row["diagnosis"]


def test_second_order_rows(library):
    df = rows(library["rosenbrock"])
    second = df[df.order == 2]
    assert set(second.method) == {"symbolic", "tape", "finite"}
    assert set(second.status) == {"ok"}


def test_error_estimates_bound_the_real_error(library):
    df = rows(library["rosenbrock"], methods=("finite",))
    chosen = df[(df.method == "finite") & (df.order == 1) & df.variant.isin(["forward", "central", "richardson"])]
    assert len(chosen) == 3
    for _, row in chosen.iterrows():
        assert row["rel_error"] <= 10 * row["error_estimate"]
