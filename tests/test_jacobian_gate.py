"""Baselines of Jacobians: stored in full or as a fingerprint, compared per output component, failing closed.

The Jacobians here are chosen by hand (a rotation, seeded random blocks) and put into baseline rows directly,
so the gate's storing and comparing are tested apart from any engine; the end-to-end test at the bottom runs
snapshot and check on a vector-output case once the engines produce Jacobians.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import diffbench
from diffbench import baseline as fmt
from diffbench import testing
from diffbench.errors import BaselineError

EXIT_OK, EXIT_REGRESSION, EXIT_BASELINE = 0, 1, 2
THETA = 0.3
P = [1.5, -0.5]
#: the tolerance of an exact method in float64 (1000 eps): the rule the gate applies to tape/function rows
TOL = 1e3 * np.finfo(np.float64).eps


def rotation_jacobians():
    """out = R(θ)·p with R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]: ∂out/∂p = R(θ) (2×2), and
    ∂out/∂θ = R′(θ)·p = [−sin θ·p₀ − cos θ·p₁, cos θ·p₀ − sin θ·p₁] (2 outputs × a scalar input)."""
    c, s = math.cos(THETA), math.sin(THETA)
    return {"p": np.array([[c, -s], [s, c]]),
            "theta": np.array([-s * P[0] - c * P[1], c * P[0] - s * P[1]])}


def measured_row(gradient, output_shape="(2,)", method="tape", variant="function", status="ok"):
    """A row as the harness hands it to the gate (gradient arrays of shape output_shape + input_shape)."""
    return {"method": method, "variant": variant, "dtype": "float64", "status": status, "rel_error": 1e-16,
            "gradient": gradient, "output_shape": output_shape, "time_median_s": None, "time_min_s": None}


def entry(rows, inputs):
    return {"definition_hash": "0123456789abcdef", "source_hash": "", "file": None,
            "inputs": {k: {"shape": list(np.shape(v)), "values": list(np.ravel(v))} for k, v in inputs.items()},
            "rows": rows}


ROTATION_INPUTS = {"theta": THETA, "p": P}


def snapshot(rows, inputs=ROTATION_INPUTS, name="rotate", tmp_path=None):
    """The baseline a snapshot writes for these rows, written to JSON and read back through the validating reader."""
    data = {"schema_version": fmt.SCHEMA_VERSION,
            "cases": {name: entry([testing.compact_row(testing._baseline_row(r)) for r in rows], inputs)}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data, indent=1))
    return fmt.read_baseline(path)


def check(base, rows, inputs=ROTATION_INPUTS, name="rotate"):
    current = {name: entry([testing._baseline_row(r) for r in rows], inputs)}
    return testing.compare(base, current)


# --------------------------------------------------------------------------- full Jacobians
def test_a_small_jacobian_round_trips_in_full_and_matches(tmp_path):
    truth = rotation_jacobians()
    base = snapshot([measured_row(truth)], tmp_path=tmp_path)
    row = base["cases"]["rotate"]["rows"][0]
    assert base["schema_version"] == 4 and row["output_shape"] == [2] and row["jacobian"] is None
    # stored in C order, output index major: R(θ) row by row
    c, s = math.cos(THETA), math.sin(THETA)
    assert row["gradient"]["p"] == pytest.approx([c, -s, s, c], abs=0)
    code, lines = check(base, [measured_row(truth)])
    assert code == EXIT_OK, lines


def test_a_tampered_entry_is_caught_and_named(tmp_path):
    truth = rotation_jacobians()
    path = tmp_path / "baseline.json"
    snapshot([measured_row(truth)], tmp_path=tmp_path)
    data = json.loads(path.read_text())
    # out[1] / p[0] is sin θ = 0.29552…; the baseline now says 0.3
    data["cases"]["rotate"]["rows"][0]["gradient"]["p"][2] = 0.3
    path.write_text(json.dumps(data))
    code, lines = check(fmt.read_baseline(path), [measured_row(truth)])
    text = "\n".join(lines)
    assert code == EXIT_REGRESSION, text
    assert "out[1] / p[0]: expected 0.3, got 0.2955202067" in text
    assert "1 of 2 output components" in text  # out[0] did not move: each output row is judged apart


def test_a_move_within_the_tolerance_of_each_output_row_passes(tmp_path):
    truth = rotation_jacobians()
    base = snapshot([measured_row(truth)], tmp_path=tmp_path)
    # ‖ΔJ[k, :]‖ / ‖J[k, :]‖ = 0.1·TOL in every row (‖R[k, :]‖ = 1): below the tolerance, as for a gradient
    nudged = dict(truth, p=truth["p"] + 0.1 * TOL * np.array([[1.0, 0.0], [0.0, -1.0]]))
    assert check(base, [measured_row(nudged)])[0] == EXIT_OK
    moved = dict(truth, p=truth["p"] + 10 * TOL * np.array([[1.0, 0.0], [0.0, 0.0]]))
    code, lines = check(base, [measured_row(moved)])
    assert code == EXIT_REGRESSION and "out[0] / p[0]" in "\n".join(lines)


def test_a_changed_output_shape_is_a_regression(tmp_path):
    truth = rotation_jacobians()
    base = snapshot([measured_row(truth)], tmp_path=tmp_path)
    grown = {"p": np.vstack([truth["p"], [[0.0, 0.0]]]), "theta": np.append(truth["theta"], 0.0)}
    code, lines = check(base, [measured_row(grown, output_shape="(3,)")])
    assert code == EXIT_REGRESSION and "shape changed (2,) -> (3,)" in "\n".join(lines)
    # a case that became scalar-valued is no pass either
    code, lines = check(base, [measured_row({"p": truth["p"][0], "theta": truth["theta"][0]}, output_shape="")])
    assert code == EXIT_REGRESSION and "shape changed (2,) -> scalar" in "\n".join(lines)


def test_a_jacobian_the_baseline_does_not_hold_is_not_a_pass(tmp_path):
    truth = rotation_jacobians()
    path = tmp_path / "baseline.json"
    snapshot([measured_row(truth)], tmp_path=tmp_path)
    data = json.loads(path.read_text())
    del data["cases"]["rotate"]["rows"][0]["gradient"]["p"]  # neither in full nor as a fingerprint
    path.write_text(json.dumps(data))
    code, lines = check(fmt.read_baseline(path), [measured_row(truth)])
    assert code == EXIT_BASELINE and "holds no Jacobian w.r.t. `p`" in "\n".join(lines)


def test_a_jacobian_that_stops_coming_back_is_a_regression_and_one_that_starts_is_not(tmp_path):
    truth = rotation_jacobians()
    base = snapshot([measured_row(truth)], tmp_path=tmp_path)
    code, lines = check(base, [measured_row(None, status="none")])
    assert code == EXIT_REGRESSION and "status `ok` -> `none`" in "\n".join(lines)
    # as for gradients: a row that had none in the baseline (TensorFlow gave None) and has one now improved
    base = snapshot([measured_row(None, status="none")], tmp_path=tmp_path)
    assert check(base, [measured_row(truth)])[0] == EXIT_OK


# --------------------------------------------------------------------------- old baselines
def test_a_schema_3_baseline_still_loads_and_checks_gradients_as_before(tmp_path):
    # booth(x, y) = (x + 2y − 7)² + (2x + y − 5)² at (0.3, −1.7), as version 3 wrote it (twin sessions, no
    # Jacobian fields): ∂/∂x = 2(x + 2y − 7) + 4(2x + y − 5) = −23.0, ∂/∂y = 4(x + 2y − 7) + 2(2x + y − 5) = −44.8
    gx, gy = 2 * (0.3 - 3.4 - 7) + 4 * (0.6 - 1.7 - 5), 4 * (0.3 - 3.4 - 7) + 2 * (0.6 - 1.7 - 5)
    row = {"method": "symbolic", "variant": "numpy", "dtype": "float64", "status": "ok", "rel_error": 0.0,
           "gradient": {"x": [gx], "y": [gy]}, "time_median_s": 1e-5, "time_min_s": 9e-6,
           "time_samples_s": [1e-5, 9e-6], "twin_sessions": [{"gradient_s": [1e-5], "twin_s": [2e-5]}]}
    inputs = {"x": 0.3, "y": -1.7}
    path = tmp_path / "v3.json"
    path.write_text(json.dumps({"schema_version": 3, "environment": {}, "cases": {"booth": entry([row], inputs)}}))
    base = fmt.read_baseline(path)
    current = dict(row, gradient={"x": np.array(gx), "y": np.array(gy)}, output_shape=None)
    assert check(base, [current], inputs, "booth")[0] == EXIT_OK
    code, lines = check(base, [dict(current, gradient={"x": np.array(gx), "y": np.array(gy * 1.01)})], inputs,
                        "booth")
    assert code == EXIT_REGRESSION and "gradient w.r.t. `y` moved" in "\n".join(lines)


# --------------------------------------------------------------------------- fingerprints
def large_block(m=64, n=128, seed=1):
    """A 64 × 128 Jacobian block (8192 entries, beyond JACOBIAN_FULL_ENTRIES): seeded standard normal entries."""
    return np.random.default_rng(seed).standard_normal((m, n))


def test_a_large_jacobian_is_stored_as_a_fingerprint_and_compared_through_it(tmp_path):
    block = large_block()
    assert block.size > fmt.JACOBIAN_FULL_ENTRIES
    base = snapshot([measured_row({"w": block}, output_shape="(64,)")], {"w": np.zeros(128)}, "layer", tmp_path)
    row = base["cases"]["layer"]["rows"][0]
    assert row["gradient"] == {} and set(row["jacobian"]) == {"w"}
    print_ = row["jacobian"]["w"]
    # its norms are the rows' norms (numpy's, independently), its stored entries the 16 largest in magnitude
    assert print_["norms"] == pytest.approx(np.linalg.norm(block, axis=1), rel=1e-14)
    largest = np.sort(np.abs(block).ravel())[-fmt.FINGERPRINT_ENTRIES:]
    assert sorted(abs(v) for _, v in print_["entries"]) == pytest.approx(largest, rel=0)
    assert (tmp_path / "baseline.json").stat().st_size < 0.15 * block.size * 20  # a fraction of the full JSON
    inputs = {"w": np.zeros(128)}

    assert check(base, [measured_row({"w": block}, "(64,)")], inputs, "layer")[0] == EXIT_OK
    # rounding noise (1e-15 relative per entry, far below the tolerance 2.2e-13): no false alarm
    noise = 1e-15 * np.random.default_rng(7).standard_normal(block.shape)
    assert check(base, [measured_row({"w": block * (1 + noise)}, "(64,)")], inputs, "layer")[0] == EXIT_OK

    # one entry, not among the stored ones, 10% wrong: its output component is named
    stored = {i for i, _ in print_["entries"]}
    k, i = next((k, i) for k in range(64) for i in range(128) if k * 128 + i not in stored and abs(block[k, i]) > 0.5)
    wrong = block.copy()
    wrong[k, i] *= 1.1
    code, lines = check(base, [measured_row({"w": wrong}, "(64,)")], inputs, "layer")
    text = "\n".join(lines)
    assert code == EXIT_REGRESSION and f"output components out[{k}];" in text, text
    # one of the stored entries changed: named as out[k] / w[i] with both values
    index, value = print_["entries"][0]
    wrong = block.copy()
    wrong.ravel()[index] = -value
    code, lines = check(base, [measured_row({"w": wrong}, "(64,)")], inputs, "layer")
    k, i = divmod(index, 128)
    assert code == EXIT_REGRESSION and f"out[{k}] / w[{i}]: expected {value:.10g}, got {-value:.10g}" in "\n".join(
        lines)


def test_a_fingerprint_keeps_the_entries_furthest_from_the_reference(tmp_path):
    truth = large_block()
    # the method errs most at out[3] / w[5] (a small entry, so not among the largest) and a little at out[9] / w[0]
    measured = truth.copy()
    small = int(np.argmin(np.abs(truth[3])))
    measured[3, small] += 1e-9
    measured[9, 0] += 1e-12
    row = testing.compact_row(testing._baseline_row(measured_row({"w": measured}, "(64,)")),
                              {"w": list(truth.ravel())})
    stored = [i for i, _ in row["jacobian"]["w"]["entries"]]
    assert 3 * 128 + small in stored and 9 * 128 + 0 in stored and len(stored) == fmt.FINGERPRINT_ENTRIES
    largest = set(np.argsort(-np.abs(measured.ravel()))[:fmt.FINGERPRINT_ENTRIES - 2].tolist())
    assert largest <= set(stored)  # the rest are the largest entries
    # the weak entry moving again is named, with its values
    base = {"schema_version": fmt.SCHEMA_VERSION, "cases": {"layer": entry([row], {"w": np.zeros(128)})}}
    moved = measured.copy()
    moved[3, small] += 1e-3
    code, lines = check(base, [measured_row({"w": moved}, "(64,)")], {"w": np.zeros(128)}, "layer")
    assert code == EXIT_REGRESSION and f"out[3] / w[{small}]: expected" in "\n".join(lines)


def test_a_snapshot_keeps_a_vector_cases_reference_only_where_it_is_small():
    from diffbench import case

    @case(inputs={"w": np.zeros(128), "b": [0.0, 0.0]})
    def layer(w, b, xp):
        return xp.tanh(w[:64] + w[64:] + xp.sum(b))

    block_w, block_b = large_block(), large_block(64, 2)
    reference = {"w": list(block_w.ravel()), "b": list(block_b.ravel())}
    rows = [measured_row({"w": block_w, "b": block_b}, "(64,)")]
    entry_ = testing._case_with_jacobians(layer, rows, (reference, None))
    assert set(entry_["reference"]) == {"b"} and "w.r.t. w is beyond 4096 entries" in entry_["reference_problem"]
    stored = entry_["rows"][0]
    assert set(stored["gradient"]) == {"b"} and set(stored["jacobian"]) == {"w"}


def test_the_fingerprints_false_alarm_and_miss_rates_are_those_stated():
    from scipy.stats import chi2

    # the threshold is χ²₈'s 0.999 quantile over 8 (scipy, independently of diffbench's constant)
    assert testing.PROJECTION_FACTOR == pytest.approx(chi2.ppf(0.999, fmt.PROJECTIONS) / fmt.PROJECTIONS, rel=1e-12)
    tol = 1e-6  # large enough that the projections' own rounding (~1e-15 relative) plays no part
    block = large_block(1, 256, seed=3)
    scale = float(np.linalg.norm(block))
    rng = np.random.default_rng(11)

    def flagged(size, trials=2000):
        count = 0
        for seed in range(trials):
            direction = rng.standard_normal(block.shape)
            moved = block + size * tol * scale * direction / np.linalg.norm(direction)
            old = fmt.fingerprint(block, "w", seed=seed)
            new = fmt.fingerprint(moved, "w", seed=seed, at=[i for i, _ in old["entries"]])
            count += bool(testing._fingerprint_changes(old, new, tol, "w", [1], [256]))
        return count

    # a move within the tolerance: the norm and stored-entry tests never fire (each is at most ‖ΔJ‖), the χ²
    # test fires with probability P(χ²₈ > 26.1·4) < 1e-15 at half the tolerance
    assert flagged(0.5) == 0
    # exactly at the tolerance: probability 1e-3 per seed (expected 2 of 2000; more than 12 has probability < 1e-6)
    assert flagged(1.0) <= 12
    # 10× the tolerance: missed with probability P(χ²₈ < 0.26) = 1.1e-5 (more than 2 misses: < 1e-8)
    assert flagged(10.0) >= 1998
    assert chi2.cdf(chi2.ppf(0.999, 8) / 100, 8) < 2e-5


def test_a_fingerprint_that_cannot_be_compared_is_not_a_pass(tmp_path):
    block = large_block()
    inputs = {"w": np.zeros(128)}
    base = snapshot([measured_row({"w": block}, output_shape="(64,)")], inputs, "layer", tmp_path)
    base["cases"]["layer"]["rows"][0]["jacobian"]["w"]["projections"].pop()  # 7 directions, not 8
    code, lines = check(base, [measured_row({"w": block}, "(64,)")], inputs, "layer")
    assert code == EXIT_BASELINE and "projections" in "\n".join(lines)
    # the input grew: the block is 64 × 129 now
    code, lines = check(fmt.read_baseline(tmp_path / "baseline.json"),
                        [measured_row({"w": np.hstack([block, block[:, :1]])}, "(64,)")], {"w": np.zeros(129)},
                        "layer")
    assert code == EXIT_REGRESSION and "changed size 8192 -> 8256" in "\n".join(lines)


def test_a_fingerprint_inconsistent_with_itself_is_refused_on_reading(tmp_path):
    snapshot([measured_row({"w": large_block()}, output_shape="(64,)")], {"w": np.zeros(128)}, "layer", tmp_path)
    path = tmp_path / "baseline.json"
    data = json.loads(path.read_text())
    data["cases"]["layer"]["rows"][0]["jacobian"]["w"]["norms"].pop()
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match=r"jacobian\.w: 63 norms for 64 rows"):
        fmt.read_baseline(path)


# --------------------------------------------------------------------------- end to end
SOFTMAX = '''
from diffbench import case

@case(inputs={"z": [0.5, -1.0, 2.0]})
def softmax(z, xp):
    """p = softmax(z); ∂p_k/∂z_i = p_k(δ_ki − p_i): diag(p) − ppᵀ."""
    e = xp.exp(z - xp.max(z))
    return e / xp.sum(e)
'''


def test_snapshot_and_check_of_a_vector_output_case_end_to_end(tmp_path):
    cases = tmp_path / "vector_cases.py"
    cases.write_text(SOFTMAX)
    path = tmp_path / "baseline.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args), "--cases", cases, "--baseline",
                               path, "--methods", "symbolic", "--variants", "symbolic=numpy", "--dtypes", "float64"],
                              capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)

    out = cli("snapshot", "--no-timing")
    assert out.returncode == 0, out.stderr
    row = json.loads(path.read_text())["cases"]["softmax"]["rows"][0]
    z = np.array([0.5, -1.0, 2.0])
    p = np.exp(z) / np.exp(z).sum()
    assert row["output_shape"] == [3]
    assert row["gradient"]["z"] == pytest.approx((np.diag(p) - np.outer(p, p)).ravel(), rel=1e-12, abs=1e-15)
    assert cli("check").returncode == EXIT_OK
    data = json.loads(path.read_text())
    data["cases"]["softmax"]["rows"][0]["gradient"]["z"][5] += 0.01  # out[1] / z[2]
    path.write_text(json.dumps(data))
    out = cli("check")
    assert out.returncode == EXIT_REGRESSION and "out[1] / z[2]" in out.stdout, out.stdout
