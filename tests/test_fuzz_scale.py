"""Differential fuzzing and the scaling study."""

import random

import pandas as pd
import pytest
from conftest import ROOT

from diffbench import fuzz, scale


def test_generator_is_seeded_and_sources_are_valid_cases():
    a = [fuzz.generate(random.Random(7), 2, 3).source() for _ in range(3)]
    b = [fuzz.generate(random.Random(7), 2, 3).source() for _ in range(3)]
    assert a == b
    made = fuzz.make(fuzz.Node("sin", (fuzz.Node("input", value=0),)), "probe", [0.5])
    assert made.problem is None and made.name == "probe"


def test_sin_matches_reference_in_every_method():
    rows, reason = fuzz.outcome(fuzz.Node("sin", (fuzz.Node("input", value=0),)), "probe", [0.5], 30)
    assert reason is None
    assert {r["status"] for r in rows} == {"ok"}


def test_unexplained_disagreement_is_reported_and_shrunk(monkeypatch):
    # a planted bug: every tape row claims an error no diagnosis explains
    real = fuzz.unexplained

    def planted(rows):
        for row in rows:
            if row["method"] == "tape" and "x[0]" in fuzz.CURRENT[0]:
                return "tape/eager: planted"
        return real(rows)

    fuzz.CURRENT = [""]
    original_outcome = fuzz.outcome

    def outcome(tree, name, point, timeout):
        fuzz.CURRENT[0] = tree.source()
        rows, _ = original_outcome(tree, name, point, timeout)
        return rows, planted(rows)

    monkeypatch.setattr(fuzz, "outcome", outcome)
    big = fuzz.Node("+", (fuzz.Node("exp", (fuzz.Node("input", value=0),)), fuzz.Node("const", value=1.5)))
    small = fuzz.shrink(big, "probe", [0.3], 30)
    assert small.source() == "x[0]"


def test_fuzz_run_writes_report_and_ready_to_paste_cases(tmp_path):
    summary = fuzz.fuzz(25, 3, tmp_path)
    assert summary["crashes"] == 0 and summary["n"] == 25
    text = (tmp_path / "fuzz.md").read_text()
    assert "25 random expressions (seed 3)" in text
    compile((tmp_path / "findings.py").read_text(), "findings.py", "exec")


def test_scale_rosenbrock_writes_table_slopes_and_plots(tmp_path):
    from diffbench import load_cases

    rosen = {c.name: c for c in load_cases(ROOT / "cases" / "classic.py")}["rosenbrock"]
    df = scale.study(rosen, [10, 40, 160], ["symbolic", "tape", "finite"], budget_s=30)
    assert set(df.n) == {10, 40, 160}
    ok = df[df.status == "ok"]
    exact = ok[ok.method != "finite"]
    assert (exact.rel_error < 1e-13).all()  # exact methods agree with the tape/function cross-check
    assert (ok[ok.method == "finite"].rel_error < 1e-8).all()  # central differences: ~eps^(2/3)
    sym = ok[(ok.method == "symbolic") & (ok.variant == "numpy")].sort_values("n")
    # Rosenbrock's expression has ~10 operations per term: count_ops grows linearly with n
    assert list(sym.expr_ops) == sorted(sym.expr_ops) and sym.expr_ops.iloc[-1] > 10 * sym.expr_ops.iloc[0]
    assert (sym.grad_ops_cse <= sym.grad_ops_nocse).all()
    images = scale.plots(df, tmp_path, "rosenbrock")
    assert [p.name for p in images] == ["rosenbrock_time.png", "rosenbrock_expression_size.png"]


def test_slopes_of_known_power_laws():
    n = [10, 100, 1000]
    df = pd.DataFrame({"n": n * 2, "method": ["a"] * 3 + ["b"] * 3, "variant": "v", "device": "CPU", "status": "ok",
                       "time_median_s": [1e-6 * k for k in n] + [1e-9 * k**2 for k in n]})
    slopes = scale.slopes(df).set_index("method").slope
    assert slopes["a"] == pytest.approx(1.0) and slopes["b"] == pytest.approx(2.0)


def test_scale_budget_skips_larger_sizes():
    from diffbench import load_cases

    rosen = {c.name: c for c in load_cases(ROOT / "cases" / "classic.py")}["rosenbrock"]
    df = scale.study(rosen, [10, 20], ["finite"], budget_s=1e-9)
    second = df[(df.n == 20)]
    assert set(second.status) == {"skipped"} and second.diagnosis.str.contains("budget").all()
