"""Integer gather (``take``, ``take_along_axis``), functional scatter (``at_set``, ``at_add``) and
``argmin``/``argmax`` in every namespace: values and gradients against hand-derived truths, for the
reference tape, the symbolic methods, the TensorFlow tape and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from diffbench import case
from diffbench.harness import make_config, measure_case
from diffbench.reference import reference

X0 = np.array([0.4, -1.5, 2.0, 0.25])
C0 = np.array([1.0, 2.0, -1.0, 3.0])


def _cases():
    @case(inputs={"x": X0}, name="gather_take")
    def gather_take(x, xp):
        # x[2], x[0], x[2] again: a repeated index gathers the same element twice
        picked = xp.take(x, [2, 0, 2])
        return xp.sum(picked * xp.asarray([1.0, 2.0, 3.0])) + xp.sum(xp.take(xp.reshape(x, (2, 2)), [1], axis=1) ** 2)

    # Σ wₖ x_{iₖ} with i = (2, 0, 2), w = (1, 2, 3): ∂/∂x0 = 2, ∂/∂x2 = 1 + 3 = 4;
    # column 1 of [[x0, x1], [x2, x3]] is (x1, x3): its Σ squares gives 2x1, 2x3
    take_truth = np.array([2.0, 2 * X0[1], 4.0, 2 * X0[3]])

    @case(inputs={"x": X0}, name="gather_along_axis")
    def gather_along_axis(x, xp):
        m = xp.reshape(x, (2, 2))
        # row 0 picks column 1, row 1 picks column 0: (x1, x2)
        chosen = xp.take_along_axis(m, np.array([[1], [0]]), axis=1)
        return xp.sum(xp.exp(chosen))

    along_truth = np.array([0.0, np.exp(X0[1]), np.exp(X0[2]), 0.0])

    @case(inputs={"x": X0}, name="scatter_set_add")
    def scatter_set_add(x, xp):
        c = xp.asarray(C0)
        # at_set replaces c[1] and c[3] by x0² and x1; at_add adds x2 twice to c[0] (a repeated index) and x3 to c[2]
        y = xp.at_set(c, np.array([1, 3]), xp.stack([x[0] ** 2, x[1]]))
        y = xp.at_add(y, np.array([0, 0, 2]), xp.stack([x[2], x[2], x[3]]))
        return xp.sum(y * y * xp.asarray([1.0, 1.0, 1.0, 2.0]))

    # y = (1 + 2x2, x0², −1 + x3, x1); f = y0² + y1² + y2² + 2y3²
    # ∂/∂x0 = 2y1·2x0 = 4x0³; ∂/∂x1 = 4y3 = 4x1; ∂/∂x2 = 2y0·2 = 4(1 + 2x2); ∂/∂x3 = 2y2 = 2(x3 − 1)
    scatter_truth = np.array([4 * X0[0] ** 3, 4 * X0[1], 4 * (1 + 2 * X0[2]), 2 * (X0[3] - 1)])

    @case(inputs={"x": X0}, name="argmin_gather")
    def argmin_gather(x, xp):
        # the assignment of k-means: the index of the nearest of the centres, then the distance to it
        centres = xp.asarray([0.0, 1.0, -2.0])
        d = (xp.reshape(x, (4, 1)) - xp.reshape(centres, (1, 3))) ** 2
        nearest = xp.argmin(d, axis=1)
        far = xp.argmax(x)
        return xp.sum(xp.take_along_axis(d, xp.reshape(nearest, (4, 1)), axis=1)) + 3.0 * xp.take(x, far)

    # nearest centres of (0.4, −1.5, 2, 0.25) among (0, 1, −2): 0, −2, 1, 0 (no tie); the largest x is x2
    # f = Σ (xᵢ − c(i))² + 3x2, with the indices constant around the point: 2(xᵢ − c(i)), plus 3 at x2
    argmin_truth = 2 * (X0 - np.array([0.0, -2.0, 1.0, 0.0])) + np.array([0.0, 0.0, 3.0, 0.0])
    return [(gather_take, take_truth), (gather_along_axis, along_truth), (scatter_set_add, scatter_truth),
            (argmin_gather, argmin_truth)]


CASES = _cases()


@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_the_reference_matches_the_hand_derived_gradient(one, truth):
    ref = reference(one)
    assert ref.undefined is None and ref.uncertain is None
    np.testing.assert_allclose(ref.values["x"], truth, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_every_method_gets_the_hand_derived_gradient(one, truth):
    config = make_config(None, ["float64"], None, order2=False, timing=False, devices=("CPU",), sweep=False)
    rows = []
    measure_case(one, config, rows.append)
    bad = [(r["method"], r["variant"], r["status"], r["diagnosis"]) for r in rows if r["status"] not in ("ok",)]
    # forward mode and XLA may be skipped by their own budgets; nothing else
    assert {(m, v) for m, v, s, _ in bad if s == "skipped"} <= {("tape", "xla"), ("tape", "forward")}, bad
    assert all(s == "skipped" for _, _, s, _ in bad), bad
    methods = {r["method"] for r in rows if r["status"] == "ok"}
    assert {"symbolic", "tape", "finite"} <= methods


@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_the_tape_and_the_symbolic_gradients_match_by_hand(one, truth):
    import sympy as sp
    import tensorflow as tf

    from diffbench.namespaces import sympy_namespace, tensorflow_namespace, tracing_at

    x = tf.Variable(X0)
    with tf.GradientTape() as tape:
        out = one.func(x, xp=tensorflow_namespace("float64"))
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), truth, rtol=1e-14, atol=1e-15)

    symbols = sp.symbols("x0:4", real=True)
    array = np.empty(4, dtype=object)
    array[:] = symbols
    with tracing_at({s: sp.Float(float(v)) for s, v in zip(symbols, X0)}):
        f = np.asarray(one.func(array, xp=sympy_namespace()), dtype=object).reshape(-1)[0]
    grad = [float(sp.diff(f, s).subs(dict(zip(symbols, X0)))) for s in symbols]
    np.testing.assert_allclose(grad, truth, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_central_differences_match_by_hand(one, truth):
    from diffbench.namespaces import numpy_namespace

    xp = numpy_namespace()
    h = 1e-5  # every case is a polynomial or exp of the inputs near the point: central error ~h²·f‴ ≈ 1e-9
    grad = []
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        grad.append((float(one.func(X0 + e, xp=xp)) - float(one.func(X0 - e, xp=xp))) / (2 * h))
    np.testing.assert_allclose(grad, truth, rtol=1e-7, atol=1e-8)


def test_the_scatter_leaves_its_input_unchanged():
    from diffbench.namespaces import mpmath_namespace, numpy_namespace, sympy_namespace

    for xp in (numpy_namespace(), mpmath_namespace(), sympy_namespace()):
        c = xp.asarray([1.0, 2.0, 3.0])
        out = xp.at_add(xp.at_set(c, 0, 5.0), [2, 2], 1.0)
        assert [float(v) for v in np.asarray(c).ravel()] == [1.0, 2.0, 3.0]
        assert [float(v) for v in np.asarray(out).ravel()] == [5.0, 2.0, 5.0]


def test_argmin_of_symbols_outside_a_trace_is_refused_with_the_reason():
    import sympy as sp

    from diffbench.namespaces import UnsupportedFunction, sympy_namespace

    xp = sympy_namespace()
    a, b = sp.symbols("a b", real=True)
    with pytest.raises(UnsupportedFunction, match="decided by the values"):
        xp.argmin(xp.asarray([a, b]))


def test_a_gathered_matrix_input_gets_a_dense_gradient_from_the_tape():
    # rows of a matrix input gathered along axis 0 (BA's cameras by observation): TensorFlow's gradient of the
    # input is IndexedSlices, which the tape's rows must densify rather than fail on
    @case(inputs={"m": X0.reshape(2, 2)}, name="gather_rows")
    def gather_rows(m, xp):
        return xp.sum(xp.take(m, [1, 1], axis=0) ** 2)

    # row 1 taken twice: f = 2(m10² + m11²), so ∂f/∂m1j = 4m1j, and row 0 gets nothing
    truth = np.array([[0.0, 0.0], [4 * X0[2], 4 * X0[3]]])
    config = make_config(["tape"], ["float64"], None, order2=True, timing=False, devices=("CPU",), sweep=False)
    rows = []
    measure_case(gather_rows, config, rows.append)
    assert rows and all(r["status"] == "ok" for r in rows), [(r["variant"], r["status"], r["diagnosis"]) for r in rows]
    np.testing.assert_allclose(reference(gather_rows).values["m"], truth, rtol=1e-14)
