"""The array functions beyond the elementwise basics, in every namespace: each case's reference
gradient against a hand-derived formula (evaluated here with NumPy), and every method's row ok."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from diffbench import case
from diffbench.harness import make_config, measure_case
from diffbench.reference import reference

W0 = np.array([[2.0, 1.0, 0.5], [0.3, 3.0, 1.0], [1.0, 0.2, 4.0]])
B0 = np.array([1.0, -2.0, 0.5])
X0 = np.array([0.3, -1.2, 0.7])


def _cases():
    @case(inputs={"x": X0}, name="erf_sum")
    def erf_sum(x, xp):
        return xp.sum(xp.erf(x)) - xp.sum(xp.erfc(x))

    # d/dx [erf − erfc] = 2·(2/√π)·e^(−x²)
    erf_truth = 4 / math.sqrt(math.pi) * np.exp(-X0**2)

    @case(inputs={"x": X0}, name="cumulative")
    def cumulative(x, xp):
        return xp.sum(xp.cumulative_sum(x) ** 2) + xp.sum(xp.cumsum(x))

    # Σ_k S_k² with S_k = Σ_{j≤k} x_j: ∂/∂x_j = 2·Σ_{k≥j} S_k; Σ_k S_k: ∂/∂x_j = n − j
    s = np.cumsum(X0)
    cumulative_truth = 2 * np.cumsum(s[::-1])[::-1] + np.arange(3, 0, -1)

    @case(inputs={"x": X0}, name="einsum_quadratic")
    def einsum_quadratic(x, xp):
        return xp.einsum("i,ij,j->", x, xp.asarray(W0), x)

    # xᵀWx: (W + Wᵀ)x
    einsum_truth = (W0 + W0.T) @ X0

    @case(inputs={"x": X0}, name="norm_lse_softmax")
    def norm_lse_softmax(x, xp):
        return xp.linalg.norm(x) + xp.logsumexp(x) + xp.sum(xp.softmax(x) * x) + xp.sum(xp.sigmoid(x))

    # ‖x‖: x/‖x‖; logsumexp: p = softmax(x); Σ pᵢxᵢ: pⱼ(1 + xⱼ − Σ pᵢxᵢ); σ: σ(1 − σ)
    p = np.exp(X0 - np.max(X0))
    p /= p.sum()
    sig = 1 / (1 + np.exp(-X0))
    nls_truth = X0 / np.linalg.norm(X0) + p + p * (1 + X0 - p @ X0) + sig * (1 - sig)

    @case(inputs={"W": W0}, name="linalg_matrix")
    def linalg_matrix(W, xp):
        return xp.linalg.det(W) + xp.sum(xp.linalg.solve(W, xp.asarray(B0))) + xp.sum(xp.linalg.inv(W))

    # d det/dW = det(W)·W⁻ᵀ; Σ W⁻¹b = 1ᵀW⁻¹b: −W⁻ᵀ1 (W⁻¹b)ᵀ; Σ W⁻¹ = 1ᵀW⁻¹1: −W⁻ᵀ1 1ᵀW⁻ᵀ
    inv = np.linalg.inv(W0)
    ones = np.ones(3)
    linalg_truth = (np.linalg.det(W0) * inv.T - np.outer(inv.T @ ones, inv @ B0)
                    - np.outer(inv.T @ ones, ones @ inv.T))

    @case(inputs={"A": W0}, name="log_det")
    def log_det(A, xp):
        sign, logabsdet = xp.linalg.slogdet(A)
        return logabsdet + sign

    # d/dA log|det A| = A⁻ᵀ (Jacobi's formula); the sign is piecewise constant: 0
    log_det_truth = np.linalg.inv(W0).T

    @case(inputs={"A": W0}, name="trace_eye_diagonal")
    def trace_eye_diagonal(A, xp):
        return xp.trace(xp.eye(3) @ A) + xp.sum(xp.linalg.diagonal(A) ** 2) + xp.linalg.trace(xp.triu(A, 1))

    # tr(I·A) = Σ Aᵢᵢ: I; Σ Aᵢᵢ²: 2·diag(Aᵢᵢ); tr of the strict upper triangle is 0
    trace_truth = np.eye(3) + 2 * np.diag(np.diag(W0))

    @case(inputs={"A": W0}, name="cholesky_log_det")
    def cholesky_log_det(A, xp):
        low = xp.linalg.cholesky(A @ xp.matrix_transpose(A) + xp.eye(3))
        return xp.sum(xp.log(xp.diagonal(low)))

    # Σ log Lᵢᵢ = ½ log det M with M = AAᵀ + I; d log det M = tr(M⁻¹ dM) = 2 tr(AᵀM⁻¹ dA): ½ · 2 M⁻¹A = M⁻¹A
    chol_truth = np.linalg.inv(W0 @ W0.T + np.eye(3)) @ W0

    @case(inputs={"A": W0[:2, :2]}, name="eigh_two")
    def eigh_two(A, xp):
        values, vectors = xp.linalg.eigh(A + xp.matrix_transpose(A))
        return values[1] + xp.sum(values ** 2)

    # S = A + Aᵀ; dλₖ = vₖᵀ dS vₖ = 2 vₖᵀ dA vₖ: λ_max gives 2 v vᵀ; Σ λₖ² = ‖S‖²_F gives 2·(S + Sᵀ) = 4S
    s2 = W0[:2, :2] + W0[:2, :2].T
    top2 = np.linalg.eigh(s2)[1][:, 1]
    eigh2_truth = 2 * np.outer(top2, top2) + 4 * s2

    @case(inputs={"A": W0}, name="eigvalsh_three")
    def eigvalsh_three(A, xp):
        return xp.linalg.eigvalsh(A + xp.matrix_transpose(A))[-1]

    top3 = np.linalg.eigh(W0 + W0.T)[1][:, -1]
    eigh3_truth = 2 * np.outer(top3, top3)

    @case(inputs={"x": X0}, name="statistics")
    def statistics(x, xp):
        return xp.var(x) + xp.std(x, correction=1)

    # var = Σ(xᵢ−m)²/n: 2(xᵢ−m)/n (Σ(xⱼ−m) = 0 removes the mean's term); std₁ = √(Σ(xᵢ−m)²/(n−1)): (xᵢ−m)/((n−1)·std₁)
    m, n = X0.mean(), X0.size
    std1 = math.sqrt(((X0 - m) ** 2).sum() / (n - 1))
    stats_truth = 2 * (X0 - m) / n + (X0 - m) / ((n - 1) * std1)

    @case(inputs={"x": X0}, name="elementwise_more")
    def elementwise_more(x, xp):
        return xp.sum(xp.hypot(x, 2.0) + xp.reciprocal(x) + xp.positive(x) + xp.trunc(x) * x)

    # x/√(x²+4) − 1/x² + 1 + trunc(x) (trunc is piecewise constant, its jumps at ±1 at least 0.2 away)
    elementwise_truth = X0 / np.hypot(X0, 2.0) - 1 / X0**2 + 1 + np.trunc(X0)

    @case(inputs={"x": X0}, name="creation_manipulation")
    def creation_manipulation(x, xp):
        c = xp.asarray(B0)
        return (xp.sum(xp.full((3,), 2.0) * x) + xp.sum(xp.linspace(0.0, 1.0, 3) * x) + xp.sum(xp.tril(xp.outer(x, x)))
                + xp.sum(xp.roll(x, 1) * c) + xp.sum(xp.squeeze(xp.expand_dims(xp.flip(x), 0)) ** 2)
                + xp.sum(xp.broadcast_to(x, (2, 3))) + xp.sum(xp.permute_dims(xp.reshape(x, (3, 1)), (1, 0)) * c))

    # 2; (0, ½, 1); Σ_{i≥j} xᵢxⱼ: Σ_{j≤k} xⱼ + Σ_{i≥k} xᵢ; roll: f = Σᵢ x_{i−1} cᵢ gives c_{k+1}; 2x; 2 (two rows); c
    tril_part = np.cumsum(X0) + np.cumsum(X0[::-1])[::-1]
    creation_truth = 2 + np.array([0, 0.5, 1]) + tril_part + np.roll(B0, -1) + 2 * X0 + 2 + B0

    @case(inputs={"A": W0}, name="matrix_power_cross")
    def matrix_power_cross(A, xp):
        return xp.linalg.trace(xp.linalg.matrix_power(A, 2)) + xp.sum(xp.linalg.cross(A[0], xp.asarray(B0)))

    # tr(A²): 2Aᵀ; Σ (a × b) = a·(b × 1) for a = the first row
    power_truth = 2 * W0.T
    power_truth[0] += np.cross(B0, np.ones(3))

    return [(erf_sum, erf_truth), (cumulative, cumulative_truth), (einsum_quadratic, einsum_truth),
            (norm_lse_softmax, nls_truth), (linalg_matrix, linalg_truth), (log_det, log_det_truth),
            (trace_eye_diagonal, trace_truth), (cholesky_log_det, chol_truth), (eigh_two, eigh2_truth),
            (eigvalsh_three, eigh3_truth), (statistics, stats_truth), (elementwise_more, elementwise_truth),
            (creation_manipulation, creation_truth), (matrix_power_cross, power_truth)]


CASES = _cases()


@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_reference_matches_the_hand_derived_gradient(one, truth):
    ref = reference(one)
    assert ref.undefined is None and ref.uncertain is None
    np.testing.assert_allclose(np.concatenate([np.ravel(v) for v in ref.values.values()]), np.ravel(truth),
                               rtol=1e-12)


@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_every_method_runs_them(one, truth):
    config = make_config(None, ["float64"], None, order2=False, timing=False, devices=("CPU",), sweep=False)
    rows = []
    measure_case(one, config, rows.append)
    bad = [(r["method"], r["variant"], r["status"], r["diagnosis"]) for r in rows
           if r["status"] not in ("ok", "skipped")]
    assert not bad
    skipped = {(r["method"], r["variant"]) for r in rows if r["status"] == "skipped"}
    # only what cannot apply: the complex step through erf (NumPy has no complex erf), XLA without a kernel,
    # forward mode past its input budget; the symbolic method has no closed-form eigenvalues past 2×2
    allowed = {("finite", "complex_step"), ("tape", "xla"), ("tape", "forward")}
    if one.name == "eigvalsh_three":
        allowed |= {("symbolic", v) for v in ("numpy", "numpy-nocse", "tensorflow", "symengine")}
        reasons = {r["diagnosis"] for r in rows if r["method"] == "symbolic"}
        # SymPy's reason, quoted as such by the symengine row (SymEngine fell back to SymPy for xp.linalg)
        assert reasons and all("n <= 2" in reason for reason in reasons)
    assert skipped <= allowed


def test_an_unknown_name_suggests_the_nearest():
    from diffbench.namespaces import UnsupportedFunction, numpy_namespace

    with pytest.raises(UnsupportedFunction, match="did you mean xp.cumulative_sum"):
        numpy_namespace().cumulative_summ  # noqa: B018 - the attribute access is the test


def test_scalars_and_zero_dimensional_arrays_mix():
    @case(inputs={"x": [1.0, 2.0, 3.0]})
    def mixed(x, xp):
        # x[i] is a scalar, xp.exp(x[i]) a 0-d array: both orders of every operation must work
        return x[0] * x[1] * x[2] + xp.exp(x[0]) * x[1] - xp.exp(x[0]) / x[2] + x[2] ** xp.exp(x[1] * 0)

    # ∂/∂x0 = x1x2 + e^x0·x1 − e^x0/x2; ∂/∂x1 = x0x2 + e^x0; ∂/∂x2 = x0x1 + e^x0/x2² + 1 (x2¹)
    e = math.e
    truth = [2 * 3 + 2 * e - e / 3, 1 * 3 + e, 1 * 2 + e / 9 + 1]
    np.testing.assert_allclose(reference(mixed).values["x"], truth, rtol=1e-14)


@pytest.mark.parametrize("engine", ["jax", "torch"])
@pytest.mark.parametrize("one, truth", CASES, ids=[c.name for c, _ in CASES])
def test_the_optional_engines_run_them(engine, one, truth):
    pytest.importorskip(engine)
    config = make_config([engine], ["float64"], None, order2=False, timing=False, devices=("CPU",), sweep=False)
    rows = []
    measure_case(one, config, rows.append)
    assert rows and all(r["status"] == "ok" for r in rows), [(r["variant"], r["status"], r["diagnosis"]) for r in rows]


# --------------------------------------------------------------------------- coverage of the standard
#: names of the array API standard that diffbench leaves out, and why (no derivative to follow, or not real)
NOT_DIFFERENTIABLE = {
    "all", "any", "argsort", "astype", "bitwise_and", "bitwise_invert", "bitwise_left_shift", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "broadcast_arrays", "broadcast_shapes", "can_cast", "conj", "copysign",
    "count_nonzero", "diff", "empty", "empty_like", "equal", "finfo", "floor_divide", "from_dlpack", "greater",
    "greater_equal", "iinfo", "imag", "isdtype", "isfinite", "isin", "isinf", "isnan", "less", "less_equal",
    "logical_and", "logical_not", "logical_or", "logical_xor", "meshgrid", "nextafter", "nonzero", "not_equal",
    "real", "remainder", "repeat", "result_type", "searchsorted", "signbit", "sort", "tile", "unique_all", "unique_counts", "unique_inverse", "unique_values", "unstack",
    # linalg: complex-valued or rank-revealing results, iterative decompositions not offered
    "eig", "eigvals", "matrix_rank", "pinv", "qr", "svd", "svdvals",
}


def _standard_functions(module):
    import inspect

    return {n for n in module.__all__ if callable(getattr(module, n)) and not inspect.isclass(getattr(module, n))
            and "array_api_strict" not in n and not n.startswith("_")}


def test_every_standard_function_with_a_derivative_is_offered():
    strict = pytest.importorskip("array_api_strict")
    from diffbench.namespaces import FUNCTIONS, LINALG

    missing = _standard_functions(strict) - set(FUNCTIONS) - NOT_DIFFERENTIABLE
    assert not missing, f"the standard has {sorted(missing)}; offer them or say why not in NOT_DIFFERENTIABLE"
    missing_linalg = _standard_functions(strict.linalg) - set(LINALG) - NOT_DIFFERENTIABLE
    assert not missing_linalg, sorted(missing_linalg)


def _namespaces():
    from diffbench import mptape
    from diffbench.door import door_namespace
    from diffbench.namespaces import mpmath_namespace, numpy_namespace, sympy_namespace

    found = [("SymPy", sympy_namespace()), ("mpmath", mpmath_namespace()), ("tape", mptape.namespace()),
             ("NumPy", numpy_namespace()), ("door", door_namespace())]
    try:
        from diffbench.namespaces import tensorflow_namespace

        found.append(("TensorFlow", tensorflow_namespace()))
    except ImportError:
        pass
    for module, label in (("jax.numpy", "JAX"), ("array_api_compat.torch", "PyTorch")):
        try:
            import importlib

            from diffbench.namespaces import array_api_namespace

            found.append((label, array_api_namespace(importlib.import_module(module), label, None)))
        except ImportError:
            pass
    return found


@pytest.mark.parametrize("label, xp", _namespaces(), ids=[label for label, _ in _namespaces()])
def test_every_namespace_offers_every_name(label, xp):
    from diffbench.namespaces import FUNCTIONS, LINALG

    lacking = [n for n in FUNCTIONS if not callable(getattr(xp, n, None)) and n != "linalg"]
    lacking += [f"linalg.{n}" for n in LINALG if not callable(getattr(xp.linalg, n, None))]
    assert not lacking, f"{label} lacks {lacking}"


@pytest.mark.parametrize("written, meant", [
    ("identity", "xp.eye"), ("diag", "xp.diagonal"), ("logdet", "xp.linalg.slogdet"), ("cholesky", "xp.linalg.cholesky"),
    ("eig", "xp.linalg.eigh"), ("transpose", "xp.matrix_transpose"), ("concatenate", "xp.concat"),
    ("reduce_sum", "xp.sum"), ("linalg.logdet", "xp.linalg.slogdet"), ("cumulative_summ", "xp.cumulative_sum"),
])
def test_an_unknown_name_is_answered_by_meaning_and_by_spelling(written, meant):
    from diffbench.namespaces import UnsupportedFunction, sympy_namespace

    xp = sympy_namespace()
    with pytest.raises(UnsupportedFunction) as raised:
        if written.startswith("linalg."):
            getattr(xp.linalg, written.split(".")[1])
        else:
            getattr(xp, written)
    text = str(raised.value)
    assert f"did you mean {meant}" in text, text
    assert "xp.where" not in text  # what `eye` was once answered with


def test_the_readme_lists_what_xp_offers():
    from diffbench.namespaces import readme_function_list

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    readme = "\n".join(line.strip() for line in text.splitlines())  # the list sits indented in a bullet
    assert readme_function_list() in readme, "regenerate the README's list: python -m diffbench.namespaces"
