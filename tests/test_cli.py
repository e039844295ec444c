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
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(tmp_path / "results.csv")
    df = df[df.method != "sweep"]
    status = df.groupby("case").status.agg(lambda s: set(s)).to_dict()
    diagnosis = df.groupby("case").diagnosis.agg(lambda s: " | ".join(map(str, s))).to_dict()
    assert status["good_quadratic"] == {"ok"} and status["good_sum_of_squares"] == {"ok"}
    assert status["raises"] == {"error"} and "this case is broken on purpose" in diagnosis["raises"]
    assert status["hangs"] == {"timeout"}
    assert "error" in status["crashes"] and "worker process died (exit code 3)" in diagnosis["crashes"]
    assert status["wrong_output"] == {"error"} and "must return a scalar" in diagnosis["wrong_output"]
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
