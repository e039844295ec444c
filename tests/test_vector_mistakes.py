"""What a newcomer meets with vector outputs: the README's softmax example through `check` and
`assert_gradients`, and the mistakes a user makes with an array-valued case, each answered by a message that
names the case and the fix (never a traceback, never a silent pass).

Truths by hand: the rotation out = R(θ)·p (Jacobian R(θ), as in test_jacobian_gate.py); the products of a
fixed Jacobian J with fixed vectors computed here with NumPy; softmax's Jacobian diag(p) − ppᵀ.
"""

import json
import math

import numpy as np
import pytest

from diffbench import assert_gradients
from diffbench import baseline as fmt
from diffbench import testing

THETA, P = 0.3, [1.5, -0.5]
INPUTS = {"theta": THETA, "p": P}
EXIT_OK, EXIT_REGRESSION = 0, 1


def product_rows(scale_vjp=1.0):
    """The rotation's `jvp` and `vjp` rows as the harness hands them to the gate. J = [∂out/∂θ | R(θ)]
    (2 × 3), v = (1, 0.5, −0.25) over (θ, p₀, p₁), u = (0.6, −0.8): J·v has 2 entries (the output's length),
    uᵀ·J one entry per input (θ: 1, p: 2), so neither has the m × n size of a Jacobian block."""
    c, s = math.cos(THETA), math.sin(THETA)
    d_theta = np.array([-s * P[0] - c * P[1], c * P[0] - s * P[1]])
    rotation = np.array([[c, -s], [s, c]])
    jacobian = np.column_stack([d_theta, rotation])
    v, u = np.array([1.0, 0.5, -0.25]), np.array([0.6, -0.8])
    vjp = u @ jacobian * scale_vjp
    rows = []
    for variant, gradient in (("jvp", {"jvp": jacobian @ v}), ("vjp", {"theta": vjp[:1].reshape(()), "p": vjp[1:]})):
        rows.append({"method": "tape", "variant": variant, "dtype": "float64", "status": "ok", "rel_error": 1e-16,
                     "gradient": gradient, "output_shape": "(2,)", "time_median_s": None, "time_min_s": None})
    return rows


def entry(rows):
    return {"definition_hash": "0123456789abcdef", "source_hash": "", "file": None,
            "inputs": {k: {"shape": list(np.shape(v)), "values": list(np.ravel(v))} for k, v in INPUTS.items()},
            "rows": rows}


def snapshot(rows, tmp_path):
    data = {"schema_version": fmt.SCHEMA_VERSION,
            "cases": {"rotate": entry([testing.compact_row(testing._baseline_row(r)) for r in rows])}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data, indent=1))
    return fmt.read_baseline(path)


def check(base, rows):
    return testing.compare(base, {"rotate": entry([testing._baseline_row(r) for r in rows])})


def test_unchanged_product_rows_pass_check(tmp_path):
    # `snapshot` then `check` of the README's softmax with every method failed on its vjp rows ("the Jacobian
    # w.r.t. `z` changed size 3 -> 3"): a product was compared as if it were an m × n Jacobian block
    base = snapshot(product_rows(), tmp_path)
    code, lines = check(base, product_rows())
    assert code == EXIT_OK, lines


def test_a_moved_product_is_a_regression_naming_the_input(tmp_path):
    base = snapshot(product_rows(), tmp_path)
    code, lines = check(base, product_rows(scale_vjp=1.01))  # every entry of uᵀ·J 1 % off: far past 1000 eps
    text = "\n".join(lines)
    assert code == EXIT_REGRESSION and "tape/vjp" in text and "`p`" in text and "changed size" not in text


def test_a_product_whose_output_changed_shape_is_named_so(tmp_path):
    base = snapshot(product_rows(), tmp_path)
    rows = product_rows()
    rows[0]["output_shape"], rows[0]["gradient"] = "(3,)", {"jvp": np.zeros(3)}
    code, lines = check(base, rows)
    assert code == EXIT_REGRESSION and "shape changed (2,) -> (3,)" in "\n".join(lines)


# --------------------------------------------------------------------------- assert_gradients and custom gradients
def softmax_with_reverse_rule(right):
    """softmax with a tf.custom_gradient reverse rule: the right one uᵀ(diag(p) − ppᵀ) = p ⊙ (u − u·p), or the
    wrong u ⊙ p (the diagonal of diag(p) alone, dropping −ppᵀ)."""
    import tensorflow as tf

    @tf.custom_gradient
    def softmax(x):
        e = tf.exp(x)
        p = e / tf.reduce_sum(e)

        def backward(u):
            return p * (u - tf.reduce_sum(u * p)) if right else u * p
        return p, backward
    return softmax


def squares_with_reverse_rule(slope):
    """Σx² with a custom gradient slope·x (right for slope 2)."""
    import tensorflow as tf

    @tf.custom_gradient
    def squares(x):
        return tf.reduce_sum(x * x), lambda u: u * slope * x
    return squares


X = {"x": np.array([0.5, -1.0, 2.0])}


def test_a_wrong_custom_gradient_is_caught_when_called_by_keyword():
    # TensorFlow applies a custom gradient only to positional arguments: called as fn(x=...), the tape
    # differentiated the primal code and this wrong rule (3x for d Σx² = 2x) passed
    assert_gradients(squares_with_reverse_rule(2.0), X)
    with pytest.raises(AssertionError, match="tf.custom_gradient"):
        assert_gradients(squares_with_reverse_rule(3.0), X)


def test_a_wrong_custom_jacobian_rule_is_caught_with_and_without_reference():
    # the row of output 0 of the wrong rule is p₀·e₀ = (0.175, 0, 0); the truth p₀(e₀ − p) has p₀(1 − p₀) =
    # 0.1446 first (p = softmax(0.5, −1, 2) = (0.1753, 0.0391, 0.7856))
    assert_gradients(softmax_with_reverse_rule(True), X)
    with pytest.raises(AssertionError, match=r"output element softmax\[0\]"):
        assert_gradients(softmax_with_reverse_rule(False), X)
    with pytest.raises(AssertionError, match=r"output element softmax\[0\]"):
        assert_gradients(softmax_with_reverse_rule(False), X,
                         reference=lambda x, xp: xp.exp(x) / xp.sum(xp.exp(x)))


# --------------------------------------------------------------------------- mistakes with an array-valued case
def test_a_tuple_or_a_list_of_arrays_is_named_at_the_door_with_the_fix():
    from diffbench.door import check_function

    x = {"x": np.array([0.5, -1.0, 2.0])}
    for result, kind in ((lambda x, xp: (xp.sin(x), xp.cos(x)), "tuple"),
                         (lambda x, xp: [xp.sum(x), xp.sum(x * x)], "list")):
        found = check_function(result, x, name="two_outputs")
        assert found.startswith(f"two_outputs returns a {kind}") and "xp.stack" in found


def test_a_shape_that_depends_on_the_namespace_names_the_case_and_the_fix():
    from diffbench.case import make_case
    from diffbench.engines import get_engine

    def by_namespace(x, xp):  # 2 outputs under TensorFlow, 3 under NumPy
        if "tensorflow" in getattr(xp, "__name__", str(xp)):
            return xp.stack([xp.sum(x), xp.sum(x * x)])
        return xp.sin(x)

    case = make_case(by_namespace, {"x": [0.5, -1.0, 2.0]}, name="by_namespace")
    with pytest.raises(ValueError) as raised:
        get_engine("tape").prepare(case, "eager", "float64", "CPU").gradient()
    text = str(raised.value)
    assert "'by_namespace'" in text and "(2,)" in text and "(3,)" in text and "branch on which namespace" in text
    # the product rows name it the same way (not a framework's reshape error)
    for variant in ("jvp", "vjp"):
        with pytest.raises(ValueError) as raised:
            get_engine("tape").prepare(case, variant, "float64", "CPU").gradient()
        assert "'by_namespace'" in str(raised.value) and "branch on which namespace" in str(raised.value)


def test_a_batch_tag_without_a_matching_batch_axis_names_the_case_and_the_fix():
    from diffbench.case import make_case
    from diffbench.engines import Skip, get_engine

    def column_norms(W, xp):  # 3 outputs (one per column) against 2 rows of W: no batch axis
        return xp.sum(W * W, axis=0)

    case = make_case(column_norms, {"W": [[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]}, name="column_norms", tags=["batch"])
    with pytest.raises(Skip) as raised:
        get_engine("tape").prepare(case, "batch", "float64", "CPU").gradient()
    text = str(raised.value)
    assert "'column_norms'" in text and "(3)" in text and "(2)" in text and "remove the tag 'batch'" in text
