"""`run` under faults: signals, a killed parent, two runs on one folder, torn journals, resume,
bad options, duplicate names, budgets and imports, --strict, file permissions.

Every outcome asserted here is known without diffbench: exit codes, which files and processes
exist, permission bits, and the statuses of functions whose gradients are obvious (x**2 at 3).
"""

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
FINITE = ["--methods", "finite", "--dtypes", "float64", "--no-order2", "--jobs", "1"]
#: the four finite-difference variants: one row each per case for FINITE
FINITE_VARIANTS = {"forward", "central", "complex_step", "richardson"}

FAST_AND_SLOW = '''
import time

from diffbench import case


@case(inputs={"x": 3.0})
def fast(x, xp):
    return x**2


@case(inputs={"x": 1.0})
def slow(x, xp):
    time.sleep(600)
    return x
'''

TWO = '''
from diffbench import case


@case(inputs={"x": 3.0})
def first(x, xp):
    return x**2


@case(inputs={"x": 2.0})
def second(x, xp):
    return x**3
'''


def diffbench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "diffbench", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal_lines(folder):
    path = Path(folder) / "results.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate, seconds=240):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def alive(pid):
    """Running (a zombie waiting to be reaped has ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid):
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rows_of(csv_path):
    df = pd.read_csv(csv_path)
    return df[df.method != "sweep"]


linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


def started_with_two_busy_workers(tmp_path):
    """A run whose `fast` case is done (4 rows) while a worker is stuck in `slow` (no time limit)."""
    cases = tmp_path / "cases.py"
    cases.write_text(FAST_AND_SLOW)
    out = tmp_path / "out"
    process = start("run", "--cases", cases, "--methods", "finite", "--dtypes", "float64", "--no-order2",
                    "--jobs", 2, "--timeout", 0, "--out", out)
    assert wait_for(lambda: len(journal_lines(out)) >= 4), "the fast case did not finish"
    assert wait_for(lambda: len([p for p in descendants(process.pid) if alive(p)]) >= 2)
    return process, out


# -- signals and processes -------------------------------------------------------------------

@linux_only
@pytest.mark.slow
def test_sigterm_writes_the_report_from_finished_rows_and_exits_143(tmp_path):
    process, out = started_with_two_busy_workers(tmp_path)
    children = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    finished = journal_lines(out)
    assert len(finished) >= 4
    df = rows_of(out / "results.csv")
    assert len(df) == len(finished)
    assert set(df[df.case == "fast"].variant) == FINITE_VARIANTS and set(df[df.case == "fast"].status) == {"ok"}
    assert (out / "report.md").exists()
    assert wait_for(lambda: not any(alive(p) for p in children), 60), "a worker outlived its parent"


@linux_only
@pytest.mark.slow
def test_workers_and_resource_tracker_die_with_a_killed_parent(tmp_path):
    process, out = started_with_two_busy_workers(tmp_path)
    children = descendants(process.pid)
    assert children
    process.kill()
    process.communicate(timeout=60)
    assert wait_for(lambda: not any(alive(p) for p in children), 60), \
        f"still running after the parent was killed: {[p for p in children if alive(p)]}"


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_refuses_and_leaves_the_first_alone(tmp_path):
    process, out = started_with_two_busy_workers(tmp_path)
    try:
        before = journal_lines(out)
        second = diffbench("run", "--cases", tmp_path / "cases.py", *FINITE, "--timeout", 5, "--out", out)
        assert second.returncode == 2, second.stderr
        assert "in use by another run" in second.stderr and str(process.pid) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert journal_lines(out)[:len(before)] == before
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert process.returncode == 143


# -- the journal and --resume ------------------------------------------------------------------

def test_a_row_appended_after_a_torn_line_survives(tmp_path):
    from diffbench.harness import COLUMNS
    from diffbench.runner import append_rows

    journal = tmp_path / "results.jsonl"
    journal.write_text('{"case": "a", "method": "finite"}\n{"case": "a", "meth')
    append_rows(journal, [dict.fromkeys(COLUMNS, None) | {"case": "b", "method": "tape"}])
    parsed = []
    for line in journal.read_text().splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    assert [(r["case"], r["method"]) for r in parsed] == [("a", "finite"), ("b", "tape")]


@pytest.mark.slow
def test_resume_after_a_torn_last_line_keeps_every_row_in_the_journal(tmp_path):
    cases = tmp_path / "cases.py"
    cases.write_text(TWO)
    out = tmp_path / "out"
    assert diffbench("run", "--cases", cases, *FINITE, "--out", out).returncode == 0
    lines = journal_lines(out)
    assert len(lines) == 8
    # the last row was being written when the run was killed
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    again = diffbench("run", "--resume", out, "--cases", cases, *FINITE)
    assert again.returncode == 0, again.stderr
    keys = set()
    for line in journal_lines(out):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        keys.add((row["case"], row["variant"]))
    assert keys == {(case, variant) for case in ("first", "second") for variant in FINITE_VARIANTS}


@pytest.mark.slow
def test_resume_remeasures_a_case_whose_source_changed(tmp_path):
    cases = tmp_path / "cases.py"
    cases.write_text(TWO)
    out = tmp_path / "out"
    assert diffbench("run", "--cases", cases, *FINITE, "--out", out).returncode == 0
    cases.write_text(TWO.replace("    return x**2", "    raise RuntimeError('edited on purpose')"))
    again = diffbench("run", "--resume", out, "--cases", cases, *FINITE)
    # every row of `first` is now an error: the report is written, and the exit code says a case went unmeasured
    assert again.returncode == 4, again.stderr
    df = rows_of(out / "results.csv")
    assert not df.duplicated(["case", "method", "variant", "dtype", "device", "order"]).any()
    first = df[df.case == "first"]
    assert set(first.variant) == FINITE_VARIANTS and set(first.status) == {"error"}
    assert first.diagnosis.str.contains("edited on purpose").all()
    assert set(df[df.case == "second"].status) == {"ok"}


@pytest.mark.slow
def test_resume_refuses_a_folder_from_another_case_set_unless_forced(tmp_path):
    one, other = tmp_path / "one.py", tmp_path / "other.py"
    one.write_text(TWO)
    other.write_text(TWO.replace("def first", "def third").replace("def second", "def fourth"))
    out = tmp_path / "out"
    assert diffbench("run", "--cases", one, *FINITE, "--out", out).returncode == 0
    refused = diffbench("run", "--resume", out, "--cases", other, *FINITE)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert len(journal_lines(out)) == 8
    forced = diffbench("run", "--resume", out, "--cases", other, *FINITE, "--force")
    assert forced.returncode == 0, forced.stderr
    assert {"third", "fourth"} <= set(rows_of(out / "results.csv").case)


# -- bad input -------------------------------------------------------------------------------

DUPLICATES = '''
from diffbench import case


@case(inputs={"x": 2.0})
def echo(x, xp):
    return x**2


@case(inputs={"x": "two"})
def echo(x, xp):  # noqa: F811 - the same name again, on purpose
    return x


@case(inputs={"x": 1.0}, name="twin")
def twin_one(x, xp):
    return 3 * x


@case(inputs={"x": 1.0}, name="twin")
def twin_two(x, xp):
    return x
'''


def test_two_cases_with_one_name_in_a_file_are_both_reported(tmp_path):
    from diffbench import load_cases

    path = tmp_path / "dups.py"
    path.write_text(DUPLICATES)
    echoes = [c for c in load_cases(path) if c.name == "echo"]
    assert [c.line for c in echoes] == [5, 10]
    assert echoes[0].problem is None
    assert "string" in echoes[1].problem and "same name" in echoes[1].problem and ":5" in echoes[1].problem


@pytest.mark.slow
def test_the_valid_one_of_two_same_named_cases_is_measured(tmp_path):
    path = tmp_path / "dups.py"
    path.write_text(DUPLICATES)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", path, *FINITE, "--out", out)
    assert result.returncode == 0, result.stderr
    df = rows_of(out / "results.csv")
    for name in ("echo", "twin"):
        rows = df[df.case == name]
        measured = rows[rows.method == "finite"]
        assert set(measured.variant) == FINITE_VARIANTS and set(measured.status) == {"ok"}
        errors = rows[rows.status == "error"]
        assert len(errors) == 1 and "same name" in errors.iloc[0].diagnosis
    assert "string" in df[(df.case == "echo") & (df.status == "error")].iloc[0].diagnosis
    # d/dx 3x = 3: the first twin is the one measured
    assert (df[(df.case == "twin") & (df.method == "finite")].rel_error < 1e-6).all()
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.csv", "report.md"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask


MARKS_ITS_IMPORT = '''
from pathlib import Path

from diffbench import case

Path(__file__).with_name("imported").touch()


@case(inputs={"x": 3.0})
def quad(x, xp):
    return x**2
'''


@pytest.mark.parametrize("where", ["an existing file", "a path under a file", "a read-only folder",
                                   "a read-only file system"])
def test_a_bad_out_is_refused_before_any_work(tmp_path, where):
    cases = tmp_path / "cases.py"
    cases.write_text(MARKS_ITS_IMPORT)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = {"an existing file": blocker, "a path under a file": blocker / "sub" / "dir",
           "a read-only folder": tmp_path / "read_only", "a read-only file system": Path("/sys/diffbench_out")}[where]
    if where == "a read-only file system" and not Path("/sys/kernel").is_dir():
        pytest.skip("needs Linux's /sys, where nobody, root included, can create a folder")
    if where == "a read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        out.mkdir()
        out.chmod(0o555)
    result = diffbench("run", "--cases", cases, *FINITE, "--out", out, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert str(out) in result.stderr
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_bad_timeout_is_refused(tmp_path, value):
    cases = tmp_path / "cases.py"
    cases.write_text(MARKS_ITS_IMPORT)
    result = diffbench("run", "--cases", cases, *FINITE, "--timeout", value, "--out", tmp_path / "out", timeout=120)
    assert result.returncode == 2 and "--timeout" in result.stderr
    assert not (tmp_path / "imported").exists()


def test_list_into_a_closed_pipe_ends_quietly(tmp_path):
    # far more output than a pipe holds, so the writer meets the closed pipe
    lines = ["from diffbench import case", ""]
    for i in range(3000):
        lines += ["@case(inputs={'x': 1.0}, tags=['a-tag-long-enough-to-fill-the-pipe-quickly'])",
                  f"def case_number_{i:04d}(x, xp):", "    return x", ""]
    cases = tmp_path / "many.py"
    cases.write_text("\n".join(lines))
    process = subprocess.Popen([sys.executable, "-m", "diffbench", "list", "--cases", str(cases)], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"case_number_0000")
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


# -- budgets ---------------------------------------------------------------------------------

def test_a_budget_never_expires_inside_an_import(tmp_path, monkeypatch):
    from diffbench.harness import UnitTimeout, budget

    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(0.6)\nCOMPLETE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)
    with pytest.raises(UnitTimeout):
        with budget(0.1):
            import slow_to_import  # noqa: F401
            time.sleep(30)  # the expired budget lands here, once the import is done
    assert sys.modules["slow_to_import"].COMPLETE
    sys.modules.pop("slow_to_import", None)


@pytest.mark.slow
def test_importing_tensorflow_counts_against_no_measurement(tmp_path):
    # symbolic/tensorflow is the first use of TensorFlow in the worker; importing it takes seconds
    cases = tmp_path / "cases.py"
    cases.write_text(TWO)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "-k", "first", "--methods", "symbolic", "--variants",
                       "symbolic=tensorflow", "--dtypes", "float64", "--no-order2", "--timeout", 2, "--out", out)
    assert result.returncode == 0, result.stderr
    df = rows_of(out / "results.csv")
    assert list(df.status) == ["ok"], df.diagnosis.tolist()


# -- --strict --------------------------------------------------------------------------------

@pytest.mark.slow
def test_strict_exits_1_when_a_status_is_not_the_expected_one(tmp_path):
    cases = tmp_path / "cases.py"
    cases.write_text(TWO)
    assert diffbench("run", "--cases", cases, *FINITE, "--out", tmp_path / "a", "--strict").returncode == 0
    # x**2 at 3 has a finite gradient (6), so a case that expects nan from finite differences is not met
    cases.write_text(TWO.replace('@case(inputs={"x": 3.0})', '@case(inputs={"x": 3.0}, expect={"finite": "nan"})'))
    result = diffbench("run", "--cases", cases, *FINITE, "--out", tmp_path / "b", "--strict")
    assert result.returncode == 1 and "expected nan, got ok" in result.stderr
    assert (tmp_path / "b" / "report.md").exists()


# -- files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    from diffbench.report import atomic_write

    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "report.md", "text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o666 & ~umask


def test_timeout_zero_and_inf_mean_no_limit():
    from diffbench.cli import build_parser

    for text in ("0", "inf"):
        args = build_parser().parse_args(["run", "--timeout", text])
        assert args.timeout == 0 and not math.isnan(args.timeout)
