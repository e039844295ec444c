"""The report reads the tidy table only: CSV round trip, tables, escaping, atomic writes."""

import pandas as pd
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
                          "status": ["ok"] * 5 + ["skipped"], "diagnosis": [""] * 5 + ["over budget"],
                          "time_median_s": [1e-4, 1e-4, 1e-4, 1e-3, 1e-2, None]})
    text = scale.section(table)
    assert "## Scaling (rosenbrock, float64, CPU)" in text and "skipped" in text and "10 ms" in text
    assert "| finite   | central   |    1.00 | 10–100  |" in text  # 1 ms → 10 ms over 10 → 100: slope 1
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
