"""The gate fails closed: isolated measurement, nothing-to-compare, malformed baselines, slowdowns, staleness.

Exit codes of ``check`` (README): 0 match, 1 regression or a row that could not be measured,
2 baseline unusable or nothing to compare, 3 significant slowdown.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from diffbench import case

#: the exit codes of check as the README documents them
EXIT_OK, EXIT_REGRESSION, EXIT_BASELINE, EXIT_SLOWER = 0, 1, 2, 3
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
PROBES = ROOT / "tests" / "data" / "gate" / "probes.py"
#: one float64 row per method keeps each check to a couple of worker start-ups, without TensorFlow
SELECT = ["--methods", "symbolic,finite", "--variants", "symbolic=numpy", "--variants", "finite=central",
          "--dtypes", "float64"]


def diffbench(*args, probe="", timeout=300):
    env = dict(ENV, DIFFBENCH_PROBE=probe)
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def check(baseline, *extra, probe=""):
    return diffbench("check", "--cases", PROBES, "--baseline", baseline, *SELECT, *extra, probe=probe)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    out = diffbench("snapshot", "--cases", PROBES, "--baseline", path, *SELECT)
    assert out.returncode == 0, out.stderr
    return path


def edited(baseline, tmp_path, edit, name="edited.json"):
    data = json.loads(baseline.read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_an_unchanged_case_matches(baseline):
    out = check(baseline)
    assert out.returncode == EXIT_OK, out.stdout + out.stderr
    assert "2 rows compared" in out.stdout  # symbolic/numpy and finite/central, float64


# --------------------------------------------------------------------------- isolation
@pytest.mark.slow
@pytest.mark.parametrize("probe", ["sys_exit", "os_exit", "native_hang"])
def test_a_case_that_exits_or_hangs_never_passes(baseline, probe):
    # the finite-difference row ends the worker (exit code 0) or hangs with the alarm blocked;
    # --timeout 1 plus the runner's grace period stops it from outside
    out = check(baseline, "--timeout", "1", probe=probe)
    assert out.returncode == EXIT_REGRESSION, out.stdout + out.stderr
    assert "could not be measured" in out.stdout and "finite/central float64" in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("how", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
def test_a_case_file_that_exits_at_import_fails_the_gate(baseline, tmp_path, how):
    # the parent lists the cases by importing the files; a file that ends the process there would
    # otherwise end check with exit 0 having compared nothing
    exiting = tmp_path / "exiting.py"
    exiting.write_text(how + PROBES.read_text())
    out = diffbench("check", "--cases", exiting, "--baseline", baseline, *SELECT)
    assert out.returncode == EXIT_BASELINE, out.stdout + out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_snapshot_survives_a_case_that_exits_everywhere(tmp_path):
    path = tmp_path / "baseline.json"
    out = diffbench("snapshot", "--cases", PROBES, "--baseline", path, *SELECT, "--timeout", "5",
                    probe="os_exit_always")
    assert out.returncode == EXIT_OK and "could not be measured" in out.stderr, out.stderr
    entry = json.loads(path.read_text())["cases"]["cubic"]
    assert entry["reference"] is None and "died" in entry["reference_problem"]
    assert {r["status"] for r in entry["rows"]} == {"error"}
    # the same failure in the baseline does not make it a pass
    out = check(path, "--timeout", "5", probe="os_exit_always")
    assert out.returncode == EXIT_REGRESSION and "could not be measured" in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- nothing to compare
def _drop_finite(data):
    data["cases"]["cubic"]["rows"] = [r for r in data["cases"]["cubic"]["rows"] if r["method"] != "finite"]


def _no_gradient(data):
    next(r for r in data["cases"]["cubic"]["rows"] if r["method"] == "symbolic")["gradient"] = None


def _no_rows(data):
    data["cases"]["cubic"]["rows"] = []


def _no_timing(data):
    for row in data["cases"]["cubic"]["rows"]:
        row["time_median_s"] = row["time_min_s"] = row["time_samples_s"] = None


@pytest.mark.parametrize("edit, options, named", [
    (None, ["--dtypes", "float32"], "float32"),
    (None, ["--variants", "finite=central,forward"], "finite/forward float64"),
    (_drop_finite, [], "finite/central float64"),
    (_no_rows, [], "cubic"),
    (_no_gradient, [], "symbolic/numpy float64"),
    (_no_timing, ["--fail-slower", "median:20%"], "--fail-slower"),
], ids=["dtype", "variant", "method", "no-rows", "null-gradient", "no-timings"])
def test_comparing_nothing_is_not_a_pass(baseline, tmp_path, edit, options, named):
    path = edited(baseline, tmp_path, edit) if edit else baseline
    out = check(path, *options)
    assert out.returncode == EXIT_BASELINE, out.stdout + out.stderr
    line = next((x for x in out.stdout.splitlines() if "nothing to compare for" in x), "")
    assert named in line, out.stdout


# --------------------------------------------------------------------------- malformed baselines
def _row0(data):
    return data["cases"]["cubic"]["rows"][0]


@pytest.mark.parametrize("edit, raw, field", [
    (lambda d: _row0(d).update(rel_error="BIG"), ('"BIG"', "9" * 5000), "cases.cubic.rows[0].rel_error"),
    (lambda d: _row0(d)["gradient"]["x"].__setitem__(1, "0.5"), None, "cases.cubic.rows[0].gradient.x[1]"),
    (lambda d: _row0(d).pop("method"), None, "cases.cubic.rows[0]: 'method' is a required property"),
    (lambda d: _row0(d).update(rel_error=float("nan")), None, "cases.cubic.rows[0].rel_error"),
    (lambda d: _row0(d)["time_samples_s"].__setitem__(0, float("inf")), None, "cases.cubic.rows[0].time_samples_s[0]"),
    (lambda d: _row0(d).update(rel_error="HUGE"), ('"HUGE"', "1e999"), "cases.cubic.rows[0].rel_error"),
    (lambda d: _row0(d).update(status="great"), None, "cases.cubic.rows[0].status"),
    (lambda d: d["cases"]["cubic"]["inputs"]["x"].update(shape="3"), None, "cases.cubic.inputs.x.shape"),
    (lambda d: d["cases"]["cubic"].update(rows={"a": 1}), None, "cases.cubic.rows"),
    (lambda d: d.update(cases=[]), None, "field cases"),
    (lambda d: d["cases"]["cubic"]["rows"].append(dict(_row0(d))), None, "cases.cubic.rows[2]"),
], ids=["5000-digits", "string-number", "no-method", "NaN", "Infinity", "1e999", "status", "shape-type",
        "rows-type", "cases-type", "repeated-row"])
def test_a_malformed_baseline_names_the_field(baseline, tmp_path, edit, raw, field):
    path = edited(baseline, tmp_path, edit)
    if raw:
        path.write_text(path.read_text().replace(*raw))
    out = check(path)
    assert out.returncode == EXIT_BASELINE, out.stdout + out.stderr
    assert field in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_previous_schema_version_is_refused(baseline, tmp_path):
    path = edited(baseline, tmp_path, lambda d: d.update(schema_version=1))
    out = check(path)
    assert out.returncode == EXIT_BASELINE and "schema_version 1" in out.stderr and "snapshot" in out.stderr


def test_bad_options_are_exit_2_not_a_regression(baseline):
    assert diffbench("check", "--cases", PROBES, "--baseline", baseline, "--timeout", "nan").returncode == 2
    assert diffbench("check", "--cases", PROBES, "--baseline", baseline, "-k", "nosuchcase").returncode == 2
    assert check(baseline, "--fail-slower", "mean:20%").returncode == 2


def test_an_unwritable_baseline_or_summary_is_said_before_a_traceback(baseline, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = diffbench("snapshot", "--cases", PROBES, "--baseline", blocker / "baseline.json", *SELECT)
    assert out.returncode == 2 and "not a folder" in out.stderr and "Traceback" not in out.stderr
    out = check(baseline, "--summary", blocker / "summary.md")
    assert out.returncode == 2 and "--summary" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- slowdowns
def _timed(samples, gradient=1.0):
    return {"method": "tape", "variant": "eager", "dtype": "float64", "status": "ok", "rel_error": 0.0,
            "gradient": {"x": [gradient]}, "time_samples_s": samples}


def _compare(before, after, spec, gradient=1.0):
    from diffbench.slowdown import SlowerCheck
    from diffbench.testing import compare

    base = {"cases": {"c": {"definition_hash": "h", "source_hash": "s", "rows": [_timed(before)]}}}
    now = {"c": {"definition_hash": "h", "source_hash": "s", "inputs": {"x": {"shape": []}},
                 "rows": [_timed(after, gradient)]}}
    return compare(base, now, SlowerCheck.parse(spec))


BEFORE = [1.00, 1.02, 0.98, 1.01, 0.99]


def test_a_significant_slowdown_above_the_threshold_has_its_own_code_and_heading():
    code, lines = _compare(BEFORE, [1.50, 1.52, 1.48, 1.51, 1.49], "median:20%")
    text = "\n".join(lines)
    assert code == EXIT_SLOWER
    assert "slowdowns" in text and "gradient regressions" not in text and "50% slower" in text


def test_noise_is_not_a_slowdown():
    # medians 1.00 -> 1.25 (+25%), but the samples interleave: no significant difference
    code, _ = _compare(BEFORE, [0.97, 1.25, 1.60, 0.99, 1.30], "median:20%")
    assert code == EXIT_OK


def test_a_significant_slowdown_below_the_threshold_passes():
    code, _ = _compare(BEFORE, [1.10, 1.12, 1.08, 1.11, 1.09], "median:20%")
    assert code == EXIT_OK


def test_min_compares_minimums():
    # nine of ten samples slower and the median +50% (significant), but the fastest run is
    # within 1% of the baseline's (0.98 -> 0.985)
    after = [0.985, 1.45, 1.46, 1.47, 1.48, 1.49, 1.50, 1.51, 1.52, 1.53]
    assert _compare(BEFORE, after, "median:20%")[0] == EXIT_SLOWER
    assert _compare(BEFORE, after, "min:20%")[0] == EXIT_OK
    assert _compare(BEFORE, [1.30, 1.52, 1.48, 1.51, 1.49], "min:20%")[0] == EXIT_SLOWER  # min 0.98 -> 1.30


def test_a_wrong_gradient_outranks_a_slowdown():
    code, lines = _compare(BEFORE, [1.50, 1.52, 1.48, 1.51, 1.49], "median:20%", gradient=2.0)
    assert code == EXIT_REGRESSION and any("slowdowns" in line for line in lines)


def _compare_cases(pairs, spec, calibration=(None, None)):
    """compare() over one timed row per case: pairs of (before, after) samples."""
    from diffbench.slowdown import SlowerCheck
    from diffbench.testing import compare

    base = {"environment": {"calibration_s": calibration[0]},
            "cases": {f"c{i}": {"definition_hash": "h", "source_hash": "s", "rows": [_timed(b)]}
                      for i, (b, _) in enumerate(pairs)}}
    now = {f"c{i}": {"definition_hash": "h", "source_hash": "s", "inputs": {"x": {"shape": []}},
                     "rows": [_timed(a)]} for i, (_, a) in enumerate(pairs)}
    return compare(base, now, SlowerCheck.parse(spec), calibration=calibration[1])


def test_a_machine_that_got_slower_everywhere_is_not_a_slowdown():
    # every row 40 % slower alike: the machine's load, not the code (median ratio 1.4 divided out)
    slower = [t * 1.4 for t in BEFORE]
    assert _compare_cases([(BEFORE, slower)] * 4, "median:20%")[0] == EXIT_OK


def test_one_row_slower_than_the_rest_is_a_slowdown():
    # three rows unchanged, one 50 % slower: the median ratio is 1.0, and that row stands out
    code, lines = _compare_cases([(BEFORE, BEFORE)] * 3 + [(BEFORE, [1.50, 1.52, 1.48, 1.51, 1.49])], "median:20%")
    assert code == EXIT_SLOWER and sum("slower" in line and "c3" in line for line in lines) == 1


def test_with_few_rows_the_calibration_workload_measures_the_machine():
    # one row 40 % slower while the calibration workload also took 40 % longer: the machine
    slower = [t * 1.4 for t in BEFORE]
    assert _compare_cases([(BEFORE, slower)], "median:20%", calibration=(0.010, 0.014))[0] == EXIT_OK
    # the same row with the machine unchanged: a slowdown
    assert _compare_cases([(BEFORE, slower)], "median:20%", calibration=(0.010, 0.010))[0] == EXIT_SLOWER


@pytest.mark.parametrize("x, y", [([2.0, 3, 4, 5, 6], [1.0, 1.1, 1.2, 1.3, 1.4]),
                                  ([1.0, 2, 3, 4, 5, 6], [3.5, 4.5, 0.5, 7.0]),
                                  ([1.0, 1, 2, 2, 3], [1.0, 2, 2, 2, 0])])
def test_mann_whitney_agrees_with_scipy(x, y):
    from diffbench.slowdown import mann_whitney_greater

    scipy_stats = pytest.importorskip("scipy.stats")
    ties = len(set(x + y)) < len(x + y)
    want = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic" if ties else "exact").pvalue
    assert mann_whitney_greater(x, y) == pytest.approx(want, rel=1e-9)


def test_the_baseline_keeps_every_timing_sample(baseline):
    rows = json.loads(baseline.read_text())["cases"]["cubic"]["rows"]
    assert all(len(r["time_samples_s"]) >= 5 and min(r["time_samples_s"]) == r["time_min_s"] for r in rows)


def test_check_exits_3_on_a_slowdown_from_the_command_line(baseline, tmp_path):
    # the baseline made a hundred times faster than it was: every fresh sample is slower
    def faster(data):
        for row in data["cases"]["cubic"]["rows"]:
            row["time_samples_s"] = [s / 100 for s in row["time_samples_s"]]
    out = check(edited(baseline, tmp_path, faster), "--fail-slower", "median:20%")
    assert out.returncode == EXIT_SLOWER, out.stdout + out.stderr


# --------------------------------------------------------------------------- what is under test vs what is true
def _cubic_with_native(native_body):
    @case(inputs={"x": [0.5, -1.0, 2.0]}, expect={"finite": "ok"})
    def cubic(x, xp):
        return xp.sum(x**3)

    cubic.native = native_body
    return cubic


def _native_right(x):
    return x**3


def _native_wrong(x):
    return x**3 + x**2


def test_the_definition_hash_leaves_out_the_native_code():
    right, wrong = _cubic_with_native(_native_right), _cubic_with_native(_native_wrong)
    assert right.definition_hash == wrong.definition_hash
    assert right.source_hash != wrong.source_hash
    other = _cubic_with_native(_native_right)
    other.expect = {"tape": "inaccurate"}
    assert other.definition_hash != right.definition_hash


NATIVE_CASE = '''
from diffbench import case

@case(inputs={"x": [0.5, -1.0, 2.0]})
def cubic_sum(x, xp):
    return xp.sum(x ** 3)

@cubic_sum.tensorflow
def _(x):
    import tensorflow as tf
    return tf.reduce_sum(NATIVE)
'''


@pytest.mark.slow
def test_a_change_in_the_native_code_is_a_regression_with_worst_elements(tmp_path):
    cases, path = tmp_path / "native.py", tmp_path / "baseline.json"
    options = ["--cases", cases, "--baseline", path, "--methods", "tape", "--variants", "tape=eager",
               "--dtypes", "float64", "--timeout", "60"]
    cases.write_text(NATIVE_CASE.replace("NATIVE", "x ** 3"))
    assert diffbench("snapshot", *options).returncode == 0
    # d/dx of x³ + x²/4 is 3x² + x/2: at x = (0.5, −1, 2) that is (1, 2.5, 13) where 3x² is (0.75, 3, 12)
    cases.write_text(NATIVE_CASE.replace("NATIVE", "x ** 3 + 0.25 * x ** 2"))
    out = diffbench("check", *options)
    assert out.returncode == EXIT_REGRESSION, out.stdout + out.stderr
    assert "status `ok` -> `inaccurate`" in out.stdout
    assert "[2] expected 12, got 13" in out.stdout and "relative error" in out.stdout


def test_a_change_in_the_xp_function_is_stale(tmp_path):
    cases, path = tmp_path / "plain.py", tmp_path / "baseline.json"
    source = 'from diffbench import case\n\n@case(inputs={"x": [0.5, 2.0]})\ndef f(x, xp):\n    return xp.sum(BODY)\n'
    options = ["--cases", cases, "--baseline", path, "--methods", "symbolic", "--variants", "symbolic=numpy",
               "--dtypes", "float64"]
    cases.write_text(source.replace("BODY", "x ** 3"))
    assert diffbench("snapshot", *options).returncode == 0
    cases.write_text(source.replace("BODY", "x ** 3 + x"))
    out = diffbench("check", *options)
    assert out.returncode == EXIT_BASELINE and "changed since the baseline" in out.stdout


HANGING_NATIVE_CASE = '''
import os
from diffbench import case

@case(inputs={"x": [0.5, -1.0]})
def looped(x, xp):
    return xp.sum(x ** 2)

@looped.tensorflow
def _(x):
    import tensorflow as tf
    if os.environ.get("DIFFBENCH_PROBE") == "tf_hang":
        @tf.function
        def forever(v):
            return tf.while_loop(lambda i: tf.constant(True), lambda i: i + 1, [tf.constant(0)])
        forever(x)
    return tf.reduce_sum(x ** 2)
'''


@pytest.mark.slow
def test_a_native_tensorflow_hang_is_stopped_and_fails(tmp_path):
    # a tf.while_loop inside tf.function never returns to Python, so only the parent can stop it
    cases = tmp_path / "hang.py"
    cases.write_text(HANGING_NATIVE_CASE)
    options = ["--cases", cases, "--baseline", tmp_path / "baseline.json", "--methods", "tape", "--variants",
               "tape=eager", "--dtypes", "float64", "--timeout", "5"]
    assert diffbench("snapshot", *options).returncode == 0
    out = diffbench("check", *options, probe="tf_hang")
    assert out.returncode == EXIT_REGRESSION, out.stdout + out.stderr
    assert "could not be measured (`timeout`" in out.stdout


def test_a_case_file_that_cannot_load_gives_a_readable_baseline_and_fails_check(tmp_path):
    options = ["--cases", ROOT / "tests" / "data" / "badfiles" / "import_error.py", "--baseline",
               tmp_path / "baseline.json", *SELECT]
    assert diffbench("snapshot", *options).returncode == EXIT_OK
    out = diffbench("check", *options)
    assert out.returncode == EXIT_REGRESSION and "could not be measured" in out.stdout, out.stdout + out.stderr
