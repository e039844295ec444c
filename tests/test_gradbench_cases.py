"""The gradbench family (cases/gradbench.py) at its tiny sizes: each gradient derived independently here, in
NumPy, and compared with diffbench's certified reference and with the TensorFlow tape.

llsq, lse, det, kmeans and ode have closed or exact forms (derivations in the comments). gmm, lstm, ba and
particle are re-implemented here from their published definitions, as plain NumPy loops (gmm from gradbench's
naive density-product formula, not the log-sum-exp form the case uses) and differentiated by 4th-order
central differences:

    D₄f(x) = [f(x − 2h) − 8f(x − h) + 8f(x + h) − f(x + 2h)] / 12h
           = f′(x) + h⁴ f⁽⁵⁾(ξ)/30 + rounding ≲ 1.5·ε·|f|/h.

With h = 1e-3·max(1, |xᵢ|) the rounding term is about 3e-13·|f| and the truncation 3e-14·f⁽⁵⁾; every function
here is analytic near its point with moderate derivatives, so a tolerance of 1e-6 relative to the gradient's
norm holds with room (the agreement seen is 1e-9 or better) while a wrong gradient (a missed term, a sign)
is off by far more.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from diffbench.case import load_cases
from diffbench.reference import reference

CASES_FILE = Path(__file__).resolve().parent.parent / "cases" / "gradbench.py"
CASES = {c.name: c for c in load_cases(CASES_FILE)}


def _module():
    spec = importlib.util.spec_from_file_location("gradbench_cases_for_test", CASES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


G = _module()


def _flat(case):
    return np.concatenate([np.ravel(v) for v in case.inputs.values()])


def _unflat(case, flat):
    out, at = [], 0
    for value in case.inputs.values():
        out.append(flat[at:at + value.size].reshape(value.shape))
        at += value.size
    return out


def _central4(f, x0):
    """4th-order central differences of f at x0 (see the module docstring for the step and the bound)."""
    grad = np.empty_like(x0)
    for i in range(x0.size):
        h = 1e-3 * max(1.0, abs(x0[i]))
        e = np.zeros_like(x0)
        e[i] = h
        grad[i] = (f(x0 - 2 * e) - 8 * f(x0 - e) + 8 * f(x0 + e) - f(x0 + 2 * e)) / (12 * h)
    return grad


# --------------------------------------------------------------------------- independent truths
def truth_llsq():
    # y = ½‖s − Tx‖², T_ij = t_iʲ: ∇y = −Tᵀ(s − Tx)
    x = G._LLSQ_TINY
    t = -1 + 2 * np.arange(16) / 15
    T = np.vander(t, 8, increasing=True)
    return -T.T @ (np.sign(t) - T @ x)


def truth_lse():
    # ∂/∂xᵢ log Σ exp xⱼ = exp xᵢ / Σ exp xⱼ
    x = CASES["gradbench_lse_n8"].inputs["x"]
    e = np.exp(x)
    return e / e.sum()


def truth_det():
    # ∂ det A/∂A_ij = the cofactor (−1)^{i+j} det M_ij (Laplace expansion along row i is linear in A_ij)
    A = CASES["gradbench_det_l4"].inputs["A"]
    C = np.empty_like(A)
    for i in range(4):
        for j in range(4):
            minor = np.delete(np.delete(A, i, axis=0), j, axis=1)
            C[i, j] = (-1) ** (i + j) * np.linalg.det(minor)
    return C.ravel()


def truth_kmeans():
    # f = Σᵢ min_j ‖C_j − P_i‖², the assignment fixed near the point (no ties): ∂f/∂C_j = 2 Σ_{a(i)=j} (C_j − P_i)
    C, P = G._KM_TINY
    d2 = ((P[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    assigned = d2.argmin(axis=1)
    assert np.all(np.sort(d2, axis=1)[:, 1] - np.sort(d2, axis=1)[:, 0] > 1e-3)  # no point near a tie
    grad = np.zeros_like(C)
    for i, j in enumerate(assigned):
        grad[j] += 2 * (C[j] - P[i])
    return grad.ravel()


def _gmm_naive(alpha, mu, q, l, x, m=0, gamma=1.0):
    """gradbench's definition as densities: log(Πᵢ Σₖ φₖ N(xᵢ; μₖ, (QₖᵀQₖ)⁻¹) · Πₖ Wishart(QₖᵀQₖ; I/γ², d+m+1))."""
    from scipy.special import multigammaln

    n, d = x.shape
    k = alpha.size
    phi = np.exp(alpha) / np.exp(alpha).sum()
    precisions = []
    for c in range(k):
        Q = np.diag(np.exp(q[c]))
        Q[np.tril_indices(d, -1)[0][np.argsort(np.tril_indices(d, -1)[1], kind="stable")],
          np.sort(np.tril_indices(d, -1)[1], kind="stable")] = l[c]
        precisions.append(Q.T @ Q)
    likelihood = 1.0
    for i in range(n):
        total = 0.0
        for c in range(k):
            r = x[i] - mu[c]
            total += phi[c] * np.exp(-0.5 * r @ precisions[c] @ r) / np.sqrt((2 * np.pi) ** d
                                                                            / np.linalg.det(precisions[c]))
        likelihood *= total
    dof, V = d + m + 1, np.eye(d) / gamma**2
    prior = 1.0
    for P in precisions:
        prior *= (np.linalg.det(P) ** ((dof - d - 1) / 2) * np.exp(-np.trace(np.linalg.inv(V) @ P) / 2)
                  / (2 ** (d * dof / 2) * np.linalg.det(V) ** (dof / 2) * np.exp(multigammaln(dof / 2, d))))
    return math.log(likelihood * prior)


def truth_gmm():
    one = CASES["gradbench_gmm_d3_k2_n6"]
    x = G._GMM_TINY["x"]
    return _central4(lambda flat: _gmm_naive(*_unflat(one, flat), x), _flat(one))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _lstm_loop(main, extra, state, sequence):
    """ADBench's LSTM objective, element by element as its C++ reference writes it."""
    layers, b = state.shape[0] // 2, state.shape[1]
    h = [state[2 * i].copy() for i in range(layers)]
    c = [state[2 * i + 1].copy() for i in range(layers)]
    total, count = 0.0, 0
    for t in range(len(sequence) - 1):
        out = [sequence[t][j] * extra[0][j] for j in range(b)]
        for i in range(layers):
            w, bias = main[2 * i], main[2 * i + 1]
            for j in range(b):
                forget = _sigmoid(out[j] * w[j] + bias[j])
                ingate = _sigmoid(h[i][j] * w[b + j] + bias[b + j])
                outgate = _sigmoid(out[j] * w[2 * b + j] + bias[2 * b + j])
                change = math.tanh(h[i][j] * w[3 * b + j] + bias[3 * b + j])
                c[i][j] = c[i][j] * forget + ingate * change
                h[i][j] = outgate * math.tanh(c[i][j])
            out = list(h[i])
        pred = [out[j] * extra[1][j] + extra[2][j] for j in range(b)]
        lse = math.log(sum(math.exp(p) for p in pred) + 2)
        total += sum(sequence[t + 1][j] * (pred[j] - lse) for j in range(b))
        count += b
    return -total / count


def truth_lstm():
    one = CASES["gradbench_lstm_l1_c6"]
    point = G._LSTM_TINY
    return _central4(lambda flat: _lstm_loop(*_unflat(one, flat), point["state"], point["sequence"]), _flat(one))


def _ba_loop(cams, X, w, feats, obs):
    """½‖r‖² of ADBench's BA, one observation at a time (Rodrigues' rotation in its θ > 0 form)."""
    total = 0.0
    for i, (c, p) in enumerate(obs):
        cam, point = cams[c], X[p]
        rot, shifted = cam[0:3], point - cam[3:6]
        theta = np.sqrt(rot @ rot)
        k = rot / theta
        rotated = (shifted * np.cos(theta) + np.cross(k, shifted) * np.sin(theta)
                   + k * (k @ shifted) * (1 - np.cos(theta)))
        proj = rotated[:2] / rotated[2]
        rsq = proj @ proj
        distorted = proj * (1 + cam[9] * rsq + cam[10] * rsq * rsq)
        r = w[i] * (distorted * cam[6] + cam[7:9] - feats[i])
        total += 0.5 * (r @ r) + 0.5 * (1 - w[i] ** 2) ** 2
    return total


def truth_ba():
    one = CASES["gradbench_ba_n2_m3_p4"]
    point = G._BA_TINY
    return _central4(lambda flat: _ba_loop(*_unflat(one, flat), point["feats"], point["obs"]), _flat(one))


def truth_ode():
    # RK4 carried with its exact tangent: for ż = F(y, x), F₀ = x₀, Fᵢ = xᵢ y_{i−1}, the tangent of each stage
    # is dF = ∂F/∂x + ∂F/∂y·dY with (∂F/∂x)ᵢⱼ = δᵢⱼ·(1 if i = 0 else y_{i−1}) and (∂F/∂y)ᵢ,ᵢ₋₁ = xᵢ. The derivative
    # of the discrete scheme's output is then exact up to rounding (not an approximation of the ODE's).
    x = CASES["gradbench_ode_n8_s2"].inputs["x"]
    n, steps = x.size, 2
    h = 2.0 / steps

    def F(y, dy):
        z = np.empty(n)
        dz = np.zeros((n, n))
        z[0], dz[0, 0] = x[0], 1.0
        z[1:] = x[1:] * y[:-1]
        dz[1:] = x[1:, None] * dy[:-1]
        dz[np.arange(1, n), np.arange(1, n)] += y[:-1]
        return z, dz

    y, dy = np.zeros(n), np.zeros((n, n))
    for _ in range(steps):
        k1, d1 = F(y, dy)
        k2, d2 = F(y + h / 2 * k1, dy + h / 2 * d1)
        k3, d3 = F(y + h / 2 * k2, dy + h / 2 * d2)
        k4, d4 = F(y + h * k3, dy + h * d3)
        y, dy = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), dy + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    return dy[-1]


def _particle_loop(w, dt):
    """gradbench's naive Euler loop as it is written: step while the next position stays above the x axis."""
    charges = [np.array([10.0, 10.0 - w]), np.array([10.0, 0.0])]
    x, v = np.array([0.0, 8.0]), np.array([0.75, 0.0])
    while True:
        a = sum((x - c) / np.linalg.norm(x - c) ** 3 for c in charges)  # −∇ₓ Σ 1/‖x − c‖
        new = x + dt * v
        if new[1] <= 0:
            break
        x, v = new, v + dt * a
    hit = x + (-x[1] / v[1]) * v
    return hit[0] ** 2


def truth_particle():
    # the loop's step count does not change within ±2h of w = 0 (its last step is 0.09 above the axis), so
    # the differences see one smooth branch
    return _central4(lambda w: _particle_loop(w[0], 0.5), np.array([0.0]))


def _descend(f, grad, x):
    """gradbench's gradient-descent solver, as its published definition reads: η = 1e-5, doubled after 10
    accepted steps, halved after a rejected one; stop at ‖∇f‖ ≤ 1e-5 or a move of ≤ 1e-5."""
    fx, gx, eta, accepted = f(x), grad(x), 1e-5, 0
    while True:
        if np.linalg.norm(gx) <= 1e-5:
            return x
        if accepted == 10:
            eta, accepted = 2 * eta, 0
            continue
        moved = x - eta * gx
        if np.linalg.norm(x - moved) <= 1e-5:
            return x
        f_moved = f(moved)
        if f_moved < fx:
            x, fx, gx, accepted = moved, f_moved, grad(moved), accepted + 1
        else:
            eta, accepted = eta / 2, 0


def _saddle_value(q):
    # r(q) = f(q, p*), p* = argmax_p f(q, p) from (1, 1); ∇ₚ(−f) = 2p by hand
    p = _descend(lambda p: -(q @ q - p @ p), lambda p: 2 * p, np.array([1.0, 1.0]))
    return q @ q - p @ p


def truth_saddle():
    # the inner iterates never read q (∇ₚ(−f) = 2p), so r(q) = ‖q‖² − ‖p*‖² near q = (1, 1) and ∇r = 2q
    return np.array([2.0, 2.0])


TRUTHS = {"gradbench_llsq_n16_m8": truth_llsq, "gradbench_lse_n8": truth_lse, "gradbench_det_l4": truth_det,
          "gradbench_kmeans_k3_n12_d2": truth_kmeans, "gradbench_gmm_d3_k2_n6": truth_gmm,
          "gradbench_lstm_l1_c6": truth_lstm, "gradbench_ba_n2_m3_p4": truth_ba, "gradbench_ode_n8_s2": truth_ode,
          "gradbench_particle_dt05": truth_particle, "gradbench_saddle": truth_saddle}
#: the closed forms agree to rounding; the 4th-order differences to their bound (module docstring)
TOLERANCE = {"gradbench_gmm_d3_k2_n6": 1e-6, "gradbench_lstm_l1_c6": 1e-6, "gradbench_ba_n2_m3_p4": 1e-6,
             "gradbench_particle_dt05": 1e-6}


def _close(got, truth, name):
    tol = TOLERANCE.get(name, 1e-11)
    err = np.max(np.abs(np.asarray(got) - truth)) / np.linalg.norm(truth)
    assert err < tol, f"{name}: relative error {err:.2e} over {tol:.0e}"


def test_every_tiny_case_has_an_independent_truth():
    tiny = {n for n, c in CASES.items() if "realistic" not in c.tags}
    assert tiny == set(TRUTHS)
    assert len(tiny) == 10


@pytest.mark.parametrize("name", sorted(TRUTHS))
def test_the_reference_matches_the_independent_truth(name):
    one = CASES[name]
    ref = reference(one)
    assert ref.undefined is None and ref.uncertain is None
    _close(np.concatenate([np.ravel(v) for v in ref.values.values()]), TRUTHS[name](), name)


@pytest.mark.parametrize("name", sorted(TRUTHS))
def test_the_tape_matches_the_independent_truth(name):
    import tensorflow as tf

    from diffbench.namespaces import tensorflow_namespace

    one = CASES[name]
    variables = [tf.Variable(v) for v in one.inputs.values()]
    with tf.GradientTape() as tape:
        out = one.func(*variables, xp=tensorflow_namespace("float64"))
    grads = tape.gradient(out, variables)
    # a gathered variable gets IndexedSlices: made dense
    _close(np.concatenate([tf.convert_to_tensor(g).numpy().ravel() for g in grads]), TRUTHS[name](), name)


def test_the_case_values_match_the_independent_definitions():
    # the functions themselves, not only their gradients: the case's value against the re-implementation here
    from diffbench.namespaces import numpy_namespace

    xp = numpy_namespace()

    def value(name):
        one = CASES[name]
        return float(one.func(*one.inputs.values(), xp=xp))

    gmm = CASES["gradbench_gmm_d3_k2_n6"]
    assert value(gmm.name) == pytest.approx(_gmm_naive(*gmm.inputs.values(), G._GMM_TINY["x"]), rel=1e-12)
    lstm = CASES["gradbench_lstm_l1_c6"]
    assert value(lstm.name) == pytest.approx(_lstm_loop(*lstm.inputs.values(), G._LSTM_TINY["state"],
                                                        G._LSTM_TINY["sequence"]), rel=1e-12)
    ba = CASES["gradbench_ba_n2_m3_p4"]
    assert value(ba.name) == pytest.approx(_ba_loop(*ba.inputs.values(), G._BA_TINY["feats"], G._BA_TINY["obs"]),
                                           rel=1e-12)
    assert value("gradbench_particle_dt05") == pytest.approx(_particle_loop(0.0, 0.5), rel=1e-12)
    assert value("gradbench_saddle") == pytest.approx(_saddle_value(np.array([1.0, 1.0])), rel=1e-15)
    assert value("gradbench_det_l4") == pytest.approx(np.linalg.det(CASES["gradbench_det_l4"].inputs["A"]),
                                                      rel=1e-12)


def test_the_saddle_solver_reproduces_gradbench_published_saddle_point():
    # the solver re-derived above, run as gradbench's saddle eval runs it (the outer minimisation of r with
    # ∇r = 2q by hand, then the inner maximisation at its result), lands on the point gradbench's eval
    # expects of every tool: all four coordinates 8.246324826140356e-06
    start = np.array([1.0, 1.0])
    q = _descend(_saddle_value, lambda q: 2 * q, start)
    p = _descend(lambda p: -(q @ q - p @ p), lambda p: 2 * p, start)
    np.testing.assert_allclose(np.concatenate([q, p]), 8.246324826140356e-06, rtol=1e-12)


def test_the_generators_follow_gradbench():
    # gradbench draws with NumPy's legacy generator seeded 31337 (llsq, lse, det, kmeans, ode) or with
    # default_rng(31337) (gmm); its det sizes start at ℓ = 5 (the tiny 4×4 takes that draw's first 16), its kmeans centroids are the last k points
    first = np.random.RandomState(31337).rand(2500)
    np.testing.assert_array_equal(CASES["gradbench_lse_n8"].inputs["x"], first[:8])
    np.testing.assert_array_equal(CASES["gradbench_det_l4"].inputs["A"].ravel(), first[:16])
    C, P = G._KM_TINY
    np.testing.assert_array_equal(C, P[-3:])
    rng = np.random.default_rng(31337)
    np.testing.assert_array_equal(G._GMM_TINY["x"][0], rng.normal(size=3))


def test_realistic_sizes_run_only_when_asked_for():
    from diffbench.selection import load_selected

    default = {c.name for c in load_selected(CASES_FILE)}
    full = {c.name for c in load_selected(CASES_FILE, realistic=True)}
    asked = {c.name for c in load_selected(CASES_FILE, tags=["realistic"])}
    realistic = {n for n, c in CASES.items() if "realistic" in c.tags}
    assert default == set(TRUTHS) and len(realistic) == 9
    assert full == set(CASES) and asked == realistic


def test_the_family_is_left_out_of_a_plain_run_of_the_library_folder():
    # a plain `run` (the library folder, no -k/--tags, quick profile) measures no gradbench case; naming the
    # family (its file, -k or --tags) runs its tiny sizes; --profile full (realistic=True) runs both sizes
    from diffbench.selection import load_selected

    library = CASES_FILE.parent
    plain = {c.name for c in load_selected(library)}
    assert plain and not plain & set(CASES)
    by_keyword = {c.name for c in load_selected(library, "gradbench")}
    by_tag = {c.name for c in load_selected(library, tags=["gradbench"])}
    assert by_keyword == by_tag == set(TRUTHS)
    assert set(CASES) <= {c.name for c in load_selected(library, realistic=True)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gradbench_ba_n2_m3_p4", "gradbench_ba_n10_m200_p1000"])
def test_ba_tape_error_is_blamed_on_the_function_at_both_sizes(name):
    # BA's ½‖r‖² has condition number ‖∇f‖·‖x‖/|f| ≈ 1.3e5 at both sizes, and evaluating its own formula in
    # float64 (round to nearest) already moves the focal-length and distortion components by ≈ 4e-12: the
    # tape's 3.4e-12 is the function's conditioning at both sizes, never a TensorFlow formula (there is no
    # sqrt at 0 here: every rotation angle θ is far from 0)
    from diffbench.harness import measure_one

    cams = CASES[name].inputs["cams"]
    assert np.min(np.sqrt(np.sum(cams[:, :3] ** 2, axis=1))) > 1e-3
    row = measure_one(CASES[name], "tape", "eager", "float64")
    assert row["status"] == "inaccurate" and row["rel_error"] < 1e-10, row["diagnosis"]
    assert row["cause"] == "conditioning", row["diagnosis"]
