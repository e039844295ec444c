"""The report's Jacobian section, from synthetic result rows: present only with vector-output rows, its heatmap
of correct digits, the worst entries, the cost table and plot, regenerated from results.csv alone."""

import math

import numpy as np
import pandas as pd
import pytest

from diffbench import report
from diffbench.results import COLUMNS

MICRO = 1e-6


def rows_table(vector=True, products=True):
    """A scalar case (quadratic) and, with ``vector``, two vector-output cases: softmax (3 outputs of 3 inputs)
    and rotate (2 outputs of 3 inputs). Times and errors are chosen here, by hand, for the assertions."""
    rows = [dict(case="quadratic", method="tape", variant="function", status="ok", rel_error=1e-16,
                 time_median_s=10 * MICRO, n_inputs=2)]
    if vector:
        common = dict(outputs=3, output_shape="(3,)", n_inputs=3)
        rows += [
            dict(case="softmax", method="tape", variant="function", status="ok", rel_error=1e-12,
                 time_median_s=30 * MICRO, **common),
            dict(case="softmax", method="finite", variant="central", status="inaccurate", rel_error=2e-3,
                 time_median_s=50 * MICRO, cause="fd-error",
                 diagnosis="out[1] / z[2]: expected 0.25, got 0.2505; out[0] / z[0]: expected 0.2, got 0.2001; "
                           "row out[1]: relative error 2e-3 beyond the tolerance", **common),
            dict(case="softmax", method="tape", variant="xla", status="error", diagnosis="XLA raised",
                 **common),
            dict(case="rotate", method="tape", variant="function", status="ok", rel_error=1e-15,
                 time_median_s=20 * MICRO, outputs=2, output_shape="(2,)", n_inputs=3),
        ]
        if products:
            rows += [dict(case="softmax", method="tape", variant="vjp", status="ok", rel_error=1e-16,
                          time_median_s=4 * MICRO, **common),
                     dict(case="softmax", method="tape", variant="jvp", status="ok", rel_error=1e-16,
                          time_median_s=5 * MICRO, **common)]
    for row in rows:
        row.update(dtype="float64", device="CPU", order=1, tags="fam")
        row.setdefault("expected", row["status"])
    df = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    return df[COLUMNS]


def test_no_section_without_vector_output_rows_even_without_the_columns():
    scalar = rows_table(vector=False)
    assert "## Jacobians" not in report.render(scalar)
    old = scalar.drop(columns=["outputs", "output_shape"])  # a results table written before the columns existed
    assert report.jacobian_rows(old).empty and "## Jacobians" not in report.render(old)


def test_the_section_lists_the_worst_entries_worst_status_first():
    text = report.render(rows_table())
    lines = text.splitlines()
    contents = next(line for line in lines if line.startswith("Contents: "))
    assert "[Jacobians](#jacobians)" in contents
    start = lines.index("## Jacobians")
    assert lines[start + 2] == ("_2 vector-output cases, 6 rows, 4 `ok`: each output row of a Jacobian is judged as "
                                "a gradient, the row's status is the worst over them and `rel_error` the largest of "
                                "their relative errors (reports/README.md, *Jacobians*)._")
    section = "\n".join(lines[start:lines.index("# Appendix: the long tables")])
    table = [line for line in section.splitlines() if line.startswith("| softmax") and "(3,)" in line]
    # error before inaccurate; the scalar case is not listed; ok rows are not listed
    assert len(table) == 2 and "error" in table[0] and "inaccurate" in table[1]
    assert "out\\[1\\] / z\\[2\\]: expected 0.25, got 0.2505; out\\[0\\] / z\\[0\\]: expected 0.2, got 0.2001" in table[1]
    assert "quadratic" not in section


def test_the_heatmap_counts_correct_digits_per_case_and_method():
    rows = report.jacobian_rows(rows_table())
    fig = report.heatmap_figure(rows, "Jacobians")
    grid = fig.axes[0].images[0].get_array()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    cases = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert cases == ["softmax", "rotate"] and "tape/function" in labels
    # −log10(1e-12) = 12 and −log10(2e-3) = 2.70 (softmax); −log10(1e-15) = 15 (rotate); the error row has none
    assert grid[0, labels.index("tape/function")] == pytest.approx(12)
    assert grid[0, labels.index("finite/central")] == pytest.approx(-math.log10(2e-3))
    assert grid[1, labels.index("tape/function")] == pytest.approx(15)
    assert np.ma.is_masked(grid[0, labels.index("tape/xla")])


def test_the_cost_compares_the_jacobian_with_products_by_rows_and_columns():
    costs = report.jacobian_costs(rows_table()).set_index(["case", "method", "variant"])
    tape = costs.loc[("softmax", "tape", "function")]
    # m × VJP = 3 × 4 µs = 12 µs, N × JVP = 3 × 5 µs = 15 µs; the Jacobian's 30 µs is 2.5× and 2×
    assert tape["rows_s"] == pytest.approx(12 * MICRO) and tape["columns_s"] == pytest.approx(15 * MICRO)
    assert tape["over_rows"] == pytest.approx(2.5) and tape["over_columns"] == pytest.approx(2.0)
    # finite differences have no product rows here: no ratio
    assert math.isnan(costs.loc[("softmax", "finite", "central"), "over_rows"])
    assert ("softmax", "tape", "vjp") not in costs.index  # products are not Jacobians
    text = report.render(rows_table())
    line = next(x for x in text.splitlines() if x.startswith("| softmax") and "×" in x and "VJP" in x)
    assert "3 × 3" in line and "30 µs" in line and "12 µs" in line and "15 µs" in line


def test_without_product_rows_the_cost_table_says_so():
    text = report.render(rows_table(products=False))
    line = next(x for x in text.splitlines() if x.startswith("| softmax") and "3 × 3" in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[-3:] == ["-", "-", "-"]


def test_the_figures_are_drawn_and_the_report_regenerates_from_results_csv(tmp_path):
    path = report.write(rows_table(), tmp_path)
    text = path.read_text()
    assert (tmp_path / report.JACOBIAN_DIGITS_PNG).stat().st_size > 0
    assert (tmp_path / report.JACOBIAN_COST_PNG).stat().st_size > 0
    assert f"]({report.JACOBIAN_DIGITS_PNG})" in text and f"]({report.JACOBIAN_COST_PNG})" in text
    assert "could not be drawn" not in text
    again = report.regenerate(tmp_path / "results.csv", tmp_path / "again")
    assert again.read_text() == text
    scalar = report.write(rows_table(vector=False), tmp_path / "scalar")
    assert not (tmp_path / "scalar" / report.JACOBIAN_DIGITS_PNG).exists() and "Jacobian" not in scalar.read_text()


def test_the_cost_table_says_forward_mode_wins_on_a_tall_jacobian_and_reverse_on_a_wide_one():
    # hand-chosen times: tall (60 outputs, 3 inputs) reverse 2.5 ms, forward 1.5 ms; one VJP 12 µs, one JVP 25 µs,
    # so m × VJP = 720 µs > N × JVP = 75 µs. wide (3 outputs, 300 inputs): reverse 2 ms < forward 6 ms, and
    # m × VJP = 36 µs < N × JVP = 7.5 ms. Forward mode wins the tall one by both measures, reverse the wide one.
    rows = []
    for name, m, n, reverse, forward, vjp, jvp in (("tall", 60, 3, 2500, 1500, 12, 25),
                                                  ("wide", 3, 300, 2000, 6000, 12, 25)):
        common = dict(case=name, method="tape", status="ok", rel_error=1e-16, outputs=m, output_shape=f"({m},)",
                      n_inputs=n)
        rows += [dict(variant="function", time_median_s=reverse * MICRO, **common),
                 dict(variant="forward", time_median_s=forward * MICRO, **common),
                 dict(variant="vjp", time_median_s=vjp * MICRO, **common),
                 dict(variant="jvp", time_median_s=jvp * MICRO, **common)]
    for row in rows:
        row.update(dtype="float64", device="CPU", order=1, tags="fam", expected="ok")
    df = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    lines = report.render(df[COLUMNS]).splitlines()
    header = next(x for x in lines if x.startswith("| case") and "faster mode (full J)" in x)
    names = [c.strip() for c in header.strip("|").split("|")]
    table = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(names) and cells[0] in ("tall", "wide"):
            table[cells[0]] = dict(zip(names, cells))
    assert table["tall"]["m × N"] == "60 × 3" and table["wide"]["m × N"] == "3 × 300"
    assert table["tall"]["faster mode (full J)"] == "forward" and table["tall"]["faster mode (products)"] == "forward"
    assert table["wide"]["faster mode (full J)"] == "reverse" and table["wide"]["faster mode (products)"] == "reverse"
    assert table["tall"]["m × VJP"] == "720 µs" and table["tall"]["N × JVP"] == "75 µs"
    assert table["wide"]["N × JVP"] == "7.5 ms"
