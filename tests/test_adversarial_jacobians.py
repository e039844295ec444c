"""Adversarial checks of vector outputs: Jacobians, products and the uᵀf check of assert_gradients, attacked with
functions, points and injected wrong derivatives whose truths are derived by hand (derivations in comments)."""

import math
import sys
import textwrap

import numpy as np
import pytest

import diffbench
from diffbench import engines
from diffbench.diagnose import judge_jacobian
from diffbench.products import check_directions
from diffbench.reference import reference_jacobian

X_TH = np.array([0.3, 0.8])


@diffbench.case(inputs={"x": X_TH})
def tiny_and_huge(x, xp):
    return xp.stack([1e-9 * xp.sin(x[0]) * x[1], 1e9 * xp.cos(x[0] - x[1])])


def tiny_and_huge_truth():
    # row 0: ∂(1e-9 sin x0 · x1) = 1e-9 (cos x0 · x1, sin x0); row 1: ∂(1e9 cos(x0 − x1)) = 1e9 (−sin(x0 − x1),
    # sin(x0 − x1)). The rows differ in size by some 10¹⁸: a norm over the whole matrix would hide row 0.
    x0, x1 = X_TH
    return np.array([[1e-9 * math.cos(x0) * x1, 1e-9 * math.sin(x0)],
                     [-1e9 * math.sin(x0 - x1), 1e9 * math.sin(x0 - x1)]])


def test_a_tiny_row_is_judged_at_its_own_scale_next_to_a_huge_one():
    ref = reference_jacobian(tiny_and_huge)
    truth = tiny_and_huge_truth()
    assert judge_jacobian(tiny_and_huge, "tape", "eager", "float64", truth, ref).status == "ok"
    for k, i, factor in [(0, 0, 1.1), (0, 1, -1.0)]:  # 10 % off; a wrong sign in the small row
        wrong = truth.copy()
        wrong[k, i] *= factor
        verdict = judge_jacobian(tiny_and_huge, "tape", "eager", "float64", wrong, ref)
        assert verdict.status == "inaccurate" and f"out[0] / x[{i}]" in verdict.diagnosis


X_R = np.array([1.2, 0.7])


@diffbench.case(inputs={"x": X_R})
def residuals(x, xp):
    return xp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def test_transpose_and_broadcast_gradient_of_the_sum_are_caught():
    # J = [[−20 x0, 10], [−1, 0]] = [[−24, 10], [−1, 0]] at x = (1.2, 0.7): not symmetric, so Jᵀ is wrong;
    # the gradient of the outputs' sum, 1ᵀJ = (−25, 10), broadcast to both rows is wrong in both rows.
    ref = reference_jacobian(residuals)
    truth = np.array([[-24.0, 10.0], [-1.0, 0.0]])
    assert judge_jacobian(residuals, "tape", "eager", "float64", truth, ref).status == "ok"
    transposed = judge_jacobian(residuals, "tape", "eager", "float64", truth.T.copy(), ref)
    assert transposed.status == "inaccurate" and "2 of 2 output rows are not ok" in transposed.diagnosis
    summed = np.tile(truth.sum(axis=0), (2, 1))
    assert judge_jacobian(residuals, "tape", "eager", "float64", summed, ref).status == "inaccurate"


X_M = np.array([0.3, 0.8, -0.5])


@diffbench.case(inputs={"x": X_M})
def matrix_out(x, xp):
    return xp.stack([xp.stack([x[b] ** (a + 1) * (b + 1) for b in range(3)]) for a in range(2)])


def test_output_axes_flattened_in_the_wrong_order_are_caught():
    # out[a, b] = (b + 1)·x_b^(a+1), shape (2, 3): ∂out[a, b]/∂x_i = δ_bi (b + 1)(a + 1) x_b^a. Flattening the
    # (a, b) axes in Fortran order instead of C order permutes the rows of the (6, 3) matrix: wrong.
    J = np.zeros((2, 3, 3))
    for a in range(2):
        for b in range(3):
            J[a, b, b] = (b + 1) * (a + 1) * X_M[b] ** a
    ref = reference_jacobian(matrix_out)
    np.testing.assert_allclose(ref.values["x"], J, rtol=1e-15)
    assert judge_jacobian(matrix_out, "tape", "eager", "float64", J.reshape(6, 3), ref).status == "ok"
    fortran = np.transpose(J, (1, 0, 2)).reshape(6, 3)
    assert judge_jacobian(matrix_out, "tape", "eager", "float64", fortran, ref).status == "inaccurate"


@diffbench.case(inputs={"x": X_TH})
def kink_and_smooth(x, xp):
    # out0 = |x0 − 0.3| has a kink at x0 = 0.3 (left derivative −1, right +1): row 0 does not exist;
    # out1 = x0 x1: row 1 = (x1, x0) = (0.8, 0.3).
    return xp.stack([xp.abs(x[0] - 0.3), x[0] * x[1]])


def test_a_kink_in_one_row_and_a_nan_or_wrong_value_in_another():
    ref = reference_jacobian(kink_and_smooth)
    right = np.array([[1.0, 0.0], [0.8, 0.3]])  # row 0 one of the one-sided derivatives
    assert judge_jacobian(kink_and_smooth, "tape", "eager", "float64", right, ref).status == "undefined"
    wrong = right.copy()
    wrong[1, 1] = 0.3 * (1 + 1e-9)  # 4500 eps off: beyond an exact method's 1000 eps
    assert judge_jacobian(kink_and_smooth, "tape", "eager", "float64", wrong, ref).status == "inaccurate"
    nan = right.copy()
    nan[1, 0] = math.nan
    assert judge_jacobian(kink_and_smooth, "tape", "eager", "float64", nan, ref).status == "nan"


# --------------------------------------------------------------------------- assert_gradients past row-by-row size
M_SWAP = 70  # more than MAX_REFERENCE_OUTPUTS = 64 outputs: checked as the scalar uᵀf


def _cube_with_swapped_upstream(k, l, tf):
    # f(x) = x³ elementwise, J = diag(3x²). The custom gradient swaps entries k and l of the upstream gradient
    # dy, so its VJP is (uᵀJ)ᵢ = u_{π(i)}·3xᵢ²: entries k and l are wrong by (uₗ − uₖ)·3x², which vanishes when
    # uₖ = uₗ. With random signs alone that is probability 1/2 per pair.
    perm = np.arange(M_SWAP)
    perm[[k, l]] = perm[[l, k]]

    @tf.custom_gradient
    def cube(x):
        def grad(dy):
            return tf.gather(dy, perm) * 3.0 * x * x
        return x ** 3, grad

    return lambda x: cube(x)


def test_assert_gradients_catches_swapped_output_rows_of_a_large_jacobian():
    tf = pytest.importorskip("tensorflow")
    x = np.linspace(0.5, 1.5, M_SWAP)

    @tf.custom_gradient
    def right_cube(v):
        return v ** 3, lambda dy: dy * 3.0 * v * v

    diffbench.assert_gradients(lambda x: right_cube(x), {"x": x})  # the right custom gradient: no alarm
    # in float32 too: u is rounded to float32, so the function's uᵀf and the truth's are the same sum
    diffbench.assert_gradients(lambda x: right_cube(x), {"x": x.astype(np.float32)})
    # the swap of rows 0 and 1 went unseen with signs alone (their signs agreed under the fixed seed)
    for k, l in [(0, 1), (0, 2), (3, 4), (10, 40)]:
        with pytest.raises(AssertionError, match="random signs u"):
            diffbench.assert_gradients(_cube_with_swapped_upstream(k, l, tf), {"x": x})


# --------------------------------------------------------------------------- the directional check at size
def test_an_error_spread_over_many_components_does_not_cancel_along_the_directions():
    # f(x) = ½ Σ cᵢ xᵢ² with cᵢ = 1 + i/N: ∇f = c ⊙ x exactly. An error of alternating sign on every component,
    # 10⁻⁶ of each (a stride bug), sums to zero along the all-ones direction but not along random-sign ones:
    # Σ ±10⁻⁶ gᵢ wᵢ is a random walk of size ~10⁻⁶·‖g ⊙ w‖, 10⁷ above the 1000-eps allowance's scale.
    n = 4000
    c = 1.0 + np.arange(n) / n
    x = np.linspace(-2.0, 2.0, n)
    eps = float(np.finfo(np.float64).eps)

    def f(p):
        return 0.5 * float(np.sum(c * p * p))

    g = c * x
    assert check_directions(g, f, x, eps).passed
    wrong = g * (1 + 1e-6 * np.where(np.arange(n) % 2 == 0, 1.0, -1.0))
    assert not np.any(np.isclose(np.sum(wrong - g), 1.0))  # sanity: the errors do not vanish entrywise
    assert not check_directions(wrong, f, x, eps).passed


# --------------------------------------------------------------------------- product rows of a misbehaving engine
T0, V0 = 0.3, np.array([1.0, 2.0])


@diffbench.case(inputs={"t": T0, "v": V0})
def turn(t, v, xp):
    c, s = xp.cos(t), xp.sin(t)
    return xp.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


TOY_PRODUCTS = textwrap.dedent('''
    """A toy engine returning J·v and uᵀ·J of turn (out = R(t) v) from a hand-written Jacobian, with a
    misbehaviour chosen by the class attribute mode."""
    import math

    import numpy as np

    from diffbench.engines import EngineInfo, Prepared
    from diffbench.products import directions


    class ToyProducts:
        name = "toyprod"
        info = EngineInfo(variants=("jvp", "vjp"), default_variant="jvp", jacobian_variants=("jvp", "vjp"))
        mode = "right"

        def variants(self):
            return self.info.variants

        def devices(self):
            return ["CPU"]

        def prepare(self, case, variant, dtype, device):
            u, v = directions(case, dtype)
            t, w = float(case.inputs["t"]), case.inputs["v"]
            c, s = math.cos(t), math.sin(t)
            # columns t, v0, v1: ∂(R v)/∂t = R'(t) v = (−s w0 − c w1, c w0 − s w1), ∂(R v)/∂v = R
            J = np.array([[-s * w[0] - c * w[1], c, -s], [c * w[0] - s * w[1], s, c]])
            if variant == "jvp":
                value = J @ v
                out = {"jvp": np.append(value, 1.0) if self.mode == "extra" else value}
            else:
                value = u @ J
                out = {"t": np.array(value[0]), "v": value[1:]}
                if self.mode == "reordered":  # the right VJP, in another order of keys
                    out = {"v": value[1:], "t": np.array(value[0])}
                if self.mode == "extra":
                    out["w"] = np.array([5.0])

            def gradient():
                if self.mode == "raise":
                    raise ValueError("the engine broke")
                return {k: np.asarray(a, dtype=dtype) for k, a in out.items()}

            return Prepared(gradient=gradient, timed=gradient)

        def hessian(self, case, variant, dtype):
            raise NotImplementedError
''')


@pytest.fixture
def toyprod(tmp_path, monkeypatch):
    (tmp_path / "toy_products_engine.py").write_text(TOY_PRODUCTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(engines.REGISTRY, "toyprod", "toy_products_engine:ToyProducts")
    yield sys.modules.get("toy_products_engine") or __import__("toy_products_engine")
    engines._instances.pop("toyprod", None)
    sys.modules.pop("toy_products_engine", None)


def _product_rows(mode, module):
    module.ToyProducts.mode = mode
    engines._instances.pop("toyprod", None)
    df = diffbench.run([turn], methods=["toyprod"], dtypes=["float64"], timing=False, order2=False)
    return {r.variant: r for r in df.itertuples()}


def test_product_rows_of_a_misbehaving_engine(toyprod):
    right = _product_rows("right", toyprod)
    assert right["jvp"].status == "ok" and right["vjp"].status == "ok"
    # the right VJP with its inputs in another order is right: judged in the case's order (was a false alarm)
    reordered = _product_rows("reordered", toyprod)
    assert reordered["vjp"].status == "ok"
    # a product of the wrong shape is the engine's error, not the case's (was blamed on the case)
    extra = _product_rows("extra", toyprod)
    assert extra["jvp"].status == "error" and extra["jvp"].cause == "raised"
    assert extra["vjp"].status == "error" and extra["vjp"].cause == "raised"
    # an engine raising while it returns its product: an error row, and the run goes on (the run crashed)
    broke = _product_rows("raise", toyprod)
    assert broke["jvp"].status == "error" and "the engine broke" in broke["jvp"].diagnosis


# --------------------------------------------------------------------------- JVP entries: own scale, cancellation
def test_a_tiny_jvp_entry_is_not_hidden_by_a_huge_one():
    from diffbench.harness import Unit, _judge_product
    from diffbench.products import directions

    # J·v by hand from tiny_and_huge_truth (v the case's seeded unit direction): entry 0 is ~1e-9, entry 1 ~1e8
    _, v = directions(tiny_and_huge)
    jv = tiny_and_huge_truth() @ v
    unit = Unit(tiny_and_huge, "tape", "jvp", "float64", "CPU", 1)
    assert _judge_product(unit, jv)[0].status == "ok"
    wrong = jv.copy()
    wrong[0] *= 1.5
    verdict = _judge_product(unit, wrong)[0]
    assert verdict.status == "inaccurate" and verdict.diagnosis.startswith("out[0]")


X0_CANCEL = 0.4


def _cancelling_jvp_case():
    from diffbench.products import directions

    def make(x):
        @diffbench.case(inputs={"x": np.array(x)}, name="jvp_cancel")
        def jvp_cancel(x, xp):
            return xp.stack([xp.sin(x[0]) + xp.sin(x[1]), x[0] * x[1]])
        return jvp_cancel

    # the seeded v depends on the case's name only; choose x1 so that JVP entry 0, cos(x0)·v0 + cos(x1)·v1,
    # vanishes: cos(x1) = −cos(x0)·v0/v1 (|·| ≤ 1 for this name's v = (−0.484, 0.875)): the truth is then of
    # the order of the rounding of x1 (6e-17), while its terms are ≈ 0.45 each
    _, v = directions(make([X0_CANCEL, 0.1]))
    x1 = math.acos(-math.cos(X0_CANCEL) * v[0] / v[1])
    case = make([X0_CANCEL, x1])
    # what a JVP computed in float64 gives: the two terms summed, an error of ≈ eps·0.45 (5e-17 here)
    got = np.array([math.cos(X0_CANCEL) * v[0] + math.cos(x1) * v[1], x1 * v[0] + X0_CANCEL * v[1]])
    return case, got


def test_a_cancelling_jvp_entry_is_blamed_on_the_function_not_the_method():
    from diffbench.harness import Unit, _judge_product
    from diffbench.results import FUNCTION_CAUSES

    case, got = _cancelling_jvp_case()
    verdict = _judge_product(Unit(case, "tape", "jvp", "float64", "CPU", 1), got)[0]
    assert verdict.cause in FUNCTION_CAUSES and verdict.cause == "formula-cancellation"


@pytest.mark.xfail(strict=True, reason="each JVP entry is judged relative to itself (as a one-input case's "
                   "derivative, where the path-sum scale decides only the cause): an entry cos(x0)·v0 + cos(x1)·v1 "
                   "that cancels to 6e-17 from terms of 0.45, computed with an error of 0.5 eps of its terms, is "
                   "'inaccurate' (cause formula-cancellation) while the same method's full Jacobian is ok. Judging "
                   "it against the rest of the vector's norm would hide a tiny output next to a huge one (above)")
def test_a_jvp_entry_that_cancels_is_ok_when_accurate_to_its_terms():
    from diffbench.harness import Unit, _judge_product

    case, got = _cancelling_jvp_case()
    assert _judge_product(Unit(case, "tape", "jvp", "float64", "CPU", 1), got)[0].status == "ok"


def test_an_integer_input_is_differentiated_as_a_real_one():
    @diffbench.case(inputs={"x": np.array([0.5, 2.0]), "n": 3})
    def powers(x, n, xp):
        return x ** n

    # out_k = x_k^n: ∂/∂x = diag(n x^(n−1)) = diag(0.75, 12); ∂/∂n = x^n ln x = (0.125 ln 0.5, 8 ln 2)
    ref = reference_jacobian(powers)
    np.testing.assert_allclose(ref.values["x"], [[0.75, 0.0], [0.0, 12.0]], rtol=1e-15)
    np.testing.assert_allclose(ref.values["n"], [0.125 * math.log(0.5), 8 * math.log(2.0)], rtol=1e-15)


@pytest.mark.parametrize("method", ["tape/eager", "tape/function", "tape/forward", "tape/loop", "symbolic/numpy",
                                    "symbolic/symengine", "finite/complex_step"])
def test_real_engines_keep_the_axes_of_a_non_symmetric_and_a_matrix_output_jacobian(method):
    # the hand truths of residuals ([[−24, 10], [−1, 0]]) and of matrix_out (J[a, b, i] = δ_bi (b+1)(a+1) x_b^a),
    # checked in their layout S + I: a transposed square block or swapped output axes would fail here (and is
    # judged inaccurate: the tests above)
    pytest.importorskip("tensorflow")
    got = diffbench.jacobian(residuals, method)["x"]
    np.testing.assert_allclose(got, [[-24.0, 10.0], [-1.0, 0.0]], rtol=1e-13, atol=1e-300)
    J = np.zeros((2, 3, 3))
    for a in range(2):
        for b in range(3):
            J[a, b, b] = (b + 1) * (a + 1) * X_M[b] ** a
    got = diffbench.jacobian(matrix_out, method)["x"]
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got, J, rtol=1e-13, atol=1e-300)


def test_an_uncertain_row_is_never_ok_and_never_hides_a_wrong_row():
    import copy

    # residuals' truth [[−24, 10], [−1, 0]] (above), with row 1's certification withdrawn for x[1] as the reference
    # does when a search runs out of budget (injected here: the combination rule is what is attacked)
    ref = copy.deepcopy(reference_jacobian(residuals))
    row = ref.rows[1]
    row.certified = np.array([True, False])
    row.uncertain = "the reference could not be certified for x[1] (injected)"
    truth = np.array([[-24.0, 10.0], [-1.0, 0.0]])
    right = judge_jacobian(residuals, "tape", "eager", "float64", truth, ref)
    assert right.status == "uncertain" and right.cause == "not-certified"
    wrong_elsewhere = truth.copy()
    wrong_elsewhere[0, 0] = -24.1  # row 0 is certified: wrong there is wrong, whatever row 1 is
    assert judge_jacobian(residuals, "tape", "eager", "float64", wrong_elsewhere, ref).status == "inaccurate"
    wrong_certified = truth.copy()
    wrong_certified[1, 0] = -1.1  # the certified entry of the uncertain row
    assert judge_jacobian(residuals, "tape", "eager", "float64", wrong_certified, ref).status == "inaccurate"


@diffbench.case(inputs={"x": X_TH})
def constant_row(x, xp):
    # out0 = x0 x1: row (x1, x0) = (0.8, 0.3); out1 = 0·x0 + 5 does not change with x: row (0, 0) exactly
    return xp.stack([x[0] * x[1], 0.0 * x[0] + 5.0])


def test_an_exactly_zero_row_is_not_excused_by_its_neighbour():
    ref = reference_jacobian(constant_row)
    np.testing.assert_array_equal(ref.flat, [[0.8, 0.3], [0.0, 0.0]])
    truth = np.array([[0.8, 0.3], [0.0, 0.0]])
    assert judge_jacobian(constant_row, "tape", "eager", "float64", truth, ref).status == "ok"
    noisy = truth.copy()
    noisy[1, 0] = 1e-10  # nothing in out1 depends on x: every exact method gives 0, and 1e-10 is not rounding of 0
    verdict = judge_jacobian(constant_row, "tape", "eager", "float64", noisy, ref)
    assert verdict.status == "inaccurate" and "out[1] / x[0]: expected 0, got 1e-10" in verdict.diagnosis
    # and the real engines give the zero row exactly
    pytest.importorskip("tensorflow")
    for method in ("tape/eager", "tape/forward", "symbolic/numpy", "finite/central"):
        np.testing.assert_array_equal(diffbench.jacobian(constant_row, method)["x"][1], [0.0, 0.0])


X_MANY = np.array([0.3, 0.8])


@diffbench.case(inputs={"x": X_MANY})
def many_outputs(x, xp):
    return xp.stack([1e-14 * xp.sin(x[0]) * x[1]] + [x[0] * k + x[1] for k in range(65)])


def test_a_tiny_jvp_entry_is_judged_at_its_own_size_past_the_certified_budget():
    from diffbench.harness import Unit, _judge_product
    from diffbench.products import directions

    # 66 outputs: past MAX_REFERENCE_OUTPUTS = 64 the JVP is judged against Richardson differences. By hand,
    # entry 0 = 1e-14 (cos x0 · x1 · v0 + sin x0 · v1) (some 5e-16 here), entry k ≥ 1 = (k − 1) v0 + v1 (up to 60).
    # Judged as one vector, entry 0 fell below 1 % of the norm and was held to 1000 eps of 1 % of 60: doubled
    # or of the wrong sign, it passed (a false ok).
    _, v = directions(many_outputs)
    x0, x1 = X_MANY
    jv = np.array([1e-14 * (math.cos(x0) * x1 * v[0] + math.sin(x0) * v[1])] + [k * v[0] + v[1] for k in range(65)])
    unit = Unit(many_outputs, "tape", "jvp", "float64", "CPU", 1)
    verdict, label, _ = _judge_product(unit, jv)
    assert label == "richardson-differences" and verdict.status == "ok"
    for factor in (2.0, -1.0):
        wrong = jv.copy()
        wrong[0] *= factor
        verdict, _, _ = _judge_product(unit, wrong)
        assert verdict.status == "inaccurate" and "out[0]: expected" in verdict.diagnosis
