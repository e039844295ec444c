"""The report's first screen from hand-made tables: heatmap layout, the function's own fault shown apart,
set-up break-even, user strings in plots, the typed results reader and the CSV's spellings.

Every table here is built by hand, so each expected count, mark and number is known in advance.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import diffbench
from diffbench import report
from diffbench.results import COLUMNS

LABELS = [("symbolic", "numpy"), ("symbolic", "symengine"), ("tape", "eager"), ("tape", "function"),
          ("finite", "central")]


def table(n_cases, failed=(), fault=(), name=lambda k: f"case_{k:02d}", tags="fam"):
    """``n_cases`` cases × LABELS × 2 dtypes. Cases in ``failed`` have one case note and no measurement; cases
    in ``fault`` are inaccurate (0.3) in every exact row with cause ``conditioning`` (the function's fault);
    finite/central is inaccurate (1e-3, cause fd-error, the method's own) in every case k with k % 3 == 1."""
    rows = []
    for k in range(n_cases):
        case_name = name(k)
        if k in failed:
            rows.append(dict(case=case_name, method="case", variant="namespace", dtype="-", device="-", order=1,
                             status="error", diagnosis="xp.erfcx exists in no namespace", cause="case-fails",
                             tags=tags))
            continue
        for dtype, (method, variant) in itertools.product(("float32", "float64"), LABELS):
            status, err, cause = "ok", 1e-7 if dtype == "float32" else 1e-15, None
            if k in fault and method != "finite":
                status, err, cause = "inaccurate", 0.3, "conditioning"
            elif method == "finite" and k % 3 == 1:
                status, err, cause = "inaccurate", 1e-3, "fd-error"
            rows.append(dict(case=case_name, method=method, variant=variant, dtype=dtype, device="CPU", order=1,
                             status=status, rel_error=err, cause=cause, tags=tags, expected=status,
                             diagnosis=None if status == "ok" else f"off by {err}"))
    df = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    return df[COLUMNS]


def _texts(fig):
    """Every visible, non-empty text of a drawn figure with its box in pixels, cell marks apart."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    marks = {id(t) for ax in fig.axes for t in ax.texts}
    found = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        found.append((text, text.get_window_extent(renderer), id(text) in marks))
    return found


@pytest.mark.parametrize("n_cases", [1, 3, 60])
def test_heatmap_text_never_overlaps_and_stays_inside_the_figure(n_cases):
    fig = report.heatmap_figure(table(n_cases, failed=(2,) if n_cases > 2 else (), fault=(0,)))
    texts = _texts(fig)
    page = fig.bbox
    labels = [(t, box) for t, box, mark in texts if not mark]
    for t, box in labels:
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
            f"{t.get_text()!r} leaves the figure"
    for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
        assert not box_a.overlaps(box_b), f"{a.get_text()!r} overlaps {b.get_text()!r}"
    # a cell's mark overlaps no label (axis titles, tick labels, legend)
    for t, box, mark in texts:
        if mark:
            assert not any(box.overlaps(other) for _, other in labels), t.get_text()
    report._pyplot().close(fig)


def test_heatmap_marks_failed_cases_and_the_functions_fault_and_has_no_case_note_column():
    # 3 cases: case_00 the function's fault in its 4 exact labels, case_01 finite inaccurate (the method's),
    # case_02 could not run at all (one case note)
    fig = report.heatmap_figure(table(3, failed=(2,), fault=(0,)))
    panels = [ax for ax in fig.axes if ax.get_title() in ("float32", "float64")]
    assert len(panels) == 2
    for ax in panels:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == [f"{m}/{v}" for m, v in LABELS]  # no "case/namespace" column
        by_cell = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
        assert [by_cell.get((2, j)) for j in range(5)] == ["E"] * 5  # the failed case: E in every column
        assert [by_cell.get((0, j)) for j in range(5)] == ["f"] * 4 + [None]  # the function's fault
        assert [by_cell.get((1, j)) for j in range(5)] == [None] * 4 + ["x"]  # the method's own
        assert sum(p.get_hatch() == "////" for p in ax.patches) == 4
    report._pyplot().close(fig)


def test_headline_and_summary_count_the_functions_fault_apart():
    # case_00: 8 exact rows (4 labels × 2 dtypes) inaccurate by conditioning; case_01: 2 finite rows inaccurate
    # by fd-error; 3 cases in all
    text = report.render(table(3, fault=(0,)))
    assert "Not ok: **2 rows are the methods' failures**; **8 are the function's own fault**" in text
    assert ("not ok (order 1): **the function's own fault: 8** (conditioning 8; every exact method following "
            "the formula errs as much); the methods': `inaccurate` 2") in text
    summary = text.split("## Summary")[1].split("##")[0]
    header = next(line for line in summary.splitlines() if "inaccurate" in line)
    columns = [c.strip() for c in header.split("|")[1:-1]]
    assert columns[1:] == ["ok", "inaccurate", report.FUNCTION_COLUMN]
    row = next(line for line in summary.splitlines() if line.startswith("| symbolic/numpy float64"))
    assert [c.strip() for c in row.split("|")[2:-1]] == ["2", "0", "1"]
    row = next(line for line in summary.splitlines() if line.startswith("| finite/central float64"))
    assert [c.strip() for c in row.split("|")[2:-1]] == ["2", "1", "0"]
    problems = text.split("## Rows that are not ok, grouped")[1]
    assert "`inaccurate` · symbolic · the function's own fault (conditioning)" in problems
    assert "`inaccurate` · finite · 2 rows in 1 case" in problems and "finite · the function's" not in problems


def test_break_even_counts_set_up_against_per_call_saving():
    # two exact labels on three cases. tape/function: 10 µs per call, 3 s set-up; symbolic/numpy: 20 µs, 1 s.
    # Per case, tape pays off after (3 − 1) s ÷ (20 − 10) µs = 2e5 calls; on case c3 tape is 30 µs (never
    # faster): the break-even is the median of (2e5, 2e5, inf) = 2e5 calls
    rows = []
    for name, tape_t in (("c1", 1e-5), ("c2", 1e-5), ("c3", 3e-5)):
        rows.append(dict(case=name, method="symbolic", variant="numpy", time_median_s=2e-5, prepare_s=1.0))
        rows.append(dict(case=name, method="tape", variant="function", time_median_s=tape_t, prepare_s=3.0))
    df = pd.DataFrame(rows).assign(dtype="float64", device="CPU", order=1, status="ok", rel_error=1e-16,
                                   tags="fam", grad_over_f=2.0)
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    setup = report.setup_table(df[COLUMNS]).set_index("method")
    assert list(setup.index) == ["tape/function", "symbolic/numpy"]  # by median per-call time: 10 µs, 20 µs
    assert setup.loc["tape/function", "break-even"] == "after 200,000 calls against symbolic/numpy"
    assert setup.loc["symbolic/numpy", "break-even"] == "quickest to set up"
    assert setup.loc["tape/function", "preparation"] == "3 s"
    headline = "\n".join(report._headline(df[COLUMNS]))
    assert ("fastest exact: tape/function (2 of 3 cases, grad/f 2); counting set-up it beats symbolic/numpy "
            "after 200,000 calls") in headline


def test_a_dollar_in_a_case_name_draws_and_the_report_is_written(tmp_path):
    # mathtext would read "$\frac{$" as a broken formula and raise ParseSyntaxException
    evil = r"price in $\frac{$ units"
    df = table(2, name=lambda k: evil if k == 0 else "plain")
    path = report.write(df, tmp_path)
    assert (tmp_path / "plots" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    text = path.read_text()
    assert "could not be drawn" not in text and "![accuracy" in text
    assert report.regenerate(tmp_path / "results.csv").read_text() == text


def test_a_figure_that_fails_never_loses_the_report(tmp_path, monkeypatch):
    def broken(df, path):
        raise RuntimeError("no drawing today")

    monkeypatch.setattr(report, "accuracy_heatmap", broken)
    text = report.write(table(2), tmp_path).read_text()
    assert "The accuracy figure could not be drawn (RuntimeError: no drawing today)." in text
    assert "## Headline" in text and (tmp_path / "results.csv").exists()


def test_the_first_screen_links_every_section_and_each_section_opens_with_a_summary():
    text = report.render(table(3, fault=(0,)))
    lines = text.splitlines()
    contents = next(i for i, line in enumerate(lines) if line.startswith("Contents: "))
    assert contents < 12
    for heading in [line for line in lines if line.startswith("## ")]:
        title = heading[3:].split(" (status")[0].split(" (median")[0].split(" (Hessians")[0]
        assert f"[{title}](#" in lines[contents] or title.startswith("Accuracy") or title.startswith("Runtime"), \
            title
        after = lines[lines.index(heading) + 2]
        assert after.startswith("_") and after.endswith("_"), (heading, after)
    # the long tables come after the appendix heading
    assert text.index("# Appendix") < text.index("## Accuracy, float32")


# --------------------------------------------------------------------------- the results file
def test_plain_read_csv_keeps_the_status_nan_and_read_results_types_the_columns(tmp_path):
    df = table(2)
    df.loc[0, ["status", "expected", "rel_error", "cause"]] = ["nan", "ok|nan", np.nan, "overflow"]
    report.write(df, tmp_path)
    plain = pd.read_csv(tmp_path / "results.csv")
    assert plain["status"].notna().all()  # nothing read as a missing value
    assert plain.loc[0, "status"] == "not-a-number" and plain.loc[0, "expected"] == "ok|not-a-number"
    typed = diffbench.read_results(tmp_path / "results.csv")
    assert typed.loc[0, "status"] == "nan" and typed.loc[0, "expected"] == "ok|nan"
    assert isinstance(typed["status"].dtype, pd.CategoricalDtype)
    assert list(typed["status"].cat.categories[:4]) == ["ok", "inaccurate", "nan", "inf"]
    assert isinstance(typed["cause"].dtype, pd.CategoricalDtype) and "conditioning" in typed["cause"].cat.categories
    assert typed["rel_error"].dtype == np.float64 and str(typed["order"].dtype) == "Int64"
    assert (typed["status"] == "ok").sum() == len(df) - 3  # the nan row and case_01's two finite rows


def test_read_results_reads_files_that_spell_nan_the_old_way(tmp_path):
    # a results.csv written before the spelling changed says "nan" in status and expected
    old = tmp_path / "results.csv"
    old.write_text("case,method,variant,dtype,device,order,status,expected,rel_error\n"
                   "a,tape,eager,float32,CPU,1,nan,nan,\n"
                   "a,tape,xla,float32,CPU,1,ok,ok|nan,1e-07\n")
    typed = diffbench.read_results(old)
    assert list(typed["status"].astype(str)) == ["nan", "ok"]
    assert list(typed["expected"]) == ["nan", "ok|nan"]
    assert typed["rel_error"].isna().tolist() == [True, False]
    text = report.regenerate(old, tmp_path / "again").read_text()
    assert "`nan` · tape" in text


def test_results_parquet_beside_the_csv_when_pyarrow_is_installed(tmp_path):
    pytest.importorskip("pyarrow")
    df = table(2)
    df.loc[0, "status"] = "nan"
    report.write(df, tmp_path)
    back = diffbench.read_results(tmp_path / "results.parquet")
    assert back.loc[0, "status"] == "nan" and len(back) == len(df)


def test_unprintable_characters_in_a_case_name_are_drawn_escaped(tmp_path):
    import warnings

    assert report.plot_text("a\x00b\nc") == "a\\x00b\\x0ac"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (NUL) would be a UserWarning
        fig = report.heatmap_figure(table(2, name=lambda k: f"nul\x00{k}"))
        fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["nul\\x000", "nul\\x001"]
    report._pyplot().close(fig)
