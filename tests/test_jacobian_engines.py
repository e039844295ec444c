"""Jacobians of vector-output cases, engine by engine, against hand-derived truths.

Every method/variant that computes Jacobians is called at engine level
(``get_engine(m).prepare(case, variant, dtype, "CPU").gradient()``): for a case returning shape S,
each input of shape I gets an array of shape S + I with J[k..., i...] = ∂out[k...]/∂in[i...].
The truths below are derived by hand (the derivation is in each comment) and evaluated with NumPy.
JAX and PyTorch rows are skipped where those packages are not installed.
"""

import numpy as np
import pytest

from diffbench.case import make_case
from diffbench.engines import Skip, get_engine

#: (method, variant) pairs that compute full Jacobians of any vector case
REVERSE_AND_FORWARD = [
    ("tape", "eager"), ("tape", "function"), ("tape", "xla"), ("tape", "loop"), ("tape", "forward"),
    ("symbolic", "numpy"), ("symbolic", "numpy-nocse"), ("symbolic", "tensorflow"), ("symbolic", "symengine"),
    ("jax", "eager"), ("jax", "jit"), ("jax", "jacfwd"),
    ("torch", "eager"), ("torch", "jacfwd"),
]


def _require(method):
    """Skip a JAX/PyTorch row where the package is not installed (as tests/test_optional_engines.py does)."""
    if method == "jax":
        pytest.importorskip("jax")
    if method == "torch":
        pytest.importorskip("torch")
        pytest.importorskip("array_api_compat")


def jacobian(case, method, variant, dtype="float64"):
    _require(method)
    return get_engine(method).prepare(case, variant, dtype, "CPU").gradient()


# ---------------------------------------------------------------------------------------------- the cases
X_SOFTMAX = np.array([0.1, -0.5, 2.0, 0.7])


def softmax(x, xp):
    e = xp.exp(x - xp.max(x))
    return e / xp.sum(e)


def softmax_truth(x):
    # p_i = e^{x_i} / Σ_k e^{x_k}.  ∂p_i/∂x_j = p_i δ_ij − e^{x_i} e^{x_j} / (Σ e)² = p_i δ_ij − p_i p_j,
    # so J = diag(p) − p pᵀ (the shift by max(x) cancels between numerator and denominator)
    p = np.exp(x) / np.exp(x).sum()
    return np.diag(p) - np.outer(p, p)


THETA, V = 0.6, np.array([1.5, -0.75])


def rotation(theta, v, xp):
    c, s = xp.cos(theta), xp.sin(theta)
    return xp.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def rotation_truth(theta, v):
    # out = R(θ) v with R = [[cos θ, −sin θ], [sin θ, cos θ]]; linear in v, so ∂out/∂v = R(θ);
    # ∂out/∂θ = R'(θ) v with R' = [[−sin θ, −cos θ], [cos θ, −sin θ]] (θ is a scalar: shape (2,) + () = (2,))
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    drot = np.array([[-s, -c], [c, -s]])
    return {"theta": drot @ v, "v": rot}


W = np.array([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.25]])
X_DENSE = np.array([0.8, -1.2, 0.4])
B = np.array([0.05, -0.3])


def dense(x, W, b, xp):
    return xp.tanh(W @ x + b)


def dense_truth(x, w, b):
    # y = tanh(u), u = W x + b, tanh' = 1 − tanh² = 1 − y².  ∂y_i/∂x_j = (1 − y_i²) W_ij: diag(1 − y²) W;
    # ∂y_i/∂W[k, j] = (1 − y_i²) x_j δ_ik (row k of W feeds only u_k); ∂y_i/∂b_k = (1 − y_i²) δ_ik: diag(1 − y²)
    y = np.tanh(w @ x + b)
    d = 1 - y ** 2
    eye = np.eye(len(y))
    return {"x": d[:, None] * w, "W": d[:, None, None] * eye[:, :, None] * x[None, None, :], "b": np.diag(d)}


# per-example logistic loss: weights tiled per example (axis 0 of the first input is the batch axis), data fixed
DATA = np.array([[1.0, 2.0, -0.5], [-1.5, 0.5, 1.0], [0.25, -1.0, 2.0], [2.0, 0.0, -1.0]])
LABELS = np.array([1.0, -1.0, -1.0, 1.0])
W_TILED = np.tile(np.array([0.2, -0.1, 0.3]), (4, 1)) + 0.05 * np.arange(12).reshape(4, 3)


def per_example_loss(w, xp):
    margins = xp.asarray(LABELS) * xp.sum(w * xp.asarray(DATA), axis=1)
    return xp.log(1 + xp.exp(-margins))


def per_example_truth(w):
    # ℓ_b = log(1 + e^{−m_b}), m_b = t_b Σ_j w_bj X_bj.  dℓ/dm = −e^{−m}/(1 + e^{−m}) = −σ(−m), ∂m_b/∂w_b'j =
    # δ_bb' t_b X_bj, so J[b, b', j] = −δ_bb' σ(−m_b) t_b X_bj: block-diagonal, block b the per-example gradient
    m = LABELS * (w * DATA).sum(axis=1)
    blocks = -(1 / (1 + np.exp(m)))[:, None] * LABELS[:, None] * DATA
    full = np.zeros((4, 4, 3))
    full[np.arange(4), np.arange(4)] = blocks
    return full


def ignores_z(x, z, xp):
    return xp.stack([xp.sum(x), 2.0 * x[0]])


def ignores_z_truth():
    # out_0 = x_0 + x_1 + x_2, out_1 = 2 x_0: ∂out/∂x = [[1, 1, 1], [2, 0, 0]]; z appears nowhere: a zero block
    return {"x": np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]), "z": np.zeros((2, 2))}


CASES = {
    "softmax": (make_case(softmax, {"x": X_SOFTMAX}, name="softmax"), lambda: {"x": softmax_truth(X_SOFTMAX)}),
    "rotation": (make_case(rotation, {"theta": THETA, "v": V}, name="rotation"), lambda: rotation_truth(THETA, V)),
    "dense": (make_case(dense, {"x": X_DENSE, "W": W, "b": B}, name="dense"), lambda: dense_truth(X_DENSE, W, B)),
    "per_example": (make_case(per_example_loss, {"w": W_TILED}, name="per_example_loss", tags=["batch"]),
                    lambda: {"w": per_example_truth(W_TILED)}),
}


# ---------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("method,variant", REVERSE_AND_FORWARD)
@pytest.mark.parametrize("name", list(CASES))
def test_jacobian_against_the_hand_derived_truth(name, method, variant):
    case, truth = CASES[name]
    got = jacobian(case, method, variant)
    expected = truth()
    assert set(got) == set(expected)
    for input_name, want in expected.items():
        assert got[input_name].shape == want.shape, input_name
        np.testing.assert_allclose(got[input_name], want, rtol=1e-12, atol=1e-14, err_msg=f"{method}/{variant}")


def test_batch_jacobian_lays_the_per_example_gradients_on_the_block_diagonal():
    case, truth = CASES["per_example"]
    got = jacobian(case, "tape", "batch")["w"]
    assert got.shape == (4, 4, 3)
    np.testing.assert_allclose(got, truth()["w"], rtol=1e-12, atol=1e-14)
    # off the diagonal blocks the layout holds exact zeros (batch_jacobian never forms them)
    off = ~np.eye(4, dtype=bool)
    assert np.all(got[off] == 0)


def test_batch_variant_needs_the_batch_tag():
    with pytest.raises(Skip, match="batch axis"):
        jacobian(CASES["softmax"][0], "tape", "batch")


def test_batch_variant_checks_the_batch_axis_lengths():
    def first_three(w, xp):  # tagged, but 3 outputs against a batch of 4 inputs
        return xp.sum(w, axis=1)[:3]

    case = make_case(first_three, {"w": W_TILED}, name="first_three", tags=["batch"])
    with pytest.raises(Skip, match="differ in length"):
        jacobian(case, "tape", "batch")


@pytest.mark.parametrize("variant", ["eager", "function", "xla", "loop", "forward"])
def test_tape_unconnected_input_is_a_zero_block_named_in_unconnected(variant):
    case = make_case(ignores_z, {"x": [1.0, 2.0, 3.0], "z": [4.0, 5.0]}, name="ignores_z")
    prepared = get_engine("tape").prepare(case, variant, "float64", "CPU")
    got = prepared.gradient()
    for name, want in ignores_z_truth().items():
        np.testing.assert_array_equal(got[name], want)
    assert prepared.info["unconnected"] == ["z"]


@pytest.mark.parametrize("method,variant", [("symbolic", "numpy"), ("symbolic", "symengine"), ("jax", "jit"),
                                            ("torch", "eager")])
def test_other_engines_give_the_zero_block_too(method, variant):
    case = make_case(ignores_z, {"x": [1.0, 2.0, 3.0], "z": [4.0, 5.0]}, name="ignores_z")
    got = jacobian(case, method, variant)
    for name, want in ignores_z_truth().items():
        np.testing.assert_array_equal(got[name], want)


def test_tape_partly_connected_input_is_not_reported_as_none():
    def half(x, z, xp):
        # out_0 = x_0 z_0, out_1 = x_1: ∂out/∂z = [[x_0, 0], [0, 0]] (z reaches out_0 only: not a None block)
        return xp.stack([x[0] * z[0], x[1]])

    case = make_case(half, {"x": [3.0, 2.0], "z": [4.0, 5.0]}, name="half")
    for variant in ("function", "loop"):
        prepared = get_engine("tape").prepare(case, variant, "float64", "CPU")
        got = prepared.gradient()
        np.testing.assert_array_equal(got["z"], [[3.0, 0.0], [0.0, 0.0]])
        np.testing.assert_array_equal(got["x"], [[4.0, 0.0], [0.0, 1.0]])
        assert "unconnected" not in prepared.info


@pytest.mark.parametrize("method,variant", REVERSE_AND_FORWARD + [("tape", "batch")])
def test_float32_jacobians_within_float32_tolerance(method, variant):
    name = "per_example" if variant == "batch" else "dense"
    case, truth = CASES[name]
    try:
        got = jacobian(case, method, variant, "float32")
    except Skip as skip:  # SymEngine without its LLVM backend computes float64 only
        pytest.skip(str(skip))
    for input_name, want in truth().items():
        assert got[input_name].dtype == np.float32
        # float32's unit roundoff is 6e-8; a few dozen roundings through tanh and a dot product stay well below 1e-5
        np.testing.assert_allclose(got[input_name], want, rtol=1e-5, atol=1e-6)


# a float32 Jacobian where tape.jacobian's pfor path and its while-loop path round differently
TEMPERED_X = np.array([0.3, -1.1, 2.2, 0.9, -0.4, 1.3, 0.05, -2.0])


def tempered(s, xp):
    return xp.exp(s * xp.asarray(TEMPERED_X)) / 3.0


def test_pfor_and_while_loop_round_differently_in_float32():
    # out_i = e^{s x_i} / 3, so ∂out_i/∂s = x_i e^{s x_i} / 3 (three factors). Reverse mode multiplies them in the
    # order the cotangent flows: the while loop computes ((1/3)·e^{s x_i})·x_i, while pfor's vectorised graph
    # (TensorFlow 2.21) associates them as (e^{s x_i}·x_i)/3. In float32 the two orders round differently in some
    # entries (by one unit in the last place); both are correctly rounded to within a few units of the truth.
    case = make_case(tempered, {"s": 0.7}, name="tempered")
    engine = get_engine("tape")
    vectorised = engine.prepare(case, "function", "float32", "CPU").gradient()["s"]
    looped = engine.prepare(case, "loop", "float32", "CPU").gradient()["s"]
    s32 = float(np.float32(0.7))  # the point the float32 run differentiates at
    truth = TEMPERED_X * np.exp(s32 * TEMPERED_X) / 3
    unit = 2.0 ** -24
    for got in (vectorised, looped):
        assert np.all(np.abs(got - truth) <= 4 * unit * np.abs(truth))
    assert np.any(vectorised != looped), "pfor and the while loop agreed bitwise in every entry"
    assert np.all(np.abs(vectorised.astype(np.float64) - looped) <= 2 * 2.0 ** -23 * np.abs(truth))


# -------------------------------------------------------------------------- scalar cases keep today's paths
def square_sum(x, xp):
    return xp.sum(x * x)


@pytest.mark.parametrize("method,variant", [("tape", "loop"), ("tape", "batch"), ("jax", "jacfwd"),
                                            ("torch", "jacfwd")])
def test_jacobian_only_variants_skip_scalar_cases(method, variant):
    _require(method)
    case = make_case(square_sum, {"x": [1.0, 2.0]}, name="square_sum")
    with pytest.raises(Skip, match="vector outputs"):
        get_engine(method).prepare(case, variant, "float64", "CPU")


def test_scalar_case_gradient_is_unchanged():
    # f = Σ x², ∇f = 2x: the scalar path still returns the gradient's own shape
    case = make_case(square_sum, {"x": [1.0, 2.0]}, name="square_sum")
    for method, variant in [("tape", "eager"), ("tape", "forward"), ("symbolic", "numpy"), ("symbolic", "symengine")]:
        got = get_engine(method).prepare(case, variant, "float64", "CPU").gradient()["x"]
        np.testing.assert_array_equal(got, [2.0, 4.0])


@pytest.mark.parametrize("method", ["tape", "symbolic", "jax", "torch"])
def test_hessian_of_a_vector_output_is_skipped(method):
    _require(method)
    with pytest.raises(Skip, match="Hessian of a vector output"):
        get_engine(method).hessian(CASES["softmax"][0], get_engine(method).info.default_variant, "float64")


def test_symbolic_jacobian_budget_is_the_predicted_cost(monkeypatch):
    from diffbench.engines import OverBudget, symbolic

    # the dense layer's cost: each y_i = tanh(W_i·x + b_i) has 3 products, 3 sums and a tanh (7 operations) and
    # depends on 3 + 3 + 1 = 7 inputs: 2 outputs × 7 × 7 = 98
    monkeypatch.setattr(symbolic, "MAX_JACOBIAN_COST", 97)
    case = make_case(dense, {"x": X_DENSE, "W": W, "b": B}, name="dense")
    with pytest.raises(OverBudget, match="predicted cost 98"):
        get_engine("symbolic").prepare(case, "numpy", "float64", "CPU")



def test_integer_input_of_a_vector_case_has_no_jacobian_block():
    from diffbench.engines import NoGradient

    def scaled(x, n, xp):
        return x * n

    case = make_case(scaled, {"x": [1.0, 2.0], "n": np.array(3)}, name="scaled")  # an integer array: an integer input
    for variant in ("function", "loop", "forward"):
        with pytest.raises(NoGradient, match="integer") as raised:
            get_engine("tape").prepare(case, variant, "float64", "CPU").gradient()
        assert raised.value.inputs == ["n"]
        # the float input's block is still there: out_i = n x_i, so ∂out/∂x = n·I = 3·I
        np.testing.assert_array_equal(raised.value.partial["x"], 3 * np.eye(2))


@pytest.mark.parametrize("variant", ["eager", "function", "loop", "forward"])
def test_native_tensorflow_vector_output(variant):
    import tensorflow as tf

    case = make_case(softmax, {"x": X_SOFTMAX}, name="softmax_native")
    case.tensorflow(lambda x: tf.nn.softmax(x))
    got = get_engine("tape").prepare(case, variant, "float64", "CPU").gradient()["x"]
    np.testing.assert_allclose(got, softmax_truth(X_SOFTMAX), rtol=1e-12, atol=1e-15)


def test_batch_variant_with_a_shared_input():
    def shifted(w, c, xp):
        return xp.tanh(xp.sum(w * xp.asarray(DATA), axis=1) + c)

    # y_b = tanh(u_b), u_b = Σ_j w_bj X_bj + c.  ∂y_b/∂w_b'j = δ_bb' (1 − y_b²) X_bj (block-diagonal, by
    # batch_jacobian); c is shared, so ∂y_b/∂c = 1 − y_b² for every b (by tape.jacobian, shape (4,) + () = (4,))
    c = 0.2
    case = make_case(shifted, {"w": W_TILED, "c": c}, name="shifted", tags=["batch"])
    got = get_engine("tape").prepare(case, "batch", "float64", "CPU").gradient()
    y = np.tanh((W_TILED * DATA).sum(axis=1) + c)
    d = 1 - y ** 2
    want_w = np.zeros((4, 4, 3))
    want_w[np.arange(4), np.arange(4)] = d[:, None] * DATA
    np.testing.assert_allclose(got["w"], want_w, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got["c"], d, rtol=1e-13)


def test_symengine_jacobian_budget_counts_entries(monkeypatch):
    from diffbench.engines import symbolic

    # the dense layer's Jacobian has 2 outputs × (3 + 6 + 2) inputs = 22 entries
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_JACOBIAN_ENTRIES", 21)
    case = make_case(dense, {"x": X_DENSE, "W": W, "b": B}, name="dense")
    with pytest.raises(Skip, match="22 entries"):
        get_engine("symbolic").prepare(case, "symengine", "float64", "CPU")


def test_torch_falls_back_to_one_backward_pass_per_output(monkeypatch):
    _require("torch")
    import torch

    def no_vmap(*args, **kwargs):
        def transformed(*primals):  # torch.func raises when the transformed function runs
            raise RuntimeError("vmap: there is no batching rule for an operation of this function")

        return transformed

    # a function torch.func cannot transform: the eager row uses torch.autograd.functional.jacobian and says so
    monkeypatch.setattr(torch.func, "jacrev", no_vmap)
    prepared = get_engine("torch").prepare(CASES["softmax"][0], "eager", "float64", "CPU")
    np.testing.assert_allclose(prepared.gradient()["x"], softmax_truth(X_SOFTMAX), rtol=1e-12, atol=1e-15)
    assert "torch.autograd.functional.jacobian" in prepared.info["note"]


def test_symbolic_tensorflow_keeps_constant_derivatives_in_float64():
    """A derivative that is a constant (d(x/3)/dx = 1/3; Lorenz's ∂(−8/3·z)/∂z = −8/3) comes back from the
    lambdified TensorFlow code as a Python float: it must become a float64 tensor, not a float32 one
    (which would be off by about 1e-8 relative)."""
    import diffbench
    from diffbench import case as declare

    @declare(inputs={"x": 2.0})
    def third(x, xp):
        return x / 3

    @declare(inputs={"z": [1.0, 2.0]})
    def scaled(z, xp):
        return -8 / 3 * z

    g = diffbench.jacobian(third, "symbolic", variant="tensorflow")["x"]
    assert abs(float(g) - 1 / 3) <= 2 ** -53
    j = diffbench.jacobian(scaled, "symbolic", variant="tensorflow")["z"]
    np.testing.assert_allclose(j, -8 / 3 * np.eye(2), rtol=2 ** -52)
