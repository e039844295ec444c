"""Vector outputs, the core: cases that return arrays are loaded, planned, differentiated by finite differences,
certified by the reference one output row at a time and judged per row, against Jacobians derived by hand."""

import math
import sys
import textwrap

import numpy as np
import pytest

import diffbench
from diffbench import engines
from diffbench.diagnose import judge_jacobian
from diffbench.engines import output_shape
from diffbench.engines.finite import FiniteEngine, function_of, jacobian
from diffbench.harness import make_config, plan
from diffbench.reference import component, reference_jacobian


# --------------------------------------------------------------------------- the cases and their hand-derived truths
X_SOFT = np.array([0.1, -0.3, 0.7])


@diffbench.case(inputs={"x": X_SOFT})
def softmax(x, xp):
    e = xp.exp(x - xp.max(x))
    return e / xp.sum(e)


def softmax_truth(x):
    # p_k = e^{x_k} / Σ_j e^{x_j}. ∂p_k/∂x_i = p_k δ_ki − e^{x_k} e^{x_i} / (Σ e)² = p_k δ_ki − p_k p_i,
    # so J = diag(p) − p pᵀ (the shift by max(x) cancels in the quotient and changes nothing).
    p = np.exp(x) / np.sum(np.exp(x))
    return np.diag(p) - np.outer(p, p)


T0, V0 = 0.3, np.array([1.0, 2.0])


@diffbench.case(inputs={"t": T0, "v": V0})
def rotation(t, v, xp):
    c, s = xp.cos(t), xp.sin(t)
    return xp.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def rotation_truth():
    # out = R(t) v with R = [[c, −s], [s, c]]: ∂out/∂v = R; ∂out/∂t = R'(t) v = [[−s, −c], [c, −s]] v
    # = [−s v0 − c v1, c v0 − s v1].
    c, s = math.cos(T0), math.sin(T0)
    return {"t": np.array([-s * V0[0] - c * V0[1], c * V0[0] - s * V0[1]]), "v": np.array([[c, -s], [s, c]])}


X_ROSEN = np.array([1.2, 0.7])


@diffbench.case(inputs={"x": X_ROSEN})
def rosenbrock_residuals(x, xp):
    return xp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def rosenbrock_truth(x):
    # r1 = 10(x2 − x1²): ∂r1/∂x1 = −20 x1, ∂r1/∂x2 = 10; r2 = 1 − x1: ∂r2/∂x1 = −1, ∂r2/∂x2 = 0 (exactly).
    # At x = (1.2, 0.7): J = [[−24, 10], [−1, 0]].
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


@diffbench.case(inputs={"x": [0.5, 2.0], "y": 3.0})
def ignores_y(x, y, xp):
    # out = (2 x0, x0 x1): no output depends on y, so the y block of the Jacobian is exactly zero, and
    # ∂out/∂x = [[2, 0], [x1, x0]] = [[2, 0], [2, 0.5]] at x = (0.5, 2).
    return xp.stack([2.0 * x[0], x[0] * x[1]])


@diffbench.case(inputs={"x": [0.0, 1.5]})
def relu(x, xp):
    # out_k = max(x_k, 0): at x0 = 0 the left derivative of out0 is 0 and the right one 1, so row 0 does not exist;
    # row 1 is (0, 1) (x1 = 1.5 > 0).
    return xp.maximum(x, 0.0)


@diffbench.case(inputs={"x": [0.7, -1.3]})
def product_of_sines(x, xp):
    return xp.sin(x[0]) * xp.cos(x[1])


def flat_of(values, case):
    m = max(1, int(np.prod(output_shape(case), dtype=int)))
    return np.concatenate([np.asarray(values[k]).reshape(m, -1) for k in case.inputs], axis=1)


# --------------------------------------------------------------------------- loading and the output's shape
def test_a_case_returning_an_array_has_its_shape_and_a_scalar_case_none():
    assert output_shape(softmax) == (3,) and output_shape(rotation) == (2,)
    assert output_shape(product_of_sines) == ()


# --------------------------------------------------------------------------- the reference, per output row
def test_reference_jacobian_of_softmax_is_diag_p_minus_p_p_transposed():
    ref = reference_jacobian(softmax)
    assert ref.shape == (3,) and len(ref.rows) == 3 and ref.undefined is None and ref.uncertain is None
    np.testing.assert_allclose(ref.flat, softmax_truth(X_SOFT), rtol=1e-15, atol=1e-17)
    assert ref.values["x"].shape == (3, 3)
    # cached per component: the same Reference object comes back, and each row is the component case's gradient
    assert reference_jacobian(softmax).rows[1] is ref.rows[1]
    assert component(softmax, 1) is component(softmax, 1)


def test_reference_jacobian_of_rotation_and_residuals():
    ref = reference_jacobian(rotation)
    truth = rotation_truth()
    np.testing.assert_allclose(ref.values["v"], truth["v"], rtol=1e-15)
    np.testing.assert_allclose(ref.values["t"], truth["t"], rtol=1e-15)
    res = reference_jacobian(rosenbrock_residuals)
    np.testing.assert_array_equal(res.flat, rosenbrock_truth(X_ROSEN))  # exact: polynomials of exact inputs


def test_reference_jacobian_zero_block_and_kinked_row():
    ref = reference_jacobian(ignores_y)
    np.testing.assert_array_equal(ref.values["y"], np.zeros(2))
    np.testing.assert_array_equal(ref.values["x"], [[2.0, 0.0], [2.0, 0.5]])
    kinked = reference_jacobian(relu)
    assert kinked.undefined_rows == [0]  # out[0] has a kink at x0 = 0; out[1] is smooth
    assert kinked.undefined is None  # not every row: the others are judged
    assert kinked.rows[1].undefined is None and list(kinked.rows[1].flat) == [0.0, 1.0]


def test_too_many_outputs_for_the_reference(monkeypatch):
    from diffbench import reference as reference_module
    from diffbench.errors import ReferenceUnavailable

    monkeypatch.setattr(reference_module, "MAX_REFERENCE_OUTPUTS", 2)
    with pytest.raises(ReferenceUnavailable, match="exceed the certified Jacobian's budget of 2"):
        reference_jacobian(softmax.with_inputs({"x": X_SOFT}))  # a fresh case: nothing cached


# --------------------------------------------------------------------------- finite differences
# each scheme's documented accuracy in float64 (diffbench/engines/finite.py): forward eps^(1/2), central eps^(2/3),
# Richardson about eps^(4/5) at worst, complex step to rounding
ACCURACY = {"forward": 1e-6, "central": 1e-9, "richardson": 1e-11, "complex_step": 1e-14}


@pytest.mark.parametrize("variant", list(ACCURACY))
@pytest.mark.parametrize("one,truth", [(softmax, lambda: softmax_truth(X_SOFT)),
                                       (rosenbrock_residuals, lambda: rosenbrock_truth(X_ROSEN)),
                                       (rotation, lambda: np.hstack([rotation_truth()["t"][:, None],
                                                                     rotation_truth()["v"]]))])
def test_finite_jacobians_against_hand_derived_truths(one, truth, variant):
    got = diffbench.jacobian(one, "finite", variant)
    assert set(got) == set(one.inputs)
    for name, value in one.inputs.items():
        assert got[name].shape == output_shape(one) + value.shape
    want = truth()
    np.testing.assert_allclose(flat_of(got, one), want, rtol=0, atol=ACCURACY[variant] * np.max(np.abs(want)))


def test_finite_jacobian_evaluates_each_point_once_for_all_outputs():
    f = function_of(softmax, "float64")
    calls = []

    def counted(p):
        calls.append(p.copy())
        return f(p)

    result = jacobian(counted, X_SOFT.copy(), 3, "central", estimate=False)
    # central differences: x ± h eᵢ for 3 inputs, 6 points, each evaluated once for the 3 outputs
    assert len(calls) == 6 and result.evaluations == 6
    assert result.value.shape == (3, 3)


def test_richardson_error_estimate_per_entry_bounds_the_true_error():
    prepared = FiniteEngine().prepare(softmax, "richardson", "float64")
    error = prepared.info["jacobian_error"]
    got = flat_of(prepared.gradient(), softmax)
    assert error.shape == (3, 3)
    assert np.all(np.abs(got - softmax_truth(X_SOFT)) <= error)  # each entry's own bound holds
    assert prepared.info["error_estimate"] < 1e-10


def test_batched_evaluation_is_refused_for_a_vector_output_with_the_reason():
    engine = FiniteEngine()
    engine.evaluation = "jax.vmap"
    try:
        prepared = engine.prepare(softmax, "central", "float64")
    finally:
        engine.evaluation = "numpy"
    assert prepared.info["evaluation"] == "numpy"
    assert "batched evaluation not used: the case returns an array" in prepared.info["note"]


def test_gradient_of_a_vector_case_is_its_jacobian_and_jacobian_of_a_scalar_case_its_gradient():
    got = diffbench.gradient(rotation, "finite/complex_step")
    np.testing.assert_allclose(got["v"], rotation_truth()["v"], rtol=1e-15)
    scalar = diffbench.jacobian(product_of_sines, "finite", "complex_step")
    truth = [math.cos(0.7) * math.cos(-1.3), -math.sin(0.7) * math.sin(-1.3)]
    assert scalar["x"].shape == (2,) and scalar["x"] == pytest.approx(truth, rel=1e-14)
    np.testing.assert_allclose(diffbench.reference_jacobian(rotation)["t"], rotation_truth()["t"], rtol=1e-15)


# --------------------------------------------------------------------------- verdicts per row
def test_a_wrong_entry_is_inaccurate_and_named():
    ref = reference_jacobian(rosenbrock_residuals)
    right = rosenbrock_truth(X_ROSEN)
    assert judge_jacobian(rosenbrock_residuals, "tape", "eager", "float64", right, ref).status == "ok"
    wrong = right.copy()
    wrong[0, 1] *= 1 + 1e-6  # ∂r1/∂x2 = 10 off by 1e-6 relative: 4500 eps, beyond an exact method's 1000
    verdict = judge_jacobian(rosenbrock_residuals, "tape", "eager", "float64", wrong, ref)
    assert verdict.status == "inaccurate"
    assert "out[0] / x[1]: expected 10, got 10.00001" in verdict.diagnosis
    assert verdict.rel_error == pytest.approx(1e-5 / math.hypot(24, 10), rel=1e-6)  # row 0's normwise error


def test_the_exact_zero_entry_is_judged_against_its_row():
    # ∂r2/∂x2 = 0 exactly; a value of 1e-20 next to |∂r2/∂x1| = 1 is within rounding of the row's norm: ok, while
    # 1e-3 there breaks the tolerance relative to the row (1e-3 of its norm)
    ref = reference_jacobian(rosenbrock_residuals)
    near = rosenbrock_truth(X_ROSEN)
    near[1, 1] = 1e-20
    assert judge_jacobian(rosenbrock_residuals, "tape", "eager", "float64", near, ref).status == "ok"
    near[1, 1] = 1e-3
    verdict = judge_jacobian(rosenbrock_residuals, "tape", "eager", "float64", near, ref)
    assert verdict.status == "inaccurate" and "out[1] / x[1]: expected 0, got 0.001" in verdict.diagnosis


def test_a_kink_in_one_row_makes_the_row_undefined_never_ok_and_a_wrong_row_still_shows():
    ref = reference_jacobian(relu)
    subgradient = np.array([[0.5, 0.0], [0.0, 1.0]])  # row 0 any subgradient, row 1 right
    verdict = judge_jacobian(relu, "tape", "eager", "float64", subgradient, ref)
    assert verdict.status == "undefined" and verdict.cause == "no-derivative"
    assert verdict.diagnosis.startswith("out[0]:") and "The other 1 output row is within tolerance" in verdict.diagnosis
    wrong = subgradient.copy()
    wrong[1, 1] = 2.0
    assert judge_jacobian(relu, "tape", "eager", "float64", wrong, ref).status == "inaccurate"
    nan = subgradient.copy()
    nan[1, 0] = math.nan
    assert judge_jacobian(relu, "tape", "eager", "float64", nan, ref).status == "nan"


def test_none_is_reported_and_the_diagnosis_says_whether_the_zero_block_is_right():
    ref = reference_jacobian(ignores_y)
    zeros_for_y = np.array([[2.0, 0.0, 0.0], [2.0, 0.5, 0.0]])  # columns x0, x1, y
    # TensorFlow's None is the finding (as for a gradient), and the text says ZERO gives the right block here
    right = judge_jacobian(ignores_y, "tape", "eager", "float64", zeros_for_y, ref, unconnected=["y"])
    assert right.status == "none" and right.cause == "no-gradient"
    assert "UnconnectedGradients.ZERO) gives the right Jacobian" in right.diagnosis
    assert "every other entry is within tolerance" in right.diagnosis
    # ... and a wrong entry elsewhere is reported alongside
    wrong_x = zeros_for_y.copy()
    wrong_x[1, 1] = 0.6  # ∂(x0 x1)/∂x1 = x0 = 0.5
    assert "the other entries are inaccurate" in judge_jacobian(
        ignores_y, "tape", "eager", "float64", wrong_x, ref, unconnected=["y"]).diagnosis
    # zeros standing for None where the truth is not zero: none, naming the entries
    zeros_for_x = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    none = judge_jacobian(ignores_y, "tape", "eager", "float64", zeros_for_x, ref, unconnected=["x"])
    assert none.status == "none" and none.cause == "no-gradient"
    assert "out[0] / x[0]: expected 2" in none.diagnosis


# --------------------------------------------------------------------------- a run, and a toy engine's Jacobians
TOY = textwrap.dedent('''
    """A toy engine returning a hand-written Jacobian, right or with one entry tampered."""
    import math

    import numpy as np

    from diffbench.engines import EngineInfo, Prepared, output_shape


    class ToyJacobianEngine:
        name = "toyjac"
        info = EngineInfo(variants=("right", "tampered", "summed", "jac"), default_variant="right",
                          jacobian_variants=("jac",))

        def variants(self):
            return self.info.variants

        def devices(self):
            return ["CPU"]

        def prepare(self, case, variant, dtype, device):
            t, v = float(case.inputs["t"]), case.inputs["v"]
            c, s = math.cos(t), math.sin(t)
            jt = np.array([-s * v[0] - c * v[1], c * v[0] - s * v[1]])
            jv = np.array([[c, -s], [s, c]])
            if variant == "tampered":
                jv[1, 0] *= 1 + 1e-6
            if variant == "summed":  # the gradient of the outputs' sum, not the Jacobian
                jt, jv = np.array(jt.sum()), jv.sum(axis=0)

            def gradient():
                return {"t": np.asarray(jt, dtype=dtype), "v": jv.astype(dtype)}

            return Prepared(gradient=gradient, timed=gradient)

        def hessian(self, case, variant, dtype):
            raise NotImplementedError


    class UnconnectedEngine(ToyJacobianEngine):
        """Zeros for an input with no connection to any output, named in info["unconnected"] (as the tape does
        with unconnected_gradients=ZERO), for the case ignores_y: out = (2 x0, x0 x1) at x = (0.5, 2)."""

        info = EngineInfo(variants=("zero_y", "zero_x"), default_variant="zero_y")

        def prepare(self, case, variant, dtype, device):
            jx = np.array([[2.0, 0.0], [2.0, 0.5]])
            missing = "y" if variant == "zero_y" else "x"
            blocks = {"x": jx if missing == "y" else np.zeros((2, 2)), "y": np.zeros(2)}

            def gradient():
                return {k: v.astype(dtype) for k, v in blocks.items()}

            return Prepared(gradient=gradient, timed=gradient, info={"unconnected": [missing]})
''')


@pytest.fixture
def toyjac(tmp_path, monkeypatch):
    (tmp_path / "toy_jacobian_engine.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(engines.REGISTRY, "toyjac", "toy_jacobian_engine:ToyJacobianEngine")
    yield "toyjac"
    engines._instances.pop("toyjac", None)
    sys.modules.pop("toy_jacobian_engine", None)


def test_tensorflow_s_none_is_the_zero_block_in_a_run(toyjac, monkeypatch):
    monkeypatch.setitem(engines.REGISTRY, "unconnected", "toy_jacobian_engine:UnconnectedEngine")
    try:
        df = diffbench.run([ignores_y], methods=["unconnected"], dtypes=["float64"], timing=False, order2=False)
    finally:
        engines._instances.pop("unconnected", None)
    by = {r.variant: r for r in df.itertuples()}
    # no output depends on y: its true block is zero; TensorFlow's None is still the row's finding, as for a gradient
    assert by["zero_y"].status == "none" and "TensorFlow returned None for y" in by["zero_y"].diagnosis
    assert "gives the right Jacobian" in by["zero_y"].diagnosis
    # the x block is not zero (∂out0/∂x0 = 2): zeros standing for None there are a missing gradient
    assert by["zero_x"].status == "none" and by["zero_x"].cause == "no-gradient"


def test_a_tampered_jacobian_entry_is_caught_and_named(toyjac):
    df = diffbench.run([rotation], methods=[toyjac], dtypes=["float64"], timing=False)
    by = {r.variant: r for r in df.itertuples()}
    assert by["right"].status == "ok" and by["jac"].status == "ok"
    assert by["tampered"].status == "inaccurate"
    # ∂out1/∂v0 = sin(0.3) = 0.2955202067, off by 1e-6 relative
    assert f"out[1] / v[0]: expected {math.sin(0.3):.10g}" in by["tampered"].diagnosis
    assert by["summed"].status == "error" and "with respect to t has shape (), but the Jacobian" in by["summed"].diagnosis
    assert set(df.outputs) == {2} and set(df.output_shape) == {"(2,)"}


def test_jacobian_only_variants_are_planned_for_vector_cases_only(toyjac):
    config = make_config([toyjac], ["float64"], None, order2=False)
    # plan reads the output's shape found before (it never runs the case's code): found here as a run finds it
    assert output_shape(rotation) == (2,) and output_shape(product_of_sines) == ()
    vector_units = plan(rotation, config, {toyjac: ["CPU"]})
    scalar_units = plan(product_of_sines, config, {toyjac: ["CPU"]})
    assert (toyjac, "jac", "float64", "CPU", 1) in vector_units
    # a scalar case: every declared variant but the Jacobian-only one, as before vector outputs existed
    assert scalar_units == [(toyjac, v, "float64", "CPU", 1) for v in ("right", "tampered", "summed")]


def test_a_run_of_a_vector_case_by_finite_differences():
    df = diffbench.run([softmax, relu, ignores_y], methods=["finite"], dtypes=["float64", "float32"], timing=False)
    first = df[df.order == 1]
    assert set(first[first.case == "softmax"].status) == {"ok"}
    assert set(first[first.case == "ignores_y"].status) == {"ok"}
    assert set(first[first.case == "relu"].status) == {"undefined"}  # row 0 has a kink; never ok
    # no order-2 rows for vector cases: their second derivative is a third-order tensor, which is not formed
    assert set(df[df.order == 2].case) == set()
    assert set(df[df.case == "softmax"].output_shape) == {"(3,)"} and set(df[df.case == "softmax"].outputs) == {3}


def test_full_jacobian_rows_are_skipped_past_the_budget(monkeypatch):
    from diffbench import harness

    monkeypatch.setattr(harness, "FULL_JACOBIAN_LIMIT", 4)  # softmax has 3 × 3 = 9 entries
    fresh = softmax.with_inputs({"x": X_SOFT})
    df = diffbench.run([fresh], methods=["finite"], dtypes=["float64"], timing=False, order2=False)
    full = df[~df.variant.isin(["jvp", "vjp"])]
    assert set(full.status) == {"skipped"} and len(full) == 4
    assert all("3×3 = 9 entries, past the budget of 4" in d for d in full.diagnosis)
    # the products are what such a case is measured with
    assert set(df[df.variant.isin(["jvp", "vjp"])].status) == {"ok"}


def test_a_scalar_case_keeps_its_rows():
    config = make_config(["finite"], ["float64", "float32"], None)
    units = plan(product_of_sines, config, {"finite": ["CPU"]})
    variants = ("forward", "central", "complex_step", "richardson")
    assert units == [("finite", v, d, "CPU", 1) for d in ("float64", "float32") for v in variants] + \
        [("finite", "central", d, "CPU", 2) for d in ("float64", "float32")]
    df = diffbench.run([product_of_sines], methods=["finite"], dtypes=["float64"], timing=False)
    assert set(df.status) == {"ok"} and set(df.outputs) == {1} and df.output_shape.isna().all()
