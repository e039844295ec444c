"""JVP and VJP products (diffbench.products), their rows in ``run``, and gradient checks along random directions.

Every truth here is derived by hand in the comment above it; none is diffbench's own output fed back.
"""

from __future__ import annotations

import numpy as np
import pytest

import diffbench
from diffbench import products
from diffbench.case import make_case

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def softmax(x, xp):
    e = xp.exp(x - xp.max(x))
    return e / xp.sum(e)


def rotation(theta, x, xp):
    c, s = xp.cos(theta), xp.sin(theta)
    return xp.stack([c * x[0] - s * x[1], s * x[0] + c * x[1]])


X_SOFTMAX = np.array([0.3, -1.2, 2.0, 0.5])


def _softmax_truth(u, v):
    # p = softmax(x), J = diag(p) − p pᵀ (symmetric): J v = p ⊙ (v − pᵀv), uᵀJ = p ⊙ (u − pᵀu)
    p = np.exp(X_SOFTMAX) / np.sum(np.exp(X_SOFTMAX))
    return p * (v - p @ v), p * (u - p @ u)


@pytest.mark.parametrize("method, rtol", [("tape", 1e-14), ("finite", 1e-9)])
def test_softmax_products_match_the_hand_derived_jacobian(method, rtol):
    case = make_case(softmax, {"x": X_SOFTMAX})
    u, v = products.directions(case)
    jvp, vjp = _softmax_truth(u, v)
    got_jvp = products.prepare(method, case, "jvp", "float64").gradient()["jvp"]
    got_vjp = products.prepare(method, case, "vjp", "float64").gradient()["x"]
    np.testing.assert_allclose(got_jvp, jvp, rtol=rtol, atol=rtol * np.linalg.norm(jvp))
    np.testing.assert_allclose(got_vjp, vjp, rtol=rtol, atol=rtol * np.linalg.norm(vjp))


@pytest.mark.parametrize("method", ["tape", "finite"])
def test_rotation_products_match_the_hand_derived_jacobian(method):
    theta, x = 0.7, np.array([1.5, -0.4])
    case = make_case(rotation, {"theta": theta, "x": x})
    u, v = products.directions(case)
    # f = R(θ)x: ∂f/∂x = R(θ) = [[c, −s], [s, c]]; ∂f/∂θ = R'(θ)x = [−s·x0 − c·x1, c·x0 − s·x1]
    c, s = np.cos(theta), np.sin(theta)
    jacobian = np.column_stack([[-s * x[0] - c * x[1], c * x[0] - s * x[1]], [c, s], [-s, c]])
    rtol = 1e-14 if method == "tape" else 1e-9
    got_jvp = products.prepare(method, case, "jvp", "float64").gradient()["jvp"]
    got_vjp = products.prepare(method, case, "vjp", "float64").gradient()
    np.testing.assert_allclose(got_jvp, jacobian @ v, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(np.concatenate([np.ravel(got_vjp["theta"]), got_vjp["x"]]), u @ jacobian,
                               rtol=rtol, atol=rtol)


def test_directions_are_unit_seeded_by_name_and_rounded_to_the_dtype():
    case = make_case(softmax, {"x": X_SOFTMAX})
    u, v = products.directions(case)
    assert abs(np.linalg.norm(u) - 1) < 1e-15 and abs(np.linalg.norm(v) - 1) < 1e-15
    again = products.directions(make_case(softmax, {"x": X_SOFTMAX}))
    assert np.array_equal(u, again[0]) and np.array_equal(v, again[1])
    u32, v32 = products.directions(case, "float32")
    assert np.array_equal(v32, v.astype(np.float32).astype(np.float64))
    scalar = make_case(lambda x, xp: xp.sum(x**2), {"x": X_SOFTMAX}, name="other")
    assert np.array_equal(products.directions(scalar)[0], [1.0])
    assert not np.allclose(products.directions(scalar)[1], v)


def test_reference_products_are_the_certified_derivatives_of_the_hand_formula():
    case = make_case(softmax, {"x": X_SOFTMAX})
    u, v = products.directions(case)
    jvp, vjp = _softmax_truth(u, v)
    _, ref = products.reference_vjp(case)
    np.testing.assert_allclose(ref.flat, vjp, rtol=1e-15, atol=1e-17)
    entries = products.reference_jvp(case)
    np.testing.assert_allclose([r.flat[0] for _, r in entries], jvp, rtol=1e-15, atol=1e-17)


def test_product_gap_is_relative_to_the_largest_product():
    # u = e0, v = e1 and J = [[0, 2], [0, 0]]: uᵀ(Jv) = 2, (uᵀJ)v = 2 → gap 0; with the VJP's second entry
    # tampered to 2.5: (uᵀJ)v = 2.5, gap = 0.5 / max(‖Jv‖ = 2, ‖uᵀJ‖ = 2.5) = 0.2
    u, v = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert products.product_gap(u, np.array([2.0, 0.0]), np.array([0.0, 2.0]), v) == 0.0
    assert products.product_gap(u, np.array([2.0, 0.0]), np.array([0.0, 2.5]), v) == pytest.approx(0.2)


SINES = '''
import numpy as np
from diffbench import case


@case(inputs={"x": np.array([0.3, 0.5, -1.1])})
def sines(x, xp):
    return xp.sin(x)


@sines.tensorflow
def _(x):
    import tensorflow as tf

    @tf.custom_gradient
    def f(v):
        def grad(dy):
            return dy * tf.cos(v) * FACTOR
        return tf.sin(v), grad

    return f(x)
'''


@pytest.mark.parametrize("factor", [1.0, 1.01])
def test_the_consistency_check_catches_a_wrong_reverse_rule(tmp_path, factor):
    path = tmp_path / "sines.py"
    path.write_text(SINES.replace("FACTOR", repr(factor)))
    case = diffbench.load_cases(path)[0]
    df = diffbench.run([case], methods=["tape"], dtypes=["float64"], variants={"tape": ["jvp", "vjp"]},
                       timing=False)
    vjp = df[df.variant == "vjp"].iloc[0]
    jvp = df[df.variant == "jvp"].iloc[0]
    u, v = products.directions(case)
    c = np.cos(case.inputs["x"])
    # J = diag(cos x); forward mode differentiates the primal sin (right), the custom backward rule returns
    # FACTOR·cos x ⊙ u: gap = |uᵀ(c⊙v) − FACTOR·(c⊙u)ᵀv| / max(‖c⊙v‖, FACTOR·‖c⊙u‖)
    expected = abs(u @ (c * v) - factor * (c * u) @ v) / max(np.linalg.norm(c * v), factor * np.linalg.norm(c * u))
    assert jvp.status == "ok"
    if factor == 1.0:
        assert vjp.product_gap < 1e-15 and vjp.status == "ok"
    else:
        assert vjp.product_gap == pytest.approx(expected, rel=1e-6)
        assert vjp.product_gap > 1e-4
        assert vjp.status == "inaccurate"


def test_scalar_cases_get_no_product_rows():
    case = make_case(lambda x, xp: xp.sum(xp.sin(x)), {"x": X_SOFTMAX}, name="scalar")
    df = diffbench.run([case], methods=["tape"], dtypes=["float64"], timing=False, order2=False)
    assert not set(df.variant) & set(products.PRODUCT_VARIANTS)


def test_jvp_past_the_reference_output_budget_is_judged_against_differences():
    n = products.MAX_REFERENCE_OUTPUTS + 6
    case = make_case(lambda x, xp: xp.tanh(x), {"x": np.linspace(-1, 1, n)}, name="tanh_map")
    df = diffbench.run([case], methods=["tape", "finite"], dtypes=["float64"],
                       variants={"tape": ["jvp"], "finite": ["jvp"]}, timing=False)
    tape = df[df.method == "tape"].iloc[0]
    finite = df[df.method == "finite"].iloc[0]
    assert tape.status == "ok" and tape.reference == "richardson-differences"
    assert finite.status == "skipped"  # the differences are the finite JVP itself: no independent truth


# --------------------------------------------------------------------------- checks along random directions
N_LARGE = 5000


def _tanh_square(rng):
    x, w = rng.uniform(-1, 1, N_LARGE), rng.uniform(-1, 1, N_LARGE)
    point = np.concatenate([x, w])

    def f(p):
        return float(np.sum(np.tanh(p[:N_LARGE] * p[N_LARGE:]) ** 2))

    # f = Σ tanh(xᵢwᵢ)²: ∂f/∂xᵢ = 2·tanh(xᵢwᵢ)·(1 − tanh²(xᵢwᵢ))·wᵢ, ∂f/∂wᵢ = the same with xᵢ
    t = np.tanh(x * w)
    d = 2 * t * (1 - t**2)
    return f, point, np.concatenate([d * w, d * x])


def test_no_false_alarm_on_a_correct_gradient_across_seeds():
    eps = np.finfo(np.float64).eps
    for seed in range(25):
        rng = np.random.default_rng(seed)
        f, point, gradient = _tanh_square(rng)
        # rounding at half the contract's tolerance, random signs: what an exact method may do
        rounded = gradient * (1 + 500 * eps * rng.choice([-1.0, 1.0], gradient.size))
        found = products.check_directions(rounded, f, point, eps, seed=seed)
        assert found.passed, f"seed {seed}: {found.describe()}"


def test_ten_percent_wrong_in_one_component_is_caught_across_seeds():
    eps = np.finfo(np.float64).eps
    for seed in range(25):
        rng = np.random.default_rng(100 + seed)
        f, point, gradient = _tanh_square(rng)
        # a component of ordinary size (at least the median): 10 % of a vanishing component is no error
        i = int(rng.choice(np.flatnonzero(np.abs(gradient) >= np.median(np.abs(gradient)))))
        wrong = gradient.copy()
        wrong[i] *= 1.1
        found = products.check_directions(wrong, f, point, eps, seed=seed)
        # the error moves every gᵀw by exactly 0.1·|gᵢ|·max(|xᵢ|, 1); caught with margin in every direction
        assert np.all(found.failed), f"seed {seed}, component {i}: {found.describe()}"
        assert np.all(found.tolerance < 0.05 * abs(gradient[i]))


def test_two_swapped_components_are_caught_across_seeds():
    # swapping gᵢ and gⱼ errs by +δ and −δ (δ = gⱼ − gᵢ): along w they move gᵀw by δ·(wᵢ − wⱼ), which random
    # signs alone make 0 with probability 1/2 per direction (wᵢ = wⱼ); the random magnitudes mᵢ ∈ [1, 2] make
    # |wᵢ − wⱼ| < ε a chance of order ε, so with δ of ordinary size every seed catches it
    eps = np.finfo(np.float64).eps
    for seed in range(10):
        rng = np.random.default_rng(200 + seed)
        f, point, gradient = _tanh_square(rng)
        order = np.argsort(np.abs(gradient))
        i, j = int(order[-1]), int(order[len(order) // 2])  # the largest and a median component
        swapped = gradient.copy()
        swapped[[i, j]] = swapped[[j, i]]
        found = products.check_directions(swapped, f, point, eps, seed=seed)
        assert not found.passed, f"seed {seed}: {found.describe()}"


def test_assert_gradients_on_large_inputs_passes_a_correct_gradient_and_catches_one_wrong_component():
    tf = pytest.importorskip("tensorflow")
    f, point, gradient = _tanh_square(np.random.default_rng(7))
    inputs = {"x": point[:N_LARGE], "w": point[N_LARGE:]}
    diffbench.assert_gradients(lambda x, w: tf.reduce_sum(tf.tanh(x * w) ** 2), inputs)
    i = int(np.argmax(np.abs(gradient[:N_LARGE])))
    mask = np.zeros(N_LARGE)
    mask[i] = 0.1

    @tf.custom_gradient
    def wrong(x, w):
        y = tf.tanh(x * w)

        def grad(dy):
            d = 2 * y * (1 - y**2)
            return dy * d * w * (1 + tf.constant(mask)), dy * d * x
        return tf.reduce_sum(y**2), grad

    with pytest.raises(AssertionError, match="random-sign directions"):
        diffbench.assert_gradients(lambda x, w: wrong(x, w), inputs)


def test_assert_gradients_checks_a_vector_output_row_by_row():
    tf = pytest.importorskip("tensorflow")
    diffbench.assert_gradients(lambda x: tf.nn.softmax(x), {"x": X_SOFTMAX})

    @tf.custom_gradient
    def bad_softmax(x):
        p = tf.nn.softmax(x)

        def grad(dy):  # forgets the −p·(pᵀdy) term of J = diag(p) − ppᵀ
            return dy * p
        return p, grad

    with pytest.raises(AssertionError, match="output element"):
        diffbench.assert_gradients(lambda x: bad_softmax(x), {"x": X_SOFTMAX})
    # against the maths (each row judged against the certified reference of that output element)
    diffbench.assert_gradients(lambda x: tf.nn.softmax(x), {"x": X_SOFTMAX}, reference=softmax)
    with pytest.raises(AssertionError, match="output element"):
        diffbench.assert_gradients(lambda x: bad_softmax(x), {"x": X_SOFTMAX}, reference=softmax)


def test_assert_gradients_checks_a_large_jacobian_through_random_output_signs():
    tf = pytest.importorskip("tensorflow")
    x = np.linspace(-1, 1, 300)
    diffbench.assert_gradients(lambda x: tf.tanh(x), {"x": x})
    scale = np.ones(300)
    scale[17] = 1.1  # one diagonal entry of J = diag(1 − tanh²) 10 % wrong

    @tf.custom_gradient
    def bad_tanh(v):
        y = tf.tanh(v)

        def grad(dy):
            return dy * (1 - y**2) * tf.constant(scale)
        return y, grad

    with pytest.raises(AssertionError, match="random signs u"):
        diffbench.assert_gradients(lambda x: bad_tanh(x), {"x": x})


VECTOR_CASES = '''
import numpy as np
from diffbench import case


@case(inputs={"x": np.array([0.3, -1.2, 2.0, 0.5])})
def softmax(x, xp):
    e = xp.exp(x - xp.max(x))
    return e / xp.sum(e)


@case(inputs={"x": 0.4})
def scalar(x, xp):
    return xp.sin(x)
'''


def test_the_plugin_checks_products_of_a_vector_output_case(pytester):
    pytester.makepyfile(vcases=VECTOR_CASES)
    result = pytester.runpytest_subprocess("--diffbench-cases", "vcases.py", "--diffbench-methods", "tape,finite",
                                           "--diffbench-dtypes", "float64", "-v", "-k", "jvp or vjp")
    result.stdout.fnmatch_lines(["*softmax[[]tape-jvp-float64[]] PASSED*", "*softmax[[]finite-vjp-float64[]] PASSED*"])
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 4  # softmax: tape and finite, jvp and vjp
    assert outcomes.get("failed", 0) == 0
    assert outcomes["skipped"] == 4  # the scalar case has no product rows, and its items say so


WIDE = '''
import numpy as np
from diffbench import case

N = 50_001  # one past diffbench.harness.REFERENCE_MAX_INPUTS
X = np.linspace(-1.0, 1.0, N)


@case(inputs={"x": X})
def wide(x, xp):
    return xp.sum(xp.tanh(x) ** 2)


@wide.tensorflow
def _(x):
    import tensorflow as tf

    mask = np.zeros(N)
    mask[N - 1] = 0.1  # at x = 1: ∂f/∂x = 2·tanh(1)·(1 − tanh²(1)) ≈ 0.64, of ordinary size

    @tf.custom_gradient
    def f(v):
        y = tf.tanh(v)

        def grad(dy):
            return dy * 2 * y * (1 - y**2) * (1 + tf.constant(mask))
        return tf.reduce_sum(y**2), grad

    return f(x)
'''


def test_a_wrong_component_past_the_reference_budget_is_caught_along_directions(tmp_path):
    from diffbench.harness import REFERENCE_MAX_INPUTS

    path = tmp_path / "wide.py"
    path.write_text(WIDE)
    case = diffbench.load_cases(path)[0]
    assert case.size == REFERENCE_MAX_INPUTS + 1
    df = diffbench.run([case], methods=["tape"], dtypes=["float64"], variants={"tape": ["eager"]}, order2=False,
                       timing=False)
    row = df.iloc[0]
    assert row.status == "inaccurate" and row.reference == "richardson-directions"


UNCONNECTED = '''
import numpy as np
from diffbench import case


@case(inputs={"x": np.array([0.3, 0.5])})
def cut(x, xp):
    return xp.sin(x)


@cut.tensorflow
def _(x):
    import tensorflow as tf

    return tf.sin(tf.constant(x.numpy()))  # .numpy() cuts the tape: TensorFlow returns None, never zeros
'''


def test_a_cut_tape_gives_none_product_rows(tmp_path):
    path = tmp_path / "cut.py"
    path.write_text(UNCONNECTED)
    case = diffbench.load_cases(path)[0]
    df = diffbench.run([case], methods=["tape"], dtypes=["float64"], variants={"tape": ["jvp", "vjp"]},
                       timing=False)
    assert set(df.status) == {"none"} and set(df.cause) == {"no-gradient"}
