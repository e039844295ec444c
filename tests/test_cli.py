"""The command line end to end, as a user runs it (subprocesses, real files)."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import DATA, ROOT

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def diffbench(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=kw.pop("cwd", ROOT), **kw)


def test_list_prints_cases_tags_and_shapes():
    out = diffbench("list", "--cases", ROOT / "cases" / "seeds.py")
    assert out.returncode == 0, out.stderr
    assert "quadratic(x[])  tags: seed, scalar" in out.stdout
    assert "dense_output_sum_squares(W[3, 2], b[2])" in out.stdout
    assert "keras_dense1(kernel[2, 1], bias[1]) [+tensorflow]" in out.stdout


def test_run_small_selection_writes_report_and_csv(tmp_path):
    out = diffbench("run", "--cases", ROOT / "cases" / "classic.py", "-k", "beale", "--out", tmp_path, "--jobs", 1)
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(tmp_path / "results.csv")
    main = df[df.method != "sweep"]
    assert set(main.method) == {"symbolic", "tape", "finite"}
    assert set(main.dtype) == {"float32", "float64"}
    assert {"eager", "function", "xla", "forward"} <= set(main.variant)
    assert set(main.status) == {"ok"}
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Accuracy, float32", "## Accuracy, float64", "## Runtime, float64", "## Second derivatives",
                    "## Rows that are not ok", "## Headline"):
        assert heading in report
    assert "no GPU" in report and "tensorflow" in report
    assert (tmp_path / "plots" / "step_sweep_float64.png").exists()
    # the report can be regenerated from the CSV alone
    (tmp_path / "report.md").unlink()
    again = diffbench("report", tmp_path / "results.csv")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "report.md").read_text() == report


def test_unknown_option_values_are_clear(tmp_path):
    out = diffbench("run", "--cases", ROOT / "cases" / "seeds.py", "--methods", "magic", "--out", tmp_path)
    assert out.returncode != 0 and "unknown method 'magic'" in out.stderr
    out = diffbench("run", "--cases", tmp_path / "nowhere", "--out", tmp_path)
    assert out.returncode != 0 and "no case file or folder" in out.stderr
    out = diffbench("run", "--cases", ROOT / "cases", "-k", "no-such-case", "--out", tmp_path)
    assert out.returncode != 0 and "no case" in out.stderr


@pytest.mark.slow
def test_broken_cases_run_to_a_complete_report(tmp_path):
    out = diffbench("run", "--cases", DATA / "broken", "--methods", "symbolic,finite", "--dtypes", "float64",
                    "--no-order2", "--timeout", 3, "--jobs", 1, "--out", tmp_path, timeout=600)
    # the report is written; exit 4 because some cases could not be measured at all (each named on stderr)
    assert out.returncode == 4, out.stderr
    assert "could not be measured at all" in out.stderr and "wrong_output" in out.stderr
    df = pd.read_csv(tmp_path / "results.csv")
    df = df[df.method != "sweep"]
    status = df.groupby("case").status.agg(lambda s: set(s)).to_dict()
    diagnosis = df.groupby("case").diagnosis.agg(lambda s: " | ".join(map(str, s))).to_dict()
    assert status["good_quadratic"] == {"ok"} and status["good_sum_of_squares"] == {"ok"}
    assert status["raises"] == {"error"} and "this case is broken on purpose" in diagnosis["raises"]
    assert status["hangs"] == {"timeout"}
    # the case calls os._exit(3): the rows say so, and the rest of the case is not run again
    assert status["crashes"] == {"error"} and "exit code 3 (os._exit(3)" in diagnosis["crashes"]
    assert status["wrong_output"] == {"error"} and "scalar or one array" in diagnosis["wrong_output"]
    assert status["unknown_function"] == {"error"} and "xp.erfcx" in diagnosis["unknown_function"]
    assert status["nan_input"] == {"error"} and "NaN or inf" in diagnosis["nan_input"]
    assert status["string_input"] == {"error"} and "string" in diagnosis["string_input"]
    assert status["syntax_error"] == {"error"} and "syntax error" in diagnosis["syntax_error"]
    report = (tmp_path / "report.md").read_text()
    assert "a\\|b &lt;i&gt;name&lt;/i&gt;" in report and "<i>" not in report


@pytest.mark.slow
def test_interrupt_keeps_finished_rows_and_resume_completes(tmp_path):
    cases = ROOT / "cases" / "classic.py"
    args = [sys.executable, "-m", "diffbench", "run", "--cases", str(cases), "--methods", "symbolic,finite",
            "--dtypes", "float64", "--jobs", "1", "--out", str(tmp_path)]
    process = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists() or journal.read_text().count("\n") < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    finished = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(finished) >= 3
    df = pd.read_csv(tmp_path / "results.csv")
    assert len(df) == len(finished)
    assert (tmp_path / "report.md").exists()
    out = diffbench("run", "--resume", tmp_path, "--cases", cases, "--methods", "symbolic,finite", "--dtypes",
                    "float64", "--jobs", 1)
    assert out.returncode == 0, out.stderr
    assert f"{len(finished)} rows already measured" in out.stderr
    full = pd.read_csv(tmp_path / "results.csv")
    assert full["case"].nunique() == 10
    assert not full.duplicated(["case", "method", "variant", "dtype", "device", "order"]).any()


# --------------------------------------------------------------------------- --version, -k, compare, a clean clone
def listed(out):
    return {line.split("(")[0] for line in out.stdout.splitlines()}


def test_version_is_the_packages_version():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = diffbench("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"diffbench {version}"


@pytest.mark.parametrize("expression, names", [
    # seeds.py: softplus_mse (tags seed, softplus) and softplus_loss (seed, softplus, native)
    ("softplus and not loss", {"softplus_mse"}),
    ("(square or chain) and not dense", {"square", "chain"}),
    # "native" is a tag of softplus_loss, keras_dense1 and gradient_penalty; "KERAS" matches ignoring case
    ("native and not KERAS", {"softplus_loss", "gradient_penalty"}),
    ("not seed", set()),  # every case in seeds.py has the tag seed
    ("quadratic", {"quadratic"}),
])
def test_k_takes_pytest_style_expressions(expression, names):
    out = diffbench("list", "--cases", ROOT / "cases" / "seeds.py", "-k", expression)
    if names:
        assert out.returncode == 0, out.stderr
        assert listed(out) == names
    else:
        assert out.returncode == 2 and "no case" in out.stderr


@pytest.mark.parametrize("expression", ["safe and", "(safe", "safe wrong", "not", ")"])
def test_k_refuses_a_malformed_expression(expression):
    out = diffbench("list", "--cases", ROOT / "cases" / "seeds.py", "-k", expression)
    assert out.returncode == 2 and "argument -k" in out.stderr and "expected" in out.stderr


def test_keyword_expression_precedence():
    from diffbench.keywords import KeywordExpression

    # not binds tighter than and, and tighter than or: "a or b and not c" is a or (b and (not c))
    expression = KeywordExpression.parse("a or b and not c")
    assert expression.matches("a_c") and expression.matches("b") and not expression.matches("b_c")
    assert not expression.matches("zzz")
    assert KeywordExpression.parse("x").matches("name", ["tax"])  # a substring of a tag


def write_run(folder, rows):
    from diffbench.harness import COLUMNS

    folder.mkdir()
    df = pd.DataFrame([dict(dict.fromkeys(COLUMNS), device="CPU", order=1, dtype="float64", **row) for row in rows])
    df.to_csv(folder / "results.csv", index=False)
    return folder


def test_compare_reports_accuracy_changes_and_significant_speed_changes(tmp_path):
    ms = 1e-3
    old_samples = " ".join(str(ms * (1 + k / 100)) for k in range(5))  # 1.00 .. 1.04 ms
    new_samples = " ".join(str(3 * ms * (1 + k / 100)) for k in range(5))  # 3.00 .. 3.12 ms
    a = write_run(tmp_path / "a", [
        dict(case="x", method="tape", variant="eager", status="ok", rel_error=1e-15),
        dict(case="y", method="finite", variant="central", status="ok", rel_error=1e-8),
        dict(case="z", method="symbolic", variant="numpy", status="ok", rel_error=0.0, time_median_s=ms,
             time_iqr_s=0.02 * ms, time_samples_s=old_samples),
        dict(case="w", method="tape", variant="function", status="ok", rel_error=0.0, time_median_s=ms,
             time_iqr_s=0.1 * ms),
        dict(case="v", method="tape", variant="xla", status="ok", rel_error=0.0, time_median_s=ms,
             time_iqr_s=0.1 * ms),
    ])
    b = write_run(tmp_path / "b", [
        dict(case="x", method="tape", variant="eager", status="inaccurate", rel_error=1e-3),
        dict(case="y", method="finite", variant="central", status="ok", rel_error=1e-12),
        dict(case="z", method="symbolic", variant="numpy", status="ok", rel_error=0.0, time_median_s=3 * ms,
             time_iqr_s=0.06 * ms, time_samples_s=new_samples),
        dict(case="w", method="tape", variant="function", status="ok", rel_error=0.0, time_median_s=0.4 * ms,
             time_iqr_s=0.05 * ms),
        dict(case="v", method="tape", variant="xla", status="ok", rel_error=0.0, time_median_s=1.2 * ms,
             time_iqr_s=0.1 * ms),
        dict(case="new", method="tape", variant="xla", status="ok", rel_error=0.0),
    ])
    out = diffbench("compare", a, b / "results.csv")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "x tape/eager float64: ok -> inaccurate (digits 15.0 -> 3.0)" in text
    assert "y finite/central float64: gained 4.0 digits (8.0 -> 12.0), ok" in text
    # 5 samples all above 5 others: the exact one-sided Mann-Whitney p is 1/C(10, 5) = 1/252 = 0.004
    assert "z symbolic/numpy float64: 1 ms -> 3 ms: 3.00x slower (p = 0.004)" in text
    # no samples: 1 ms ± 0.05 against 0.4 ms ± 0.025 do not overlap, and 2.5x is past the 50% threshold
    assert "w tape/function float64: 1 ms -> 400 µs: 2.50x faster (no samples: IQRs apart)" in text
    assert "v tape/xla" not in text  # 20% slower: under the threshold
    assert "Speed: 2 significant change(s) of 3 timed row(s)" in text
    assert "Rows only in A: 0; only in B: 1" in text


def test_compare_refuses_a_folder_without_results(tmp_path):
    out = diffbench("compare", tmp_path, tmp_path)
    assert out.returncode == 2 and "no results.csv" in out.stderr


def test_a_runs_output_folder_is_ignored_by_git_and_the_example_is_not():
    written = ["report.md", "results.csv", "results.jsonl", "run.json", "scale.csv", ".diffbench.lock",
               "plots/accuracy.png", "plots/cost.png"]
    ignored = subprocess.run(["git", "check-ignore", *(f"reports/latest/{name}" for name in written)], cwd=ROOT,
                             capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == sorted(f"reports/latest/{name}" for name in written)
    tracked = subprocess.run(["git", "ls-files", "reports/example"], cwd=ROOT, capture_output=True, text=True)
    assert "reports/example/report.md" in tracked.stdout.split()
    readme = (ROOT / "README.md").read_text() + (ROOT / "reports" / "README.md").read_text()
    assert "reports/latest/report.md" not in readme and "reports/example/report.md" in readme


# --------------------------------------------------------------------------- progress and quiet start-up
GLOG_LINE = r"^(WARNING: All log messages before absl|[IWEF]\d{4} )"


def test_run_counts_rows_alike_on_the_console_and_in_the_report(tmp_path):
    import re

    # beale has 2 inputs: order 1 is 2 dtypes x (4 symbolic + 4 tape + 4 finite variants) = 24 rows, order 2 is
    # 2 dtypes x 4 second-order variants (symbolic numpy and symengine, tape eager, finite central) = 8 rows:
    # 32 measurements; it is tagged sweep, so step-sweep points come on top
    out = diffbench("run", "--cases", ROOT / "cases" / "classic.py", "-k", "beale", "--out", tmp_path, "--jobs", 1,
                    "--no-scale")
    assert out.returncode == 0, out.stderr
    assert "[1/1] beale: 32/32 rows (ok 32)" in out.stderr  # not a terminal: plain lines
    counted = re.search(r"diffbench: (\d+ rows: 32 measurements of 1 case and \d+ step-sweep points)", out.stdout)
    assert counted, out.stdout
    assert (tmp_path / "report.md").read_text().splitlines()[2].startswith(counted.group(1))
    assert not [line for line in out.stderr.splitlines() if re.match(GLOG_LINE, line)], out.stderr


def test_progress_total_is_corrected_when_a_case_ends(capsys):
    import io

    from diffbench.progress import RunProgress

    stream = io.StringIO()
    bar = RunProgress({"a": 3, "b": 2}, live=False, stream=stream)
    bar.rows([{"case": "a", "method": "tape", "status": "ok"}] * 2
             + [{"case": "a", "method": "sweep", "status": "ok"}])
    bar.rows([{"case": "a", "method": "tape", "status": "none"}])
    bar.case_done("a")
    # b could not run: one error row instead of the 2 planned, so the total becomes 3 + 1
    bar.rows([{"case": "b", "method": "case", "status": "error"}])
    bar.case_done("b")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] a: 3/5 rows (ok 2, none 1)")
    assert lines[1].startswith("[2/2] b: 4/4 rows (ok 2, none 1, error 1)")
    assert bar.sweep == 1


def test_stderr_is_captured_around_a_block_and_replayed_when_it_fails(capfd, monkeypatch):
    from diffbench import quiet

    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.stderr_captured():
        os.write(2, b"start-up noise\n")
    with pytest.raises(RuntimeError):
        with quiet.stderr_captured():
            os.write(2, b"why the import failed\n")
            raise RuntimeError("import failed")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "start-up noise" not in err
    assert "why the import failed" in err and "after" in err
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    with quiet.stderr_captured():
        os.write(2, b"shown with --verbose\n")
    assert "shown with --verbose" in capfd.readouterr().err


def test_an_unknown_variant_is_a_bad_option(tmp_path):
    # a variant the engine does not have is a typo to fix (exit 2), not a row and not a regression
    out = subprocess.run([sys.executable, "-m", "diffbench", "run", "--variants", "tape=bogus", "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "unknown tape variant" in out.stderr and "eager" in out.stderr
