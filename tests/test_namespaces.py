"""The array functions beyond the elementwise basics, in every namespace: each case's reference
gradient against a hand-derived formula (evaluated here with NumPy), and every method's row ok."""

from __future__ import annotations

import math

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

    return [(erf_sum, erf_truth), (cumulative, cumulative_truth), (einsum_quadratic, einsum_truth),
            (norm_lse_softmax, nls_truth), (linalg_matrix, linalg_truth)]


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
    # forward mode past its input budget
    assert skipped <= {("finite", "complex_step"), ("tape", "xla"), ("tape", "forward")}


def test_an_unknown_name_suggests_the_nearest():
    from diffbench.namespaces import UnsupportedFunction, numpy_namespace

    with pytest.raises(UnsupportedFunction, match="nearest names are xp.cumulative_sum"):
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
