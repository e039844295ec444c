"""The Jacobian cases of cases/jacobians.py: each docstring's hand-derived Jacobian, written here as a NumPy formula,
is checked against central differences computed here with plain NumPy (so the truth itself is verified), against
independent facts (SciPy's rosen_der, row sums, orthogonality), and against diffbench's Richardson Jacobian and
certified reference once they exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import diffbench
from diffbench.reference import reference_jacobian as certified_jacobian
from diffbench.case import load_cases

CASES = {c.name: c for c in load_cases(Path(__file__).resolve().parent.parent / "cases" / "jacobians.py")}


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


# --- the hand-derived Jacobians (each: inputs -> name -> array of shape output_shape + input_shape) ------------

def _softmax(z):
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return {"z": np.diag(p) - np.outer(p, p)}                       # J = diag(p) − ppᵀ


def _dense_tanh(W, b, x):
    y = np.tanh(W @ x + b)
    d = 1 - y**2                                                    # tanh' = 1 − tanh²
    k = len(y)
    return {"W": np.einsum("kj,l->kjl", np.eye(k) * d[:, None], x),  # δₖⱼ dₖ x[l]
            "b": np.diag(d),                                        # δₖⱼ dₖ
            "x": d[:, None] * W}                                    # dₖ W[k, l]


_X_LOGISTIC = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [0.9, -1.3, 0.4], [-1.1, 0.6, -0.5]])
_Y_LOGISTIC = np.array([1.0, -1.0, 1.0, 1.0, -1.0])


def _logistic_per_example(W):
    B, d = W.shape
    J = np.zeros((B, 1, B, d))
    for b in range(B):                                              # ∂ℓ_b/∂W_b = −y_b σ(−y_b W_b·x_b) x_b
        margin = _Y_LOGISTIC[b] * W[b] @ _X_LOGISTIC[b]
        J[b, 0, b] = -_Y_LOGISTIC[b] * _sigmoid(-margin) * _X_LOGISTIC[b]
    return {"W": J}


def _rosenbrock_residuals(x):
    n = len(x)
    J = np.zeros((2 * (n - 1), n))
    for i in range(n - 1):
        J[2 * i, i], J[2 * i, i + 1] = -20 * x[i], 10.0             # 10(x[i+1] − x[i]²)
        J[2 * i + 1, i] = -1.0                                      # 1 − x[i]
    return {"x": J}


def _robertson(y):
    y1, y2, y3 = y
    return {"y": np.array([[-0.04, 1e4 * y3, 1e4 * y2],
                           [0.04, -1e4 * y3 - 6e7 * y2, -1e4 * y2],
                           [0.0, 6e7 * y2, 0.0]])}


def _lorenz(u):
    x, y, z = u
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0
    return {"u": np.array([[-sigma, sigma, 0.0], [rho - z, -1.0, -x], [y, x, -beta]])}


def _rotation(theta, v):
    c, s = np.cos(theta), np.sin(theta)
    return {"theta": np.array([-s * v[0] - c * v[1], c * v[0] - s * v[1]]),   # R'(θ)v
            "v": np.array([[c, -s], [s, c]])}                               # R(θ)


def _unused_input_block(x, y):
    e, r2 = np.exp(x), np.sum(x**2)
    return {"x": np.diag(e * r2) + 2 * np.outer(e, x),             # δₖᵢ eᵏ‖x‖² + 2 eᵏ xᵢ
            "y": np.zeros((len(x), len(y)))}                        # the zero block


def _relu_vector_kink(x):
    J = np.diag((x > 0).astype(float))
    J[x == 0, x == 0] = np.nan                                      # the kink: no derivative
    return {"x": J}


def _elementwise_large(x):
    t = np.tanh(x)
    return {"x": np.diag(t + x * (1 - t**2))}


_C_DIAG = np.array([[1.5, -0.5, 2.0], [-1.0, 0.8, 0.3], [0.7, -2.0, 1.2]])


def _diag_tensor_tanh(X):
    out = np.tanh(X * _C_DIAG)                                      # δᵢₖ δⱼₗ C[i, j](1 − out[i, j]²)
    return {"X": np.einsum("ik,jl->ijkl", np.eye(3), np.eye(3)) * (_C_DIAG * (1 - out**2))[:, :, None, None]}


TRUTHS = {"softmax": _softmax, "dense_tanh": _dense_tanh, "logistic_per_example": _logistic_per_example,
          "rosenbrock_residuals": _rosenbrock_residuals, "robertson": _robertson, "lorenz": _lorenz,
          "rotation": _rotation, "unused_input_block": _unused_input_block, "relu_vector_kink": _relu_vector_kink,
          "elementwise_large": _elementwise_large, "diag_tensor_tanh": _diag_tensor_tanh}
#: cases at a size whose full Jacobian a test can hold (elementwise_large is 10⁵ × 10⁵ at its own point)
SMALL = {name: (CASES[name].at_size(40) if name == "elementwise_large" else CASES[name]) for name in TRUTHS}


# --- independent numerics --------------------------------------------------------------------------------------

def _evaluate(one, inputs):
    return np.asarray(one.func(*inputs.values(), xp=np), dtype=float)


def _central_jacobian(one, inputs=None):
    """Central differences per input component, h = 1e-6·max(1, |xᵢ|): error ~h²·f''' + eps·|f|/h ≈ 1e-10."""
    inputs = {k: np.array(v, dtype=float) for k, v in (inputs or one.inputs).items()}
    shape = _evaluate(one, inputs).shape
    result = {}
    for name, value in inputs.items():
        block = np.zeros(shape + value.shape)
        for index in np.ndindex(value.shape):
            h = 1e-6 * max(1.0, abs(value[index]))
            up = {k: v.copy() for k, v in inputs.items()}
            down = {k: v.copy() for k, v in inputs.items()}
            up[name][index] += h
            down[name][index] -= h
            block[(...,) + index] = (_evaluate(one, up) - _evaluate(one, down)) / (2 * h)
        result[name] = block
    return result


def _flat(values, one, outputs):
    return np.concatenate([np.asarray(values[k], dtype=float).reshape(outputs, -1) for k in one.inputs], axis=1)


def _assert_jacobian_close(got, truth, one, rtol, where):
    """Each entry within rtol of itself, or of its output row's largest entry where it is small (the rule for
    small components); entries NaN in the truth (no derivative) are left out."""
    outputs = int(np.prod(_evaluate(one, one.inputs).shape))
    got, truth = _flat(got, one, outputs), _flat(truth, one, outputs)
    assert got.shape == truth.shape, where
    defined = ~np.isnan(truth)
    row_size = np.nanmax(np.abs(truth), axis=1, keepdims=True)
    allowed = rtol * np.maximum(np.abs(truth), 1e-3 * np.broadcast_to(row_size, truth.shape))
    bad = defined & ~(np.abs(got - truth) <= allowed)
    assert not bad.any(), f"{where}: entries {np.argwhere(bad)[:3].tolist()} got {got[bad][:3]}, truth {truth[bad][:3]}"


def test_every_case_has_a_truth_and_loads():
    assert set(CASES) == set(TRUTHS)
    assert len(CASES) >= 10
    for one in CASES.values():
        assert one.problem is None, one.problem
        assert "jacobian" in one.tags


@pytest.mark.parametrize("name", sorted(TRUTHS))
def test_hand_truth_matches_central_differences(name):
    one = SMALL[name]
    truth = TRUTHS[name](*one.inputs.values())
    _assert_jacobian_close(_central_jacobian(one), truth, one, 1e-7, f"{name}: hand truth against central differences")


def test_output_shapes_are_the_vector_shapes():
    from diffbench.engines import BATCH_TAG, output_shape

    expected = {"softmax": (4,), "dense_tanh": (4,), "logistic_per_example": (5, 1), "rosenbrock_residuals": (6,),
                "robertson": (3,), "lorenz": (3,), "rotation": (2,), "unused_input_block": (2,),
                "relu_vector_kink": (3,), "elementwise_large": (100_000,), "diag_tensor_tanh": (3, 3)}
    assert {name: output_shape(one) for name, one in CASES.items()} == expected
    batched = [name for name, one in CASES.items() if BATCH_TAG in one.tags]
    assert batched == ["logistic_per_example"]
    # the batch axis: output row b depends on input row b only (block-diagonal Jacobian)
    J = _central_jacobian(CASES["logistic_per_example"])["W"]
    off = [J[b, :, c] for b in range(5) for c in range(5) if b != c]
    assert np.all(np.asarray(off) == 0.0)


def test_quick_profile_sizes_stay_small():
    # the certified reference costs one certified gradient per output row: keep m and m·N small, except the case
    # measured by products only
    for name, one in CASES.items():
        outputs = int(np.prod(_evaluate(one, one.inputs).shape))
        if name == "elementwise_large":
            assert one.size == outputs == 100_000
            continue
        assert outputs <= 10 and outputs * one.size <= 100, name


# --- facts the truths must satisfy, from independent sources -----------------------------------------------------

def test_rosenbrock_residuals_give_scipy_rosen_der():
    from scipy.optimize import rosen, rosen_der

    one = CASES["rosenbrock_residuals"]
    x = one.inputs["x"]
    r = _evaluate(one, one.inputs)
    assert np.sum(r**2) == pytest.approx(rosen(x), rel=1e-14)
    # Gauss–Newton: ∇(Σ r²) = 2Jᵀr
    np.testing.assert_allclose(2 * _rosenbrock_residuals(x)["x"].T @ r, rosen_der(x), rtol=1e-13)
    sized = one.at_size(7)
    np.testing.assert_allclose(2 * _rosenbrock_residuals(sized.inputs["x"])["x"].T @ _evaluate(sized, sized.inputs),
                               rosen_der(sized.inputs["x"]), rtol=1e-12)


def test_softmax_jacobian_structure():
    J = _softmax(CASES["softmax"].inputs["z"])["z"]
    np.testing.assert_allclose(J, J.T)
    np.testing.assert_allclose(J.sum(axis=0), 0.0, atol=1e-16)     # Σₖ pₖ = 1 for every z
    np.testing.assert_allclose(J @ np.ones(4), 0.0, atol=1e-16)     # a shift of every logit changes nothing


def test_robertson_conserves_mass_and_is_stiff():
    J = _robertson(CASES["robertson"].inputs["y"])["y"]
    np.testing.assert_allclose(J.sum(axis=0), 0.0, atol=1e-12)     # d/dt (y₁ + y₂ + y₃) = 0
    eigenvalues = np.sort(np.abs(np.linalg.eigvals(J)))
    assert eigenvalues[0] < 1e-9 * eigenvalues[-1] + 1e-12           # one zero mode (conservation)
    assert eigenvalues[-1] / eigenvalues[1] > 1e4                    # stiff: time scales four decades apart


def test_robertson_forward_differences_truncate_as_its_docstring_says():
    # row 2 (index 1), column y₂: the entry −1e4 y₃ − 6e7 y₂, and a forward difference's error h·3e7 (half of
    # |∂²f₂/∂y₂²| = 6e7): 2.6e-4 relative at h = 1.5e-8 in float64
    one = CASES["robertson"]
    y = one.inputs["y"]
    entry = _robertson(y)["y"][1, 1]
    for h, expected in ((1.5e-8, 2.6e-4), (3.5e-4, 6.2)):
        step = np.array([0.0, h, 0.0])
        forward = (_evaluate(one, {"y": y + step}) - _evaluate(one, {"y": y}))[1] / h
        assert abs(forward - entry) / abs(entry) == pytest.approx(expected, rel=0.05)


def test_rotation_jacobian_is_a_rotation():
    one = CASES["rotation"]
    truth = _rotation(*one.inputs.values())
    R, dtheta = truth["v"], truth["theta"]
    np.testing.assert_allclose(R @ R.T, np.eye(2), atol=1e-15)
    assert np.linalg.det(R) == pytest.approx(1.0)
    out = _evaluate(one, one.inputs)
    assert dtheta @ out == pytest.approx(0.0, abs=1e-15)
    assert np.linalg.norm(dtheta) == pytest.approx(np.linalg.norm(one.inputs["v"]))


def test_relu_kink_has_one_sided_slopes_that_differ():
    one = CASES["relu_vector_kink"]
    x = one.inputs["x"]
    for h in (1e-3, 1e-8):
        right = (_evaluate(one, {"x": x + h * np.eye(3)[1]}) - _evaluate(one, {"x": x}))[1] / h
        left = (_evaluate(one, {"x": x}) - _evaluate(one, {"x": x - h * np.eye(3)[1]}))[1] / h
        assert (left, right) == (0.0, 1.0)


def test_elementwise_large_products_by_hand():
    one = CASES["elementwise_large"]
    x = one.inputs["x"]
    v = np.random.default_rng(5).standard_normal(x.size)
    v /= np.linalg.norm(v)
    diagonal = np.tanh(x) + x * (1 - np.tanh(x) ** 2)               # J = diag(tanh x + x sech² x)
    h = 1e-6
    directional = (_evaluate(one, {"x": x + h * v}) - _evaluate(one, {"x": x - h * v})) / (2 * h)
    np.testing.assert_allclose(directional, diagonal * v, rtol=1e-6, atol=1e-9)
    # the sized family is the same map: its small Jacobian is the diagonal at its own point
    small = one.at_size(5)
    np.testing.assert_allclose(_central_jacobian(small)["x"], _elementwise_large(small.inputs["x"])["x"], atol=1e-8)


def test_diag_tensor_native_code_is_the_same_function_and_takes_the_fallback_loop():
    tf = pytest.importorskip("tensorflow")
    one = CASES["diag_tensor_tanh"]
    X = one.inputs["X"]
    for dtype, rtol in ((np.float64, 1e-13), (np.float32, 1e-5)):
        variable = tf.Variable(X.astype(dtype))
        np.testing.assert_allclose(one.native(variable).numpy(), np.tanh(X * _C_DIAG), rtol=rtol)
        for pfor in (True, False):
            with tf.GradientTape(persistent=True) as tape:
                out = one.native(variable)
            J = tape.jacobian(out, variable, experimental_use_pfor=pfor).numpy()
            _assert_jacobian_close({"X": J}, _diag_tensor_tanh(X), one, 20 * rtol, f"{dtype.__name__} pfor={pfor}")

    # the vectorised path holds a loop: pfor had no batched kernel for DiagPart of a rank-4 cotangent
    variable = tf.Variable(X)

    @tf.function
    def jacobian(pfor):
        with tf.GradientTape(persistent=True) as tape:
            out = one.native(variable)
        return tape.jacobian(out, variable, experimental_use_pfor=pfor)

    def ops_inside_loops(pfor):
        graph = jacobian.get_concrete_function(pfor).graph
        return ({op.type for op in graph.get_operations()},
                {node.op for fn in graph.as_graph_def().library.function for node in fn.node_def})

    outer, inner = ops_inside_loops(True)
    assert any("While" in t for t in outer) and "DiagPart" in inner


def test_logistic_per_example_batch_jacobian_is_the_diagonal_blocks():
    # TensorFlow's batch_jacobian over the case's own xp function (as the tape runs it) gives, per example b, the
    # block ∂ℓ_b/∂W_b of the hand truth
    tf = pytest.importorskip("tensorflow")
    from diffbench.namespaces import tensorflow_namespace

    one = CASES["logistic_per_example"]
    W = tf.Variable(one.inputs["W"])
    with tf.GradientTape() as tape:
        out = one.func(W, xp=tensorflow_namespace("float64"))
    blocks = tape.batch_jacobian(out, W).numpy()
    assert blocks.shape == (5, 1, 3)
    truth = _logistic_per_example(one.inputs["W"])["W"]
    np.testing.assert_allclose(blocks, np.stack([truth[b, :, b] for b in range(5)]), rtol=1e-14)


# --- against diffbench's Richardson Jacobian and its certified reference ------------------------------------------

@pytest.mark.parametrize("name", sorted(set(TRUTHS) - {"elementwise_large"}) + ["elementwise_large@40"])
def test_richardson_jacobian_matches_the_hand_truth(name):
    one = SMALL[name.split("@")[0]]
    truth = TRUTHS[one.name](*one.inputs.values())
    got = diffbench.jacobian(one, "finite", variant="richardson")
    assert set(got) == set(truth)
    _assert_jacobian_close(got, truth, one, 1e-8, f"{name}: finite/richardson")


@pytest.mark.parametrize("name", sorted(set(TRUTHS) - {"elementwise_large"}) + ["elementwise_large@40"])
def test_reference_jacobian_matches_the_hand_truth(name):
    one = SMALL[name.split("@")[0]]
    truth = TRUTHS[one.name](*one.inputs.values())
    reference = certified_jacobian(one, "float64")  # the per-row Reference objects
    outputs = int(np.prod(_evaluate(one, one.inputs).shape))
    flat_truth = _flat(truth, one, outputs)
    assert len(reference.rows) == outputs
    undefined_rows = [k for k in range(outputs) if reference.rows[k].undefined is not None]
    assert undefined_rows == [k for k in range(outputs) if np.isnan(flat_truth[k]).any()]
    defined = [k for k in range(outputs) if k not in undefined_rows]
    np.testing.assert_allclose(np.asarray(reference.flat, dtype=float)[defined], flat_truth[defined],
                               rtol=1e-13, atol=1e-15 * np.nanmax(np.abs(flat_truth)))
