"""The report reads the tidy table only: CSV round trip, tables, escaping, atomic writes."""

import re

import pandas as pd
import pytest
from conftest import ROOT

from diffbench import case, report, run


def small_results():
    from diffbench import load_cases

    cases = [c for c in load_cases(ROOT / "cases" / "seeds.py") if c.name in ("quadratic", "product")]
    df = run(cases, methods=["symbolic", "finite"], dtypes=["float64"])
    return report.with_environment(df, report.environment([], "quick"))


def test_csv_round_trip_regenerates_the_same_report(tmp_path):
    df = small_results()
    path = report.write(df, tmp_path)
    first = path.read_text()
    again = report.regenerate(tmp_path / "results.csv", tmp_path / "second")
    assert again.read_text().replace("](plots", "](plots") == first
    back = report.read_results(tmp_path / "results.csv")
    assert list(back["status"]) == list(df["status"])


def test_report_sections_and_header(tmp_path):
    text = report.write(small_results(), tmp_path).read_text()
    assert "| gpu | no GPU |" in text
    assert "## Accuracy, float64" in text and "## Runtime, float64" in text
    assert "quadratic" in text and "symbolic/numpy" in text
    assert "Every row has the status its case expects" in text


def test_scaling_section_renders_and_survives_regeneration(tmp_path):
    from diffbench import scale

    n = [10, 100, 1000]
    table = pd.DataFrame({"case": "rosenbrock", "n": n * 2, "method": ["tape"] * 3 + ["finite"] * 3,
                          "variant": ["function"] * 3 + ["central"] * 3, "dtype": "float64", "device": "CPU",
                          "status": ["ok"] * 6, "diagnosis": [""] * 6,
                          "time_median_s": [1e-4, 1e-4, 1e-4, 1e-3, 1e-2, 1e-1]})
    table.loc[5, ["status", "time_median_s", "diagnosis"]] = ["skipped", None, "over budget"]
    text = scale.section(table)
    assert "## Scaling (rosenbrock, float64, CPU)" in text and "skipped" in text and "10 ms" in text
    # finite: 1 ms → 10 ms over n = 10 → 100, then skipped: one size past the floor is no slope;
    # tape: 0.1 ms throughout, all overhead
    slopes = report.slopes(table).set_index("variant")
    assert slopes["slope"].isna().all() and slopes.loc["function", "floor"] == "10, 100, 1000"
    assert slopes.loc["central", "sizes"] == "only 100 past the floor: no slope"
    table.loc[5, ["status", "time_median_s"]] = ["ok", 1e-1]  # 1 ms, 10 ms, 100 ms: slope 1 over 100, 1000
    slopes = report.slopes(table).set_index("variant")
    assert slopes.loc["central", "slope"] == pytest.approx(1.0) and slopes.loc["central", "sizes"] == "100, 1000"
    assert re.search(r"\|\s+1\.00 \| 100, 1000\s+\| 10\s+\|", scale.section(table))
    path = report.write(small_results(), tmp_path, scale=table)
    assert "## Scaling (rosenbrock" in path.read_text()
    again = report.regenerate(tmp_path / "results.csv", tmp_path / "again")
    assert again.read_text() == path.read_text()


def test_markdown_and_html_are_escaped():
    assert report.md("a|b <script>*x*_y_") == "a\\|b &lt;script&gt;\\*x\\*\\_y\\_"


def test_non_ok_rows_are_listed_with_diagnoses(tmp_path):
    @case(inputs={"x": 0.0}, name="kink <b>|")
    def kink(x, xp):
        return xp.abs(x)

    df = report.with_environment(run([kink], methods=["symbolic"], dtypes=["float64"]),
                                 report.environment([], "quick"))
    text = report.render(df)
    assert "kink &lt;b&gt;\\|" in text and "<b>" not in text
    assert "left derivative -1" in text


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("good")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report.os, "replace", interrupted)
    try:
        report.atomic_write(target, "new and complete")
    except KeyboardInterrupt:
        pass
    assert target.read_text() == "good"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_read_results_refuses_other_csv(tmp_path):
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(other, index=False)
    import pytest

    with pytest.raises(ValueError, match="not a diffbench results file"):
        report.read_results(other)


# --------------------------------------------------------------------------- the first screen
def synthetic_results():
    """A hand-made results table whose headline is known in advance.

    Family ``alpha`` (cases a1..a3): symbolic/numpy float64 errors 1e-15, 1e-12, 1e-9 (15, 12 and 9 correct
    digits: worst 9, median 12); tape/function is faster than symbolic/numpy on a1 and a2, slower on a3, with
    grad/f 2, 3, 4 (median 3). Family ``beta`` (case b1): three tape rows return None for x, their diagnoses
    differing only in numbers, so they are one group of three rows. The float32 rows come in the reverse case
    order, and the tables must still list cases in one order.
    """
    from diffbench.harness import COLUMNS

    rows = []

    def add(case_name, tags, method, variant, dtype, status, rel_error=None, time_s=None, grad_over_f=None,
            diagnosis=None):
        rows.append({"case": case_name, "method": method, "variant": variant, "dtype": dtype, "device": "CPU",
                     "order": 1, "status": status, "expected": "ok", "rel_error": rel_error,
                     "time_median_s": time_s, "grad_over_f": grad_over_f, "diagnosis": diagnosis, "tags": tags})

    for name, err, sym_t, tape_t, ratio in (("a1", 1e-15, 2e-5, 1e-5, 2.0), ("a2", 1e-12, 2e-5, 1e-5, 3.0),
                                            ("a3", 1e-9, 1e-5, 2e-5, 4.0)):
        add(name, "alpha,vector", "symbolic", "numpy", "float64", "ok", err, sym_t, 1.0)
        add(name, "alpha,vector", "tape", "function", "float64", "ok", 1e-16, tape_t, ratio)
    for k, variant in enumerate(("eager", "function", "xla")):
        add("b1", "beta", "tape", variant, "float64", "none",
            diagnosis=f"TensorFlow returned None for x: not connected (checked {k + 1}.5 times)")
    for name in ("b1", "a3", "a2", "a1"):
        add(name, "alpha" if name[0] == "a" else "beta", "symbolic", "numpy", "float32", "ok", 1e-7, 1e-5, 1.0)
    df = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = float("nan")
    return df[COLUMNS]


def test_correct_digits_are_minus_log10_of_the_error_clipped():
    assert report.correct_digits(1e-8) == 8
    assert report.correct_digits(0.0) == report.DIGITS_MAX == 16
    assert report.correct_digits(10.0) == 0
    assert report.correct_digits(float("nan")) != report.correct_digits(float("nan"))  # NaN: nothing to read


def test_first_screen_holds_headline_heatmap_and_cost_plot(tmp_path):
    path = report.write(synthetic_results(), tmp_path)
    first_40 = path.read_text().splitlines()[:40]
    screen = "\n".join(first_40)
    assert "## Headline" in screen
    alpha = next(line for line in first_40 if line.startswith("- **alpha** (3 cases)"))
    assert "symbolic 9–12" in alpha  # worst 9 digits, median 12 in float64
    assert "fastest exact: tape/function (2 of 3 cases, grad/f 3)" in alpha
    beta = first_40[first_40.index(next(line for line in first_40 if line.startswith("- **beta**"))) + 1]
    assert "`none` 3 (3× TensorFlow returned None for x)" in beta
    assert "![accuracy" in screen and "(plots/accuracy.png)" in screen and "(plots/cost.png)" in screen
    for name in ("accuracy.png", "cost.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_non_ok_rows_are_grouped_by_cause_not_one_bullet_each(tmp_path):
    text = report.write(synthetic_results(), tmp_path).read_text()
    section = text.split("## Rows that are not ok, grouped by status, method and cause")[1]
    assert section.count("`none`") == 1
    assert "`none` · tape · 3 rows in 1 case:" in section
    # the three texts differ in a number: the case's line keeps its worst row's own number (all three have no
    # rel_error, so the first row, eager: "checked 1.5 times")
    assert "    - b1 (eager f64, function f64, xla f64; worst of 3 rows: eager): TensorFlow returned None for x: " \
           "not connected (checked 1.5 times)" in section


def test_float32_and_float64_tables_list_cases_in_one_order(tmp_path):
    text = report.write(synthetic_results(), tmp_path).read_text()

    def cases_in(heading):
        table = text.split(heading)[1].split("\n\n")[1]
        return [line.split("|")[1].strip() for line in table.splitlines()[2:]]

    order64 = cases_in("### Accuracy, float64: symbolic")
    assert order64 == ["a1", "a2", "a3"]
    assert [c for c in cases_in("### Accuracy, float32: symbolic") if c in order64] == order64


def test_report_and_console_count_the_same_rows():
    df = synthetic_results()
    sweep = df.iloc[:2].assign(method="sweep", variant="central-00")
    both = pd.concat([df, sweep], ignore_index=True)
    # 13 measurements (6 alpha float64, 3 beta, 4 float32) of 4 cases, and the 2 sweep points
    assert report.row_counts(both) == "15 rows: 13 measurements of 4 cases and 2 step-sweep points"
    assert report.render(both).splitlines()[2].startswith(report.row_counts(both))


def test_first_screen_survives_regeneration_from_the_csv(tmp_path):
    first = report.write(synthetic_results(), tmp_path).read_text()
    (tmp_path / "plots" / "accuracy.png").unlink()
    again = report.regenerate(tmp_path / "results.csv", tmp_path)
    assert again.read_text() == first
    assert (tmp_path / "plots" / "accuracy.png").exists()


def test_a_group_never_shows_one_rows_numbers_for_another():
    # two rows, one status and method, diagnoses that differ only in their numbers: one group whose shared text
    # keeps no row's own numbers, then one line per case with that case's own numbers only; a third row whose
    # text differs in words is a group of its own
    rows = pd.DataFrame([
        {"case": "a", "method": "finite", "variant": "central", "dtype": "float32", "order": 1,
         "status": "inaccurate", "diagnosis": "values of size 2e+08 at step 0.004"},
        {"case": "b", "method": "finite", "variant": "central", "dtype": "float32", "order": 1,
         "status": "inaccurate", "diagnosis": "values of size 1e+05 at step 0.004"},
        {"case": "c", "method": "finite", "variant": "central", "dtype": "float64", "order": 1,
         "status": "inaccurate", "diagnosis": "truncation at step 0.004"},
    ])
    text = report._problems(rows)
    assert text.count("- `inaccurate`") == 2
    assert "  - values of size … at step …\n" in text
    line_a = next(line for line in text.splitlines() if line.startswith("    - a "))
    line_b = next(line for line in text.splitlines() if line.startswith("    - b "))
    assert "2e+08" in line_a and "1e+05" not in line_a
    assert "1e+05" in line_b and "2e+08" not in line_b
    assert "truncation at step 0.004" in text


def test_grouped_diagnoses_show_each_cases_worst_element_and_values():
    # the diagnoses say "relative error R; worst at x[i]: true T, got G"; a group of two cases (three rows)
    # must show, per case, the numbers of that case's worst row (largest rel_error): case p's worst is its
    # xla row (0.5 > 0.026); case q has one row
    def row(case_name, variant, rel, index, true, got):
        return {"case": case_name, "method": "tape", "variant": variant, "dtype": "float64", "order": 1,
                "status": "inaccurate", "rel_error": rel,
                "diagnosis": f"relative error {rel}; worst at x[{index}]: true {true}, got {got}"}

    rows = pd.DataFrame([row("p", "eager", 0.026, 3, 1.25, 1.5), row("p", "xla", 0.5, 1, 2.0, 3.0),
                         row("q", "eager", 0.125, 0, -4.0, -3.5)])
    lines = report._problems(rows).splitlines()
    assert lines[0] == "- `inaccurate` · tape · 3 rows in 2 cases:"
    assert lines[1] == "  - relative error …; worst at x\\[…\\]: true …, got …"
    assert lines[2] == ("    - p (eager f64, xla f64; worst of 2 rows: xla): relative error 0.5; "
                        "worst at x\\[1\\]: true 2.0, got 3.0")
    assert lines[3] == "    - q (eager f64): relative error 0.125; worst at x\\[0\\]: true -4.0, got -3.5"
    assert len(lines) == 4


def test_headline_causes_are_never_cut_inside_a_word_nor_listed_twice():
    assert report.shorten("TensorFlow returned None for the second derivative with respect to x", 60) == \
        "TensorFlow returned None for the second derivative with…"
    assert report.shorten("short enough", 60) == "short enough"
    assert report.shorten("averyveryverylongsingleword and more", 10) == "averyveryverylongsingleword…"
    # two causes that differ only after 60 characters read alike once cut: one entry counting both
    text = "TensorFlow returned None for the second derivative with respect to "
    rows = pd.DataFrame([{"case": "a", "method": "tape", "variant": v, "dtype": "float64", "order": 2,
                          "status": "none", "diagnosis": text + x} for v, x in (("eager", "x"), ("xla", "y"))])
    phrase = report._not_ok_phrase(rows)
    assert phrase == ("not ok (orders 1 and 2): `none` 2 (2× TensorFlow returned None for the second derivative "
                      "with…)")


def test_slopes_leave_out_the_fixed_overhead_floor():
    import math

    import pandas as pd

    from diffbench.report import slopes

    # t = 1 ms + 1 µs·n: the floor (n ≤ 100) is within 3× of t(10); above it t grows like n, slope → 1
    sizes = [10, 100, 1000, 10_000, 100_000, 1_000_000]
    rows = [dict(method="tape", variant="eager", device="CPU", status="ok", n=n, time_median_s=1e-3 + 1e-6 * n)
            for n in sizes]
    # a variant that never leaves the floor gets no slope
    rows += [dict(method="tape", variant="xla", device="CPU", status="ok", n=n, time_median_s=1e-4 * (1 + n / 1e7))
             for n in sizes]
    table = slopes(pd.DataFrame(rows)).set_index("variant")
    assert table.loc["eager", "sizes"] == "10000, 100000, 1000000"
    assert table.loc["eager", "floor"] == "10, 100, 1000"
    # least squares over log10 n = 4, 5, 6 of log(1e-3 + 1e-6 n), by hand: slope of log(11), log(101), log(1001)
    xs = [math.log(n) for n in (1e4, 1e5, 1e6)]
    ys = [math.log(1e-3 + 1e-6 * n) for n in (1e4, 1e5, 1e6)]
    mx, my = sum(xs) / 3, sum(ys) / 3
    expected = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert table.loc["eager", "slope"] == expected or abs(table.loc["eager", "slope"] - expected) < 1e-12
    assert 0.9 < expected < 1.0
    assert math.isnan(table.loc["xla", "slope"]) and table.loc["xla", "sizes"] == "none past the floor"


def test_a_long_clause_is_shortened_to_its_own_numbers_with_their_words():
    # one clause of 150 characters that differs between two cases only in the step h and the error: each
    # case's line gives those two numbers after the three words before each, nothing else of the clause
    text = ("central differences in float64 are dominated by truncation: the function curves on a scale shorter "
            "than the step h ≈ {h} (in exact arithmetic the same differences err by {e})")
    rows = pd.DataFrame([
        {"case": name, "method": "finite", "variant": "central", "dtype": "float64", "order": 1,
         "status": "inaccurate", "rel_error": e, "diagnosis": text.format(h=h, e=e)}
        for name, h, e in (("p", 0.00054, 4.8e-08), ("q", 0.00067, 7.4e-08))])
    assert len(text) > 120
    lines = report._problems(rows).splitlines()
    assert lines[2] == "    - p (central f64): step h ≈ 0.00054, differences err by 4.8e-08"
    assert lines[3] == "    - q (central f64): step h ≈ 0.00067, differences err by 7.4e-08"
