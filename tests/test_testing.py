"""Baselines and the CI gate (snapshot/check exit codes), and assert_gradients."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

from diffbench import assert_gradients

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
CASES = ROOT / "cases" / "classic.py"


def diffbench(*args):
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=ROOT)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    out = diffbench("snapshot", "--cases", CASES, "-k", "booth", "--baseline", path, "--methods", "symbolic,finite")
    assert out.returncode == 0, out.stderr
    return path


def test_baseline_is_readable_json_with_schema_and_hash(baseline):
    data = json.loads(baseline.read_text())
    assert data["schema_version"] == 4
    entry = data["cases"]["booth"]
    assert len(entry["source_hash"]) == 16 and len(entry["definition_hash"]) == 16
    # booth at (0.3, −1.7): ∂/∂x = 2(x + 2y − 7) + 4(2x + y − 5), ∂/∂y = 4(x + 2y − 7) + 2(2x + y − 5)
    x, y = 0.3, -1.7
    assert entry["reference"]["x"][0] == pytest.approx(2 * (x + 2 * y - 7) + 4 * (2 * x + y - 5))
    assert entry["reference"]["y"][0] == pytest.approx(4 * (x + 2 * y - 7) + 2 * (2 * x + y - 5))
    assert {r["method"] for r in entry["rows"]} == {"symbolic", "finite"}
    assert baseline.read_text().count("\n") > 20  # indented: diffable by eye


def test_check_passes_against_its_own_snapshot(baseline):
    out = diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", baseline, "--methods", "symbolic,finite")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "match the baseline" in out.stdout


def test_changed_number_is_a_regression_with_a_summary(baseline, tmp_path):
    data = json.loads(baseline.read_text())
    row = next(r for r in data["cases"]["booth"]["rows"] if r["method"] == "symbolic" and r["dtype"] == "float64")
    row["gradient"]["y"][0] += 1.0
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    summary = tmp_path / "summary.md"
    out = diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", changed, "--methods", "symbolic,finite",
                    "--summary", summary)
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout
    assert "booth" in text and "symbolic/numpy float64" in text and "`y`" in text
    assert "relative" in text and "expected" in text and "got" in text and "[]" in text
    assert summary.read_text() == text.rstrip("\n") + "\n" or summary.read_text().strip() == text.strip()


def test_missing_unknown_or_stale_baseline_fails_closed(baseline, tmp_path):
    out = diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", tmp_path / "none.json")
    assert out.returncode == 2 and "no baseline" in out.stderr
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"schema_version": 99, "cases": {}}))
    out = diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", future)
    assert out.returncode == 2 and "schema_version 99" in out.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", garbage).returncode == 2
    stale = json.loads(baseline.read_text())
    stale["cases"]["booth"]["definition_hash"] = "0" * 16
    stale_path = tmp_path / "stale.json"
    stale_path.write_text(json.dumps(stale))
    out = diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", stale_path, "--methods", "symbolic")
    assert out.returncode == 2 and "changed since the baseline" in out.stdout
    out = diffbench("check", "--cases", CASES, "-k", "beale", "--baseline", baseline, "--methods", "symbolic")
    assert out.returncode == 2 and "not in the baseline" in out.stdout


def test_fail_slower_needs_a_valid_spec(baseline):
    out = diffbench("check", "--cases", CASES, "-k", "booth", "--baseline", baseline, "--fail-slower", "fast")
    assert out.returncode != 0 and "median:20%" in out.stderr


def softplus_sum(x):
    return tf.reduce_sum(tf.math.softplus(x))


def test_assert_gradients_passes_a_right_gradient():
    assert_gradients(softplus_sum, {"x": np.array([-1.0, 0.5, 2.0])})


def test_assert_gradients_with_a_symbolic_reference():
    def truth(x, xp):
        return xp.sum(xp.logaddexp(0.0, x))

    assert_gradients(softplus_sum, {"x": np.array([-1.0, 0.5, 2.0])}, reference=truth)


def test_assert_gradients_reports_a_wrong_custom_gradient():
    @tf.custom_gradient
    def bad_softplus(v):
        return tf.math.softplus(v), lambda upstream: upstream * tf.exp(v)

    def loss(x):
        return tf.reduce_sum(bad_softplus(x))

    with pytest.raises(AssertionError) as info:
        assert_gradients(loss, {"x": np.array([-1.0, 0.5, 2.0])})
    text = str(info.value)
    assert "relative error" in text and "'x'" in text and "custom_gradient" in text
    # worst element is x[2] = 2: expected sigmoid(2) = 0.8808, got exp(2) = 7.389
    assert "[2] expected 0.88" in text and "got 7.38" in text


def test_assert_gradients_reports_none():
    def loss(x, y):
        return tf.reduce_sum(x**2)

    with pytest.raises(AssertionError, match="None for the gradient with respect to y"):
        assert_gradients(loss, {"x": np.array([1.0]), "y": np.array([2.0])})
