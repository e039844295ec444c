"""Every file diffbench writes stays under its out folder, whatever the case names say.

Case names are the user's text: ``..``, ``../../escape``, an absolute path, a NUL, a `$` for mathtext, a name
of 300 characters. File names derived from them are slugged (and made unique), and a command given --out
writes nothing outside it; without --out, nothing outside the working directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from diffbench.paths import MAX_SLUG, inside, slug

EVIL = ["..", "../../f3_esc", "../../../../../../../tmp/diffbench_abs_esc", "/tmp/diffbench_abs_esc2", "a\x00b",
        "L" * 300, "price in $\\frac{$ units", ".hidden", "-rf"]


@pytest.mark.parametrize("name", EVIL + ["quadratic", "f3_esc"])
def test_a_slug_is_one_safe_file_name(name):
    made = slug(name)
    assert 0 < len(made) <= MAX_SLUG
    assert set(made) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert not made.startswith((".", "-"))
    assert Path(made).name == made and made not in (".", "..")


def test_safe_names_are_kept_and_names_that_slug_alike_stay_apart():
    assert slug("quadratic") == "quadratic" and slug("rosenbrock_10.v2") == "rosenbrock_10.v2"
    # "a/b", "a b" and "a_b" all clean up to "a_b": only the one that needed no change keeps it
    names = ["a/b", "a b", "a_b", "a\x00b", "L" * 300, "L" * 301]
    assert len({slug(n) for n in names}) == len(names)
    assert slug("a_b") == "a_b"


def test_inside_refuses_a_path_outside_the_folder(tmp_path):
    assert inside(tmp_path, tmp_path / "plots" / "x.png") == tmp_path / "plots" / "x.png"
    with pytest.raises(ValueError, match="outside"):
        inside(tmp_path / "out", tmp_path / "out" / ".." / "x.png")


def test_scale_plots_of_any_name_stay_in_their_folder(tmp_path):
    import pandas as pd

    from diffbench import scale

    table = pd.DataFrame({"case": "x", "n": [10, 100], "method": "tape", "variant": "eager", "device": "CPU",
                          "status": "ok", "time_median_s": [1e-4, 1e-3]})
    out = tmp_path / "a" / "out"
    for name in EVIL:
        for path in scale.plots(table.assign(case=name, grad_ops_cse=None), out, name):
            assert out in path.resolve().parents and path.exists()
    assert _files(tmp_path) == _files(out) and len(_files(out)) == len(EVIL)


CASES = '''
from diffbench import case

NAMES = {names!r}

def _make(name):
    @case(inputs={{"x": [1.0, 2.0]}}, name=name, sizes=lambda n: {{"x": [1.0] * n}})
    def f(x, xp):
        return xp.sum(x * x)
    return f

for _k, _name in enumerate(NAMES):
    globals()[f"case_{{_k}}"] = _make(_name)
'''

ENV = {**{k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DIFFBENCH_VERBOSE")},
       "PYTHONPATH": str(ROOT)}


def _diffbench(*args, cwd):
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


#: the first line of TensorFlow's C++ start-up output (absl), or a glog-style line
GLOG_LINE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} )")


def _quiet(out) -> bool:
    """No TensorFlow start-up line on stderr (scale's cross-check and snapshot's workers import TensorFlow)."""
    return not [line for line in out.stderr.splitlines() if GLOG_LINE.match(line)]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_no_command_writes_outside_its_out_folder(tmp_path):
    work = tmp_path / "deep" / "er" / "work"
    work.mkdir(parents=True)
    case_file = tmp_path / "evil_cases.py"
    case_file.write_text(CASES.format(names=EVIL))
    before = set(Path("/tmp").iterdir())
    outs = {name: work / name for name in ("run", "again", "scale", "scale2", "fuzz")}
    run = _diffbench("run", "--cases", case_file, "--methods", "finite", "--dtypes", "float64", "--no-order2",
                     "--no-scale", "--jobs", 1, "--out", outs["run"], cwd=work)
    assert run.returncode == 0, run.stderr
    report = _diffbench("report", outs["run"] / "results.csv", "--out", outs["again"], cwd=work)
    assert report.returncode == 0, report.stderr
    # a NUL cannot travel in argv: the in-process test below gives scale's plots that name
    for k, name in enumerate(("../../f3_esc", "..", "L" * 300)):
        scale = _diffbench("scale", "--cases", case_file, name, "--sizes", "2,3", "--methods", "finite",
                           "--out", outs["scale"] / str(k), cwd=work)
        assert scale.returncode == 0 and _quiet(scale), scale.stderr
    # without --out: the default folder under the working directory
    scale = _diffbench("scale", "--cases", case_file, "../../../../../../../tmp/diffbench_abs_esc", "--sizes",
                       "2,3", "--methods", "finite", cwd=work)
    assert scale.returncode == 0, scale.stderr
    snapshot = _diffbench("snapshot", "--cases", case_file, "--methods", "finite", "--dtypes", "float64",
                          "--no-timing", "--jobs", 1, "--baseline", work / "baseline.json", cwd=work)
    assert snapshot.returncode in (0, 1) and _quiet(snapshot), snapshot.stderr
    fuzz = _diffbench("fuzz", "--n", 2, "--out", outs["fuzz"], cwd=work)
    assert fuzz.returncode in (0, 1), fuzz.stderr
    written = _files(tmp_path)
    allowed = [outs["run"], outs["again"], outs["scale"], outs["fuzz"], work / "reports" / "latest"]
    strays = [p for p in written if p != case_file and p != work / "baseline.json"
              and not any(folder in p.parents for folder in allowed)]
    assert strays == [] and not (tmp_path / "f3_esc_time.png").exists()
    # the default scale folder is one slugged folder under reports/latest
    defaults = list((work / "reports" / "latest").iterdir())
    assert len(defaults) == 1 and defaults[0].name.startswith("scale-")
    assert set(Path("/tmp").iterdir()) - before <= {p for p in Path("/tmp").iterdir() if "diffbench_abs_esc"
                                                   not in p.name}
    assert (outs["run"] / "report.md").exists() and (outs["again"] / "report.md").exists()
