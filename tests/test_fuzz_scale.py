"""Differential fuzzing and the scaling study."""

import dataclasses
import re

import pandas as pd
import pytest
from conftest import ROOT

from diffbench import fuzz, scale
from diffbench.results import Cause, Row, Status


def _explored(n, seed):
    drawn = []
    fuzz.explore(n, seed, lambda tree, point: drawn.append((tree, point)))
    return drawn


def test_strategy_generates_valid_sources():
    drawn = _explored(80, 1)
    assert len(drawn) == 80
    allowed = {"exp", "sin", "cos", "tanh", "log1p", "sqrt", "atan", "log", "abs"}  # what UNARY writes as xp.*
    for tree, point in drawn:
        source = fuzz.case_source(tree, "probe", point)
        compile(source, "probe", "exec")
        assert set(re.findall(r"xp\.(\w+)\(", tree.source())) - {"sum"} <= allowed
        assert all(int(i) < len(point) for i in re.findall(r"x\[(\d+)\]", tree.source()))
        assert 1 <= len(point) <= 3 and all(-2 <= v <= 2 for v in point)
        assert sum(not sub.children for sub in tree.subtrees()) <= fuzz.MAX_LEAVES
    assert len({tree.source() for tree, _ in drawn}) > 20  # not one expression over and over
    made = fuzz.make(fuzz.Node("sin", (fuzz.Node("input", value=0),)), "probe", [0.5])
    assert made.problem is None and made.name == "probe"


def test_fixed_seed_reproduces_the_same_expressions():
    def sources(seed):
        return [(tree.source(), point) for tree, point in _explored(30, seed)]

    assert sources(7) == sources(7)
    assert sources(7) != sources(8)


def test_reductions_contain_the_tree_and_only_smaller_ones():
    from hypothesis import HealthCheck, given, settings

    tree = fuzz.Node("+", (fuzz.Node("exp", (fuzz.Node("input", value=1),)), fuzz.Node("const", value=1.5)))
    seen = set()

    @settings(max_examples=200, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(fuzz.reductions(tree, 2))
    def check(small):
        assert small.size() <= tree.size()
        seen.add(small.source())

    check()
    assert "(xp.exp(x[1]) + (1.5))" in seen and "x[0]" in seen


def _row(method, variant, status, cause=None, **fields):
    return Row(case="probe", method=method, variant=variant, dtype="float64", device="CPU", order=1,
               status=status, cause=cause, **fields)


def test_unexplained_decides_on_fields():
    ok = _row("symbolic", "numpy", Status.OK)
    fd_error = _row("finite", "central", Status.INACCURATE, Cause.FD_ERROR, rel_error=1e-3, error_estimate=1e-9)
    assert fuzz.unexplained([ok, fd_error]) is None
    # finite differences within 10x their own estimate, whatever the cause
    within = _row("finite", "central", Status.INACCURATE, Cause.UNKNOWN, rel_error=5e-6, error_estimate=1e-6)
    assert fuzz.unexplained([within]) is None
    beyond = _row("finite", "central", Status.INACCURATE, Cause.UNKNOWN, rel_error=1e-3, error_estimate=1e-6)
    assert fuzz.unexplained([beyond]).startswith("finite/central: inaccurate")
    overflow = _row("tape", "eager", Status.NAN, Cause.OVERFLOW, diagnosis="the function overflows")
    assert fuzz.unexplained([ok, overflow]) is None
    for status in (Status.UNDEFINED, Status.SKIPPED, Status.UNCERTAIN):
        assert fuzz.unexplained([_row("tape", "eager", status, Cause.UNKNOWN)]) is None
    # an exact method is never excused by a finite-difference cause, nor by words in its diagnosis
    tape = _row("tape", "eager", Status.INACCURATE, Cause.UNKNOWN, rel_error=0.5,
                diagnosis="overflow, invalid value, divide by zero, dominated by rounding")
    assert fuzz.unexplained([ok, tape]).startswith("tape/eager: inaccurate (unknown)")
    assert fuzz.unexplained([_row("tape", "eager", Status.INACCURATE, Cause.FD_ERROR, rel_error=0.5)])
    assert fuzz.unexplained([_row("symbolic", "numpy", Status.ERROR, Cause.RAISED)])


def test_sin_matches_reference_in_every_method():
    rows, reason = fuzz.outcome(fuzz.Node("sin", (fuzz.Node("input", value=0),)), "probe", [0.5], 30)
    assert reason is None
    assert {r["status"] for r in rows} == {"ok"}


def test_a_finding_is_shrunk_to_the_operation_that_fails(monkeypatch):
    # a planted bug in the rows: every tape gradient of an expression using exp is reported wrong
    real = fuzz.outcome

    def outcome(tree, name, point, timeout):
        rows, _ = real(tree, name, point, timeout)
        if "xp.exp(" in tree.source():
            rows = [dataclasses.replace(r, status=Status.INACCURATE, cause=Cause.UNKNOWN) if r["method"] == "tape"
                    else r for r in rows]
        return rows, fuzz.unexplained(rows)

    monkeypatch.setattr(fuzz, "outcome", outcome)
    big = fuzz.Node("*", (fuzz.Node("sin", (fuzz.Node("+", (fuzz.Node("exp", (fuzz.Node("input", value=1),)),
                                                            fuzz.Node("const", value=1.5))),)),
                          fuzz.Node("input", value=0)))
    small = fuzz.shrink(big, "probe", [0.3, -0.7], 30)
    assert small.source() == "xp.exp(x[0])"
    # an expression that does not fail is left as it is
    assert fuzz.shrink(fuzz.Node("sin", (fuzz.Node("input", value=0),)), "probe", [0.3], 30).source() == "xp.sin(x[0])"


def test_planted_wrong_gradient_is_found_and_shrunk(tmp_path, monkeypatch):
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    real_atan = tnp.arctan
    # right values, derivative off by 0.5: only the tape sees it
    monkeypatch.setattr(tnp, "arctan", lambda x: real_atan(x) + 0.5 * (x - tf.stop_gradient(x)))
    summary = fuzz.fuzz(40, 4, tmp_path)
    drawn = [tree for tree, _ in _explored(40, 4)]
    assert any("xp.atan(" in tree.source() and tree.size() > 3 for tree in drawn)  # something to shrink
    assert summary["crashes"] == 0 and summary["findings"] >= 1
    findings = (tmp_path / "findings.py").read_text()
    compile(findings, "findings.py", "exec")
    expressions = re.findall(r"return xp\.sum\(x \* 0\.0\) \+ (.*)", findings)
    assert len(expressions) == summary["findings"]
    assert all(re.fullmatch(r"xp\.atan\(x\[\d\]\)", e) for e in expressions), expressions
    assert "tape/eager: inaccurate" in findings


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
