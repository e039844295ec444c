"""The README's picture of a report agrees with the code: its headline excerpt is what ``report`` renders from
the committed reports/example/results.csv, and pyproject's description names the reference as it is."""

from __future__ import annotations

import tomllib

from conftest import ROOT

from diffbench import report


def test_readme_headline_is_what_report_renders_from_the_example():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- headline: generated from reports/example/results.csv")[1].split("-->", 1)[1]
    shown = block.split("<!-- end of headline -->")[0].strip()
    df = report.read_results(ROOT / "reports" / "example" / "results.csv")
    expected = "\n".join(report._headline(report.measurements(df)))
    # after reports/example is regenerated, paste this block into README.md between the two markers
    assert shown == expected, expected


def test_pyproject_describes_the_reference_as_certified():
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    assert "50-digit" not in description and "certified" in description
